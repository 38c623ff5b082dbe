package mailout_test

import (
	"cmp"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"errors"
	"io"
	"math/big"
	"net"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/emersion/go-sasl"
	"github.com/emersion/go-smtp"
)

// sink is a real SMTP server on loopback that keeps what it is given and answers each recipient
// as the test says.
type sink struct {
	addr, port string
	users      map[string]string // AUTH PLAIN credentials; nil offers no AUTH

	mu      sync.Mutex
	actions map[string]string // recipient → "" (250), "451", "550", "554-data", "drop", "hold"
	got     []received
	tried   map[string][]string // recipient → the client address of each session that named it
	auths   int                 // AUTH attempts
	conns   int                 // connections accepted (sessions before STARTTLS)

	held    chan string   // a "hold" recipient's data has been read; no reply yet
	release chan struct{} // closed to answer held deliveries (and at cleanup)
	once    sync.Once
}

type received struct {
	from, to string
	data     []byte
	tls      bool
	user     string // authenticated as
	helo     string
}

type sinkOptions struct {
	ip           string      // default 127.0.0.1
	port         string      // default any free
	tls          *tls.Config // offered with STARTTLS, or spoken at once with implicit
	implicit     bool
	users        map[string]string
	insecureAuth bool          // offer AUTH without TLS
	readTimeout  time.Duration // close a connection idle this long; default 10 s
}

func newSink(t *testing.T, o sinkOptions) *sink {
	t.Helper()
	if o.ip == "" {
		o.ip = "127.0.0.1"
	}
	if o.port == "" {
		o.port = "0"
	}
	l, err := net.Listen("tcp", net.JoinHostPort(o.ip, o.port))
	if err != nil {
		t.Fatal(err)
	}
	s := &sink{addr: l.Addr().String(), users: o.users, actions: map[string]string{}, tried: map[string][]string{},
		held: make(chan string, 16), release: make(chan struct{})}
	_, s.port, _ = net.SplitHostPort(s.addr)
	srv := smtp.NewServer(smtp.BackendFunc(func(c *smtp.Conn) (smtp.Session, error) {
		if _, tls := c.TLSConnectionState(); !tls { // after STARTTLS go-smtp starts a new session
			s.mu.Lock()
			s.conns++
			s.mu.Unlock()
		}
		return &sinkSession{s: s, c: c}, nil
	}))
	srv.Domain = "sink.test"
	srv.AllowInsecureAuth = o.insecureAuth
	srv.ReadTimeout, srv.WriteTimeout = cmp.Or(o.readTimeout, 10*time.Second), 10*time.Second
	srv.ErrorLog = nopLogger{}
	if o.implicit {
		l = tls.NewListener(l, o.tls)
	} else {
		srv.TLSConfig = o.tls
	}
	go srv.Serve(l)
	t.Cleanup(func() {
		s.unhold()
		srv.Close()
	})
	return s
}

type nopLogger struct{}

func (nopLogger) Printf(string, ...any) {}
func (nopLogger) Println(...any)        {}

func (s *sink) set(rcpt, action string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.actions[rcpt] = action
}

func (s *sink) action(rcpt string) string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.actions[rcpt]
}

func (s *sink) unhold() { s.once.Do(func() { close(s.release) }) }

// to lists what the sink was given for rcpt.
func (s *sink) to(rcpt string) []received {
	s.mu.Lock()
	defer s.mu.Unlock()
	var out []received
	for _, r := range s.got {
		if r.to == rcpt {
			out = append(out, r)
		}
	}
	return out
}

// sessions lists the client address of each session that named rcpt, in order.
func (s *sink) sessions(rcpt string) []string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return slices.Clone(s.tried[rcpt])
}

func (s *sink) count() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return len(s.got)
}

func (s *sink) connections() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.conns
}

func (s *sink) authAttempts() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.auths
}

type sinkSession struct {
	s     *sink
	c     *smtp.Conn
	from  string
	rcpts []string
	user  string
}

func (x *sinkSession) AuthMechanisms() []string {
	if x.s.users == nil {
		return nil
	}
	return []string{sasl.Plain}
}

func (x *sinkSession) Auth(string) (sasl.Server, error) {
	return sasl.NewPlainServer(func(_, user, pass string) error {
		x.s.mu.Lock()
		defer x.s.mu.Unlock()
		x.s.auths++
		if want, ok := x.s.users[user]; !ok || want != pass {
			return errors.New("invalid credentials")
		}
		x.user = user
		return nil
	}), nil
}

