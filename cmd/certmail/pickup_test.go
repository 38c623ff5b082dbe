package main

import (
	"bytes"
	"encoding/json"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"certmail/api"
)

// submitAPI has alice submit a message to `to` through the JSON API and returns its label and
// the pickup link the recipient's mail server got.
func submitAPI(t *testing.T, p *agentProc, mx *sink, to, text, password string) (label, link string) {
	t.Helper()
	body, _ := json.Marshal(map[string]any{"to": []string{to}, "subject": "certified", "text": text, "password": password})
	req, _ := http.NewRequest("POST", "https://localhost/api/v1/messages", bytes.NewReader(body))
	req.Header.Set("Content-Type", "application/json")
	req.SetBasicAuth("alice@localhost", "correct horse battery")
	resp, err := p.client.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var s api.Submitted
	b, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != http.StatusCreated || json.Unmarshal(b, &s) != nil || len(s.Messages) != 1 {
		t.Fatalf("submit: %d %s", resp.StatusCode, b)
	}
	label = s.Messages[0].Label
	l := linkRE.Find(mx.wait(t, to, label))
	if l == nil {
		t.Fatalf("no pickup link for %s", label)
	}
	return label, string(l)
}

// senderVerdict downloads the sender's bundle of label and runs `certmail verify` on it with
// the agent's key pinned, and any more arguments.
func senderVerdict(t *testing.T, p *agentProc, label string, args ...string) (int, string) {
	t.Helper()
	req, _ := http.NewRequest("GET", "https://localhost/api/v1/messages/"+label+"/bundle", nil)
	req.SetBasicAuth("alice@localhost", "correct horse battery")
	resp, err := p.client.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	bundle, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != 200 {
		t.Fatalf("bundle: %d %s", resp.StatusCode, bundle)
	}
	bf := filepath.Join(t.TempDir(), label+".bundle")
	os.WriteFile(bf, bundle, 0o600)
	vkey, _ := os.ReadFile(filepath.Join(p.dir, "data", "agent.pub"))
	code, verdict, _ := verify(t, append([]string{bf, "--key", strings.TrimSpace(string(vkey))}, args...)...)
	return code, verdict
}

func pickupCmd(t *testing.T, stdin string, args ...string) (int, string, string) {
	t.Helper()
	var out, errb bytes.Buffer
	code := run(append([]string{"pickup"}, args...), strings.NewReader(stdin), &out, &errb)
	return code, out.String(), errb.String()
}

