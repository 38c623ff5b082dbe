package mailout

import (
	"cmp"
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"net"
	"net/textproto"
	"slices"
	"strings"
	"time"

	"github.com/emersion/go-sasl"
	"github.com/emersion/go-smtp"

	"certmail/config"
	"certmail/store"
)

const (
	dialTimeout    = 30 * time.Second
	commandTimeout = 5 * time.Minute  // RFC 5321 4.5.3.2: the greeting, EHLO and STARTTLS
	quitTimeout    = 10 * time.Second // the mail is delivered or not by then; do not wait long
	maxReason      = 1000             // bytes of a server's reply kept as the reason
)

// tlsOpportunistic is the TLS of MX delivery: STARTTLS when offered, in the clear otherwise.
const tlsOpportunistic = "opportunistic"

// errHandshake marks a failed TLS handshake, after which an opportunistic hop is tried in the clear.
var errHandshake = errors.New("TLS handshake")

// result is what one delivery came to.
type result struct {
	host      string // the server (or domain) that answered last, for the log and the reason
	code      int    // its reply code; 0 when it gave none
	permanent bool   // never retry: a 5xx to RCPT TO or DATA, a null MX, a domain with no host
	err       error  // nil when the server took the mail (2xx to the end of DATA)
}

// reason is what the sender and the log are told about a failure.
func (r result) reason() string {
	s := r.err.Error()
	if r.host != "" {
		s = r.host + ": " + s
	}
	if len(s) > maxReason {
		s = s[:maxReason] + "…"
	}
	return s
}

// fail returns r failed with err; permanent5xx says a 5xx reply to this command is final.
func (r result) fail(err error, permanent5xx bool) result {
	r.err = err
	var rf *refusal
	if errors.As(err, &rf) {
		r.code = rf.code
		r.permanent = permanent5xx && rf.code/100 == 5 // RFC 5321 4.2.1: 5yz is permanent
	}
	return r
}

// refusal is a server's negative reply to a command, as the server worded it.
type refusal struct {
	cmd  string
	code int
	text string // enhanced status code and message
}

func (e *refusal) Error() string { return fmt.Sprintf("%s: %d %s", e.cmd, e.code, e.text) }

// refused names the command a server refused; other errors (a dropped connection) are wrapped.
func refused(cmd string, err error) error {
	var se *smtp.SMTPError
	var te *textproto.Error
	switch {
	case errors.As(err, &se):
		text := se.Message
		if ec := se.EnhancedCode; ec[0] > 0 {
			text = fmt.Sprintf("%d.%d.%d %s", ec[0], ec[1], ec[2], text)
		}
		return &refusal{cmd: cmd, code: se.Code, text: strings.ReplaceAll(text, "\n", " ")}
	case errors.As(err, &te):
		return &refusal{cmd: cmd, code: te.Code, text: strings.ReplaceAll(te.Msg, "\n", " ")}
	}
	return fmt.Errorf("%s: %w", cmd, err)
}

// hop is a server to hand a mail to, and how.
type hop struct {
	addr string // host:port to dial
	name string // its name: for TLS, and to say who answered
	tls  string // config.TLSNone, config.TLSStartTLS (required), tlsOpportunistic or config.TLSImplicit
	cfg  *tls.Config
	auth bool // authenticate with the configured credentials
	pool bool // keep the connection open for the next mail (the smarthost: always the same hop)
}

// deliver hands m to the next server once.
func (q *Queue) deliver(ctx context.Context, m store.Outbound) result {
	if p, ok := q.peer(m); ok {
		if p.Addr == "" {
			return result{host: p.Name, permanent: true, err: fmt.Errorf("agent %s is not in the trust store", p.Name)}
		}
		return q.send(ctx, m, hop{addr: p.Addr, name: p.Name, tls: config.TLSStartTLS, cfg: p.TLS})
	}
	if q.cfg.Mode != config.ModeSmarthost {
		return q.deliverMX(ctx, m)
	}
	return q.deliverSmarthost(ctx, []store.Outbound{m})[0]
}

