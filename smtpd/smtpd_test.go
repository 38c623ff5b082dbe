package smtpd_test

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"net"
	"net/netip"
	netsmtp "net/smtp"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/emersion/go-sasl"
	"github.com/emersion/go-smtp"

	"certmail/account"
	"certmail/evidence"
	"certmail/mailfmt"
	"certmail/smtpd"
)

// A mail program submits with STARTTLS and AUTH PLAIN; the 250 names each recipient's label,
// and each label's item is stored with its COP over the message as stored: without its
// Certmail-* fields, and for every envelope recipient, also one the header does not name.
func TestSubmitGoSMTPClient(t *testing.T) {
	t.Parallel()
	w := newWorld(t, options{})
	c, err := smtp.DialStartTLS(w.addr, &tls.Config{RootCAs: w.roots, ServerName: "localhost"})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if err := c.Auth(sasl.NewPlainClient("", alice, alicePW)); err != nil {
		t.Fatal(err)
	}
	if err := c.Mail(alice, nil); err != nil {
		t.Fatal(err)
	}
	for _, r := range []string{bob, dave} {
		if err := c.Rcpt(r, nil); err != nil {
			t.Fatal(err)
		}
	}
	wc, err := c.Data()
	if err != nil {
		t.Fatal(err)
	}
	m := message(alice, "Certmail-Receipt: short", "Certmail-Deadline: 72h", "Certmail-Password: message password 1a2b")
	if _, err := wc.Write([]byte(m)); err != nil {
		t.Fatal(err)
	}
	resp, err := wc.CloseWithResponse()
	if err != nil {
		t.Fatal(err)
	}
	items := w.checkCertified(t, resp.StatusText, crlfWithout(m, "Certmail-Receipt", "Certmail-Deadline", "Certmail-Password"), bob, dave)
	for _, it := range items {
		if it.Receipt != "short" || it.Subject != "the lease" || it.PasswordHash == "" {
			t.Errorf("item %s: receipt %q subject %q", it.Label, it.Receipt, it.Subject)
		}
		if d := time.Until(it.Deadline); d < 71*time.Hour || d > 73*time.Hour {
			t.Errorf("item %s: deadline %s is %s away, want 72h", it.Label, it.Deadline, d)
		}
	}
	if err := c.Quit(); err != nil {
		t.Fatal(err)
	}
}

// AUTH LOGIN, which go-sasl has no server for, works as well, with the user name as initial
// response (go-sasl's client) or after the prompt.
func TestAuthLogin(t *testing.T) {
	t.Parallel()
	w := newWorld(t, options{})
	c, err := smtp.DialStartTLS(w.addr, &tls.Config{RootCAs: w.roots, ServerName: "localhost"})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if err := c.Auth(sasl.NewLoginClient(alice, alicePW)); err != nil {
		t.Fatal(err)
	}
	if err := c.SendMail(alice, []string{bob}, strings.NewReader(message(alice))); err != nil {
		t.Fatal(err)
	}

	r := w.dial(t)
	r.ehlo()
	r.startTLS()
	r.ehlo()
	if got := r.expect("AUTH LOGIN", 334, ""); got != b64("Username:") {
		t.Fatalf("first prompt %q", got)
	}
	if got := r.expect(b64(alice), 334, ""); got != b64("Password:") {
		t.Fatalf("second prompt %q", got)
	}
	r.expect(b64("wrong password"), 535, "5.7.8")
	r.expect("AUTH LOGIN "+b64(alice), 334, "")
	r.expect(b64(alicePW), 235, "2.0.0")
	_, text := r.send(message(alice), bob)
	w.checkCertified(t, text, []byte(message(alice)), bob)
	if s := w.state(t); s.items != 2 {
		t.Errorf("%d items, want 2", s.items)
	}
}

