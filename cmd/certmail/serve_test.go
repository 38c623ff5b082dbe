package main

import (
	"bufio"
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"io"
	"log"
	"net"
	"net/http"
	"net/http/cookiejar"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/emersion/go-smtp"

	"certmail/evidence"
	"certmail/internal/logbuf"
	"certmail/internal/swakstest"
)

// need returns the path of an installed program a test needs; when it is missing the test skips
// with a message, or fails under CERTMAIL_TEST_REQUIRE_ALL=1 (as in CI).
func need(t *testing.T, prog string) string {
	t.Helper()
	p, err := exec.LookPath(prog)
	if err != nil {
		if os.Getenv("CERTMAIL_TEST_REQUIRE_ALL") == "1" {
			t.Fatalf("%s is not installed (CERTMAIL_TEST_REQUIRE_ALL=1): install it as .ci/run does", prog)
		}
		t.Skipf("%s is not installed; install it to run this test", prog)
	}
	return p
}

// binary builds certmail once per test run.
var binary = sync.OnceValues(func() (string, error) {
	dir, err := os.MkdirTemp("", "certmail-bin")
	if err != nil {
		return "", err
	}
	out := filepath.Join(dir, "certmail")
	cmd := exec.Command("go", "build", "-o", out, ".")
	if b, err := cmd.CombinedOutput(); err != nil {
		return "", fmt.Errorf("go build: %v\n%s", err, b)
	}
	return out, nil
})

// sink is the mail server beyond the agent: it takes every message and keeps it by recipient.
type sink struct {
	mu   sync.Mutex
	got  []sunk
	cond *sync.Cond
	addr string
}

type sunk struct {
	from, to string
	data     []byte
}

func newSink(t *testing.T) *sink {
	t.Helper()
	s := &sink{}
	s.cond = sync.NewCond(&s.mu)
	srv := smtp.NewServer(s)
	srv.Domain = "sink.test"
	srv.AllowInsecureAuth = true
	srv.ErrorLog = log.New(io.Discard, "", 0) // an agent killed mid-delivery resets connections
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	s.addr = l.Addr().String()
	go srv.Serve(l)
	t.Cleanup(func() { srv.Close() })
	return s
}

func (s *sink) NewSession(*smtp.Conn) (smtp.Session, error) { return &sinkSession{s: s}, nil }

type sinkSession struct {
	s     *sink
	from  string
	rcpts []string
}

func (ss *sinkSession) AuthPlain(string, string) error { return nil }
func (ss *sinkSession) Mail(from string, _ *smtp.MailOptions) error {
	ss.from = from
	return nil
}
func (ss *sinkSession) Rcpt(to string, _ *smtp.RcptOptions) error {
	ss.rcpts = append(ss.rcpts, to)
	return nil
}
func (ss *sinkSession) Data(r io.Reader) error {
	b, err := io.ReadAll(r)
	if err != nil {
		return err
	}
	ss.s.mu.Lock()
	defer ss.s.mu.Unlock()
	for _, to := range ss.rcpts {
		ss.s.got = append(ss.s.got, sunk{ss.from, to, b})
	}
	ss.s.cond.Broadcast()
	return nil
}
func (ss *sinkSession) Reset()        { ss.from, ss.rcpts = "", nil }
func (ss *sinkSession) Logout() error { return nil }

// wait returns the first message to `to` whose data matches pattern, waiting up to 30 s.
func (s *sink) wait(t *testing.T, to, pattern string) []byte {
	t.Helper()
	re := regexp.MustCompile(pattern)
	deadline := time.Now().Add(30 * time.Second)
	timer := time.AfterFunc(30*time.Second, func() { s.mu.Lock(); s.cond.Broadcast(); s.mu.Unlock() })
	defer timer.Stop()
	s.mu.Lock()
	defer s.mu.Unlock()
	for {
		for _, m := range s.got {
			if m.to == to && re.Match(m.data) {
				return m.data
			}
		}
		if time.Now().After(deadline) {
			var seen []string
			for _, m := range s.got {
				seen = append(seen, m.to)
			}
			t.Fatalf("no mail to %s matching %q within 30 s (mail went to %v)", to, pattern, seen)
		}
		s.cond.Wait()
	}
}

// agentProc is a running `certmail serve`.
type agentProc struct {
	cmd    *exec.Cmd
	dir    string
	config string
	smtp   string
	https  string
	out    *logbuf.Buffer // the agent's log
	client *http.Client
}

// freePorts returns n loopback addresses free a moment ago, all different: their listeners are
// all open before any is closed.
func freePorts(t *testing.T, n int) []string {
	t.Helper()
	addrs := make([]string, n)
	for i := range addrs {
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		defer l.Close()
		addrs[i] = l.Addr().String()
	}
	return addrs
}