// deliverSmarthost hands ms to the smarthost together, over one session: one round trip for
// them all where it offers PIPELINING and CHUNKING.
func (q *Queue) deliverSmarthost(ctx context.Context, ms []store.Outbound) []result {
	host, _, err := net.SplitHostPort(q.cfg.Smarthost)
	if err != nil {
		return slices.Repeat([]result{{err: fmt.Errorf("smarthost %q: %w", q.cfg.Smarthost, err)}}, len(ms))
	}
	return q.sendMany(ctx, ms, hop{addr: q.cfg.Smarthost, name: host, tls: q.cfg.TLS, auth: true, pool: true,
		cfg: &tls.Config{ServerName: host, RootCAs: q.cfg.RootCAs, MinVersion: tls.VersionTLS12}})
}

// deliverMX tries the mail servers of the recipient's domain in order of preference, each of
// their addresses in turn, until one takes the mail or refuses it for good (RFC 5321 5.1).
func (q *Queue) deliverMX(ctx context.Context, m store.Outbound) result {
	domain := domainOf(m.To)
	if domain == "" {
		return result{permanent: true, err: fmt.Errorf("the address %q has no domain", m.To)}
	}
	hosts, r := q.mxHosts(ctx, domain)
	if r.err != nil {
		return r
	}
	last := result{host: domain, err: errors.New("no mail server to try")}
	for _, name := range hosts {
		addrs, err := q.cfg.Resolver.LookupHost(ctx, name)
		if err != nil {
			last = result{host: name, err: fmt.Errorf("look up its address: %w", err)}
			continue
		}
		for _, a := range addrs {
			// RFC 7435: encrypt when the server can, without authenticating it; nothing here
			// says which certificate it should have (MTA-STS and DANE are not implemented).
			last = q.send(ctx, m, hop{addr: net.JoinHostPort(a, q.cfg.Port), name: name, tls: tlsOpportunistic,
				cfg: &tls.Config{ServerName: name, InsecureSkipVerify: true}})
			if last.err == nil || last.permanent || ctx.Err() != nil {
				return last
			}
		}
	}
	return last
}

// mxHosts lists the hosts that take mail for domain, most preferred first.
func (q *Queue) mxHosts(ctx context.Context, domain string) ([]string, result) {
	mxs, err := q.cfg.Resolver.LookupMX(ctx, domain)
	if err != nil && len(mxs) == 0 { // with some records malformed, the rest are used
		if !notFound(err) {
			return nil, result{host: domain, err: fmt.Errorf("look up MX: %w", err)}
		}
	}
	if len(mxs) == 1 && mxs[0].Host == "." {
		// RFC 7505 3: a null MX says the domain takes no mail; 4.1 gives the reply code.
		return nil, result{host: domain, code: 556, permanent: true,
			err: errors.New("556 5.1.10 the domain accepts no mail (null MX, RFC 7505)")}
	}
	if len(mxs) == 0 {
		// RFC 5321 5.1: with no MX, the domain itself is the host, if it has an address.
		if _, err := q.cfg.Resolver.LookupHost(ctx, domain); notFound(err) {
			return nil, result{host: domain, permanent: true, err: errors.New("the domain has no mail server: no MX and no address")}
		} else if err != nil {
			return nil, result{host: domain, err: fmt.Errorf("look up its address: %w", err)}
		}
		return []string{domain}, result{}
	}
	// Stable, so that a resolver's shuffle of equal preferences stands (RFC 5321 5.1).
	slices.SortStableFunc(mxs, func(a, b *net.MX) int { return cmp.Compare(a.Pref, b.Pref) })
	var hosts []string
	for _, mx := range mxs {
		if h := strings.TrimSuffix(mx.Host, "."); h != "" {
			hosts = append(hosts, h)
		}
	}
	return hosts, result{}
}

