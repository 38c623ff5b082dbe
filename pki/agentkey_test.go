package pki_test

import (
	"bytes"
	"crypto/rand"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"golang.org/x/mod/sumdb/note"

	"certmail/pki"
)

func mode(t *testing.T, path string) os.FileMode {
	t.Helper()
	fi, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	return fi.Mode().Perm()
}

func TestAgentKeyCreateThenLoad(t *testing.T) {
	t.Parallel()
	dir := filepath.Join(t.TempDir(), "data")
	id, created, err := pki.LoadOrCreateAgentKey(dir, "mail.a.example", rand.Reader)
	if err != nil || !created {
		t.Fatalf("first start: created=%v err=%v", created, err)
	}
	if id.Name != "mail.a.example" || id.Signer.Name() != "mail.a.example" {
		t.Fatalf("names %q %q", id.Name, id.Signer.Name())
	}
	if m := mode(t, dir); m != 0o700 {
		t.Errorf("data directory mode %04o, want 0700", m)
	}
	if m := mode(t, filepath.Join(dir, pki.AgentKeyFile)); m != 0o600 {
		t.Errorf("agent.key mode %04o, want 0600", m)
	}
	if m := mode(t, filepath.Join(dir, pki.AgentPubFile)); m != 0o644 {
		t.Errorf("agent.pub mode %04o, want 0644", m)
	}
	pub, _ := os.ReadFile(filepath.Join(dir, pki.AgentPubFile))
	if string(pub) != id.Verifier+"\n" {
		t.Errorf("agent.pub = %q, want %q", pub, id.Verifier+"\n")
	}

	// A note signed with the key verifies with agent.pub alone.
	msg, err := note.Sign(&note.Note{Text: "hello\n"}, id.Signer)
	if err != nil {
		t.Fatal(err)
	}
	v, err := note.NewVerifier(strings.TrimSpace(string(pub)))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := note.Open(msg, note.VerifierList(v)); err != nil {
		t.Fatalf("signed note does not verify with agent.pub: %v", err)
	}

	again, created, err := pki.LoadOrCreateAgentKey(dir, "mail.a.example", rand.Reader)
	if err != nil || created {
		t.Fatalf("second start: created=%v err=%v", created, err)
	}
	if again.Verifier != id.Verifier {
		t.Fatalf("second start loaded another key")
	}
	msg2, _ := note.Sign(&note.Note{Text: "hello\n"}, again.Signer)
	if !bytes.Equal(msg, msg2) {
		t.Fatalf("reloaded key signs differently")
	}
}

func TestAgentKeyRewritesMissingPub(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	id, _, err := pki.LoadOrCreateAgentKey(dir, "localhost", rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	os.Remove(filepath.Join(dir, pki.AgentPubFile))
	if _, _, err := pki.LoadOrCreateAgentKey(dir, "localhost", rand.Reader); err != nil {
		t.Fatal(err)
	}
	pub, err := os.ReadFile(filepath.Join(dir, pki.AgentPubFile))
	if err != nil || string(pub) != id.Verifier+"\n" {
		t.Fatalf("agent.pub not rewritten: %q %v", pub, err)
	}
}

func TestAgentKeyRefusals(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name   string
		host   string
		damage func(t *testing.T, dir string)
		want   []string // all in the error message
	}{
		{
			name:   "group and other readable",
			damage: func(t *testing.T, dir string) { chmod(t, filepath.Join(dir, pki.AgentKeyFile), 0o644) },
			want:   []string{"agent.key", "0644", "chmod 600 "},
		},
		{
			name:   "group readable",
			damage: func(t *testing.T, dir string) { chmod(t, filepath.Join(dir, pki.AgentKeyFile), 0o640) },
			want:   []string{"chmod 600 "},
		},
		{
			name: "renamed host",
			host: "mail.b.example",
			want: []string{`for host "localhost"`, `hostname is "mail.b.example"`, `set hostname = "localhost"`},
		},
		{
			name:   "truncated",
			damage: func(t *testing.T, dir string) { edit(t, dir, func(s string) string { return s[:len(s)-10] + "\n" }) },
			want:   []string{"malformed", "backup"},
		},
		{
			name:   "empty",
			damage: func(t *testing.T, dir string) { edit(t, dir, func(string) string { return "" }) },
			want:   []string{"malformed"},
		},
		{
			name: "one key byte changed",
			damage: func(t *testing.T, dir string) {
				edit(t, dir, func(s string) string {
					i := len(s) - 6
					c := byte('A')
					if s[i] == 'A' {
						c = 'B'
					}
					return s[:i] + string(c) + s[i+1:]
				})
			},
			want: []string{"malformed"},
		},
		{
			name:   "upper-case hash",
			damage: upperHash,
			want:   []string{"malformed", "canonical"},
		},
		{
			name:   "second line",
			damage: func(t *testing.T, dir string) { edit(t, dir, func(s string) string { return s + "x\n" }) },
			want:   []string{"malformed"},
		},
		{
			name: "agent.pub from another key",
			damage: func(t *testing.T, dir string) {
				_, vkey, _ := note.GenerateKey(rand.Reader, "localhost")
				os.WriteFile(filepath.Join(dir, pki.AgentPubFile), []byte(vkey+"\n"), 0o644)
			},
			want: []string{"agent.pub does not hold the verifier key", "delete"},
		},
		{
			name:   "key lost, agent.pub left",
			damage: func(t *testing.T, dir string) { os.Remove(filepath.Join(dir, pki.AgentKeyFile)) },
			want:   []string{"lost", "restore"},
		},
		{
			name:   "data directory writable by others",
			damage: func(t *testing.T, dir string) { chmod(t, dir, 0o777) },
			want:   []string{"chmod go-w "},
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			dir := t.TempDir()
			if _, _, err := pki.LoadOrCreateAgentKey(dir, "localhost", rand.Reader); err != nil {
				t.Fatal(err)
			}
			if tc.damage != nil {
				tc.damage(t, dir)
			}
			damaged := snapshot(t, dir)
			host := tc.host
			if host == "" {
				host = "localhost"
			}
			id, _, err := pki.LoadOrCreateAgentKey(dir, host, rand.Reader)
			if err == nil {
				t.Fatalf("loaded %s; want a refusal", id.Verifier)
			}
			for _, w := range tc.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error %q does not say %q", err, w)
				}
			}
			if after := snapshot(t, dir); after != damaged {
				t.Errorf("a refusal changed the files:\n%s\nbecame\n%s", damaged, after)
			}
		})
	}
}

