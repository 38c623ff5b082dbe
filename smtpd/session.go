package smtpd

import (
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/netip"
	"slices"
	"strings"
	"sync"

	"github.com/emersion/go-sasl"
	"github.com/emersion/go-smtp"

	"certmail/account"
	"certmail/agent"
	"certmail/evidence"
	"certmail/mailfmt"
)

// session is one client's conversation after EHLO. go-smtp starts a new one after STARTTLS
// (RFC 3207 §4.2: the client's earlier state is forgotten), so tls is fixed for its life.
type session struct {
	srv    *Server
	client string // the client's IP address, for rate limits and the log
	tls    bool
	log    *slog.Logger

	// mu guards what follows: with BDAT, go-smtp runs Data in its own goroutine while the
	// command loop may call Reset.
	mu    sync.Mutex
	user  string   // the authenticated address, "" before AUTH
	from  string   // MAIL FROM, "" outside a transaction
	rcpts []string // RCPT TO, normalised, each once
}

var _ smtp.AuthSession = (*session)(nil)

func (s *Server) newSession(c *smtp.Conn) (smtp.Session, error) {
	if s.ctx.Err() != nil {
		return nil, errShuttingDown
	}
	client := c.Conn().RemoteAddr().String()
	if host, _, err := net.SplitHostPort(client); err == nil {
		client = host
	}
	_, isTLS := c.TLSConnectionState()
	sess := &session{srv: s, client: client, tls: isTLS,
		log: s.log.With("session", s.sessions.Add(1), "client", client, "tls", isTLS)}
	if s.trusted(client) {
		sess.user = s.cfg.TrustedUser
		sess.log.Debug("smtp trusted client: no AUTH needed", "user", sess.user)
	}
	return sess, nil
}

// trusted reports whether a client's address is in Config.TrustedNetworks.
func (s *Server) trusted(client string) bool {
	if len(s.cfg.TrustedNetworks) == 0 || s.cfg.TrustedUser == "" {
		return false
	}
	a, err := netip.ParseAddr(client)
	if err != nil {
		return false
	}
	a = a.Unmap()
	for _, p := range s.cfg.TrustedNetworks {
		if p.Contains(a) {
			return true
		}
	}
	return false
}

// AuthMechanisms lists nothing before STARTTLS, so EHLO advertises AUTH only over TLS: RFC 4954
// §4 forbids plaintext password mechanisms on a connection open to snooping.
func (s *session) AuthMechanisms() []string {
	if !s.tls {
		return nil
	}
	return []string{sasl.Plain, sasl.Login}
}

// Auth starts a SASL exchange. Passwords are only ever checked over TLS.
func (s *session) Auth(mech string) (sasl.Server, error) {
	if !s.tls {
		s.log.Info("smtp auth refused before STARTTLS", "mechanism", mech)
		return nil, errEncryptionRequired // RFC 4954 §6
	}
	switch strings.ToUpper(mech) {
	case sasl.Plain:
		return checked{sasl.NewPlainServer(func(identity, username, password string) error {
			if identity != "" && identity != username {
				// RFC 4616 §2: acting for another user would need a policy; certmail has none.
				s.log.Info("smtp auth refused: authorization identity differs", "user", username)
				return errBadCredentials
			}
			return s.authenticate(username, password)
		})}, nil
	case sasl.Login:
		return checked{&loginServer{auth: s.authenticate}}, nil
	}
	return nil, errUnknownMechanism
}

// authenticate checks a login with the accounts, counting failures against the account and the
// client's address. The reply says what happened in words a user can act on; the password is
// never logged.
func (s *session) authenticate(username, password string) error {
	if !s.srv.begin() {
		return errShuttingDown
	}
	defer s.srv.end()
	u, err := s.srv.acc.Authenticate(s.srv.ctx, username, password, s.client)
	switch {
	case err == nil:
		s.mu.Lock()
		s.user = u.Address
		s.mu.Unlock()
		s.log.Info("smtp auth", "user", u.Address)
		return nil
	case errors.Is(err, account.ErrBadCredentials):
		s.log.Info("smtp auth failed: bad credentials", "user", username)
		return errBadCredentials
	case errors.Is(err, account.ErrDisabled):
		s.log.Info("smtp auth failed: account disabled", "user", username)
		return errDisabled
	case errors.Is(err, account.ErrRateLimited):
		s.log.Warn("smtp auth refused: too many failed logins", "user", username)
		return errRateLimited
	}
	s.log.Error("smtp auth: cannot check credentials", "user", username, "err", err)
	return errAuthUnavailable
}

