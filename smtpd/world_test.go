package smtpd_test

import (
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/base64"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"log/slog"
	"math/rand/v2"
	"net"
	"net/netip"
	"net/textproto"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"certmail/account"
	"certmail/agent"
	"certmail/evidence"
	"certmail/mailfmt"
	"certmail/password"
	"certmail/pki"
	"certmail/protocol"
	"certmail/smtpd"
	"certmail/store"
	"certmail/store/sqlite"
)

const (
	alice   = "alice@a.example"
	alicePW = "alice's long password 81c2"
	carol   = "carol@c.example" // disabled in some tests
	carolPW = "carol's long password 4d9e"
	bob     = "bob@b.example"
	dave    = "dave@d.example"
	// bodyText is in every test message; the log must never contain it.
	bodyText = "Signed copy of the lease attached 5b0c."
)

// cheap argon2id costs: the tests exercise the protocol, not the hash.
var cheap = password.Params{Memory: 64, Time: 1, Threads: 1}

// recorder composes the agent's mails as plain text.
type recorder struct{}

func (recorder) Notification(n agent.Notice) ([]byte, error) {
	return fmt.Appendf(nil, "To: %s\r\nSubject: certified message\r\n\r\n%s\r\n", n.To, n.PickupURL), nil
}

func (recorder) Receipt(r agent.Receipt) ([]byte, error) {
	return fmt.Appendf(nil, "To: %s\r\nSubject: %s\r\n\r\n%s\r\n", r.To, r.Kind, r.Label), nil
}

// faultyStore fails every Update while fail is set, as a full disk would, and counts what the
// agent durably changed: committed transactions, and the items they inserted.
type faultyStore struct {
	store.Store
	fail     atomic.Bool
	full     atomic.Bool // message bodies cannot be written, as on a full disk
	commits  atomic.Int64
	inserted atomic.Int64
}

func (f *faultyStore) Update(ctx context.Context, fn func(store.Tx) error) error {
	if f.fail.Load() {
		return errors.New("test: disk full")
	}
	var n int64
	err := f.Store.Update(ctx, func(tx store.Tx) error {
		n = 0
		return fn(countingTx{tx, &n, f})
	})
	if err == nil {
		f.commits.Add(1)
		f.inserted.Add(n)
	}
	return err
}

type countingTx struct {
	store.Tx
	n *int64
	f *faultyStore
}

func (c countingTx) PutMessage(h evidence.Hash, at time.Time, data []byte) error {
	if c.f.full.Load() {
		return fmt.Errorf("store: put message %s: %w", h, &fs.PathError{Op: "write", Path: "certmail.db-wal", Err: syscall.ENOSPC})
	}
	return c.Tx.PutMessage(h, at, data)
}

func (c countingTx) InsertItem(it store.Item) error {
	err := c.Tx.InsertItem(it)
	if err == nil {
		*c.n++
	}
	return err
}

// logBuffer collects the server's log (its first MiB) and notes, in every record, what must
// never be in it: a secret of the tests or a panic in certmail's code.
type logBuffer struct {
	mu     sync.Mutex
	buf    bytes.Buffer
	leaks  []string
	panics []string
}

// secrets are what the log must never show: passwords, AUTH exchanges, message bodies.
var secrets = []string{alicePW, carolPW, bodyText, "message password 1a2b",
	base64.StdEncoding.EncodeToString([]byte("\x00" + alice + "\x00" + alicePW)),
	base64.StdEncoding.EncodeToString([]byte(alicePW))}

func (b *logBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.buf.Len() < 1<<20 {
		b.buf.Write(p)
	}
	for _, s := range secrets {
		if bytes.Contains(p, []byte(s)) {
			b.leaks = append(b.leaks, string(p))
		}
	}
	// slog's text handler quotes values, so no client input can forge this.
	if bytes.Contains(p, []byte(`level=ERROR msg="smtp: panic`)) {
		b.panics = append(b.panics, string(p))
	}
	return len(p), nil
}