// The standard library's client, as simple Go programs use it.
func TestSubmitNetSMTP(t *testing.T) {
	t.Parallel()
	w := newWorld(t, options{})
	nc, err := net.Dial("tcp", w.addr)
	if err != nil {
		t.Fatal(err)
	}
	c, err := netsmtp.NewClient(nc, "localhost")
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if err := c.StartTLS(&tls.Config{RootCAs: w.roots, ServerName: "localhost"}); err != nil {
		t.Fatal(err)
	}
	if err := c.Auth(netsmtp.PlainAuth("", alice, alicePW, "localhost")); err != nil {
		t.Fatal(err)
	}
	if err := c.Mail(alice); err != nil {
		t.Fatal(err)
	}
	if err := c.Rcpt(bob); err != nil {
		t.Fatal(err)
	}
	wc, err := c.Data()
	if err != nil {
		t.Fatal(err)
	}
	if _, err := wc.Write([]byte(message(alice, "Certmail-Mode: cem-nsr"))); err != nil {
		t.Fatal(err)
	}
	if err := wc.Close(); err != nil {
		t.Fatal(err)
	}
	if err := c.Quit(); err != nil {
		t.Fatal(err)
	}
	var its []string
	for _, it := range w.items(t) {
		its = append(its, fmt.Sprintf("%s %s %s", it.Recipient, it.Protocol, it.Content))
	}
	want := fmt.Sprintf("%s %s %s", bob, evidence.CEMNSR, evidence.Sum(crlfWithout(message(alice), "Certmail-Mode")))
	if len(its) != 1 || its[0] != want {
		t.Fatalf("items %q, want [%s]", its, want)
	}
}

// Before STARTTLS the server offers STARTTLS and no AUTH, and refuses AUTH with 538 5.7.11;
// after it, AUTH PLAIN and LOGIN and no second STARTTLS. The limits are advertised.
func TestEHLOAndAuthNeedTLS(t *testing.T) {
	t.Parallel()
	w := newWorld(t, options{limits: mailfmt.Limits{MaxBytes: 100000}, maxRecipients: 7})
	c := w.dial(t)
	if !strings.Contains(c.greet, "submit.certmail.test") {
		t.Errorf("greeting %q does not name the host", c.greet)
	}
	exts := c.ehlo()
	if !slices.Contains(exts, "STARTTLS") || slices.ContainsFunc(exts, func(e string) bool { return strings.HasPrefix(e, "AUTH") }) {
		t.Errorf("EHLO before TLS: %q; want STARTTLS and no AUTH", exts)
	}
	for _, mech := range []string{"PLAIN", "LOGIN"} {
		c.expect(plain(alice, alicePW), 538, "5.7.11")
		c.expect("AUTH "+mech, 538, "5.7.11")
	}
	c.expect("MAIL FROM:<"+alice+">", 530, "5.7.0")
	c.startTLS()
	exts = c.ehlo()
	for _, want := range []string{"AUTH PLAIN LOGIN", "SIZE 100001", "LIMITS RCPTMAX=7", "ENHANCEDSTATUSCODES"} {
		if !slices.Contains(exts, want) {
			t.Errorf("EHLO after TLS: %q; want %s", exts, want)
		}
	}
	if slices.Contains(exts, "STARTTLS") {
		t.Errorf("EHLO after TLS offers STARTTLS again: %q", exts)
	}
	c.expect("AUTH CRAM-MD5", 504, "5.5.4")
	c.expect(plain(alice, alicePW), 235, "2.0.0")
	c.expect(plain(alice, alicePW), 503, "5.5.1")
}

