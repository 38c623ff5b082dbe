package main

import (
	"bytes"
	"net/url"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
)

// sender runs the sender's commands (send, status) in-process against agent p as alice.
type sender struct {
	p    *agentProc
	args []string
}

func newSender(t *testing.T, p *agentProc, user, password string) *sender {
	t.Helper()
	pw := filepath.Join(t.TempDir(), "password")
	if err := os.WriteFile(pw, []byte(password+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	_, port, _ := strings.Cut(p.https, ":")
	return &sender{p: p, args: []string{"--server", "https://localhost:" + port, "--user", user,
		"--password-file", pw, "--ca", filepath.Join(p.dir, "data", "ca.crt")}}
}

func (s *sender) run(t *testing.T, cmd string, args ...string) (int, string, string) {
	t.Helper()
	var out, errb bytes.Buffer
	code := run(append(append([]string{cmd}, args...), s.args...), strings.NewReader(""), &out, &errb)
	return code, out.String(), errb.String()
}

var certifiedRE = regexp.MustCompile(`certified: label ([0-9A-Z]{26}) for (\S+)`)

// send sends a message with certmail send and returns its label.
func (s *sender) send(t *testing.T, args ...string) string {
	t.Helper()
	code, out, errs := s.run(t, "send", args...)
	m := certifiedRE.FindStringSubmatch(out)
	if code != exitOK || m == nil {
		t.Fatalf("send: exit %d\n%s%s\nagent log:\n%s", code, out, errs, s.p.out)
	}
	return m[1]
}

// verdict fetches a label's bundle with certmail status --bundle and verifies it, pinned to the
// agent's key.
func (s *sender) verdict(t *testing.T, label string) string {
	t.Helper()
	bf := filepath.Join(t.TempDir(), label+".bundle")
	if code, out, errs := s.run(t, "status", label, "--bundle", bf); code != exitOK {
		t.Fatalf("status --bundle: exit %d\n%s%s", code, out, errs)
	}
	vkey, _ := os.ReadFile(filepath.Join(s.p.dir, "data", "agent.pub"))
	code, verdict, _ := verify(t, bf, "--key", strings.TrimSpace(string(vkey)))
	if code != exitOK {
		t.Fatalf("verify %s: exit %d\n%s", label, code, verdict)
	}
	return verdict
}

// TestLifecycleThroughTheBinary follows certified messages through the real binary from the
// sender's command line to each end other than delivery — the deadline passing (NDN), the
// recipient refusing (REJ), the sender retracting (RTR) and the agent refusing the submission
// (NAC) — and checks that the sender is told by mail and that each bundle verifies with the
// outcome it should.
func TestLifecycleThroughTheBinary(t *testing.T) {
	mx := newSink(t)
	p := startAgent(t, mx.addr, "[deadlines]\nmin = \"1s\"\n")
	if code, out, errs := p.certmail(t, "correct horse battery\n", "user", "add", "alice@localhost", "--password-stdin"); code != 0 {
		t.Fatalf("user add: %d %s %s", code, out, errs)
	}
	alice := newSender(t, p, "alice@localhost", "correct horse battery")
	attachment := filepath.Join(t.TempDir(), "lease.pdf")
	os.WriteFile(attachment, []byte("%PDF-1.4 the lease\n"), 0o600)

	// The deadline passes: a warning, then the notice of non-delivery.
	expiring := alice.send(t, "--to", "carol@example.org", "--subject", "the deadline", "--text", "Please sign.",
		"--attach", attachment, "--deadline", "6s")
	mx.wait(t, "carol@example.org", "pickup")
	// The posting receipt (full form, the default) lists the attachment but carries no copy of M.
	receipt := mx.wait(t, "alice@localhost", "X-Certmail-Kind: posting-receipt\r\nX-Certmail-Label: "+expiring)
	if !strings.Contains(string(receipt), "lease.pdf:") || strings.Contains(string(receipt), "message/rfc822") {
		t.Fatalf("the posting receipt:\n%s", receipt)
	}
	mx.wait(t, "alice@localhost", "(?i)not delivered")
	if v := alice.verdict(t, expiring); !strings.Contains(v, "outcome not-delivered") {
		t.Fatalf("deadline verdict:\n%s", v)
	}
	code, out, _ := alice.run(t, "status", expiring)
	if code != exitOK || !strings.Contains(out, "NDN") || !strings.Contains(out, "WRN") || !strings.Contains(out, "subject    the deadline") {
		t.Fatalf("status after the deadline: exit %d\n%s", code, out)
	}

	// The recipient refuses on the pickup page, with the message password.
	pwFile := filepath.Join(t.TempDir(), "message-password")
	os.WriteFile(pwFile, []byte("open sesame 42\n"), 0o600)
	refused := alice.send(t, "--to", "dave@example.org", "--subject", "the refusal", "--text", "Please sign.",
		"--message-password-file", pwFile, "--hint", "the usual")
	link := linkRE.Find(mx.wait(t, "dave@example.org", "pickup"))
	_, page := get(t, p.client, string(link))
	action, fields := form(t, page, "/refuse")
	fields.Set("password", "open sesame 42")
	u, _ := url.Parse(string(link))
	target, _ := u.Parse(action)
	resp, err := p.client.PostForm(target.String(), fields)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	mx.wait(t, "alice@localhost", "(?i)refused")
	if v := alice.verdict(t, refused); !strings.Contains(v, "outcome refused") {
		t.Fatalf("refusal verdict:\n%s", v)
	}

	// The sender retracts before pickup; the pickup page then says so.
	retracted := alice.send(t, "--to", "erin@example.org", "--subject", "the retraction", "--text", "Never mind.")
	link = linkRE.Find(mx.wait(t, "erin@example.org", "pickup"))
	if code, out, errs := alice.run(t, "status", retracted, "--retract"); code != exitOK || !strings.Contains(out, "retracted") {
		t.Fatalf("retract: exit %d\n%s%s", code, out, errs)
	}
	mx.wait(t, "alice@localhost", "(?i)retracted")
	if v := alice.verdict(t, retracted); !strings.Contains(v, "outcome retracted") {
		t.Fatalf("retraction verdict:\n%s", v)
	}
	if _, page := get(t, p.client, string(link)); !strings.Contains(page, "retracted") || strings.Contains(page, "Never mind") {
		t.Fatalf("pickup page after retraction:\n%s", page)
	}
	if code, _, errs := alice.run(t, "status", retracted, "--retract"); code != exitFail || !strings.Contains(errs, "not retracted") {
		t.Fatalf("second retraction: exit %d %s", code, errs)
	}

	// The agent refuses the submission: exit 1, and the NAC's bundle verifies as not accepted.
	code, out, errs := alice.run(t, "send", "--to", "frank@example.org", "--text", "hi", "--deadline", "400d")
	nac := regexp.MustCompile(`certmail status ([0-9A-Z]{26}) --bundle`).FindStringSubmatch(errs)
	if code != exitFail || nac == nil || !strings.Contains(errs, "deadline") {
		t.Fatalf("refused send: exit %d\n%s%s", code, out, errs)
	}
	mx.wait(t, "alice@localhost", "(?i)not accepted")
	if v := alice.verdict(t, nac[1]); !strings.Contains(v, "outcome not-accepted") {
		t.Fatalf("NAC verdict:\n%s", v)
	}

	// Bad input to the commands: a clear message and a non-zero exit.
	for _, c := range []struct {
		args []string
		code int
		says string
	}{
		{[]string{"send", "--text", "no recipient"}, exitUsage, "--to"},
		{[]string{"send", "--to", "bob@example.org", "--eml", "x.eml", "--subject", "s"}, exitUsage, "--eml"},
		{[]string{"status"}, exitUsage, "LABEL"},
		{[]string{"status", "00000000000000000000000000"}, exitFail, "not found"},
	} {
		code, _, errs := alice.run(t, c.args[0], c.args[1:]...)
		if code != c.code || !strings.Contains(strings.ToLower(errs), strings.ToLower(c.says)) {
			t.Errorf("%v: exit %d, want %d saying %q:\n%s", c.args, code, c.code, c.says, errs)
		}
	}
	wrong := newSender(t, p, "alice@localhost", "wrong password")
	if code, _, errs := wrong.run(t, "send", "--to", "bob@example.org", "--text", "hi"); code != exitFail || !strings.Contains(errs, "password is wrong") {
		t.Errorf("wrong password: exit %d\n%s", code, errs)
	}

	// The agent's log holds no secret it was given or made: account and message passwords,
	// pickup tokens, the private keys and the form secret.
	secrets := map[string]string{"account password": "correct horse battery", "wrong password": "wrong password",
		"message password": "open sesame 42"}
	for _, m := range mx.all() {
		for _, l := range linkRE.FindAll(m, -1) {
			secrets["pickup token"] = string(l[strings.LastIndex(string(l), "/")+1:])
		}
	}
	for _, f := range []string{"agent.key", "ca.key", "tls.key", "web.key"} {
		b, err := os.ReadFile(filepath.Join(p.dir, "data", f))
		if err != nil {
			t.Fatalf("%s: %v", f, err)
		}
		secrets[f] = string(b)
	}
	// Stop the agent first: its log is whole, and no longer being written, once it has exited.
	p.cmd.Process.Signal(os.Interrupt)
	p.cmd.Wait()
	log := p.out.String()
	if !strings.Contains(log, "smtp") && !strings.Contains(log, "web") {
		t.Fatalf("the agent logged nothing to check:\n%s", log)
	}
	for what, secret := range secrets {
		for _, part := range secretParts(secret) {
			if strings.Contains(log, part) {
				t.Errorf("the agent's log shows the %s", what)
			}
		}
	}
}

// secretParts is what of a secret must not appear: the whole, and for a PEM or key file each
// long line of it.
func secretParts(secret string) []string {
	parts := []string{secret}
	for _, line := range strings.Split(secret, "\n") {
		if line = strings.TrimSpace(line); len(line) >= 16 && !strings.HasPrefix(line, "-----") {
			parts = append(parts, line)
		}
	}
	return parts
}

// all returns every message the sink took.
func (s *sink) all() [][]byte {
	s.mu.Lock()
	defer s.mu.Unlock()
	var out [][]byte
	for _, m := range s.got {
		out = append(out, m.data)
	}
	return out
}