// TestPickupCommand is a recipient with `certmail pickup`: a wrong password is refused and
// changes nothing; with a key from `certmail keygen` the sender's evidence is recipient-signed,
// without one agent-attested; a refusal releases nothing.
func TestPickupCommand(t *testing.T) {
	mx := newSink(t)
	p := startAgent(t, mx.addr, "")
	if code, out, errs := p.certmail(t, "correct horse battery\n", "user", "add", "alice@localhost", "--password-stdin"); code != 0 {
		t.Fatalf("user add: %d %s %s", code, out, errs)
	}
	dir := t.TempDir()
	ca := filepath.Join(p.dir, "data", "ca.crt")
	pwFile := filepath.Join(dir, "password")
	os.WriteFile(pwFile, []byte("open sesame 42\n"), 0o600)
	wrongFile := filepath.Join(dir, "wrong")
	os.WriteFile(wrongFile, []byte("open sesame 43\n"), 0o600)
	if code, _, errs := pickupCmd(t, "", "help"); code != exitUsage || !strings.Contains(errs, "not an https:// link") {
		t.Fatalf("a word for a link: %d %s", code, errs)
	}
	if code, _, errs := run2(t, "keygen", "-user", "bob@example.org", "-out", filepath.Join(dir, "bob")); code != 0 {
		t.Fatalf("keygen: %s", errs)
	}
	if code, _, errs := run2(t, "keygen", "-user", "carol@example.org", "-out", filepath.Join(dir, "carol")); code != 0 {
		t.Fatalf("keygen: %s", errs)
	}
	bobKey := filepath.Join(dir, "bob.key")

	// 1. Signed with bob's key, after a wrong and a missing password.
	label, link := submitAPI(t, p, mx, "bob@example.org", "Signed copy attached.", "open sesame 42")
	out1 := filepath.Join(dir, "one.eml")
	code, stdout, stderr := pickupCmd(t, "", link, "--ca", ca, "--password-file", wrongFile, "--key", bobKey, "--out", out1)
	if code != exitFail || !strings.Contains(stderr, "wrong message password") || !strings.Contains(stdout, label) {
		t.Fatalf("wrong password: exit %d\n%s\n%s", code, stdout, stderr)
	}
	if code, _, stderr := pickupCmd(t, "", link, "--ca", ca, "--out", out1); code != exitUsage || !strings.Contains(stderr, "--password-file") {
		t.Fatalf("no password: exit %d %s", code, stderr)
	}
	if code, _, stderr := pickupCmd(t, "", link, "--ca", ca, "--password-file", pwFile, "--key", filepath.Join(dir, "carol.key"), "--out", out1); code != exitFail || !strings.Contains(stderr, "for bob@example.org") {
		t.Fatalf("carol's key for bob's message: exit %d %s", code, stderr)
	}
	if _, err := os.Stat(out1); err == nil {
		t.Fatal("a refused pickup saved a message")
	}
	if code, verdict := senderVerdict(t, p, label); code != exitOK || !strings.Contains(verdict, "outcome posted") {
		t.Fatalf("refused attempts changed the outcome: %s", verdict)
	}
	code, stdout, stderr = pickupCmd(t, "open sesame 42\n", link, "--ca", ca, "--password-file", "-", "--key", bobKey, "--out", out1)
	if code != exitOK || !strings.Contains(stdout, "key: enrolled bob@example.org+") || !strings.Contains(stdout, "signed: COD-IP") ||
		!strings.Contains(stdout, "recorded COD-IP, DLV, ROD") || !strings.Contains(stdout, "recipient-signed") || !strings.Contains(stdout, "matches the commitment") {
		t.Fatalf("signed pickup: exit %d\n%s\n%s", code, stdout, stderr)
	}
	saved, err := os.ReadFile(out1)
	if err != nil || !bytes.Contains(saved, []byte("Signed copy attached.")) {
		t.Fatalf("saved message: %q %v", saved, err)
	}
	if info, _ := os.Stat(out1); info.Mode().Perm() != 0o600 {
		t.Fatalf("saved message mode %04o", info.Mode().Perm())
	}
	mx.wait(t, "alice@localhost", "(?s)delivered.*"+label+"|"+label+".*delivered")
	if code, verdict := senderVerdict(t, p, label); code != exitOK || !strings.Contains(verdict, "outcome delivered (recipient-signed)") {
		t.Fatalf("verify: exit %d\n%s", code, verdict)
	}
	// Once accepted, the link fetches again but never overwrites a file, and decides nothing.
	if code, _, stderr := pickupCmd(t, "", link, "--ca", ca, "--out", out1); code != exitUsage || !strings.Contains(stderr, "already exists") {
		t.Fatalf("--out onto an existing file: exit %d %s", code, stderr)
	}
	if code, stdout, _ := pickupCmd(t, "", link, "--ca", ca, "--out", filepath.Join(dir, "again.eml")); code != exitOK || !strings.Contains(stdout, "already accepted") {
		t.Fatalf("fetch again: exit %d %s", code, stdout)
	}
	if code, _, stderr := pickupCmd(t, "", link, "--ca", ca, "--refuse"); code != exitFail || !strings.Contains(stderr, "accepted") {
		t.Fatalf("refuse after acceptance: exit %d %s", code, stderr)
	}

	// 2. Without a key: the agent attests. bob's key stays registered, but unused.
	label2, link2 := submitAPI(t, p, mx, "bob@example.org", "second", "")
	code, stdout, stderr = pickupCmd(t, "", link2, "--ca", ca, "--out", filepath.Join(dir, "two.eml"))
	if code != exitOK || !strings.Contains(stdout, "recorded DLV, ROD") || !strings.Contains(stdout, "agent-attested") {
		t.Fatalf("pickup without a key: exit %d\n%s\n%s", code, stdout, stderr)
	}
	if code, verdict := senderVerdict(t, p, label2); code != exitOK || !strings.Contains(verdict, "outcome delivered (agent-attested)") {
		t.Fatalf("verify: exit %d\n%s", code, verdict)
	}

	// 3. Refused: nothing saved, the sender's evidence says refused.
	label3, link3 := submitAPI(t, p, mx, "bob@example.org", "an offer you can refuse", "")
	code, stdout, stderr = pickupCmd(t, "", link3, "--ca", ca, "--refuse")
	if code != exitOK || !strings.Contains(stdout, "refused") || strings.Contains(stdout, "an offer") {
		t.Fatalf("refuse: exit %d\n%s\n%s", code, stdout, stderr)
	}
	if code, verdict := senderVerdict(t, p, label3); code != exitOK || !strings.Contains(verdict, "outcome refused") {
		t.Fatalf("verify: exit %d\n%s", code, verdict)
	}
}

func run2(t *testing.T, args ...string) (int, string, string) {
	t.Helper()
	var out, errb bytes.Buffer
	code := run(args, strings.NewReader(""), &out, &errb)
	return code, out.String(), errb.String()
}

// Bad invocations are usage errors that touch no agent.
func TestPickupUsage(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	open := filepath.Join(dir, "open.key")
	os.WriteFile(open, []byte("PRIVATE+KEY+bob@example.org+00000000+AQ==\n"), 0o644)
	garbage := filepath.Join(dir, "garbage.key")
	os.WriteFile(garbage, []byte("not a key\n"), 0o600)
	empty := filepath.Join(dir, "empty")
	os.WriteFile(empty, []byte("\n"), 0o600)
	link := "https://localhost:1/pickup/" + strings.Repeat("A", 43)
	for _, tc := range []struct {
		args []string
		want string
	}{
		{nil, "exactly one pickup link"},
		{[]string{link, link}, "exactly one pickup link"},
		{[]string{"http://localhost/pickup/" + strings.Repeat("A", 43)}, "not an https:// link"},
		{[]string{"https://localhost/pickup/short"}, "not a pickup link"},
		{[]string{"https://localhost/api/v1/messages"}, "not a pickup link"},
		{[]string{link, "--key", open}, "readable by others"},
		{[]string{link, "--key", garbage}, "not a private key"},
		{[]string{link, "--key", filepath.Join(dir, "missing.key")}, "no such file"},
		{[]string{link, "--password-file", empty}, "first line is empty"},
		{[]string{link, "--refuse", "--out", filepath.Join(dir, "m.eml")}, "--refuse takes no"},
		{[]string{link, "--ca", garbage}, "no PEM certificate"},
	} {
		code, stdout, stderr := pickupCmd(t, "", tc.args...)
		if code != exitUsage || !strings.Contains(stderr, tc.want) || stdout != "" {
			t.Errorf("pickup %q: exit %d, stderr %q, want 2 and %q", tc.args, code, stderr, tc.want)
		}
	}
	// An agent that does not answer is a failure, not a usage error.
	if code, _, stderr := pickupCmd(t, "", link); code != exitFail || !strings.Contains(stderr, "cannot reach the agent") {
		t.Errorf("no agent: exit %d %s", code, stderr)
	}
}