// Every refusal has its code, leaves nothing stored, and leaves the session usable where the
// protocol allows.
func TestRefusals(t *testing.T) {
	t.Parallel()
	w := newWorld(t, options{limits: mailfmt.Limits{MaxBytes: 64 << 10}, maxRecipients: 3,
		logins: account.Limits{PerAccount: 3, PerAddress: 1000, Window: time.Hour}})
	long := message(alice, "X-Filler: "+strings.Repeat("x", 900)) +
		strings.Repeat(strings.Repeat("y", 990)+"\r\n", 70)
	nacked := map[string]bool{}
	for _, n := range []string{"header From not the user", "oversized", "line too long for mail", "no empty line after the header", "malformed MIME", "invalid UTF-8", "unknown Certmail-Mode", "bad Certmail-Deadline", "deadline past the agent's"} {
		nacked[n] = true
	}
	for _, tc := range []struct {
		name string
		run  func(t *testing.T, c *client)
	}{
		{"open relay attempt without TLS", func(t *testing.T, c *client) {
			c.ehlo()
			c.expect("MAIL FROM:<"+alice+">", 530, "5.7.0")
			c.expect("MAIL FROM:<>", 530, "5.7.0")
			c.expect("RCPT TO:<"+bob+">", 502, "5.5.1")
			c.expect("DATA", 502, "5.5.1")
		}},
		{"open relay attempt over TLS without AUTH", func(t *testing.T, c *client) {
			c.ehlo()
			c.startTLS()
			c.ehlo()
			c.expect("MAIL FROM:<"+alice+">", 530, "5.7.0")
			c.expect("RCPT TO:<"+bob+">", 502, "5.5.1")
			c.expect("BDAT 10 LAST", 502, "5.5.1")
		}},
		{"AUTH before STARTTLS", func(t *testing.T, c *client) {
			c.ehlo()
			c.expect(plain(alice, alicePW), 538, "5.7.11")
			c.expect("MAIL FROM:<"+alice+">", 530, "5.7.0")
		}},
		{"wrong password, unknown user, other identity", func(t *testing.T, c *client) {
			c.ehlo()
			c.startTLS()
			c.ehlo()
			c.expect(plain(carol, "not carol's password"), 535, "5.7.8")
			c.expect(plain("nobody@a.example", alicePW), 535, "5.7.8")
			c.expect("AUTH PLAIN "+b64(carol+"\x00"+alice+"\x00"+alicePW), 535, "5.7.8")
			c.expect("MAIL FROM:<"+alice+">", 530, "5.7.0")
		}},
		{"malformed AUTH", func(t *testing.T, c *client) {
			c.ehlo()
			c.startTLS()
			c.ehlo()
			c.expect("AUTH PLAIN "+b64(alice+"\x00"+alicePW), 501, "5.5.2")
			c.expect("AUTH PLAIN", 334, "")
			c.expect("*", 501, "")
			c.expect(plain(alice, alicePW), 235, "2.0.0")
		}},
		{"MAIL FROM not the user", func(t *testing.T, c *client) {
			c.ehlo()
			c.startTLS()
			c.ehlo()
			c.expect(plain(carol, carolPW), 235, "2.0.0")
			c.expect("MAIL FROM:<"+alice+">", 553, "5.7.1")
			c.expect("MAIL FROM:<>", 553, "5.7.1")
			c.expect("MAIL FROM:<Carol@c.example>", 553, "5.7.1") // local parts are case-sensitive
			c.expect("MAIL FROM:<carol@C.Example>", 250, "2.0.0") // domains are not
			c.expect("MAIL FROM:<carol@c.example>", 503, "5.5.1")
			c.expect("RSET", 250, "2.0.0")
		}},
		{"header From not the user", func(t *testing.T, c *client) {
			c = c.w.login(t)
			code, msg := c.send(message(carol), bob)
			want(t, code, msg, 553, "5.7.1", carol)
			wantNAC(t, msg)
		}},
		{"oversized", func(t *testing.T, c *client) {
			c = c.w.login(t)
			code, msg := c.send(long, bob)
			want(t, code, msg, 552, "5.3.4", "65536 bytes")
			wantNAC(t, msg)
			c.expect("NOOP", 250, "2.0.0") // the rest of the data was read and dropped
			c.expect("MAIL FROM:<"+alice+"> SIZE=70000", 552, "5.3.4")
			c.expect("MAIL FROM:<"+alice+"> SIZE=65537", 552, "5.3.4")
			c.expect("MAIL FROM:<"+alice+"> SIZE=65536", 250, "2.0.0")
		}},
		{"line too long for mail", func(t *testing.T, c *client) {
			c = c.w.login(t)
			code, msg := c.send(message(alice)+strings.Repeat("w", 1500)+"\r\n", bob)
			want(t, code, msg, 554, "5.6.0", "1500 bytes")
			wantNAC(t, msg)
		}},
		{"no empty line after the header", func(t *testing.T, c *client) {
			c = c.w.login(t)
			code, msg := c.send(strings.Replace(message(alice), "\r\n\r\n", "\r\n", 1), bob)
			want(t, code, msg, 554, "5.6.0", "empty line missing")
			wantNAC(t, msg)
		}},
		{"malformed MIME", func(t *testing.T, c *client) {
			c = c.w.login(t)
			code, msg := c.send(message(alice, "MIME-Version: 1.0", "Content-Type: multipart/mixed"), bob)
			want(t, code, msg, 554, "5.6.0", "boundary")
			wantNAC(t, msg)
		}},
		{"invalid UTF-8", func(t *testing.T, c *client) {
			c = c.w.login(t)
			code, msg := c.send(strings.Replace(message(alice), "the lease", "the l\xe9ase", 1), bob)
			want(t, code, msg, 554, "5.6.0", "UTF-8")
			wantNAC(t, msg)
		}},
		{"unknown Certmail-Mode", func(t *testing.T, c *client) {
			c = c.w.login(t)
			code, msg := c.send(message(alice, "Certmail-Mode: aghp"), bob)
			want(t, code, msg, 554, "5.6.0", "Certmail-Mode")
			wantNAC(t, msg)
		}},
		{"bad Certmail-Deadline", func(t *testing.T, c *client) {
			c = c.w.login(t)
			code, msg := c.send(message(alice, "Certmail-Deadline: tomorrow"), bob)
			want(t, code, msg, 554, "5.6.0", "Certmail-Deadline")
			wantNAC(t, msg)
		}},
		{"deadline past the agent's", func(t *testing.T, c *client) {
			c = c.w.login(t)
			code, msg := c.send(message(alice, "Certmail-Deadline: 60d"), bob)
			want(t, code, msg, 550, "5.6.0", "deadline")
			wantNAC(t, msg)
		}},
		{"too many recipients", func(t *testing.T, c *client) {
			c = c.w.login(t)
			c.expect("MAIL FROM:<"+alice+">", 250, "2.0.0")
			for i := range 3 {
				c.expect(fmt.Sprintf("RCPT TO:<r%d@b.example>", i), 250, "2.0.0")
			}
			c.expect("RCPT TO:<r3@b.example>", 452, "4.5.3")
			c.expect("RSET", 250, "2.0.0")
		}},
		{"invalid recipients", func(t *testing.T, c *client) {
			c = c.w.login(t)
			c.expect("MAIL FROM:<"+alice+">", 250, "2.0.0")
			c.expect("RCPT TO:<bob@b_example>", 501, "5.1.3")
			c.expect("RCPT TO:<bob@b..example>", 501, "5.1.3")
			c.expect("RCPT TO:<b\xc3\xb6b@b.example>", 553, "5.6.7")
			c.expect("DATA", 502, "5.5.1")
		}},
		{"account disabled after AUTH", func(t *testing.T, c *client) {
			c = c.w.login(t)
			if err := c.w.acc.SetDisabled(context.Background(), alice, true); err != nil {
				t.Fatal(err)
			}
			defer c.w.acc.SetDisabled(context.Background(), alice, false)
			code, msg := c.send(message(alice), bob)
			want(t, code, msg, 550, "5.7.1", "disabled")
		}},
		{"account disabled", func(t *testing.T, c *client) {
			if err := c.w.acc.SetDisabled(context.Background(), carol, true); err != nil {
				t.Fatal(err)
			}
			defer c.w.acc.SetDisabled(context.Background(), carol, false)
			c.ehlo()
			c.startTLS()
			c.ehlo()
			msg := c.expect(plain(carol, carolPW), 535, "5.7.8")
			if !strings.Contains(msg, "disabled") {
				t.Errorf("reply %q does not say the account is disabled", msg)
			}
		}},
		{"store failure", func(t *testing.T, c *client) {
			c = c.w.login(t)
			c.w.st.fail.Store(true)
			defer c.w.st.fail.Store(false)
			code, msg := c.send(message(alice), bob)
			want(t, code, msg, 451, "4.3.0", "try again later")
			if strings.Contains(msg, "disk full") {
				t.Errorf("reply %q shows the internal cause", msg)
			}
			if !strings.Contains(c.w.logs.String(), "disk full") {
				t.Errorf("the log lacks the cause of the failure")
			}
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			before := w.state(t)
			tc.run(t, w.dial(t))
			// A whole message refused from the authenticated user leaves exactly one trace: its
			// NAC and the notice of non-acceptance queued for the user (want checks the reply
			// names it). Nothing else changes.
			if nacked[tc.name] {
				before.outbound++
			}
			if after := w.state(t); after != before {
				t.Errorf("state changed from %+v to %+v", before, after)
			}
		})
	}

	// The same server still certifies a good message.
	code, msg := w.login(t).send(message(alice), bob)
	want(t, code, msg, 250, "2.0.0", "certified")
	if s := w.state(t); s.items != 1 {
		t.Fatalf("%d items, want 1", s.items)
	}
}

