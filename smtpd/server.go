// Package smtpd is the agent's message submission server (RFC 6409): the door through which a
// sender's ordinary mail program hands a message in for certification (DESIGN.md §2, §7).
//
// A client says STARTTLS, authenticates with AUTH PLAIN or LOGIN as a user of the agent, names
// itself in MAIL FROM and the recipients in RCPT TO, and sends the message with DATA; the server
// checks it with mailfmt.ParseSubmission and hands it to agent.Submit. The reply to DATA is 250
// only when Submit has returned, that is when the message, its items and their COPs are stored
// durably; the 250 names the label of each recipient's item.
//
// The server must never relay: without a successful AUTH no transaction can start, and an
// authenticated user can send only in its own name. The one exception is opt-in, for
// benchmarks and trusted relays: clients from Config.TrustedNetworks count as authenticated as
// Config.TrustedUser from their first command. It never logs a password, an AUTH exchange
// or a message body.
package smtpd

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/emersion/go-smtp"

	"certmail/account"
	"certmail/agent"
	"certmail/mailfmt"
)

// Config is how the submission server runs. Every field but TLS is optional.
type Config struct {
	Addr     string      // for ListenAndServe; default ":587" (RFC 6409 §3.1)
	Hostname string      // in the greeting and EHLO reply; default the agent's name
	TLS      *tls.Config // for STARTTLS; required, as AUTH is offered only over TLS
	// Limits bound the messages accepted; zero fields take mailfmt's defaults.
	Limits mailfmt.Limits
	Now    func() time.Time // default time.Now
	Logger *slog.Logger     // default: discard
	// MaxRecipients bounds RCPT TO per message; default Limits.MaxRecipients.
	MaxRecipients int
	// ReadTimeout bounds the wait for each command line and for the whole of a message after
	// DATA; WriteTimeout each reply. Default 5 minutes each (RFC 5321 4.5.3.2.7).
	ReadTimeout, WriteTimeout time.Duration
	// TrustedNetworks, for benchmarks and trusted relays on the same machine only, lets a
	// client connecting from one of these networks submit without STARTTLS and AUTH, as
	// TrustedUser (Postfix's mynetworks). Empty by default: every client must authenticate.
	TrustedNetworks []netip.Prefix
	TrustedUser     string
}

// Defaults of Config.
const (
	DefaultAddr    = ":587"
	DefaultTimeout = 5 * time.Minute
	// maxLineLength bounds a command or message line: RFC 5321 4.5.3.1.6's 1000 octets, doubled
	// as go-smtp does for clients that overstep it; mailfmt refuses message lines over 998 with
	// a reply that says what to do.
	maxLineLength = 2000
)

// ErrServerClosed is returned by Serve and ListenAndServe after Close.
var ErrServerClosed = errors.New("smtpd: server closed")

// Server is a submission server. Its methods are safe for concurrent use.
type Server struct {
	cfg      Config
	ag       *agent.Agent
	acc      *account.Accounts
	log      *slog.Logger
	smtp     *smtp.Server
	maxBytes int64 // cfg.Limits.MaxBytes, defaulted

	// ctx is cancelled by Close, aborting store work of sessions still running.
	ctx      context.Context
	cancel   context.CancelFunc
	sessions atomic.Uint64 // numbers sessions in the log

	mu        sync.Mutex
	closed    bool
	listeners []net.Listener
	busy      sync.WaitGroup // AUTH and DATA under way; Close waits for them
}