// startAgent writes a configuration whose outbound mail goes to the sink and starts the agent,
// waiting for its banner.
func startAgent(t *testing.T, sinkAddr, extra string) *agentProc {
	t.Helper()
	bin, err := binary()
	if err != nil {
		t.Fatal(err)
	}
	ports := freePorts(t, 2)
	p := &agentProc{dir: t.TempDir(), smtp: ports[0], https: ports[1], out: &logbuf.Buffer{}}
	_, port, _ := net.SplitHostPort(p.https)
	p.config = filepath.Join(p.dir, "certmail.toml")
	cfg := fmt.Sprintf(`data_dir = %q
hostname = "localhost"
public_url = "https://localhost:%s"
[listen]
smtp_submission = %q
https = %q
[outbound]
mode = "smarthost"
smarthost = %q
tls = "none"
%s`, filepath.Join(p.dir, "data"), port, p.smtp, p.https, sinkAddr, extra)
	if err := os.WriteFile(p.config, []byte(cfg), 0o600); err != nil {
		t.Fatal(err)
	}
	p.start(t, bin)
	return p
}

func (p *agentProc) start(t *testing.T, bin string) {
	t.Helper()
	p.cmd = exec.Command(bin, "serve", "--config", p.config)
	pr, pw := io.Pipe()
	p.cmd.Stdout = pw
	p.cmd.Stderr = p.out
	if err := p.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { p.cmd.Process.Kill(); p.cmd.Wait() })
	p.waitBanner(t, pr, "certmail serve did not start")
	pool := x509.NewCertPool()
	ca, err := os.ReadFile(filepath.Join(p.dir, "data", "ca.crt"))
	if err != nil || !pool.AppendCertsFromPEM(ca) {
		t.Fatalf("local CA: %v", err)
	}
	jar, _ := cookiejar.New(nil)
	p.client = &http.Client{Jar: jar, Timeout: 30 * time.Second, Transport: &http.Transport{
		TLSClientConfig: &tls.Config{RootCAs: pool, ServerName: "localhost"},
		// public_url names localhost; dial the agent's own address whatever localhost resolves to.
		DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
			var d net.Dialer
			return d.DialContext(ctx, "tcp", p.https)
		},
	}}
}

// waitBanner waits for the end of the agent's banner on its standard output, and reads the rest
// of that output away; after a minute it fails the test with why and the agent's log.
func (p *agentProc) waitBanner(t *testing.T, stdout io.Reader, why string) {
	t.Helper()
	ready := make(chan struct{})
	go func() {
		sc := bufio.NewScanner(stdout)
		once := sync.Once{}
		for sc.Scan() {
			if strings.HasPrefix(sc.Text(), "Next, send") {
				once.Do(func() { close(ready) })
			}
		}
	}()
	select {
	case <-ready:
	case <-time.After(60 * time.Second):
		t.Fatalf("%s:\n%s", why, p.out)
	}
}

// certmail runs a certmail command in-process against the agent's configuration.
func (p *agentProc) certmail(t *testing.T, stdin string, args ...string) (int, string, string) {
	t.Helper()
	var out, errb bytes.Buffer
	code := run(append(args, "--config", p.config), strings.NewReader(stdin), &out, &errb)
	return code, out.String(), errb.String()
}

var linkRE = regexp.MustCompile(`https://localhost:\d+/pickup/[A-Za-z0-9_-]{43}`)

// parseForm finds the form whose action ends with suffix and returns its action and the values
// of its inputs.
func parseForm(page, suffix string) (string, url.Values, bool) {
	forms := regexp.MustCompile(`(?s)<form[^>]*action="([^"]*)"[^>]*>(.*?)</form>`).FindAllStringSubmatch(page, -1)
	for _, f := range forms {
		if !strings.HasSuffix(f[1], suffix) {
			continue
		}
		v := url.Values{}
		for _, in := range regexp.MustCompile(`<input[^>]*>`).FindAllString(f[2], -1) {
			name := regexp.MustCompile(`name="([^"]*)"`).FindStringSubmatch(in)
			val := regexp.MustCompile(`value="([^"]*)"`).FindStringSubmatch(in)
			if name != nil && val != nil {
				v.Set(name[1], val[1])
			}
		}
		return f[1], v, true
	}
	return "", nil, false
}

// form is parseForm for a page that must have the form.
func form(t *testing.T, page, suffix string) (string, url.Values) {
	t.Helper()
	action, v, ok := parseForm(page, suffix)
	if !ok {
		t.Fatalf("no form ending in %q on the page:\n%s", suffix, page)
	}
	return action, v
}

func get(t *testing.T, c *http.Client, u string) (int, string) {
	t.Helper()
	resp, err := c.Get(u)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b)
}