func (b *logBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

func (b *logBuffer) problems() (leaks, panics []string) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return slices.Clone(b.leaks), slices.Clone(b.panics)
}

type world struct {
	srv    *smtpd.Server
	addr   string
	st     *faultyStore
	acc    *account.Accounts
	roots  *x509.CertPool
	caFile string
	logs   *logBuffer
}

type options struct {
	limits        mailfmt.Limits
	maxRecipients int
	logins        account.Limits
	trusted       []netip.Prefix // submit as alice without AUTH from these
}

// newWorld starts a submission server on loopback with a real agent, store and accounts, and
// users alice and carol.
func newWorld(t testing.TB, o options) *world {
	t.Helper()
	dir := t.TempDir()
	now := time.Now()
	ca, err := pki.LoadOrCreateCA(filepath.Join(dir, "ca"), "test", now)
	if err != nil {
		t.Fatal(err)
	}
	cert, err := ca.ServerCertificate(filepath.Join(dir, "tls"), []string{"localhost", "127.0.0.1"}, now)
	if err != nil {
		t.Fatal(err)
	}
	db, err := sqlite.Open(filepath.Join(dir, "certmail.db"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { db.Close() })
	id, err := protocol.NewIdentity("certmail.test", rand.NewChaCha8([32]byte{1}))
	if err != nil {
		t.Fatal(err)
	}
	w := &world{st: &faultyStore{Store: db}, roots: ca.CertPool(),
		caFile: filepath.Join(dir, "ca", pki.CACertFile), logs: &logBuffer{}}
	ag := agent.New(id, w.st, nil, recorder{}, agent.Settings{PublicURL: "https://certmail.test",
		DefaultDeadline: 48 * time.Hour, MinDeadline: time.Hour, MaxDeadline: 30 * 24 * time.Hour,
		WarnAt: 0.5, Bounce: "certmail@certmail.test"}, nil, nil)
	w.acc = account.NewWithParams(w.st, o.logins, nil, cheap, nil)
	ctx := context.Background()
	for _, u := range [][2]string{{alice, alicePW}, {carol, carolPW}} {
		if err := w.acc.Add(ctx, u[0], u[1], false); err != nil {
			t.Fatal(err)
		}
	}
	w.srv = smtpd.New(smtpd.Config{
		Hostname:        "submit.certmail.test",
		TLS:             pki.TLSConfig(cert),
		Limits:          o.limits,
		Logger:          slog.New(slog.NewTextHandler(w.logs, &slog.HandlerOptions{Level: slog.LevelDebug})),
		MaxRecipients:   o.maxRecipients,
		ReadTimeout:     20 * time.Second,
		WriteTimeout:    20 * time.Second,
		TrustedNetworks: o.trusted,
		TrustedUser:     alice,
	}, ag, w.acc)
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	w.addr = l.Addr().String()
	served := make(chan error, 1)
	go func() { served <- w.srv.Serve(l) }()
	for deadline := time.Now().Add(5 * time.Second); w.srv.Addr() == nil; time.Sleep(time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatal("the server did not start serving")
		}
	}
	t.Cleanup(func() {
		if err := w.srv.Close(); err != nil {
			t.Errorf("close: %v", err)
		}
		if err := <-served; !errors.Is(err, smtpd.ErrServerClosed) {
			t.Errorf("serve returned %v, want ErrServerClosed", err)
		}
		w.checkLog(t)
	})
	return w
}

// checkLog fails when the log holds a password, an AUTH exchange or a message body, or a panic.
func (w *world) checkLog(t testing.TB) {
	t.Helper()
	leaks, panics := w.logs.problems()
	for _, l := range leaks {
		t.Errorf("the log shows a secret: %s", l)
	}
	for _, p := range panics {
		t.Errorf("the server panicked: %s", p)
	}
}

// state is what a refused submission must leave unchanged.
type state struct{ items, timers, outbound int }

