package web_test

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"math/rand/v2"
	"net/http"
	"net/http/httptest"
	"net/url"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"

	"certmail/account"
	"certmail/agent"
	"certmail/api"
	"certmail/evidence"
	"certmail/evlog"
	"certmail/internal/logbuf"
	"certmail/mailfmt"
	"certmail/password"
	"certmail/protocol"
	"certmail/store"
	"certmail/store/blobfs"
	"certmail/store/sqlite"
	"certmail/web"
)

// recorder composes the agent's mails as plain text and keeps what it was asked, so a test can
// follow the pickup link as a recipient reading the notification would.
type recorder struct {
	mu      sync.Mutex
	notices []agent.Notice
}

func (r *recorder) Notification(n agent.Notice) ([]byte, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.notices = append(r.notices, n)
	return fmt.Appendf(nil, "To: %s\r\nSubject: certified message\r\n\r\n%s\r\n", n.To, n.PickupURL), nil
}

func (r *recorder) Receipt(rc agent.Receipt) ([]byte, error) {
	return fmt.Appendf(nil, "To: %s\r\nSubject: %s\r\n\r\n%s\r\n", rc.To, rc.Kind, rc.Label), nil
}

// link is the pickup link of the last notification to `to`.
func (r *recorder) link(t *testing.T, to string) string {
	t.Helper()
	r.mu.Lock()
	defer r.mu.Unlock()
	for i := len(r.notices) - 1; i >= 0; i-- {
		if r.notices[i].To == to {
			return r.notices[i].PickupURL
		}
	}
	t.Fatalf("no notification to %s", to)
	return ""
}

type clock struct {
	mu sync.Mutex
	t  time.Time
}

func (c *clock) now() time.Time { c.mu.Lock(); defer c.mu.Unlock(); return c.t }
func (c *clock) add(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.t = c.t.Add(d)
}

const (
	alice    = "alice@a.example"
	alicePW  = "correct horse battery"
	mallory  = "mallory@m.example"
	malPW    = "mallory's own password"
	bob      = "bob@b.example"
	carol    = "carol@c.example"
	msgPW    = "open sesame 42"
	maxBytes = 64 << 10
)

var t0 = time.Date(2026, 3, 2, 9, 0, 0, 0, time.UTC)

// world is a running agent with its web face on loopback, a sender account for alice and one
// for mallory.
type world struct {
	ag     *agent.Agent
	st     store.Store
	acc    *account.Accounts
	mails  *recorder
	clock  *clock
	id     *protocol.Identity
	srv    *httptest.Server
	client *http.Client
	logs   *logbuf.Buffer
}

type options struct {
	plain  bool // plain HTTP (loopback) instead of TLS
	limits account.Limits
	log    bool // an evidence log in the world's directory, served at /log/
}