// TestServeEndToEnd is a new user's first hour: start the agent, add a sender, submit with swaks
// to an outside address, let the notification reach that address's mail server, open the link,
// enter the message password and accept; the sender's mailbox gets the posting and delivery
// receipts, and the bundle the sender downloads verifies as delivered.
func TestServeEndToEnd(t *testing.T) {
	swaks := swakstest.Path(t)
	mx := newSink(t)
	p := startAgent(t, mx.addr, "")
	if code, out, errs := p.certmail(t, "correct horse battery\n", "user", "add", "alice@localhost", "--password-stdin"); code != 0 {
		t.Fatalf("user add: %d %s %s", code, out, errs)
	}
	msgFile := filepath.Join(p.dir, "lease.eml")
	os.WriteFile(msgFile, []byte("From: alice@localhost\r\nTo: bob@example.org\r\nSubject: the lease\r\n"+
		"Certmail-Password: open sesame 42\r\nCertmail-Password-Hint: the usual\r\n\r\nSigned copy attached.\r\n"), 0o600)
	cmd := exec.Command(swaks, "--server", p.smtp, "--tls", "--tls-verify", "--tls-ca-path", filepath.Join(p.dir, "data", "ca.crt"),
		"--tls-sni", "localhost", "--auth", "PLAIN", "--auth-user", "alice@localhost", "--auth-password", "correct horse battery",
		"--from", "alice@localhost", "--to", "bob@example.org", "--data", "@"+msgFile)
	out, err := cmd.CombinedOutput()
	if err != nil || !strings.Contains(string(out), "<~  250") {
		t.Fatalf("swaks: %v\n%s\nagent log:\n%s", err, out, p.out)
	}

	notice := mx.wait(t, "bob@example.org", "pickup")
	if bytes.Contains(notice, []byte("Signed copy attached")) || bytes.Contains(notice, []byte("the lease")) {
		t.Fatalf("the notification reveals the message:\n%s", notice)
	}
	link := linkRE.Find(notice)
	if link == nil {
		t.Fatalf("no pickup link in the notification:\n%s", notice)
	}
	mx.wait(t, "alice@localhost", "(?i)posting|accepted")

	code, page := get(t, p.client, string(link))
	if code != 200 || !strings.Contains(page, "the usual") || strings.Contains(page, "Signed copy attached") {
		t.Fatalf("pickup page %d:\n%s", code, page)
	}
	action, fields := form(t, page, "/accept")
	fields.Set("password", "open sesame 42")
	u, _ := url.Parse(string(link))
	target, _ := u.Parse(action)
	resp, err := p.client.PostForm(target.String(), fields)
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != 200 || !strings.Contains(string(body), "Signed copy attached") {
		t.Fatalf("accept: %d\n%s", resp.StatusCode, body)
	}
	receipt := mx.wait(t, "alice@localhost", "(?i)delivered")

	// The bundle the sender downloads verifies offline as delivered.
	label := regexp.MustCompile(`[0-9A-HJKMNP-TV-Z]{26}`).Find(receipt)
	req, _ := http.NewRequest("GET", "https://localhost/api/v1/messages/"+string(label)+"/bundle", nil)
	req.SetBasicAuth("alice@localhost", "correct horse battery")
	resp, err = p.client.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	bundle, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != 200 {
		t.Fatalf("bundle: %d %s", resp.StatusCode, bundle)
	}
	bf := filepath.Join(p.dir, "evidence.bundle")
	os.WriteFile(bf, bundle, 0o600)
	vkey, _ := os.ReadFile(filepath.Join(p.dir, "data", "agent.pub"))
	code2, verdict, _ := verify(t, bf, "--key", strings.TrimSpace(string(vkey)))
	if code2 != exitOK || !strings.Contains(verdict, "outcome delivered (agent-attested)") {
		t.Fatalf("verify: exit %d\n%s", code2, verdict)
	}

	// Every note of the bundle is in the agent's public evidence log, as an independent
	// verifier proves from the log's checkpoint and tiles (logverify_test.go); the bundle with
	// its proofs still verifies.
	bundle = proveBundleLogged(t, p, string(label), "alice@localhost", "correct horse battery")
	os.WriteFile(bf, bundle, 0o600)
	// certmail verify checks those proofs itself, offline: every note is logged, none lacks a
	// proof, and a proof that does not hold fails the bundle.
	code, verdict, _ = verify(t, bf, "--key", strings.TrimSpace(string(vkey)))
	if code != exitOK || !regexp.MustCompile(`logged: notes 1.\d+ in localhost/log .*; log time \d{4}-`).MatchString(verdict) || strings.Contains(verdict, "no log proof") {
		t.Fatalf("verify of the bundle with log proofs: exit %d\n%s", code, verdict)
	}
	// The agent's own stored log passes fsck, its signature checked with the agent.pub beside it.
	if code, out, errs := runCLI("log", "fsck", filepath.Join(p.dir, "data", "log")); code != exitOK ||
		!strings.Contains(out, "signature checked with localhost") || !strings.Contains(out, "OK:") {
		t.Fatalf("log fsck: exit %d\n%s%s", code, out, errs)
	}
	b, err := evidence.ParseBundle(bundle)
	if err != nil {
		t.Fatal(err)
	}
	b.Proofs[0].Index++
	forged, _ := b.Encode()
	os.WriteFile(bf, forged, 0o600)
	if code, verdict, _ := verify(t, bf, "--key", strings.TrimSpace(string(vkey))); code != exitFail || !strings.Contains(verdict, "log inclusion") {
		t.Fatalf("verify of a bundle with a wrong proof: exit %d\n%s", code, verdict)
	}
}