// Past the failed-login limit, AUTH is refused with a temporary 454, even with the right
// password, until the window passes; nothing can be submitted meanwhile.
func TestRateLimited(t *testing.T) {
	t.Parallel()
	w := newWorld(t, options{logins: account.Limits{PerAccount: 3, PerAddress: 1000, Window: time.Hour}})
	c := w.dial(t)
	c.ehlo()
	c.startTLS()
	c.ehlo()
	for range 3 {
		c.expect(plain(alice, "guess 123456"), 535, "5.7.8")
	}
	msg := c.expect(plain(alice, "guess 123456"), 454, "4.7.0")
	if !strings.Contains(msg, "try again") {
		t.Errorf("rate-limit reply %q says nothing of what to do", msg)
	}
	c.expect(plain(alice, alicePW), 454, "4.7.0")
	c.expect("MAIL FROM:<"+alice+">", 530, "5.7.0")
	c.expect(plain(carol, carolPW), 235, "2.0.0") // another account from the same address
	if s := w.state(t); s != (state{}) {
		t.Errorf("state %+v, want none", s)
	}
}

func want(t *testing.T, code int, msg string, wantCode int, enhanced, says string) {
	t.Helper()
	if code != wantCode || !strings.HasPrefix(msg, enhanced+" ") || !strings.Contains(msg, says) {
		t.Fatalf("got %d %s\nwant %d %s …%s…", code, msg, wantCode, enhanced, says)
	}
}

