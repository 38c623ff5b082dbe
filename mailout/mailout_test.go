package mailout_test

import (
	"bytes"
	"context"
	"crypto/rand"
	"errors"
	"log/slog"
	mrand "math/rand/v2"
	"net"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"certmail/agent"
	"certmail/config"
	"certmail/evidence"
	"certmail/internal/logbuf"
	"certmail/mailout"
	"certmail/protocol"
	"certmail/store"
	"certmail/store/blobfs"
	"certmail/store/sqlite"
)

const (
	alice = "alice@a.example"
	bob   = "bob@b.example"
	carol = "carol@c.example"
	dave  = "dave@d.example"
)

var (
	t0  = time.Date(2026, 3, 2, 9, 0, 0, 0, time.UTC)
	msg = []byte("From: alice@a.example\r\nTo: bob@b.example\r\nSubject: the lease\r\n\r\nSigned copy attached.\r\n")
)

// clock is a settable time source.
type clock struct {
	mu sync.Mutex
	t  time.Time
}

func (c *clock) now() time.Time { c.mu.Lock(); defer c.mu.Unlock(); return c.t }
func (c *clock) set(t time.Time) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.t = t
}
func (c *clock) add(d time.Duration) { c.set(c.now().Add(d)) }

// world is a real agent on a real store, whose mail a queue delivers.
type world struct {
	st    store.Store
	a     *agent.Agent
	clock *clock
	logs  *logbuf.Buffer
	q     atomic.Pointer[mailout.Queue] // kicked when the agent queues mail
}