func (x *sinkSession) Mail(from string, _ *smtp.MailOptions) error { x.from = from; return nil }

func (x *sinkSession) Rcpt(to string, _ *smtp.RcptOptions) error {
	x.s.mu.Lock()
	x.s.tried[to] = append(x.s.tried[to], x.c.Conn().RemoteAddr().String())
	x.s.mu.Unlock()
	switch x.s.action(to) {
	case "451":
		return &smtp.SMTPError{Code: 451, EnhancedCode: smtp.EnhancedCode{4, 2, 1}, Message: "mailbox busy, try later"}
	case "550":
		return &smtp.SMTPError{Code: 550, EnhancedCode: smtp.EnhancedCode{5, 1, 1}, Message: "no such user here"}
	}
	x.rcpts = append(x.rcpts, to)
	return nil
}

func (x *sinkSession) Data(r io.Reader) error {
	for _, to := range x.rcpts {
		switch x.s.action(to) {
		case "554-data":
			io.Copy(io.Discard, r)
			return &smtp.SMTPError{Code: 554, EnhancedCode: smtp.EnhancedCode{5, 6, 0}, Message: "content refused"}
		case "drop": // the connection breaks in the middle of the data
			io.ReadFull(r, make([]byte, 64))
			x.c.Conn().Close()
			return errors.New("dropped")
		case "hold": // all data read, the reply withheld
			io.Copy(io.Discard, r)
			x.s.held <- to
			<-x.s.release
			return &smtp.SMTPError{Code: 451, EnhancedCode: smtp.EnhancedCode{4, 3, 0}, Message: "held"}
		}
	}
	data, err := io.ReadAll(r)
	if err != nil {
		return err
	}
	_, isTLS := x.c.TLSConnectionState()
	x.s.mu.Lock()
	defer x.s.mu.Unlock()
	for _, to := range x.rcpts {
		x.s.got = append(x.s.got, received{from: x.from, to: to, data: data, tls: isTLS, user: x.user, helo: x.c.Hostname()})
	}
	return nil
}

func (x *sinkSession) Reset()        { x.from, x.rcpts = "", nil }
func (x *sinkSession) Logout() error { return nil }

// selfSigned returns a server TLS configuration for the loopback names and a pool that trusts it.
func selfSigned(t *testing.T) (*tls.Config, *x509.CertPool) {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(1),
		Subject:      pkix.Name{CommonName: "sink.test"},
		NotBefore:    time.Now().Add(-time.Hour),
		NotAfter:     time.Now().Add(time.Hour),
		DNSNames:     []string{"sink.test", "localhost"},
		IPAddresses:  []net.IP{net.IPv4(127, 0, 0, 1)},
		KeyUsage:     x509.KeyUsageDigitalSignature,
		ExtKeyUsage:  []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	cert, err := x509.ParseCertificate(der)
	if err != nil {
		t.Fatal(err)
	}
	pool := x509.NewCertPool()
	pool.AddCert(cert)
	return &tls.Config{Certificates: []tls.Certificate{{Certificate: [][]byte{der}, PrivateKey: key, Leaf: cert}}}, pool
}

// brokenTLS offers STARTTLS and then fails every handshake.
func brokenTLS() *tls.Config {
	return &tls.Config{GetCertificate: func(*tls.ClientHelloInfo) (*tls.Certificate, error) {
		return nil, errors.New("no certificate today")
	}}
}

// resolver is DNS as a test wants it: names missing from its maps do not exist.
type resolver struct {
	mx    map[string][]*net.MX
	hosts map[string][]string
	fail  map[string]bool // a temporary failure for this name
}

func (r resolver) LookupMX(_ context.Context, name string) ([]*net.MX, error) {
	if r.fail[name] {
		return nil, &net.DNSError{Err: "server misbehaving", Name: name, IsTemporary: true}
	}
	if mx, ok := r.mx[name]; ok {
		return mx, nil
	}
	return nil, &net.DNSError{Err: "no such host", Name: name, IsNotFound: true}
}

func (r resolver) LookupHost(_ context.Context, name string) ([]string, error) {
	if r.fail[name] {
		return nil, &net.DNSError{Err: "server misbehaving", Name: name, IsTemporary: true}
	}
	if h, ok := r.hosts[name]; ok {
		return h, nil
	}
	return nil, &net.DNSError{Err: "no such host", Name: name, IsNotFound: true}
}