// wantNAC checks that a refusal's reply names the NAC that records it.
func wantNAC(t *testing.T, msg string) {
	t.Helper()
	if !regexp.MustCompile(`notice of non-acceptance \(label [0-9A-Z]{26}\)`).MatchString(strings.ReplaceAll(msg, "\n", " ")) {
		t.Errorf("the reply names no NAC:\n%s", msg)
	}
}

// A message of exactly the size limit is accepted; one byte more is not.
func TestSizeLimitExact(t *testing.T) {
	t.Parallel()
	const limit = 4096
	w := newWorld(t, options{limits: mailfmt.Limits{MaxBytes: limit}})
	m := message(alice)
	for len(m) < limit {
		m += strings.Repeat("p", min(78, limit-len(m)-2)) + "\r\n"
	}
	if len(m) != limit {
		t.Fatalf("test message is %d bytes", len(m))
	}
	c := w.login(t)
	code, msg := c.send(m, bob)
	want(t, code, msg, 250, "2.0.0", "certified")
	code, msg = c.send(strings.Replace(m, "pp", "ppp", 1), bob)
	want(t, code, msg, 552, "5.3.4", "4096 bytes")
}

// Several recipients get one label each, on a multi-line reply with the enhanced code on every
// line (RFC 2034 §3); a recipient named twice in the envelope counts once.
func TestSeveralRecipients(t *testing.T) {
	t.Parallel()
	w := newWorld(t, options{})
	c := w.login(t)
	code, msg := c.send(message(alice), bob, dave, "Bob@B.EXAMPLE", "erin@e.example")
	if code != 250 {
		t.Fatalf("%d %s", code, msg)
	}
	lines := strings.Split(msg, "\n")
	if len(lines) != 3 {
		t.Fatalf("reply has %d lines, want 3:\n%s", len(lines), msg)
	}
	for _, l := range lines {
		if !strings.HasPrefix(l, "2.0.0 certified: label ") {
			t.Errorf("reply line %q", l)
		}
	}
	w.checkCertified(t, msg, []byte(message(alice)), bob, dave, "erin@e.example")
}