func notFound(err error) bool {
	var de *net.DNSError
	return errors.As(err, &de) && de.IsNotFound
}

// send hands m to the server at h in one SMTP transaction.
func (q *Queue) send(ctx context.Context, m store.Outbound, h hop) result {
	return q.sendMany(ctx, []store.Outbound{m}, h)[0]
}

// sendMany hands ms to the server at h, one SMTP transaction each, in one session. To the
// smarthost it uses a connection kept open by an earlier delivery when there is one (RFC 5321
// 3.3: a client may send several mails in one session), and a new one when that connection
// turns out closed before any mail was handed over; to an MX, a connection of its own.
func (q *Queue) sendMany(ctx context.Context, ms []store.Outbound, h hop) []result {
	if h.pool {
		if s := q.takeIdle(ctx); s != nil {
			rs, keep, stale := q.transact(ms, h, s, true)
			if !stale {
				q.putBack(s, keep)
				return rs
			}
			s.close() // the server closed it while it was idle: try a new one
		}
	}
	s, err := q.connect(ctx, h)
	if err != nil && h.tls == tlsOpportunistic && errors.Is(err, errHandshake) {
		// A server whose TLS we cannot speak gets the mail in the clear, as one offering no TLS
		// would: opportunistic security guards against eavesdropping, not against delivery.
		h.tls = config.TLSNone
		s, err = q.connect(ctx, h)
	}
	if err != nil {
		return slices.Repeat([]result{result{host: h.name}.fail(err, false)}, len(ms))
	}
	rs, keep, _ := q.transact(ms, h, s, false)
	q.putBack(s, keep && h.pool)
	return rs
}

// transact runs the mails' transactions on s: AUTH first on a new session, then for each MAIL,
// RCPT and the message (Client.SendMany). keep says s may carry more mail; stale that a reused
// s failed before the server took anything, as one the server has closed does.
func (q *Queue) transact(ms []store.Outbound, h hop, s *session, reused bool) (rs []result, keep, stale bool) {
	r := result{host: h.name}
	if !reused && h.auth && q.cfg.Username != "" {
		if !s.encrypted {
			return slices.Repeat([]result{r.fail(errors.New(`AUTH: the password is never sent in the clear; set tls to "starttls" or "tls"`), false)}, len(ms)), false, false
		}
		if !s.c.SupportsAuth(sasl.Plain) {
			return slices.Repeat([]result{r.fail(errors.New("AUTH: the server does not offer AUTH PLAIN"), false)}, len(ms)), false, false
		}
		if err := s.c.Auth(sasl.NewPlainClient("", q.cfg.Username, q.cfg.Password)); err != nil {
			return slices.Repeat([]result{r.fail(refused("AUTH", err), false)}, len(ms)), false, false
		}
	}
	rs = slices.Repeat([]result{r}, len(ms)) // each taken (code 250) or failed below
	mails := make([]smtp.Mail, 0, len(ms))
	sent := make([]int, 0, len(ms)) // the index in ms of each of mails
	smtputf8, _ := s.c.Extension("SMTPUTF8")
	for i, m := range ms {
		utf8 := !isASCII(m.From) || !isASCII(m.To)
		if utf8 && !smtputf8 {
			// RFC 6531 3.2: the server cannot take an internationalized address, now or later.
			rs[i] = result{host: h.name, permanent: true, err: errors.New("the server does not accept internationalized addresses (SMTPUTF8, RFC 6531)")}
			continue
		}
		mails = append(mails, smtp.Mail{From: m.From, MailOptions: &smtp.MailOptions{Size: int64(len(m.Data)), UTF8: utf8}, To: m.To, Data: m.Data})
		sent = append(sent, i)
	}
	if len(mails) == 0 {
		return rs, true, false
	}
	// The mails and their commands go out in one write when the server offers PIPELINING and
	// CHUNKING (RFC 2920, RFC 3030); MAIL, RCPT and DATA of each do when it offers PIPELINING.
	keep = true
	for k, err := range s.c.SendMany(mails) {
		i := sent[k]
		if err == nil {
			rs[i].code = 250
			continue
		}
		keep = false
		cmd := "MAIL"
		if ce := (*smtp.CommandError)(nil); errors.As(err, &ce) {
			cmd, err = ce.Command, ce.Err
		}
		var se *smtp.SMTPError
		reply := errors.As(err, &se)
		if !reply {
			s.broken = true // a QUIT now could be read as part of a message
		}
		switch cmd {
		case "MAIL":
			// A refused MAIL FROM refuses our own address, not the recipient: it is retried,
			// so that an operator can mend the configuration before the mail bounces.
			if k == 0 && reused && (!reply || se.Code == 421) {
				return nil, false, true // closed while idle, or closing (RFC 5321 3.8)
			}
			rs[i] = rs[i].fail(refused("MAIL FROM", err), false)
		case "RCPT":
			rs[i] = rs[i].fail(refused("RCPT TO", err), true)
		default:
			// DATA, or the message: RFC 5321 4.1.1.4, the reply to the end of the message is
			// what says the server took the mail.
			rs[i] = rs[i].fail(refused(cmd, err), true)
		}
	}
	return rs, keep, false
}

