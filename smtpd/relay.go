package smtpd

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"sync"
	"time"

	"github.com/emersion/go-smtp"

	"certmail/agent"
	"certmail/pki"
	"certmail/relay"
)

// RelayConfig is how the inbound relay endpoint runs: the SMTP door through which peer agents
// hand this agent relays, ACKs, reports and decisions (package relay). It is separate from
// submission: nobody authenticates with a password here. A peer must start TLS and present a
// certificate before MAIL FROM; the certificate must match the peer's pin in the trust store
// when it has one, and the mail's transport envelope must be signed by the peer's evidence key.
type RelayConfig struct {
	Hostname string      // in the greeting; default the agent's name
	TLS      *tls.Config // this agent's certificate; the server asks peers for theirs
	// Peer returns a trusted peer's evidence verifier key and its TLS pin ("" for none).
	Peer     func(name string) (key, pin string, ok bool)
	MaxBytes int64        // largest relay mail taken
	Logger   *slog.Logger // default: discard
	// ReadTimeout and WriteTimeout as for submission; default 5 minutes.
	ReadTimeout, WriteTimeout time.Duration
}

// RelayServer is the inbound relay endpoint.
type RelayServer struct {
	cfg  RelayConfig
	ag   *agent.Agent
	log  *slog.Logger
	smtp *smtp.Server

	ctx    context.Context
	cancel context.CancelFunc
	mu     sync.Mutex
	closed bool
	busy   sync.WaitGroup
}