// Submitting through BDAT (CHUNKING, which go-smtp always offers) is certified the same way.
func TestBDAT(t *testing.T) {
	t.Parallel()
	w := newWorld(t, options{})
	c := w.login(t)
	m := message(alice)
	c.expect("MAIL FROM:<"+alice+">", 250, "2.0.0")
	c.expect("RCPT TO:<"+bob+">", 250, "2.0.0")
	half := len(m) / 2
	if _, err := fmt.Fprintf(c.nc, "BDAT %d\r\n%s", half, m[:half]); err != nil {
		t.Fatal(err)
	}
	if code, msg := c.read(); code != 250 {
		t.Fatalf("first chunk: %d %s", code, msg)
	}
	if _, err := fmt.Fprintf(c.nc, "BDAT %d LAST\r\n%s", len(m)-half, m[half:]); err != nil {
		t.Fatal(err)
	}
	code, msg := c.read()
	want(t, code, msg, 250, "2.0.0", "certified")
	w.checkCertified(t, msg, []byte(m), bob)
}

func TestServeAndClose(t *testing.T) {
	t.Parallel()
	w := newWorld(t, options{})
	if w.srv.Addr() == nil || w.srv.Addr().String() != w.addr {
		t.Errorf("Addr() = %v, want %s", w.srv.Addr(), w.addr)
	}
	c := w.login(t)
	if err := w.srv.Close(); err != nil {
		t.Fatal(err)
	}
	// The open session is cut off, with nothing acknowledged.
	if err := c.tp.PrintfLine("MAIL FROM:<%s>", alice); err == nil {
		if _, _, err := c.tp.ReadResponse(0); err == nil {
			t.Error("the session went on after Close")
		}
	}
	if _, err := net.DialTimeout("tcp", w.addr, time.Second); err == nil {
		t.Error("still listening after Close")
	}
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	if err := w.srv.Serve(l); !errors.Is(err, smtpd.ErrServerClosed) {
		t.Errorf("Serve after Close: %v", err)
	}

	noTLS := smtpd.New(smtpd.Config{Hostname: "localhost"}, nil, nil)
	if err := noTLS.Serve(l); err == nil || !strings.Contains(err.Error(), "TLS") {
		t.Errorf("Serve without TLS: %v", err)
	}
}

// A client from a trusted network submits without STARTTLS and AUTH, as the trusted user and
// only in that user's name; a client from elsewhere must still authenticate.
func TestTrustedNetworks(t *testing.T) {
	t.Parallel()
	w := newWorld(t, options{trusted: []netip.Prefix{netip.MustParsePrefix("127.0.0.0/8")}})
	c := w.dial(t)
	c.ehlo()
	c.expect("MAIL FROM:<"+carol+">", 553, "5.7.1")
	code, msg := c.send(message(alice), bob)
	if code != 250 {
		t.Fatalf("trusted submission: %d %s", code, msg)
	}
	w.checkCertified(t, msg, []byte(message(alice)), bob)

	// The option trusts networks, not everyone: ::1 alone does not cover 127.0.0.1.
	other := newWorld(t, options{trusted: []netip.Prefix{netip.MustParsePrefix("::1/128")}})
	c = other.dial(t)
	c.ehlo()
	c.expect("MAIL FROM:<"+alice+">", 530, "5.7.0")
}