// takeIdle returns a kept-open session to the smarthost, bound to ctx, or nil.
func (q *Queue) takeIdle(ctx context.Context) *session {
	select {
	case s := <-q.idle:
		s.stop = context.AfterFunc(ctx, func() { s.c.Close() })
		return s
	default:
		return nil
	}
}

// putBack keeps s for the next mail when keep and there is room, and closes it otherwise.
func (q *Queue) putBack(s *session, keep bool) {
	if !s.stop() { // the delivery's ctx ended and closed the connection
		s.broken = true
	}
	s.stop = func() bool { return true }
	if keep && !s.broken {
		select {
		case q.idle <- s:
			return
		default:
		}
	}
	s.close()
}

// closeIdle says QUIT on the kept-open sessions.
func (q *Queue) closeIdle() {
	for {
		select {
		case s := <-q.idle:
			s.close()
		default:
			return
		}
	}
}

// session is one SMTP connection, introduced and, when it could be, encrypted.
type session struct {
	c         *smtp.Client
	encrypted bool
	broken    bool        // ended in the middle of a command: close without QUIT
	stop      func() bool // stops closing the connection when ctx ends
}

func (s *session) close() {
	s.c.CommandTimeout = quitTimeout
	if s.broken || s.c.Quit() != nil {
		s.c.Close()
	}
	s.stop()
}

// connect dials h, speaks TLS as h says, and says EHLO.
func (q *Queue) connect(ctx context.Context, h hop) (*session, error) {
	d := net.Dialer{Timeout: dialTimeout}
	conn, err := d.DialContext(ctx, "tcp", h.addr)
	if err != nil {
		return nil, fmt.Errorf("connect: %w", err)
	}
	// go-smtp knows deadlines, not contexts: a cancelled delivery closes its connection.
	stop := context.AfterFunc(ctx, func() { conn.Close() })
	abort := func(err error) (*session, error) {
		stop()
		conn.Close()
		return nil, err
	}
	var nc net.Conn = conn
	s := &session{stop: stop}
	switch h.tls {
	case config.TLSImplicit:
		tc := tls.Client(conn, h.cfg)
		if err := tc.HandshakeContext(ctx); err != nil {
			return abort(fmt.Errorf("%w: %w", errHandshake, err))
		}
		nc, s.encrypted = tc, true
	case config.TLSStartTLS, tlsOpportunistic:
		if nc, s.encrypted, err = startTLS(ctx, conn, q.cfg.Hostname, h.cfg, h.tls == config.TLSStartTLS); err != nil {
			return abort(err)
		}
	}
	s.c = smtp.NewClient(nc)
	if err := s.c.Hello(q.cfg.Hostname); err != nil {
		return abort(refused("EHLO", err))
	}
	return s, nil
}