func newWorld(t *testing.T, o options) *world {
	t.Helper()
	ctx := context.Background()
	dir := t.TempDir()
	w := &world{mails: &recorder{}, clock: &clock{t: t0}, logs: &logbuf.Buffer{}}
	var err error
	if w.id, err = protocol.NewIdentity("certmail.test", rand.NewChaCha8([32]byte{1})); err != nil {
		t.Fatal(err)
	}
	st, err := sqlite.Open(filepath.Join(dir, "certmail.db"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	blobs, err := blobfs.Open(filepath.Join(dir, "blobs"))
	if err != nil {
		t.Fatal(err)
	}
	w.st = st

	// The server's address is needed for the links before the server may start.
	w.srv = httptest.NewUnstartedServer(nil)
	scheme := "https"
	if o.plain {
		scheme = "http"
	}
	public := scheme + "://" + w.srv.Listener.Addr().String()

	settings := agent.Settings{PublicURL: public, DefaultDeadline: 48 * time.Hour,
		MinDeadline: time.Hour, MaxDeadline: 30 * 24 * time.Hour, WarnAt: 0.5, Bounce: "certmail@certmail.test"}
	var logFiles http.Handler
	if o.log {
		l, err := evlog.Open(evlog.Config{Dir: filepath.Join(dir, "log"), Signer: w.id.Signer, Verifier: w.id.Verifier})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { l.Close(context.Background()) })
		settings.Log, logFiles = l, evlog.Handler(l.Dir())
	}
	w.ag = agent.New(w.id, st, blobs, w.mails, settings, w.clock.now, nil)
	w.acc = account.NewWithParams(st, o.limits, w.clock.now, password.Params{Memory: 64, Time: 1, Threads: 1}, nil)
	for _, u := range [][2]string{{alice, alicePW}, {mallory, malPW}} {
		if err := w.acc.Add(ctx, u[0], u[1], false); err != nil {
			t.Fatal(err)
		}
	}
	logger := slog.New(slog.NewJSONHandler(w.logs, &slog.HandlerOptions{Level: slog.LevelDebug}))
	w.srv.Config.Handler = web.New(web.Config{PublicURL: public, Secret: []byte("0123456789abcdef0123456789abcdef"),
		Limits: mailfmt.Limits{MaxBytes: maxBytes, MinDeadline: time.Hour, MaxDeadline: 30 * 24 * time.Hour},
		Now:    w.clock.now, Rand: rand.NewChaCha8([32]byte{2}), Logger: logger,
		Log: logFiles, LogOrigin: evlog.Origin(w.id.Name)}, w.ag, w.acc)
	if o.plain {
		w.srv.Start()
	} else {
		w.srv.StartTLS()
	}
	t.Cleanup(w.srv.Close)
	w.client = w.srv.Client()
	return w
}

// response is a finished HTTP exchange.
type response struct {
	status int
	header http.Header
	body   []byte
}

func (r response) String() string { return fmt.Sprintf("%d %s", r.status, r.body) }

func (w *world) do(t *testing.T, req *http.Request) response {
	t.Helper()
	resp, err := w.client.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	return response{resp.StatusCode, resp.Header, b}
}

// api makes an API request as user (none when user is ""), with the password the world gave it.
func (w *world) api(t *testing.T, method, path, user, contentType string, body []byte) response {
	t.Helper()
	req, err := http.NewRequest(method, w.srv.URL+path, bytes.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	if contentType != "" {
		req.Header.Set("Content-Type", contentType)
	}
	switch user {
	case alice:
		req.SetBasicAuth(alice, alicePW)
	case mallory:
		req.SetBasicAuth(mallory, malPW)
	}
	return w.do(t, req)
}

func (w *world) get(t *testing.T, u string) response {
	t.Helper()
	req, err := http.NewRequest("GET", u, nil)
	if err != nil {
		t.Fatal(err)
	}
	return w.do(t, req)
}

func (w *world) post(t *testing.T, u string, form url.Values) response {
	t.Helper()
	req, err := http.NewRequest("POST", u, strings.NewReader(form.Encode()))
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	return w.do(t, req)
}

// submitJSON posts a JSON submission as alice and wants 201.
func (w *world) submitJSON(t *testing.T, v any) api.Submitted {
	t.Helper()
	b, err := json.Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	return w.created(t, w.api(t, "POST", "/api/v1/messages", alice, "application/json", b))
}

func (w *world) created(t *testing.T, r response) api.Submitted {
	t.Helper()
	if r.status != http.StatusCreated {
		t.Fatalf("submission: want 201, got %s", r)
	}
	var s api.Submitted
	if err := json.Unmarshal(r.body, &s); err != nil || len(s.Messages) == 0 {
		t.Fatalf("201 body %s: %v", r.body, err)
	}
	if got := r.header.Get("Location"); got != s.Messages[0].StatusURL {
		t.Fatalf("Location %q, want the first status_url %q", got, s.Messages[0].StatusURL)
	}
	return s
}

// status is api.Status with the test's own reading of its timeline.
type status api.Status

func (w *world) status(t *testing.T, label string) status {
	t.Helper()
	r := w.api(t, "GET", "/api/v1/messages/"+label, alice, "", nil)
	if r.status != http.StatusOK {
		t.Fatalf("status of %s: %s", label, r)
	}
	var s status
	if err := json.Unmarshal(r.body, &s); err != nil {
		t.Fatal(err)
	}
	return s
}

func (s status) types() string {
	var out []string
	for _, e := range s.Events {
		out = append(out, e.Type)
	}
	return strings.Join(out, " ")
}

// deliverQueue marks every queued mail sent, as the outbound queue would after a 250: the
// notifications are then in the recipients' mailboxes (NTF).
func (w *world) deliverQueue(t *testing.T) {
	t.Helper()
	var due []store.Outbound
	if err := w.st.View(context.Background(), func(tx store.Tx) (err error) { due, err = tx.DueOutbound(w.clock.now(), 100); return err }); err != nil {
		t.Fatal(err)
	}
	for _, m := range due {
		if err := w.ag.Sent(context.Background(), m); err != nil {
			t.Fatal(err)
		}
	}
}

// bundle downloads the sender's bundle and judges it as an arbiter would; it returns the
// verdict and the message the bundle carries.
func (w *world) bundle(t *testing.T, label string) (*evidence.Verdict, []byte) {
	t.Helper()
	r := w.api(t, "GET", "/api/v1/messages/"+label+"/bundle", alice, "", nil)
	if r.status != http.StatusOK {
		t.Fatalf("bundle: %s", r)
	}
	if ct := r.header.Get("Content-Type"); ct != "application/vnd.certmail.bundle" {
		t.Fatalf("bundle Content-Type %q", ct)
	}
	if cd := r.header.Get("Content-Disposition"); cd != `attachment; filename=`+label+`.bundle` {
		t.Fatalf("bundle Content-Disposition %q", cd)
	}
	b, err := evidence.ParseBundle(r.body)
	if err != nil {
		t.Fatalf("the bundle does not parse: %v", err)
	}
	keys, err := evidence.NewKeys(w.id.Verifier)
	if err != nil {
		t.Fatal(err)
	}
	m, _ := b.Item(evidence.ItemMessage)
	return protocol.JudgeAt(b.Check(keys), w.clock.now()), m
}

var csrfRE = regexp.MustCompile(`name="csrf" value="([^"]+)"`)

// csrf is the form token of a page.
func csrf(t *testing.T, page []byte) string {
	t.Helper()
	m := csrfRE.FindSubmatch(page)
	if m == nil {
		t.Fatalf("no csrf field on the page:\n%s", page)
	}
	return string(m[1])
}

func contains(t *testing.T, r response, wants ...string) {
	t.Helper()
	for _, want := range wants {
		if !bytes.Contains(r.body, []byte(want)) {
			t.Errorf("the answer lacks %q:\n%s", want, r)
		}
	}
}

func lacks(t *testing.T, r response, unwanted ...string) {
	t.Helper()
	for _, u := range unwanted {
		if bytes.Contains(r.body, []byte(u)) {
			t.Errorf("the answer contains %q:\n%s", u, r)
		}
	}
}
