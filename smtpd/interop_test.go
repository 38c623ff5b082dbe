package smtpd_test

import (
	"context"
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"certmail/internal/swakstest"
)

// need returns the path of an external program, or skips the test without it, unless
// CERTMAIL_TEST_REQUIRE_ALL=1 (as in CI), where a missing program is a failure.
func need(t *testing.T, program string) string {
	t.Helper()
	path, err := exec.LookPath(program)
	if err != nil {
		if os.Getenv("CERTMAIL_TEST_REQUIRE_ALL") == "1" {
			t.Fatalf("%s is required (CERTMAIL_TEST_REQUIRE_ALL=1): %v", program, err)
		}
		t.Skipf("%s not installed: %v (set CERTMAIL_TEST_REQUIRE_ALL=1 to make this a failure)", program, err)
	}
	return path
}

func writeFile(t *testing.T, name, content string) string {
	t.Helper()
	path := filepath.Join(t.TempDir(), name)
	if err := os.WriteFile(path, []byte(content), 0o600); err != nil {
		t.Fatal(err)
	}
	return path
}

// smtplibScript submits with Python's smtplib: STARTTLS verified against the test CA, then
// AUTH with the mechanism named, then one message; it prints each reply to DATA as JSON.
const smtplibScript = `
import json, smtplib, ssl, sys
host, port, cafile, user, pw, rcpt, msgfile = sys.argv[1:]
with open(msgfile, "rb") as f:
    msg = f.read()
ctx = ssl.create_default_context(cafile=cafile)
for mech in ("PLAIN", "LOGIN"):
    with smtplib.SMTP(host, int(port), local_hostname="client.test", timeout=20) as s:
        s.ehlo()
        s.starttls(context=ctx)
        s.ehlo()
        if mech == "PLAIN":
            s.login(user, pw)  # picks PLAIN from what the server offers
        else:
            s.user, s.password = user, pw
            s.auth("LOGIN", s.auth_login)
        s.mail(user)
        s.rcpt(rcpt)
        code, text = s.data(msg)
        print(json.dumps({"mech": mech, "code": code, "text": text.decode()}))
`

func TestPythonSmtplib(t *testing.T) {
	t.Parallel()
	python := need(t, "python3")
	w := newWorld(t, options{})
	m := message(alice)
	host, port, _ := strings.Cut(w.addr, ":")
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	out, err := exec.CommandContext(ctx, python, writeFile(t, "submit.py", smtplibScript),
		host, port, w.caFile, alice, alicePW, bob, writeFile(t, "message.eml", m)).CombinedOutput()
	if err != nil {
		t.Fatalf("python3: %v\n%s", err, out)
	}
	var n int
	for _, line := range strings.Split(strings.TrimSpace(string(out)), "\n") {
		var r struct {
			Mech, Text string
			Code       int
		}
		if err := json.Unmarshal([]byte(line), &r); err != nil {
			t.Fatalf("python3 printed %q: %v", line, err)
		}
		if r.Code != 250 {
			t.Fatalf("%s: %d %s", r.Mech, r.Code, r.Text)
		}
		w.checkCertified(t, r.Text, []byte(m), bob)
		n++
	}
	if n != 2 {
		t.Fatalf("python3 printed %d replies, want 2:\n%s", n, out)
	}
}

func TestSwaks(t *testing.T) {
	t.Parallel()
	swaks := swakstest.Path(t)
	w := newWorld(t, options{})
	m := message(alice)
	// swaks ends the data with CRLF . CRLF after the file, so the file's last line has no CRLF.
	file := writeFile(t, "message.eml", strings.TrimSuffix(m, "\r\n"))
	for _, mech := range []string{"PLAIN", "LOGIN"} {
		ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
		out, err := exec.CommandContext(ctx, swaks, "--server", w.addr, "--tls", "--tls-verify", "--tls-ca-path", w.caFile,
			"--helo", "client.test", "--auth", mech, "--auth-user", alice, "--auth-password", alicePW,
			"--from", alice, "--to", bob, "--data", "@"+file).CombinedOutput()
		cancel()
		if err != nil {
			t.Fatalf("swaks --auth %s: %v\n%s", mech, err, out)
		}
		var reply string
		for _, line := range strings.Split(string(out), "\n") {
			if s, ok := strings.CutPrefix(line, "<~  250 "); ok && strings.Contains(s, "certified") {
				reply = s
			}
		}
		if reply == "" {
			t.Fatalf("swaks --auth %s: no 250 to DATA:\n%s", mech, out)
		}
		w.checkCertified(t, reply, []byte(m), bob)
	}
}