// New returns a server that authenticates users with acc and certifies their messages with ag.
func New(cfg Config, ag *agent.Agent, acc *account.Accounts) *Server {
	if cfg.Addr == "" {
		cfg.Addr = DefaultAddr
	}
	if cfg.Hostname == "" {
		cfg.Hostname = ag.Name()
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	def := mailfmt.DefaultLimits()
	if cfg.Limits.MaxBytes <= 0 {
		cfg.Limits.MaxBytes = def.MaxBytes
	}
	if cfg.Limits.MaxRecipients <= 0 {
		cfg.Limits.MaxRecipients = def.MaxRecipients
	}
	if cfg.MaxRecipients <= 0 {
		cfg.MaxRecipients = cfg.Limits.MaxRecipients
	}
	if cfg.ReadTimeout <= 0 {
		cfg.ReadTimeout = DefaultTimeout
	}
	if cfg.WriteTimeout <= 0 {
		cfg.WriteTimeout = DefaultTimeout
	}
	s := &Server{cfg: cfg, ag: ag, acc: acc, log: cfg.Logger, maxBytes: cfg.Limits.MaxBytes}
	s.ctx, s.cancel = context.WithCancel(context.Background())

	ss := smtp.NewServer(smtp.BackendFunc(s.newSession))
	ss.Addr = cfg.Addr
	ss.Domain = cfg.Hostname
	ss.TLSConfig = cfg.TLS
	// go-smtp refuses AUTH before TLS with 523 5.7.10 and no way to change it; the session
	// refuses it itself with RFC 4954 §6's 538 5.7.11 and advertises no mechanism before TLS.
	ss.AllowInsecureAuth = true
	// go-smtp's reader fails as soon as it has counted MaxMessageBytes, before it sees the end
	// of the data, so a message of exactly MaxBytes needs one byte more (which EHLO's SIZE then
	// shows); the session refuses anything over MaxBytes with 552 5.3.4 (RFC 1870, RFC 3463).
	ss.MaxMessageBytes = s.maxBytes + 1
	// RFC 5321 4.5.3.1.10: past the limit, 452 4.5.3 (and RFC 9422's LIMITS RCPTMAX advertises it).
	ss.MaxRecipients = cfg.MaxRecipients
	ss.MaxLineLength = maxLineLength
	// Never zero: besides bounding idle clients, the deadline is what stops go-smtp's command
	// loop after it closed a connection (too many errors), before it runs commands the client
	// had pipelined on a session it has dropped.
	ss.ReadTimeout = cfg.ReadTimeout
	ss.WriteTimeout = cfg.WriteTimeout
	ss.ErrorLog = errorLog{s.log}
	s.smtp = ss
	return s
}

// Serve accepts connections on l until Close. It needs Config.TLS: without it no client could
// authenticate, and nobody could submit.
func (s *Server) Serve(l net.Listener) error {
	if s.cfg.TLS == nil {
		return errors.New("smtpd: no TLS configuration: submission requires STARTTLS before AUTH (RFC 4954 §4)")
	}
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		l.Close()
		return ErrServerClosed
	}
	s.listeners = append(s.listeners, l)
	s.mu.Unlock()
	s.log.Info("smtp submission listening", "addr", l.Addr().String(), "hostname", s.cfg.Hostname)
	if err := s.smtp.Serve(l); err != nil {
		return fmt.Errorf("smtpd: serve %s: %w", l.Addr(), err)
	}
	return ErrServerClosed
}

// ListenAndServe listens on Config.Addr and serves until Close.
func (s *Server) ListenAndServe() error {
	l, err := net.Listen("tcp", s.cfg.Addr)
	if err != nil {
		return fmt.Errorf("smtpd: %w", err)
	}
	return s.Serve(l)
}

// Addr is the address of the first listener, nil before Serve.
func (s *Server) Addr() net.Addr {
	s.mu.Lock()
	defer s.mu.Unlock()
	if len(s.listeners) == 0 {
		return nil
	}
	return s.listeners[0].Addr()
}

// Close stops the listeners, closes every connection, aborts the store work of sessions still
// running (their clients get no 250, so nothing half-done is acknowledged) and waits for it.
func (s *Server) Close() error {
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		return nil
	}
	s.closed = true
	listeners := s.listeners
	s.mu.Unlock()

	s.cancel()
	err := s.smtp.Close()
	for _, l := range listeners {
		l.Close() // go-smtp closed those it had started on; closing again is harmless
	}
	s.busy.Wait()
	if err != nil && !errors.Is(err, net.ErrClosed) {
		return fmt.Errorf("smtpd: close: %w", err)
	}
	return nil
}

// begin registers work that Close must wait for; false once Close has begun.
func (s *Server) begin() bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return false
	}
	s.busy.Add(1)
	return true
}

func (s *Server) end() { s.busy.Done() }

// errorLog carries go-smtp's own reports (connection errors, recovered panics) into the log.
type errorLog struct{ log *slog.Logger }

func (e errorLog) Printf(format string, v ...any) { e.print(fmt.Sprintf(format, v...)) }
func (e errorLog) Println(v ...any)               { e.print(strings.TrimSuffix(fmt.Sprintln(v...), "\n")) }

func (e errorLog) print(msg string) {
	if !strings.HasPrefix(msg, "panic") {
		e.log.Warn("smtp: " + msg)
		return
	}
	// go-smtp recovered a panic and closed the connection. One in certmail's code is a bug to
	// fix, logged with its stack. One inside go-smtp is go-smtp's: v0.25.1 has races a client
	// can provoke, e.g. closing the connection while a BDAT chunk is being handed over makes
	// it call Data on the session it just dropped. Those get one line, with where it happened.
	if strings.Contains(msg, "certmail/") {
		e.log.Error("smtp: " + msg)
		return
	}
	first, stack, _ := strings.Cut(msg, "\n")
	e.log.Warn("smtp: inside go-smtp: "+first, "at", panicFrame(stack))
}

// panicFrame returns the function and line where a panic happened, from a runtime stack.
func panicFrame(stack string) string {
	lines := strings.Split(stack, "\n")
	for i, l := range lines {
		if strings.HasPrefix(l, "panic(") && i+3 < len(lines) {
			return lines[i+2] + " " + strings.TrimSpace(lines[i+3])
		}
	}
	return ""
}