// newWorld makes a world whose agent kicks its queue when a step queued mail; with handed, a
// submission's mails are stored claimed by the queue and handed to it (agent.Settings.Outbox).
func newWorld(t *testing.T, handed ...bool) *world {
	t.Helper()
	dir := t.TempDir()
	w := &world{clock: &clock{t: t0}, logs: &logbuf.Buffer{}}
	st, err := sqlite.Open(filepath.Join(dir, "certmail.db"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	blobs, err := blobfs.Open(filepath.Join(dir, "blobs"))
	if err != nil {
		t.Fatal(err)
	}
	id, err := protocol.NewIdentity("certmail.test", mrand.NewChaCha8([32]byte{1}))
	if err != nil {
		t.Fatal(err)
	}
	settings := agent.Settings{PublicURL: "https://certmail.test", DefaultDeadline: 48 * time.Hour,
		MinDeadline: time.Hour, MaxDeadline: 30 * 24 * time.Hour, WarnAt: 0.5, Bounce: "certmail@certmail.test",
		Queued: func() {
			if q := w.q.Load(); q != nil {
				q.Kick()
			}
		}}
	if len(handed) > 0 && handed[0] {
		settings.Outbox = worldOutbox{w}
	}
	mails := agent.MIMEMails{Domain: "certmail.test", Now: w.clock.now, Rand: rand.Reader}
	w.st, w.a = st, agent.New(id, st, blobs, mails, settings, w.clock.now, nil)
	if err := st.Update(context.Background(), func(tx store.Tx) error {
		return tx.PutUser(store.User{Address: alice, PasswordHash: "$argon2id$unused", Created: t0})
	}); err != nil {
		t.Fatal(err)
	}
	return w
}

// worldOutbox is the world's queue as its agent's outbox.
type worldOutbox struct{ w *world }

func (o worldOutbox) Claim(m store.Outbound) store.Outbound { return o.w.q.Load().Claim(m) }
func (o worldOutbox) Hand(ms ...store.Outbound)             { o.w.q.Load().Hand(ms...) }

// queue returns a queue for the world with cfg, on the world's clock and log, with no jitter.
func (w *world) queue(cfg mailout.Config) *mailout.Queue {
	cfg.Hostname = "certmail.test"
	cfg.Now = w.clock.now
	cfg.Rand = func() float64 { return 0 }
	cfg.Logger = slog.New(slog.NewJSONHandler(w.logs, &slog.HandlerOptions{Level: slog.LevelDebug}))
	q := mailout.New(cfg, w.st, w.a)
	w.q.Store(q)
	return q
}

func smarthost(s *sink) mailout.Config {
	return mailout.Config{Mode: config.ModeSmarthost, Smarthost: s.addr, TLS: config.TLSNone}
}

// submit posts msg from alice to the recipients and returns the labels, by recipient.
func (w *world) submit(t *testing.T, rcpts ...string) map[string]evidence.Label {
	t.Helper()
	ps, err := w.a.Submit(context.Background(), agent.Submission{Sender: alice, Recipients: rcpts, Message: msg})
	if err != nil {
		t.Fatal(err)
	}
	out := map[string]evidence.Label{}
	for _, p := range ps {
		out[p.Recipient] = p.Label
	}
	return out
}

// outbound returns the mail of kind queued for label l.
func (w *world) outbound(t *testing.T, l evidence.Label, kind string) store.Outbound {
	t.Helper()
	var found []store.Outbound
	if err := w.st.View(context.Background(), func(tx store.Tx) error {
		ms, err := tx.OutboundFor(l)
		for _, m := range ms {
			if m.Kind == kind {
				found = append(found, m)
			}
		}
		return err
	}); err != nil {
		t.Fatal(err)
	}
	if len(found) != 1 {
		t.Fatalf("%d %s mails for %s", len(found), kind, l)
	}
	return found[0]
}

func (w *world) item(t *testing.T, l evidence.Label) store.Item {
	t.Helper()
	var it store.Item
	if err := w.st.View(context.Background(), func(tx store.Tx) (err error) { it, err = tx.Item(l); return err }); err != nil {
		t.Fatal(err)
	}
	return it
}

// evidence lists the types of the notes stored for l.
func (w *world) evidence(t *testing.T, l evidence.Label) []evidence.Type {
	t.Helper()
	var types []evidence.Type
	if err := w.st.View(context.Background(), func(tx store.Tx) error {
		evs, err := tx.Evidence(l)
		for _, e := range evs {
			types = append(types, e.Type)
		}
		return err
	}); err != nil {
		t.Fatal(err)
	}
	return types
}

func count(types []evidence.Type, want evidence.Type) int {
	n := 0
	for _, t := range types {
		if t == want {
			n++
		}
	}
	return n
}

func runOnce(t *testing.T, q *mailout.Queue, delivered, retried, bounced int) {
	t.Helper()
	d, r, b, err := q.RunOnce(context.Background())
	if err != nil {
		t.Fatalf("RunOnce: %v", err)
	}
	if d != delivered || r != retried || b != bounced {
		t.Fatalf("RunOnce: delivered %d, retried %d, bounced %d; want %d, %d, %d", d, r, b, delivered, retried, bounced)
	}
}

func TestDeliveredNotificationSignsNTF(t *testing.T) {
	w := newWorld(t)
	s := newSink(t, sinkOptions{})
	q := w.queue(smarthost(s))
	labels := w.submit(t, bob, carol, dave)

	runOnce(t, q, 6, 0, 0) // a notification and a posting receipt per recipient, concurrently
	for rcpt, l := range labels {
		n := w.outbound(t, l, "notification")
		got := s.to(rcpt)
		if len(got) != 1 || !bytes.Equal(got[0].data, n.Data) || got[0].from != "certmail@certmail.test" || got[0].helo != "certmail.test" {
			t.Fatalf("the sink got for %s: %+v", rcpt, got)
		}
		if n.State != store.OutSent || n.Attempts != 1 {
			t.Fatalf("notification to %s: %s after %d attempts", rcpt, n.State, n.Attempts)
		}
		if it := w.item(t, l); it.State != store.StateNotified {
			t.Fatalf("item of %s is %s", rcpt, it.State)
		}
		if ev := w.evidence(t, l); count(ev, evidence.NTF) != 1 {
			t.Fatalf("evidence of %s: %v", rcpt, ev)
		}
	}
	if n := len(s.to(alice)); n != 3 {
		t.Fatalf("alice got %d posting receipts", n)
	}
	runOnce(t, q, 0, 0, 0) // nothing is sent twice
	if s.count() != 6 {
		t.Fatalf("the sink got %d mails", s.count())
	}
}

func TestTemporaryFailureBacksOffThenDelivers(t *testing.T) {
	w := newWorld(t)
	s := newSink(t, sinkOptions{})
	s.set(bob, "451")
	q := w.queue(smarthost(s)) // retry after 5m, doubling up to 1h
	l := w.submit(t, bob)[bob]

	runOnce(t, q, 1, 1, 0)
	n := w.outbound(t, l, "notification")
	if n.State != store.OutQueued || n.Attempts != 1 || !n.NextAttempt.Equal(t0.Add(5*time.Minute)) ||
		!strings.Contains(n.LastError, "RCPT TO: 451 4.2.1 mailbox busy, try later") {
		t.Fatalf("after a 451: %+v", n)
	}
	w.clock.add(4 * time.Minute)
	runOnce(t, q, 0, 0, 0) // not due yet
	w.clock.add(time.Minute)
	runOnce(t, q, 0, 1, 0)
	if n = w.outbound(t, l, "notification"); n.Attempts != 2 || !n.NextAttempt.Equal(t0.Add(15*time.Minute)) {
		t.Fatalf("after a second 451: attempts %d, next %s", n.Attempts, n.NextAttempt)
	}
	if it := w.item(t, l); it.State != store.StatePosted {
		t.Fatalf("item is %s before any delivery", it.State)
	}

	s.set(bob, "")
	w.clock.set(t0.Add(15 * time.Minute))
	runOnce(t, q, 1, 0, 0)
	if n = w.outbound(t, l, "notification"); n.State != store.OutSent || n.Attempts != 3 {
		t.Fatalf("after a 250: %s after %d attempts", n.State, n.Attempts)
	}
	if it := w.item(t, l); it.State != store.StateNotified || count(w.evidence(t, l), evidence.NTF) != 1 {
		t.Fatalf("item is %s with %v", it.State, w.evidence(t, l))
	}
}

func TestPermanentFailureBouncesWithTheReply(t *testing.T) {
	w := newWorld(t)
	s := newSink(t, sinkOptions{})
	s.set(bob, "550")
	s.set(carol, "554-data")
	q := w.queue(smarthost(s))
	labels := w.submit(t, bob, carol)

	runOnce(t, q, 2, 0, 2)
	for rcpt, want := range map[string]string{bob: "RCPT TO: 550 5.1.1 no such user here", carol: "BDAT: 554 5.6.0 content refused"} {
		l := labels[rcpt]
		n := w.outbound(t, l, "notification")
		if n.State != store.OutBounced || !strings.Contains(n.LastError, want) {
			t.Fatalf("notification to %s: %s, %q; want bounced with %q", rcpt, n.State, n.LastError, want)
		}
		if it := w.item(t, l); it.State != store.StateBounced || count(w.evidence(t, l), evidence.NDN) != 1 {
			t.Fatalf("item of %s is %s with %v", rcpt, it.State, w.evidence(t, l))
		}
		w.outbound(t, l, "non-delivery") // the sender is told, by the next run
	}
	runOnce(t, q, 2, 0, 0)
	if n := len(s.to(alice)); n != 4 {
		t.Fatalf("alice got %d mails, want 2 posting and 2 non-delivery receipts", n)
	}
}

func TestGivesUpAfterGiveUpAfter(t *testing.T) {
	w := newWorld(t)
	s := newSink(t, sinkOptions{})
	s.set(bob, "451")
	cfg := smarthost(s)
	cfg.RetryInitial, cfg.RetryMax, cfg.GiveUpAfter = 25*time.Minute, 50*time.Minute, time.Hour
	q := w.queue(cfg)
	l := w.submit(t, bob)[bob]

	runOnce(t, q, 1, 1, 0)
	w.clock.set(t0.Add(25 * time.Minute))
	runOnce(t, q, 0, 1, 0)
	// The doubled wait of 50m would end after the give-up time: the last attempt is made at it.
	if n := w.outbound(t, l, "notification"); !n.NextAttempt.Equal(t0.Add(time.Hour)) {
		t.Fatalf("next attempt %s", n.NextAttempt)
	}
	w.clock.set(t0.Add(time.Hour - time.Second))
	runOnce(t, q, 0, 0, 0)
	w.clock.set(t0.Add(time.Hour))
	runOnce(t, q, 0, 0, 1)
	n := w.outbound(t, l, "notification")
	if want := "gave up after 1h and 3 attempts; the last: 127.0.0.1: RCPT TO: 451 4.2.1 mailbox busy"; n.State != store.OutBounced ||
		n.Attempts != 3 || !strings.HasPrefix(n.LastError, want) {
		t.Fatalf("after giving up: %s after %d attempts, %q", n.State, n.Attempts, n.LastError)
	}
	if it := w.item(t, l); it.State != store.StateBounced || count(w.evidence(t, l), evidence.NDN) != 1 {
		t.Fatalf("item is %s with %v", it.State, w.evidence(t, l))
	}
}

// A connection that breaks in the middle of DATA leaves the mail queued, and it goes later.
func TestInterruptedDataIsRetriedNotLost(t *testing.T) {
	w := newWorld(t)
	s := newSink(t, sinkOptions{})
	s.set(bob, "drop")
	q := w.queue(smarthost(s))
	l := w.submit(t, bob)[bob]

	runOnce(t, q, 1, 1, 0)
	if n := w.outbound(t, l, "notification"); n.State != store.OutQueued || n.Attempts != 1 || n.LastError == "" {
		t.Fatalf("after a broken DATA: %+v", n)
	}
	if len(s.to(bob)) != 0 || w.item(t, l).State != store.StatePosted {
		t.Fatal("a broken delivery counted as one")
	}
	s.set(bob, "")
	w.clock.add(5 * time.Minute)
	runOnce(t, q, 1, 0, 0)
	if len(s.to(bob)) != 1 || w.item(t, l).State != store.StateNotified {
		t.Fatalf("bob got %d mails; item %s", len(s.to(bob)), w.item(t, l).State)
	}
}

// flakySent fails to record the first n notifications sent, as a full disk would.
type flakySent struct {
	*agent.Agent
	n atomic.Int32
}

func (f *flakySent) Sent(ctx context.Context, m store.Outbound) error {
	if m.Kind == "notification" && f.n.Add(-1) >= 0 {
		return errors.New("disk full")
	}
	return f.Agent.Sent(ctx, m)
}

// A delivery that cannot be recorded is repeated when its claim ends: at least once, never lost.
func TestUnrecordedDeliveryIsSentAgain(t *testing.T) {
	w := newWorld(t)
	s := newSink(t, sinkOptions{})
	cfg := smarthost(s)
	cfg.Timeout = 10 * time.Minute // the claim lasts 11m
	cfg.Now, cfg.Rand = w.clock.now, func() float64 { return 0 }
	cfg.Logger = slog.New(slog.NewTextHandler(w.logs, nil))
	rec := &flakySent{Agent: w.a}
	rec.n.Store(1)
	q := mailout.New(cfg, w.st, rec)
	l := w.submit(t, bob)[bob]

	d, r, b, err := q.RunOnce(context.Background())
	if err == nil || !strings.Contains(err.Error(), "disk full") || d != 1 || r != 0 || b != 0 {
		t.Fatalf("RunOnce: %d, %d, %d, %v", d, r, b, err)
	}
	if n := w.outbound(t, l, "notification"); n.State != store.OutQueued || !n.NextAttempt.Equal(t0.Add(11*time.Minute)) {
		t.Fatalf("unrecorded: %s, next %s", n.State, n.NextAttempt)
	}
	w.clock.add(10 * time.Minute)
	runOnce(t, q, 0, 0, 0) // claimed still
	w.clock.add(time.Minute)
	runOnce(t, q, 1, 0, 0)
	if len(s.to(bob)) != 2 {
		t.Fatalf("bob got %d copies, want 2", len(s.to(bob)))
	}
	if n := w.outbound(t, l, "notification"); n.State != store.OutSent || count(w.evidence(t, l), evidence.NTF) != 1 {
		t.Fatalf("%s with %v", n.State, w.evidence(t, l))
	}
}

// Two runs at once deliver each mail once: the first claims it.
func TestConcurrentRunsDoNotShareMail(t *testing.T) {
	w := newWorld(t)
	s := newSink(t, sinkOptions{})
	s.set(bob, "hold")
	q := w.queue(smarthost(s))
	l := w.submit(t, bob)[bob]

	first := make(chan error, 1)
	go func() { _, _, _, err := q.RunOnce(context.Background()); first <- err }()
	<-s.held // the first run is delivering to bob
	second := make(chan [3]int, 1)
	go func() {
		d, r, b, _ := q.RunOnce(context.Background())
		second <- [3]int{d, r, b}
	}()
	select {
	case got := <-second:
		if got != [3]int{} {
			t.Fatalf("the second run did %v", got)
		}
	case <-s.held:
		t.Fatal("the second run delivers the mail the first is delivering")
	case <-time.After(10 * time.Second):
		t.Fatal("the second run hangs")
	}
	s.unhold()
	if err := <-first; err != nil {
		t.Fatal(err)
	}
	if n := w.outbound(t, l, "notification"); n.State != store.OutQueued || n.Attempts != 1 {
		t.Fatalf("after the held 451: %s after %d attempts", n.State, n.Attempts)
	}
}

// A run stopped while the server has the data but has not answered releases the mail, uncounted,
// for the next run; so it does the mail it had not started on.
func TestCancelledRunReleasesItsClaim(t *testing.T) {
	w := newWorld(t)
	s := newSink(t, sinkOptions{})
	s.set(bob, "hold")
	cfg := smarthost(s)
	cfg.Workers = 1 // the notification, queued first, holds up the posting receipt
	q := w.queue(cfg)
	l := w.submit(t, bob)[bob]

	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { _, _, _, err := q.RunOnce(ctx); done <- err }()
	<-s.held
	cancel()
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	for _, kind := range []string{"notification", "posting-receipt"} {
		n := w.outbound(t, l, kind)
		if n.State != store.OutQueued || n.Attempts != 0 || n.NextAttempt.After(t0) {
			t.Fatalf("%s after a cancelled run: %s, %d attempts, next %s", kind, n.State, n.Attempts, n.NextAttempt)
		}
	}
	if s.count() != 0 {
		t.Fatal("the cancelled run went on delivering")
	}
	s.set(bob, "")
	runOnce(t, q, 2, 0, 0)
	if len(s.to(bob)) != 1 || len(s.to(alice)) != 1 || w.item(t, l).State != store.StateNotified {
		t.Fatalf("bob got %d mails, alice %d", len(s.to(bob)), len(s.to(alice)))
	}
}

func TestStartTLSRequiredButNotOffered(t *testing.T) {
	w := newWorld(t)
	s := newSink(t, sinkOptions{}) // no STARTTLS
	cfg := smarthost(s)
	cfg.TLS = config.TLSStartTLS
	q := w.queue(cfg)
	l := w.submit(t, bob)[bob]

	runOnce(t, q, 0, 2, 0)
	if n := w.outbound(t, l, "notification"); n.State != store.OutQueued || !strings.Contains(n.LastError, "STARTTLS") {
		t.Fatalf("%s, %q", n.State, n.LastError)
	}
	if s.count() != 0 {
		t.Fatal("mail went in the clear")
	}
}

func TestSmarthostTLSFailureIsTemporary(t *testing.T) {
	w := newWorld(t)
	s := newSink(t, sinkOptions{tls: brokenTLS()})
	cfg := smarthost(s)
	cfg.TLS = config.TLSStartTLS
	q := w.queue(cfg)
	l := w.submit(t, bob)[bob]

	runOnce(t, q, 0, 2, 0)
	if n := w.outbound(t, l, "notification"); !strings.Contains(n.LastError, "TLS handshake") {
		t.Fatalf("%q", n.LastError)
	}
	if s.count() != 0 {
		t.Fatal("mail went in the clear")
	}
}

func TestStartTLSWithAuth(t *testing.T) {
	const password = "correct horse battery staple"
	w := newWorld(t)
	tlsConfig, roots := selfSigned(t)
	s := newSink(t, sinkOptions{tls: tlsConfig, users: map[string]string{"relay": password}})
	cfg := smarthost(s)
	cfg.TLS, cfg.RootCAs, cfg.Username, cfg.Password = config.TLSStartTLS, roots, "relay", "wrong"
	l := w.submit(t, bob)[bob]

	runOnce(t, w.queue(cfg), 0, 2, 0) // a refused password is the operator's to mend: retried
	if n := w.outbound(t, l, "notification"); !strings.Contains(n.LastError, "AUTH: 454") {
		t.Fatalf("%q", n.LastError)
	}
	cfg.Password = password
	w.clock.add(5 * time.Minute)
	runOnce(t, w.queue(cfg), 2, 0, 0)
	got := s.to(bob)
	if len(got) != 1 || !got[0].tls || got[0].user != "relay" || got[0].helo != "certmail.test" {
		t.Fatalf("the relay got %+v", got)
	}
	logs := w.logs.String()
	if !strings.Contains(logs, `"domain":"b.example"`) || !strings.Contains(logs, `"code":250`) {
		t.Fatalf("the log says nothing useful:\n%s", logs)
	}
	for _, secret := range []string{password, "Signed copy attached", "https://certmail.test/pickup/"} {
		if strings.Contains(logs, secret) {
			t.Fatalf("the log holds %q:\n%s", secret, logs)
		}
	}
}

func TestNoPasswordInTheClear(t *testing.T) {
	w := newWorld(t)
	s := newSink(t, sinkOptions{users: map[string]string{"relay": "pw"}, insecureAuth: true})
	cfg := smarthost(s)
	cfg.Username, cfg.Password = "relay", "pw"
	q := w.queue(cfg)
	l := w.submit(t, bob)[bob]

	runOnce(t, q, 0, 2, 0)
	if n := w.outbound(t, l, "notification"); !strings.Contains(n.LastError, "never sent in the clear") {
		t.Fatalf("%q", n.LastError)
	}
	if s.authAttempts() != 0 || s.count() != 0 {
		t.Fatal("the password went in the clear")
	}
}

func TestImplicitTLS(t *testing.T) {
	tlsConfig, roots := selfSigned(t)
	s := newSink(t, sinkOptions{tls: tlsConfig, implicit: true})
	cfg := smarthost(s)
	cfg.TLS = config.TLSImplicit

	t.Run("trusted", func(t *testing.T) {
		w := newWorld(t)
		cfg := cfg
		cfg.RootCAs = roots
		w.submit(t, bob)
		runOnce(t, w.queue(cfg), 2, 0, 0)
		if got := s.to(bob); len(got) != 1 || !got[0].tls {
			t.Fatalf("the relay got %+v", got)
		}
	})
	t.Run("untrusted", func(t *testing.T) {
		w := newWorld(t)
		l := w.submit(t, bob)[bob]
		runOnce(t, w.queue(cfg), 0, 2, 0) // the system's roots do not know the sink
		if n := w.outbound(t, l, "notification"); !strings.Contains(n.LastError, "certificate") {
			t.Fatalf("%q", n.LastError)
		}
	})
}

// MX delivery tries hosts by preference, skips one that refuses connections, speaks STARTTLS
// without asking who signed the certificate, and delivers to a domain's own address when it has
// no MX (RFC 5321 5.1).
func TestMXByPreference(t *testing.T) {
	w := newWorld(t)
	tlsConfig, _ := selfSigned(t)
	primary := newSink(t, sinkOptions{tls: tlsConfig})
	backup := newSink(t, sinkOptions{ip: "127.0.0.2", port: primary.port})
	res := resolver{
		mx: map[string][]*net.MX{"b.example": {
			{Host: "mx2.b.example.", Pref: 20}, {Host: "down.b.example.", Pref: 5}, {Host: "mx1.b.example.", Pref: 10},
		}},
		hosts: map[string][]string{
			"down.b.example": {"127.0.0.3"}, // nothing listens there
			"mx1.b.example":  {"127.0.0.1"},
			"mx2.b.example":  {"127.0.0.2"},
			"a.example":      {"127.0.0.1"},
		},
	}
	q := w.queue(mailout.Config{Mode: config.ModeMX, Resolver: res, Port: primary.port})
	l := w.submit(t, bob)[bob]

	runOnce(t, q, 2, 0, 0)
	got := primary.to(bob)
	if len(got) != 1 || !got[0].tls || got[0].helo != "certmail.test" || backup.count() != 0 {
		t.Fatalf("the primary got %+v, the backup %d", got, backup.count())
	}
	if len(primary.to(alice)) != 1 {
		t.Fatal("the posting receipt did not reach a.example, which has an address and no MX")
	}
	if w.item(t, l).State != store.StateNotified {
		t.Fatal("not notified")
	}
}

// With the primary saying 451, the backup MX takes the mail.
func TestMXTemporaryFailureTriesTheNextHost(t *testing.T) {
	w := newWorld(t)
	primary := newSink(t, sinkOptions{})
	backup := newSink(t, sinkOptions{ip: "127.0.0.2", port: primary.port})
	primary.set(bob, "451")
	res := resolver{
		mx:    map[string][]*net.MX{"b.example": {{Host: "mx1.b.example.", Pref: 10}, {Host: "mx2.b.example.", Pref: 20}}},
		hosts: map[string][]string{"mx1.b.example": {"127.0.0.1"}, "mx2.b.example": {"127.0.0.2"}, "a.example": {"127.0.0.1"}},
	}
	q := w.queue(mailout.Config{Mode: config.ModeMX, Resolver: res, Port: primary.port})
	w.submit(t, bob)

	runOnce(t, q, 2, 0, 0)
	if len(backup.to(bob)) != 1 {
		t.Fatal("the backup did not get the mail")
	}
}

// A server whose TLS handshake fails still gets the mail over MX, in the clear (RFC 7435).
func TestMXBrokenTLSFallsBackToClear(t *testing.T) {
	w := newWorld(t)
	s := newSink(t, sinkOptions{tls: brokenTLS()})
	res := resolver{
		mx:    map[string][]*net.MX{"b.example": {{Host: "mx.b.example.", Pref: 10}}},
		hosts: map[string][]string{"mx.b.example": {"127.0.0.1"}, "a.example": {"127.0.0.1"}},
	}
	q := w.queue(mailout.Config{Mode: config.ModeMX, Resolver: res, Port: s.port})
	w.submit(t, bob)

	runOnce(t, q, 2, 0, 0)
	if got := s.to(bob); len(got) != 1 || got[0].tls {
		t.Fatalf("the server got %+v", got)
	}
}

func TestMXLookupFailures(t *testing.T) {
	w := newWorld(t)
	s := newSink(t, sinkOptions{})
	res := resolver{
		mx:    map[string][]*net.MX{"b.example": {{Host: ".", Pref: 0}}}, // RFC 7505 null MX
		hosts: map[string][]string{"a.example": {"127.0.0.1"}, "b.example": {"127.0.0.1"}},
		fail:  map[string]bool{"d.example": true},
	}
	q := w.queue(mailout.Config{Mode: config.ModeMX, Resolver: res, Port: s.port})
	labels := w.submit(t, bob, carol, dave) // carol's domain does not exist; dave's DNS is down

	runOnce(t, q, 3, 1, 2)
	for rcpt, want := range map[string]string{bob: "b.example: 556 5.1.10", carol: "c.example: the domain has no mail server"} {
		if n := w.outbound(t, labels[rcpt], "notification"); n.State != store.OutBounced || !strings.HasPrefix(n.LastError, want) {
			t.Fatalf("notification to %s: %s, %q; want bounced with %q", rcpt, n.State, n.LastError, want)
		}
		if w.item(t, labels[rcpt]).State != store.StateBounced {
			t.Fatalf("item of %s not bounced", rcpt)
		}
	}
	if n := w.outbound(t, labels[dave], "notification"); n.State != store.OutQueued || !strings.Contains(n.LastError, "server misbehaving") {
		t.Fatalf("notification to dave: %s, %q", n.State, n.LastError)
	}
	if len(s.to(bob)) != 0 {
		t.Fatal("a null MX domain got mail at its address")
	}
}

// Mails handed over while every delivery is busy go to the smarthost together, in one session
// (one round trip, Client.SendMany), and each gets its own outcome: a refused recipient
// bounces, the mails beside it are delivered.
func TestHandedMailsGoTogether(t *testing.T) {
	w := newWorld(t, true)
	s := newSink(t, sinkOptions{})
	s.set(bob, "hold")
	s.set(carol, "550")
	cfg := smarthost(s)
	cfg.Workers, cfg.Poll = 1, time.Hour
	q := w.queue(cfg)
	ctx, cancel := context.WithCancel(context.Background())
	stopped := make(chan struct{})
	go func() { q.Run(ctx); close(stopped) }()
	defer func() { cancel(); <-stopped }()

	w.submit(t, bob)
	<-s.held // the one delivery is held at bob's notification
	labels := w.submit(t, carol, dave)
	s.unhold()
	waitFor(t, func() bool {
		return w.outbound(t, labels[carol], "notification").State == store.OutBounced &&
			w.outbound(t, labels[dave], "notification").State == store.OutSent &&
			w.outbound(t, labels[carol], "posting-receipt").State == store.OutSent &&
			w.outbound(t, labels[dave], "posting-receipt").State == store.OutSent
	})
	if why := w.outbound(t, labels[carol], "notification").LastError; !strings.HasSuffix(why, "RCPT TO: 550 5.1.1 no such user here") {
		t.Errorf("carol's notification bounced with %q", why)
	}
	if got := s.to(dave); len(got) != 1 {
		t.Fatalf("dave got %d notifications", len(got))
	}
	// Carol's refused notification and dave's went in one session, though carol's came first:
	// one at a time, her refusal would have ended the session.
	if c, d := s.sessions(carol), s.sessions(dave); len(c) != 1 || len(d) != 1 || c[0] != d[0] {
		t.Errorf("carol's notification went in sessions %v, dave's in %v; want one, the same", c, d)
	}
}

// Run delivers at once what a submission queues, without waiting for its poll.
func TestRunDeliversOnKick(t *testing.T) {
	w := newWorld(t)
	s := newSink(t, sinkOptions{})
	cfg := smarthost(s)
	cfg.Poll = time.Hour
	q := w.queue(cfg)
	w.submit(t, bob)

	ctx, cancel := context.WithCancel(context.Background())
	stopped := make(chan struct{})
	go func() { q.Run(ctx); close(stopped) }()
	waitFor(t, func() bool { return s.count() == 2 }) // the first run, at start
	w.submit(t, carol)                                // the agent kicks the queue
	waitFor(t, func() bool { return len(s.to(carol)) == 1 })
	cancel()
	select {
	case <-stopped:
	case <-time.After(10 * time.Second):
		t.Fatal("Run does not stop")
	}
}

func waitFor(t *testing.T, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatal("timed out")
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// Mail to the smarthost goes over a kept-open connection, with AUTH once; when the smarthost
// has closed that connection while it was idle, the next mail opens a new one and goes all the
// same.
func TestSmarthostConnectionKeptOpen(t *testing.T) {
	const password = "correct horse battery staple"
	w := newWorld(t)
	tlsConfig, roots := selfSigned(t)
	s := newSink(t, sinkOptions{tls: tlsConfig, users: map[string]string{"relay": password}, readTimeout: 300 * time.Millisecond})
	cfg := smarthost(s)
	cfg.TLS, cfg.RootCAs, cfg.Username, cfg.Password = config.TLSStartTLS, roots, "relay", password
	cfg.Workers = 1
	q := w.queue(cfg)
	w.submit(t, bob, dave)
	runOnce(t, q, 4, 0, 0) // two notifications, two posting receipts
	if c, a := s.connections(), s.authAttempts(); c != 1 || a != 1 {
		t.Fatalf("4 mails took %d connections and %d AUTHs, want 1 and 1", c, a)
	}
	time.Sleep(time.Second) // the sink drops a connection idle for 300 ms
	w.submit(t, bob)
	runOnce(t, q, 2, 0, 0)
	if len(s.to(bob)) != 2 || s.connections() != 2 {
		t.Fatalf("bob got %d notifications over %d connections in all, want 2 over 2", len(s.to(bob)), s.connections())
	}
}

// A mail claimed by a process that then died is due again when the next process starts its
// queue, not after the claim's lease; a mail waiting out its backoff keeps waiting.
func TestRestartRecoversClaims(t *testing.T) {
	w := newWorld(t)
	s := newSink(t, sinkOptions{})
	cfg := smarthost(s)
	cfg.Now, cfg.Rand = w.clock.now, func() float64 { return 0 }
	cfg.Logger = slog.New(slog.NewTextHandler(w.logs, nil))
	rec := &flakySent{Agent: w.a}
	rec.n.Store(1) // the first delivery is not recorded: its claim stands, as after a kill
	q := mailout.New(cfg, w.st, rec)
	l := w.submit(t, bob)[bob]
	if _, _, _, err := q.RunOnce(context.Background()); err == nil {
		t.Fatal("the unrecorded delivery reported no error")
	}
	if n := w.outbound(t, l, "notification"); !n.NextAttempt.After(w.clock.now().Add(10 * time.Minute)) {
		t.Fatalf("not claimed: next attempt %s", n.NextAttempt)
	}
	// A retry waiting its backoff is no claim.
	waiting := w.outbound(t, l, "posting-receipt")
	waiting.State, waiting.NextAttempt = store.OutQueued, w.clock.now().Add(7*time.Minute)
	if err := w.st.Update(context.Background(), func(tx store.Tx) error { return tx.UpdateOutbound(waiting) }); err != nil {
		t.Fatal(err)
	}

	restarted := mailout.New(cfg, w.st, w.a)
	n, err := restarted.RecoverClaims(context.Background())
	if err != nil || n != 1 {
		t.Fatalf("RecoverClaims = %d, %v; want the one claim", n, err)
	}
	if got := w.outbound(t, l, "notification"); !got.NextAttempt.Equal(w.clock.now()) {
		t.Errorf("the claimed notification is due at %s, want now", got.NextAttempt)
	}
	if got := w.outbound(t, l, "posting-receipt"); !got.NextAttempt.Equal(waiting.NextAttempt) {
		t.Errorf("the waiting receipt moved to %s", got.NextAttempt)
	}
	runOnce(t, restarted, 1, 0, 0)
	if got := w.outbound(t, l, "notification"); got.State != store.OutSent || count(w.evidence(t, l), evidence.NTF) != 1 {
		t.Errorf("after the restart: %s, %v", got.State, w.evidence(t, l))
	}
}