// startTLS speaks the opening of a session in the clear — the greeting and EHLO (RFC 5321 4.3.1)
// — and then STARTTLS when the server offers it (RFC 3207 4). It returns the connection to go on
// with, and whether it is encrypted. (go-smtp v0.25 starts TLS only in a client that introduced
// itself as "localhost", so this part is done here.) With required, a server that offers no
// STARTTLS is an error; without, the session goes on in the clear.
func startTLS(ctx context.Context, conn net.Conn, hostname string, cfg *tls.Config, required bool) (net.Conn, bool, error) {
	conn.SetDeadline(time.Now().Add(commandTimeout))
	defer conn.SetDeadline(time.Time{})
	tp := textproto.NewConn(conn) // not closed here: the connection goes on
	if _, _, err := tp.ReadResponse(220); err != nil {
		return nil, false, refused("greeting", err)
	}
	if err := tp.PrintfLine("EHLO %s", hostname); err != nil {
		return nil, false, fmt.Errorf("EHLO: %w", err)
	}
	_, msg, err := tp.ReadResponse(250)
	var te *textproto.Error
	if err != nil && !(errors.As(err, &te) && te.Code/100 == 5) { // a 5xx: no EHLO, so no STARTTLS
		return nil, false, refused("EHLO", err)
	}
	offered := false
	for _, line := range strings.Split(msg, "\n")[1:] { // the first line is the greeting
		if f := strings.Fields(line); len(f) > 0 && strings.EqualFold(f[0], "STARTTLS") {
			offered = err == nil
		}
	}
	if !offered {
		if required {
			return nil, false, errors.New(`STARTTLS: the server does not offer it, and tls = "starttls" requires it`)
		}
		return greeted(conn, tp.R), false, nil
	}
	if err := tp.PrintfLine("STARTTLS"); err != nil {
		return nil, false, fmt.Errorf("STARTTLS: %w", err)
	}
	if _, _, err := tp.ReadResponse(220); err != nil {
		if !required && errors.As(err, &te) {
			return greeted(conn, tp.R), false, nil // RFC 3207 4: 454 TLS not available; go on in the clear
		}
		return nil, false, refused("STARTTLS", err)
	}
	if tp.R.Buffered() > 0 {
		// RFC 3207 6: nothing received before the handshake may be trusted, and bytes after
		// the 220 would be read as replies inside TLS: a response injection.
		return nil, false, errors.New("STARTTLS: the server sent data before the TLS handshake")
	}
	tc := tls.Client(conn, cfg)
	if err := tc.HandshakeContext(ctx); err != nil {
		return nil, false, fmt.Errorf("STARTTLS: %w: %w", errHandshake, err)
	}
	return greeted(tc, tc), true, nil
}

// greeted hands smtp.NewClient a connection whose greeting was read already: the client reads
// one before it says EHLO, and after STARTTLS the server sends none (RFC 3207 4.2), so a copy is
// replayed. The client then says EHLO again, as RFC 3207 4.2 requires after TLS and RFC 5321
// 4.1.4 allows without.
func greeted(c net.Conn, rest io.Reader) net.Conn {
	return &replayConn{Conn: c, r: io.MultiReader(strings.NewReader("220 greeting read before STARTTLS\r\n"), rest)}
}

type replayConn struct {
	net.Conn
	r io.Reader
}

func (c *replayConn) Read(p []byte) (int, error) { return c.r.Read(p) }

func isASCII(s string) bool {
	for i := 0; i < len(s); i++ {
		if s[i] >= 0x80 {
			return false
		}
	}
	return true
}