func TestAgentKeyPermissionErrorType(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	if _, _, err := pki.LoadOrCreateAgentKey(dir, "localhost", rand.Reader); err != nil {
		t.Fatal(err)
	}
	chmod(t, filepath.Join(dir, pki.AgentKeyFile), 0o604)
	_, _, err := pki.LoadOrCreateAgentKey(dir, "localhost", rand.Reader)
	var perr *pki.PermissionError
	if !errors.As(err, &perr) || perr.Path != filepath.Join(dir, pki.AgentKeyFile) {
		t.Fatalf("err = %v, want a *pki.PermissionError for agent.key", err)
	}
}

func TestAgentKeyBadHost(t *testing.T) {
	t.Parallel()
	for _, host := range []string{"", "Mail.A.Example", "mail_a.example", "-a.example", "a..example"} {
		dir := t.TempDir()
		if _, _, err := pki.LoadOrCreateAgentKey(dir, host, rand.Reader); err == nil {
			t.Errorf("host %q accepted", host)
		}
		if _, err := os.Stat(filepath.Join(dir, pki.AgentKeyFile)); err == nil {
			t.Errorf("host %q: key written", host)
		}
	}
}

func TestAgentKeyShortRandomness(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	if _, _, err := pki.LoadOrCreateAgentKey(dir, "localhost", bytes.NewReader(make([]byte, 5))); err == nil {
		t.Fatal("key created from 5 bytes of randomness")
	}
	if _, err := os.Stat(filepath.Join(dir, pki.AgentKeyFile)); err == nil {
		t.Fatal("key file left behind")
	}
}

func chmod(t *testing.T, path string, m os.FileMode) {
	t.Helper()
	if err := os.Chmod(path, m); err != nil {
		t.Fatal(err)
	}
}

func edit(t *testing.T, dir string, f func(string) string) {
	t.Helper()
	p := filepath.Join(dir, pki.AgentKeyFile)
	b, err := os.ReadFile(p)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(p, []byte(f(string(b))), 0o600); err != nil {
		t.Fatal(err)
	}
}

// upperHash replaces the key with one whose hash has a letter, written in upper case, which
// note.NewSigner accepts.
func upperHash(t *testing.T, dir string) {
	for {
		skey, vkey, err := note.GenerateKey(rand.Reader, "localhost")
		if err != nil {
			t.Fatal(err)
		}
		parts := strings.SplitN(skey, "+", 5)
		if up := strings.ToUpper(parts[3]); up != parts[3] {
			parts[3] = up
			edit(t, dir, func(string) string { return strings.Join(parts, "+") + "\n" })
			os.WriteFile(filepath.Join(dir, pki.AgentPubFile), []byte(vkey+"\n"), 0o644)
			return
		}
	}
}

// snapshot lists the files in dir with their modes and contents.
func snapshot(t *testing.T, dir string) string {
	t.Helper()
	var b strings.Builder
	files, _ := os.ReadDir(dir)
	for _, f := range files {
		p := filepath.Join(dir, f.Name())
		data, _ := os.ReadFile(p)
		fmt.Fprintf(&b, "%s %04o %q\n", f.Name(), mode(t, p), data)
	}
	return b.String()
}