// Mail starts a transaction. Only an authenticated user may, and only in its own name: this is
// what keeps the agent from being an open relay (RFC 6409 §4.3).
func (s *session) Mail(from string, opts *smtp.MailOptions) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.user == "" {
		s.log.Info("smtp MAIL refused: not authenticated", "from", from)
		return errAuthRequired // RFC 4954 §6
	}
	if s.from != "" {
		return errNestedMail // RFC 5321 4.1.4
	}
	if opts != nil && opts.Size > s.srv.maxBytes {
		return reply(552, smtp.EnhancedCode{5, 3, 4}, fmt.Sprintf(
			"The message is %s; this agent accepts at most %s: send fewer or smaller attachments",
			sizeText(opts.Size), sizeText(s.srv.maxBytes)))
	}
	// Domains are case-insensitive (RFC 5321 2.4), local parts are not.
	if account.Normalize(from) != s.user {
		s.log.Info("smtp MAIL refused: not the authenticated user", "user", s.user, "from", from)
		return reply(553, smtp.EnhancedCode{5, 7, 1}, fmt.Sprintf(
			"You are authenticated as %s, so MAIL FROM must be <%s>: certmail sends only in its user's own name",
			s.user, s.user))
	}
	s.from = s.user
	return nil
}

// Rcpt adds a recipient. A certified recipient can be anywhere, so any valid address will do;
// go-smtp has already refused one past MaxRecipients with 452 4.5.3 (RFC 5321 4.5.3.1.10).
func (s *session) Rcpt(to string, _ *smtp.RcptOptions) error {
	if !validASCII(to) {
		// Without SMTPUTF8 the envelope is ASCII (RFC 6531); X.6.7 is its code for this.
		return reply(553, smtp.EnhancedCode{5, 6, 7}, fmt.Sprintf(
			"<%s> is not an ASCII address, and this server does not offer SMTPUTF8", to))
	}
	addr := account.Normalize(to)
	if err := evidence.CheckAddress(addr); err != nil {
		return reply(501, smtp.EnhancedCode{5, 1, 3}, fmt.Sprintf("<%s> is not an address certmail can certify: %v", to, err))
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	// The agent refuses a recipient named twice; the same address twice in the envelope is
	// one recipient.
	if !slices.ContainsFunc(s.rcpts, func(r string) bool { return strings.EqualFold(r, addr) }) {
		s.rcpts = append(s.rcpts, addr)
	}
	return nil
}

// Data reads the message, checks it and certifies it. It answers 250 only once agent.Submit
// has stored everything; any failure before that leaves nothing acknowledged (DESIGN.md §2).
func (s *session) Data(r io.Reader) error {
	s.mu.Lock()
	user, rcpts := s.user, slices.Clone(s.rcpts)
	s.mu.Unlock()
	if !s.srv.begin() {
		return errShuttingDown
	}
	defer s.srv.end()

	// go-smtp reads on to the end of the data after an early return.
	raw, err := io.ReadAll(io.LimitReader(r, s.srv.maxBytes+1))
	switch {
	case errors.Is(err, smtp.ErrDataTooLarge) || err == nil && int64(len(raw)) > s.srv.maxBytes:
		return s.notAccepted(refusal{reply(552, smtp.EnhancedCode{5, 3, 4}, fmt.Sprintf( // RFC 5321 4.5.3.1.9
			"The message is larger than %s, the most this agent accepts: send fewer or smaller attachments",
			sizeText(s.srv.maxBytes))), slog.LevelInfo, "too large"}, user, "", mailfmt.CodeSize)
	case errors.Is(err, smtp.ErrTooLongLine):
		return s.notAccepted(refusal{reply(554, smtp.EnhancedCode{5, 6, 0}, fmt.Sprintf(
			"A line of the message is longer than %d bytes; mail allows at most 998 a line (RFC 5322 2.1.1): "+
				"let your mail program encode long lines (quoted-printable) or send the text as an attachment", maxLineLength)),
			slog.LevelInfo, "line too long"}, user, "", mailfmt.CodeLine)
	case err != nil:
		s.log.Info("smtp message not received whole", "user", user, "err", err)
		return reply(451, smtp.EnhancedCode{4, 3, 0}, "The message did not arrive whole: nothing was certified; send it again")
	}

	sub, err := mailfmt.ParseSubmission(raw, s.srv.cfg.Limits, s.srv.cfg.Now(), mailfmt.Options{})
	if err != nil {
		r := parseRefusal(err)
		var e *mailfmt.Error
		if !errors.As(err, &e) {
			return s.refuse(r, user, "smtp message refused")
		}
		return s.notAccepted(r, user, "", e.Code)
	}
	if sub.From != user {
		return s.notAccepted(refusal{reply(553, smtp.EnhancedCode{5, 7, 1}, fmt.Sprintf(
			"The From field says %s, but you are authenticated as %s: certmail certifies mail only in its sender's own name",
			sub.From, user)), slog.LevelInfo, "From is not the authenticated user: " + sub.From}, user, sub.Subject, "sender")
	}
	// The envelope is authoritative: To and Cc are what recipients read, and may name fewer
	// or other addresses (Bcc, lists), as in any mail.
	ps, err := s.srv.ag.Submit(s.srv.ctx, agent.Submission{
		Sender:      user,
		Recipients:  rcpts,
		Message:     sub.Message,
		Subject:     sub.Subject,
		Protocol:    sub.Options.Mode,
		Deadline:    sub.Options.Deadline,
		Receipt:     string(sub.Options.Receipt),
		Notify:      string(sub.Options.Notify),
		Password:    sub.Options.Password,
		Hint:        sub.Options.PasswordHint,
		Client:      s.client,
		MessageID:   sub.MessageID,
		Attachments: sub.Attachments,
	})
	if err != nil {
		return s.refuse(submitRefusal(err), user, "smtp message not certified")
	}
	lines := make([]string, len(ps))
	labels := make([]string, len(ps))
	for i, p := range ps {
		lines[i] = fmt.Sprintf("certified: label %s for %s", p.Label, p.Recipient)
		labels[i] = p.Label.String()
	}
	s.log.Info("smtp message certified", "user", user, "recipients", len(ps), "labels", labels,
		"bytes", len(sub.Message), "mode", sub.Options.Mode)
	// go-smtp writes an error's code as given, and has no other way to set a 250's text.
	return reply(250, smtp.EnhancedCode{2, 0, 0}, lines...)
}

// notAccepted refuses a message of the authenticated user and records the refusal with a NAC
// (reason code) mailed to the user; the reply names the NAC. When the NAC cannot be made the
// refusal stands as it is: the client must hear it either way.
func (s *session) notAccepted(r refusal, user, subject, code string) error {
	n, err := s.srv.ag.NotAccept(s.srv.ctx, agent.Refusal{Sender: user, Subject: subject, Reason: code, Detail: strings.Join(replyLines(r.reply), " ")})
	if err != nil {
		s.log.Error("smtp refusal: no NAC recorded", "user", user, "err", err)
	} else {
		r.reply = withLine(r.reply, nacLine(n.Record.Label))
	}
	return s.refuse(r, user, "smtp message refused")
}

// refuse logs a refusal with its cause and returns the client's reply.
func (s *session) refuse(r refusal, user, msg string) error {
	s.log.Log(s.srv.ctx, r.level, msg, "user", user, "code", r.reply.Code,
		"enhanced", fmt.Sprintf("%d.%d.%d", r.reply.EnhancedCode[0], r.reply.EnhancedCode[1], r.reply.EnhancedCode[2]),
		"cause", r.cause)
	return r.reply
}

// Reset ends the transaction; the authentication stays (RFC 5321 4.1.1.5).
func (s *session) Reset() {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.from, s.rcpts = "", nil
}

func (s *session) Logout() error { return nil }

// checked makes a SASL mechanism's own errors (a response that does not parse) a 501: go-smtp
// would reply 454, a temporary failure, to a client that will never get it right.
type checked struct{ sasl.Server }

func (c checked) Next(response []byte) ([]byte, bool, error) {
	challenge, done, err := c.Server.Next(response)
	if _, ok := err.(*smtp.SMTPError); err != nil && !ok {
		err = errMalformedAuth
	}
	return challenge, done, err
}

// loginServer is the server side of the LOGIN mechanism (draft-murchison-sasl-login), which
// go-sasl no longer has and older mail programs still use: the user name and the password, each
// in answer to a prompt; a client may send the user name as its initial response.
type loginServer struct {
	auth func(username, password string) error
	step int
	user string
}

func (l *loginServer) Next(response []byte) ([]byte, bool, error) {
	switch l.step {
	case 0:
		l.step = 1
		if response == nil {
			return []byte("Username:"), false, nil
		}
		fallthrough
	case 1:
		l.step, l.user = 2, string(response)
		return []byte("Password:"), false, nil
	case 2:
		l.step = 3
		return nil, true, l.auth(l.user, string(response))
	}
	return nil, true, sasl.ErrUnexpectedClientResponse
}