func (w *world) state(t testing.TB) state {
	t.Helper()
	var s state
	far := time.Now().Add(100 * 365 * 24 * time.Hour)
	err := w.st.View(context.Background(), func(tx store.Tx) error {
		users, err := tx.Users()
		if err != nil {
			return err
		}
		for _, u := range users {
			its, err := tx.ItemsBySender(u.Address, 10000, 0)
			if err != nil {
				return err
			}
			s.items += len(its)
		}
		ts, err := tx.DueTimers(far, 10000)
		s.timers = len(ts)
		if err != nil {
			return err
		}
		out, err := tx.DueOutbound(far, 10000)
		s.outbound = len(out)
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	return s
}

var certifiedRE = regexp.MustCompile(`certified: label (\S+) for (\S+)`)

// checkCertified checks that a 250 reply names one label per recipient, and that each label's
// item is stored with its COP over exactly m.
func (w *world) checkCertified(t testing.TB, reply string, m []byte, rcpts ...string) []store.Item {
	t.Helper()
	found := certifiedRE.FindAllStringSubmatch(reply, -1)
	if len(found) != len(rcpts) {
		t.Fatalf("reply %q names %d labels, want %d", reply, len(found), len(rcpts))
	}
	var items []store.Item
	for i, f := range found {
		if f[2] != rcpts[i] {
			t.Errorf("label %d is for %s, want %s", i, f[2], rcpts[i])
		}
		l, err := evidence.ParseLabel(f[1])
		if err != nil {
			t.Fatalf("reply label %q: %v", f[1], err)
		}
		var it store.Item
		var evs []store.Evidence
		err = w.st.View(context.Background(), func(tx store.Tx) error {
			if it, err = tx.Item(l); err != nil {
				return err
			}
			evs, err = tx.Evidence(l)
			return err
		})
		if err != nil {
			t.Fatalf("item %s: %v", l, err)
		}
		if it.Sender != alice || it.Recipient != rcpts[i] || it.State != store.StatePosted {
			t.Errorf("item %s: sender %s recipient %s state %s", l, it.Sender, it.Recipient, it.State)
		}
		if len(evs) != 1 || evs[0].Type != evidence.COP {
			t.Fatalf("item %s: evidence %v, want one COP", l, evs)
		}
		n, err := evidence.ParseNote(evs[0].Note)
		if err != nil {
			t.Fatal(err)
		}
		if n.Record.Content != evidence.Sum(m) || n.Record.Recipient != rcpts[i] || n.Record.Sender != alice {
			t.Errorf("COP of %s: content %s sender %s recipient %s; want content %s", l,
				n.Record.Content, n.Record.Sender, n.Record.Recipient, evidence.Sum(m))
		}
		var stored []byte
		err = w.st.View(context.Background(), func(tx store.Tx) (err error) { stored, err = tx.Message(it.Content, it.Submitted); return err })
		if err != nil || !bytes.Equal(stored, m) {
			t.Errorf("stored message of %s (%v):\n%q\nwant\n%q", l, err, stored, m)
		}
		items = append(items, it)
	}
	return items
}

// message builds a submission from alice to bob with extra header fields.
func message(from string, extra ...string) string {
	h := "From: Alice <" + from + ">\r\nTo: Bob <" + bob + ">\r\nSubject: the lease\r\n"
	for _, e := range extra {
		h += e + "\r\n"
	}
	return h + "\r\n" + bodyText + "\r\n"
}

// client is a raw SMTP client: it shows every reply code as the server wrote it.
type client struct {
	t     testing.TB
	w     *world
	nc    net.Conn
	tp    *textproto.Conn
	greet string
}

func (w *world) dial(t testing.TB) *client {
	t.Helper()
	nc, err := net.DialTimeout("tcp", w.addr, 10*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { nc.Close() })
	nc.SetDeadline(time.Now().Add(30 * time.Second))
	c := &client{t: t, w: w, nc: nc, tp: textproto.NewConn(nc)}
	code, msg := c.read()
	if code != 220 {
		t.Fatalf("greeting %d %s", code, msg)
	}
	c.greet = msg
	return c
}

func (c *client) read() (int, string) {
	c.t.Helper()
	code, msg, err := c.tp.ReadResponse(0)
	if err != nil {
		c.t.Fatalf("reading reply: %v", err)
	}
	return code, msg
}

func (c *client) cmd(line string) (int, string) {
	c.t.Helper()
	if err := c.tp.PrintfLine("%s", line); err != nil {
		c.t.Fatalf("%s: %v", line, err)
	}
	return c.read()
}

// expect sends line and checks the reply's code and enhanced code; it returns the text.
func (c *client) expect(line string, code int, enhanced string) string {
	c.t.Helper()
	got, msg := c.cmd(line)
	if got != code || enhanced != "" && !strings.HasPrefix(msg, enhanced+" ") {
		c.t.Fatalf("%s: got %d %s, want %d %s", redact(line), got, msg, code, enhanced)
	}
	return msg
}

func redact(line string) string {
	if strings.HasPrefix(line, "AUTH ") {
		return "AUTH …"
	}
	return line
}

// ehlo returns the extensions the server advertises.
func (c *client) ehlo() []string {
	c.t.Helper()
	msg := c.expect("EHLO client.test", 250, "")
	return strings.Split(msg, "\n")[1:]
}

func (c *client) startTLS() {
	c.t.Helper()
	c.expect("STARTTLS", 220, "2.0.0")
	tc := tls.Client(c.nc, &tls.Config{RootCAs: c.w.roots, ServerName: "localhost"})
	if err := tc.Handshake(); err != nil {
		c.t.Fatalf("TLS handshake: %v", err)
	}
	c.nc, c.tp = tc, textproto.NewConn(tc)
}

func plain(user, pw string) string {
	return "AUTH PLAIN " + base64.StdEncoding.EncodeToString([]byte("\x00"+user+"\x00"+pw))
}

// login connects, says STARTTLS and authenticates as alice.
func (w *world) login(t testing.TB) *client {
	t.Helper()
	c := w.dial(t)
	c.ehlo()
	c.startTLS()
	c.ehlo()
	c.expect(plain(alice, alicePW), 235, "2.0.0")
	return c
}

// data sends a message after DATA and returns the reply to its end.
func (c *client) data(m string) (int, string) {
	c.t.Helper()
	c.expect("DATA", 354, "")
	dw := c.tp.DotWriter()
	if _, err := io.WriteString(dw, m); err != nil {
		c.t.Fatal(err)
	}
	if err := dw.Close(); err != nil {
		c.t.Fatal(err)
	}
	return c.read()
}

// send runs a whole transaction from alice and returns the reply to the end of the data.
func (c *client) send(m string, rcpts ...string) (int, string) {
	c.t.Helper()
	c.expect("MAIL FROM:<"+alice+">", 250, "2.0.0")
	for _, r := range rcpts {
		c.expect("RCPT TO:<"+r+">", 250, "2.0.0")
	}
	return c.data(m)
}

// crlfWithout gives the message M the agent stores for m: m without the named header lines.
func crlfWithout(m string, drop ...string) []byte {
	var out []string
	for _, line := range strings.SplitAfter(m, "\r\n") {
		if !slices.ContainsFunc(drop, func(d string) bool { return strings.HasPrefix(line, d+":") }) {
			out = append(out, line)
		}
	}
	return []byte(strings.Join(out, ""))
}

// items lists every stored item.
func (w *world) items(t testing.TB) []store.Item {
	t.Helper()
	var all []store.Item
	err := w.st.View(context.Background(), func(tx store.Tx) error {
		users, err := tx.Users()
		if err != nil {
			return err
		}
		for _, u := range users {
			its, err := tx.ItemsBySender(u.Address, 10000, 0)
			if err != nil {
				return err
			}
			all = append(all, its...)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return all
}

func b64(s string) string { return base64.StdEncoding.EncodeToString([]byte(s)) }
