package main

import (
	"context"
	"crypto/sha256"
	"crypto/tls"
	"crypto/x509"
	"encoding/base64"
	"encoding/json"
	"errors"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/cdproto/browser"
	"github.com/chromedp/cdproto/emulation"
	"github.com/chromedp/chromedp"

	"certmail/internal/swakstest"
)

// chromiumFlags are the flags Debian's Chromium runs headless with on a build machine.
var chromiumFlags = []chromedp.ExecAllocatorOption{
	chromedp.Headless, chromedp.NoSandbox, chromedp.DisableGPU, chromedp.NoFirstRun, chromedp.NoDefaultBrowserCheck,
	chromedp.Flag("disable-quic", true), chromedp.Flag("disable-background-networking", true),
	chromedp.Flag("disable-component-update", true), chromedp.Flag("disable-sync", true),
}

// agentSPKI is the base64 SHA-256 of the public key of the agent's TLS certificate, fetched
// with the agent's own CA as the only root: the one certificate Chromium is told to accept
// although no root it knows issued it (the local CA is in no browser's store).
func agentSPKI(t *testing.T, p *agentProc) string {
	t.Helper()
	ca, err := os.ReadFile(filepath.Join(p.dir, "data", "ca.crt"))
	if err != nil {
		t.Fatal(err)
	}
	pool := x509.NewCertPool()
	pool.AppendCertsFromPEM(ca)
	conn, err := tls.Dial("tcp", p.https, &tls.Config{RootCAs: pool, ServerName: "localhost"})
	if err != nil {
		t.Fatalf("the agent's certificate does not verify against its CA: %v", err)
	}
	defer conn.Close()
	sum := sha256.Sum256(conn.ConnectionState().PeerCertificates[0].RawSubjectPublicKeyInfo)
	return base64.StdEncoding.EncodeToString(sum[:])
}

// newChromium starts a headless Chromium with a fresh profile that accepts the agent's TLS
// certificate (and no other one without a trusted root), and returns its tab.
func newChromium(t *testing.T, exe string, p *agentProc) context.Context {
	t.Helper()
	opts := append(append([]chromedp.ExecAllocatorOption{}, chromiumFlags...),
		chromedp.ExecPath(exe), chromedp.UserDataDir(t.TempDir()),
		chromedp.Flag("ignore-certificate-errors-spki-list", agentSPKI(t, p)))
	actx, cancel := chromedp.NewExecAllocator(context.Background(), opts...)
	t.Cleanup(cancel)
	ctx, cancelTab := chromedp.NewContext(actx)
	t.Cleanup(cancelTab)
	if err := chromedp.Do(ctx); err != nil {
		t.Fatalf("start chromium: %v", err)
	}
	return ctx
}

// in runs browser actions with a time limit, failing the test with the page's text on error.
func in(t *testing.T, tab context.Context, what string, steps ...chromedp.Action[chromedp.Void]) {
	t.Helper()
	ctx, cancel := context.WithTimeout(tab, 60*time.Second)
	defer cancel()
	if err := chromedp.Do(ctx, steps...); err != nil {
		t.Fatalf("%s: %v\npage:\n%s", what, err, pageText(tab))
	}
}

func pageText(tab context.Context) string {
	ctx, cancel := context.WithTimeout(tab, 10*time.Second)
	defer cancel()
	s, err := chromedp.Run(ctx, chromedp.OuterHTML(chromedp.CSS("html")))
	if err != nil {
		return "(cannot read the page: " + err.Error() + ")"
	}
	return s
}

func read[T any](t *testing.T, tab context.Context, a chromedp.Action[T]) T {
	t.Helper()
	ctx, cancel := context.WithTimeout(tab, 60*time.Second)
	defer cancel()
	v, err := chromedp.Run(ctx, a)
	if err != nil {
		t.Fatalf("read the page: %v\n%s", err, pageText(tab))
	}
	return v
}