// NewRelay returns the inbound relay endpoint of ag.
func NewRelay(cfg RelayConfig, ag *agent.Agent) *RelayServer {
	if cfg.Hostname == "" {
		cfg.Hostname = ag.Name()
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	if cfg.ReadTimeout <= 0 {
		cfg.ReadTimeout = DefaultTimeout
	}
	if cfg.WriteTimeout <= 0 {
		cfg.WriteTimeout = DefaultTimeout
	}
	s := &RelayServer{cfg: cfg, ag: ag, log: cfg.Logger}
	s.ctx, s.cancel = context.WithCancel(context.Background())
	ss := smtp.NewServer(smtp.BackendFunc(func(c *smtp.Conn) (smtp.Session, error) {
		return &relaySession{s: s, c: c}, nil
	}))
	ss.Domain = cfg.Hostname
	if cfg.TLS != nil {
		t := cfg.TLS.Clone()
		// Every peer has a certificate; which one it must be is checked against the trust
		// store once the envelope names the peer (its own CA signs it, so no chain is checked).
		t.ClientAuth = tls.RequireAnyClientCert
		ss.TLSConfig = t
	}
	ss.MaxMessageBytes = cfg.MaxBytes
	ss.MaxRecipients = 1
	ss.MaxLineLength = maxLineLength
	ss.ReadTimeout = cfg.ReadTimeout
	ss.WriteTimeout = cfg.WriteTimeout
	ss.ErrorLog = errorLog{s.log}
	s.smtp = ss
	return s
}

// Serve accepts peers' connections on l until Close.
func (s *RelayServer) Serve(l net.Listener) error {
	if s.cfg.TLS == nil {
		return errors.New("smtpd: relay: no TLS configuration: peers must start TLS")
	}
	s.log.Info("smtp relay listening", "addr", l.Addr().String(), "hostname", s.cfg.Hostname)
	if err := s.smtp.Serve(l); err != nil {
		return fmt.Errorf("smtpd: relay: serve %s: %w", l.Addr(), err)
	}
	return ErrServerClosed
}

// Close stops the endpoint and waits for relays being stored.
func (s *RelayServer) Close() error {
	s.mu.Lock()
	s.closed = true
	s.mu.Unlock()
	s.cancel()
	err := s.smtp.Close()
	s.busy.Wait()
	if err != nil && !errors.Is(err, net.ErrClosed) {
		return fmt.Errorf("smtpd: relay: close: %w", err)
	}
	return nil
}

type relaySession struct {
	s  *RelayServer
	c  *smtp.Conn
	to bool
}

func (rs *relaySession) Reset()        { rs.to = false }
func (rs *relaySession) Logout() error { return nil }

// Mail: only a peer that started TLS and showed a certificate may begin.
func (rs *relaySession) Mail(from string, _ *smtp.MailOptions) error {
	st, ok := rs.c.TLSConnectionState()
	if !ok {
		return &smtp.SMTPError{Code: 530, EnhancedCode: smtp.EnhancedCode{5, 7, 0}, Message: "Must issue a STARTTLS command first: agents relay over TLS only"}
	}
	if len(st.PeerCertificates) == 0 {
		return &smtp.SMTPError{Code: 530, EnhancedCode: smtp.EnhancedCode{5, 7, 0}, Message: "A peer agent must present its TLS certificate"}
	}
	return nil
}

func (rs *relaySession) Rcpt(to string, _ *smtp.RcptOptions) error {
	if to != relay.Address(rs.s.ag.Name()) {
		return &smtp.SMTPError{Code: 550, EnhancedCode: smtp.EnhancedCode{5, 1, 1}, Message: "This endpoint takes relay mail for " + relay.Address(rs.s.ag.Name()) + " only"}
	}
	rs.to = true
	return nil
}

func (rs *relaySession) Data(r io.Reader) error {
	s := rs.s
	data, err := io.ReadAll(r)
	if err != nil {
		return err
	}
	if !rs.to {
		return &smtp.SMTPError{Code: 503, EnhancedCode: smtp.EnhancedCode{5, 5, 1}, Message: "RCPT first"}
	}
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		return &smtp.SMTPError{Code: 421, EnhancedCode: smtp.EnhancedCode{4, 3, 2}, Message: "Shutting down; try again later"}
	}
	s.busy.Add(1)
	s.mu.Unlock()
	defer s.busy.Done()

	client := rs.c.Conn().RemoteAddr().String()
	key := func(name string) (string, bool) {
		k, _, ok := s.cfg.Peer(name)
		return k, ok
	}
	m, err := relay.ParseMail(data, s.cfg.MaxBytes, key)
	if err == nil {
		st, _ := rs.c.TLSConnectionState()
		_, pin, _ := s.cfg.Peer(m.Envelope.From)
		if pin != "" && (len(st.PeerCertificates) == 0 || pki.SPKIPin(st.PeerCertificates[0]) != pin) {
			err = &relay.RefusedError{Reason: fmt.Sprintf("the TLS certificate is not the one the trust store pins for %s", m.Envelope.From)}
		}
	}
	if err == nil {
		err = s.ag.Take(s.ctx, m)
	}
	var refused *relay.RefusedError
	switch {
	case err == nil:
		s.log.Info("relay: taken", "step", m.Envelope.Step, "label", m.Envelope.Label, "from", m.Envelope.From)
		return nil
	case errors.As(err, &refused):
		attrs := []any{"client", client, "reason", refused.Reason}
		if m != nil {
			attrs = append(attrs, "step", m.Envelope.Step, "label", m.Envelope.Label, "from", m.Envelope.From)
		}
		s.log.Warn("relay: refused", attrs...)
		return &smtp.SMTPError{Code: 554, EnhancedCode: smtp.EnhancedCode{5, 7, 1}, Message: "Relay refused: " + refused.Reason}
	case agent.KindOf(err) != agent.KindUnavailable:
		s.log.Warn("relay: refused", "client", client, "err", err)
		return &smtp.SMTPError{Code: 554, EnhancedCode: smtp.EnhancedCode{5, 7, 1}, Message: "Relay refused: " + err.Error()}
	default:
		s.log.Error("relay: not stored", "client", client, "err", err)
		return &smtp.SMTPError{Code: 451, EnhancedCode: smtp.EnhancedCode{4, 3, 0}, Message: "Not stored; try again later"}
	}
}