// swaksSubmit has alice send a message with a message password through SMTP submission, as a
// mail client would, and returns its label and the pickup link the recipient's server got.
func swaksSubmit(t *testing.T, swaks string, p *agentProc, mx *sink, to, subject, text, password string) (label, link string) {
	t.Helper()
	seen := mx.count(to, notificationRE)
	f := filepath.Join(t.TempDir(), "message.eml")
	os.WriteFile(f, []byte("From: alice@localhost\r\nTo: "+to+"\r\nSubject: "+subject+"\r\n"+
		"Certmail-Password: "+password+"\r\nCertmail-Password-Hint: the usual\r\n\r\n"+text+"\r\n"), 0o600)
	out, err := exec.Command(swaks, "--server", p.smtp, "--tls", "--tls-verify", "--tls-ca-path", filepath.Join(p.dir, "data", "ca.crt"),
		"--tls-sni", "localhost", "--auth", "PLAIN", "--auth-user", "alice@localhost", "--auth-password", "correct horse battery",
		"--from", "alice@localhost", "--to", to, "--data", "@"+f).CombinedOutput()
	if err != nil || !strings.Contains(string(out), "<~  250") {
		t.Fatalf("swaks: %v\n%s\nagent log:\n%s", err, out, p.out)
	}
	notice := mx.waitNth(t, to, notificationRE, seen)
	// The notification names the item, never its content.
	if strings.Contains(string(notice), text) || strings.Contains(string(notice), subject) {
		t.Fatalf("the notification reveals the message:\n%s", notice)
	}
	l := regexp.MustCompile(`X-Certmail-Label: ([0-9A-Z]{26})`).FindSubmatch(notice)
	u := linkRE.Find(notice)
	if l == nil || u == nil {
		t.Fatalf("no label or link in the notification:\n%s", notice)
	}
	return string(l[1]), string(u)
}

var notificationRE = regexp.MustCompile("X-Certmail-Kind: notification\r\n")

// count is the number of messages to `to` matching re.
func (s *sink) count(to string, re *regexp.Regexp) int {
	s.mu.Lock()
	defer s.mu.Unlock()
	n := 0
	for _, m := range s.got {
		if m.to == to && re.Match(m.data) {
			n++
		}
	}
	return n
}

// waitNth returns the message to `to` matching re that comes after the first n, waiting up to
// 30 s for it.
func (s *sink) waitNth(t *testing.T, to string, re *regexp.Regexp, n int) []byte {
	t.Helper()
	for deadline := time.Now().Add(30 * time.Second); time.Now().Before(deadline); time.Sleep(50 * time.Millisecond) {
		s.mu.Lock()
		i := 0
		for _, m := range s.got {
			if m.to == to && re.Match(m.data) {
				if i == n {
					s.mu.Unlock()
					return m.data
				}
				i++
			}
		}
		s.mu.Unlock()
	}
	t.Fatalf("no new mail to %s matching %q within 30 s", to, re)
	return nil
}

// clearField empties an input, as a person selecting the wrong password to type over it does.
// (chromedp.Clear empties the value attribute, not what was typed.)
func clearField(id string) chromedp.Action[chromedp.Void] {
	return chromedp.Func(func(ctx context.Context, t *chromedp.Target) error {
		ok, err := chromedp.Evaluate[bool](`(() => { const f = document.getElementById(`+strconv.Quote(id)+`); f.value = ""; return f.value === ""; })()`)(ctx, t)
		if err == nil && !ok {
			err = errors.New("the field keeps its value")
		}
		return err
	})
}

// download clicks the page's "The whole message" link and returns the file Chromium saved.
func download(t *testing.T, tab context.Context, label string) []byte {
	t.Helper()
	dir := t.TempDir()
	ctx, cancel := context.WithTimeout(tab, 60*time.Second)
	defer cancel()
	if _, err := chromedp.CallBrowser(ctx, browser.SetDownloadBehavior, browser.SetDownloadBehaviorParams{
		Behavior: browser.SetDownloadBehaviorBehaviorAllow, DownloadPath: dir}); err != nil {
		t.Fatal(err)
	}
	in(t, tab, "download the message", chromedp.Click(chromedp.CSS(`a[href$="/message.eml"]`)))
	// Chromium writes NAME.crdownload and renames it to NAME when the download is complete.
	path := filepath.Join(dir, label+".eml")
	for ctx.Err() == nil {
		if b, err := os.ReadFile(path); err == nil {
			return b
		} else if !errors.Is(err, fs.ErrNotExist) {
			t.Fatal(err)
		}
		time.Sleep(50 * time.Millisecond)
	}
	entries, _ := os.ReadDir(dir)
	t.Fatalf("Chromium saved no %s.eml (the download directory holds %v)", label, entries)
	return nil
}

// verdictJSON is `certmail verify --json` of the sender's bundle, with the message the
// recipient downloaded in place of the bundle's copy.
func verdictJSON(t *testing.T, p *agentProc, label string, message []byte) (int, map[string]any) {
	t.Helper()
	mf := filepath.Join(t.TempDir(), "downloaded.eml")
	os.WriteFile(mf, message, 0o600)
	code, text := senderVerdict(t, p, label, "--message", mf, "--json")
	var v map[string]any
	if err := json.Unmarshal([]byte(text), &v); err != nil {
		t.Fatalf("verify --json: %v\n%s", err, text)
	}
	return code, v
}

// keyRecords are the "says" of the KEY facts of a verdict.
func keyRecords(v map[string]any) []string {
	var out []string
	facts, _ := v["facts"].([]any)
	for _, f := range facts {
		if m, _ := f.(map[string]any); m["type"] == "KEY" {
			out = append(out, m["says"].(string))
		}
	}
	return out
}

// TestBrowserPickup is a new user's first hour with a browser: the agent started as the README
// says, a sender, swaks submitting with a message password to an outside address, and headless
// Chromium opening the link from the notification, entering the password and accepting — once
// signing the certificate of delivery with a key the browser makes and keeps, once with
// JavaScript off, where the agent attests alone. The sender's mail server gets the posting and
// delivery receipts, the message Chromium downloads is the one certified, and `certmail
// verify` says delivered, recipient-signed or agent-attested.
func TestBrowserPickup(t *testing.T) {
	chromium := need(t, "chromium")
	swaks := swakstest.Path(t)
	mx := newSink(t)
	p := startAgent(t, mx.addr, "")
	if code, out, errs := p.certmail(t, "correct horse battery\n", "user", "add", "alice@localhost", "--password-stdin"); code != 0 {
		t.Fatalf("user add: %d %s %s", code, out, errs)
	}
	tab := newChromium(t, chromium, p)

	// beforeAcceptance checks what the page shows before the recipient decides: who, the label,
	// the password prompt — never the content.
	beforeAcceptance := func(t *testing.T, label, subject, text string) {
		t.Helper()
		html := pageText(tab)
		for _, want := range []string{"alice@localhost", label, "the usual", `id="accept-password"`} {
			if !strings.Contains(html, want) {
				t.Fatalf("the pickup page lacks %q:\n%s", want, html)
			}
		}
		if strings.Contains(html, text) || strings.Contains(html, subject) {
			t.Fatalf("the pickup page shows the content before acceptance:\n%s", html)
		}
	}
	// afterAcceptance checks the message page, the receipts, the download and the verdict.
	afterAcceptance := func(t *testing.T, label, text, attestation string) map[string]any {
		t.Helper()
		in(t, tab, "the message after acceptance", chromedp.WaitVisible(chromedp.CSS("ul.downloads")))
		body := read(t, tab, chromedp.Text(chromedp.CSS("main")))
		if !strings.Contains(body, text) || !strings.Contains(body, "this message matches it") {
			t.Fatalf("the page after acceptance:\n%s", body)
		}
		mx.wait(t, "alice@localhost", "X-Certmail-Kind: posting-receipt\r\nX-Certmail-Label: "+label)
		mx.wait(t, "alice@localhost", "X-Certmail-Kind: delivery-receipt\r\nX-Certmail-Label: "+label)
		eml := download(t, tab, label)
		if !strings.Contains(string(eml), text) {
			t.Fatalf("the downloaded message:\n%s", eml)
		}
		code, v := verdictJSON(t, p, label, eml)
		if code != exitOK || v["outcome"] != "delivered" || v["attestation"] != attestation {
			t.Fatalf("verify on the sender's bundle with the downloaded message: exit %d\n%v", code, v)
		}
		return v
	}

	var firstKey []string
	t.Run("signed in the browser", func(t *testing.T) {
		label, link := swaksSubmit(t, swaks, p, mx, "bob@example.org", "the lease", "Signed copy attached.", "open sesame 42")
		// The script offers signing once it has found WebCrypto Ed25519.
		in(t, tab, "open the link", chromedp.Navigate(link), chromedp.WaitVisible(chromedp.ID("sign-accept")))
		beforeAcceptance(t, label, "the lease", "Signed copy attached.")

		in(t, tab, "a wrong password",
			chromedp.SendKeys(chromedp.ID("accept-password"), "open sesame 43"),
			chromedp.Click(chromedp.ID("sign-accept")),
			chromedp.WaitVisible(chromedp.ID("sign-error")))
		if msg := read(t, tab, chromedp.Text(chromedp.ID("sign-error"))); !strings.Contains(msg, "Wrong message password") {
			t.Fatalf("error after a wrong password: %q", msg)
		}
		beforeAcceptance(t, label, "the lease", "Signed copy attached.")

		in(t, tab, "accept and sign",
			clearField("accept-password"),
			chromedp.SendKeys(chromedp.ID("accept-password"), "open sesame 42"),
			chromedp.Click(chromedp.ID("sign-accept")))
		v := afterAcceptance(t, label, "Signed copy attached.", "recipient-signed")
		if firstKey = keyRecords(v); len(firstKey) != 1 || !strings.Contains(firstKey[0], "bob@example.org") {
			t.Fatalf("KEY records in the bundle: %v", firstKey)
		}
	})

	t.Run("signed again with the key kept in the browser", func(t *testing.T) {
		if firstKey == nil {
			t.Skip("needs the first signed pickup")
		}
		label, link := swaksSubmit(t, swaks, p, mx, "bob@example.org", "the annex", "Annex B enclosed.", "open sesame 44")
		in(t, tab, "open the link", chromedp.Navigate(link), chromedp.WaitVisible(chromedp.ID("sign-accept")))
		beforeAcceptance(t, label, "the annex", "Annex B enclosed.")
		in(t, tab, "accept and sign",
			chromedp.SendKeys(chromedp.ID("accept-password"), "open sesame 44"),
			chromedp.Click(chromedp.ID("sign-accept")))
		v := afterAcceptance(t, label, "Annex B enclosed.", "recipient-signed")
		// The same key, from IndexedDB: enrolled once, bound by one KEY record.
		if got := keyRecords(v); len(got) != 1 || got[0] != firstKey[0] {
			t.Fatalf("KEY records %v, want the first pickup's %v", got, firstKey)
		}
	})

	t.Run("without JavaScript the agent attests", func(t *testing.T) {
		label, link := swaksSubmit(t, swaks, p, mx, "carol@example.org", "the offer", "Our offer stands.", "open sesame 45")
		ctx, cancel := context.WithTimeout(tab, 30*time.Second)
		defer cancel()
		if _, err := chromedp.Call(ctx, emulation.SetScriptExecutionDisabled, emulation.SetScriptExecutionDisabledParams{Value: true}); err != nil {
			t.Fatal(err)
		}
		defer chromedp.Call(tab, emulation.SetScriptExecutionDisabled, emulation.SetScriptExecutionDisabledParams{Value: false})
		in(t, tab, "open the link", chromedp.Navigate(link), chromedp.WaitVisible(chromedp.ID("accept-password")))
		beforeAcceptance(t, label, "the offer", "Our offer stands.")
		if html := pageText(tab); !strings.Contains(html, `id="sign-in-browser" class="sign" hidden`) {
			t.Fatalf("without JavaScript the signing button shows:\n%s", html)
		}
		submit := chromedp.CSS(`form[action$="/accept"] button[type="submit"]`)
		in(t, tab, "a wrong password",
			chromedp.SendKeys(chromedp.ID("accept-password"), "open sesame 43"),
			chromedp.Click(submit),
			chromedp.WaitVisible(chromedp.CSS("p.error")))
		if msg := read(t, tab, chromedp.Text(chromedp.CSS("p.error"))); !strings.Contains(msg, "Wrong message password") {
			t.Fatalf("error after a wrong password: %q", msg)
		}
		beforeAcceptance(t, label, "the offer", "Our offer stands.")
		in(t, tab, "accept",
			chromedp.SendKeys(chromedp.ID("accept-password"), "open sesame 45"),
			chromedp.Click(submit))
		v := afterAcceptance(t, label, "Our offer stands.", "agent-attested")
		if got := keyRecords(v); len(got) != 0 {
			t.Fatalf("KEY records in an agent-attested bundle: %v", got)
		}
	})
}
