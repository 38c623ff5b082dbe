package main

import (
	"certmail/evidence"
	"crypto/rand"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"golang.org/x/mod/sumdb/note"
)

// A key from keygen must be usable by anyone with golang.org/x/mod/sumdb/note alone: that is
// the promise evidence notes make to an arbiter (DESIGN.md §3).
func TestKeygenKeySignsNoteVerifiableWithNoteAlone(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		flag, value, name string
	}{
		{"-agent", "mail.a.example", "mail.a.example"},
		{"-user", "bob+tax%2024@b.example", "bob%2Btax%252024@b.example"},
	} {
		t.Run(tc.value, func(t *testing.T) {
			t.Parallel()
			prefix := filepath.Join(t.TempDir(), "k")
			code, stdout, stderr := runCLI("keygen", tc.flag, tc.value, "-out", prefix)
			if code != exitOK {
				t.Fatalf("keygen: exit %d; stderr:\n%s", code, stderr)
			}
			skey := readLine(t, prefix+".key")
			vkey := readLine(t, prefix+".pub")
			if !strings.Contains(stdout, "verifier key: "+vkey+"\n") {
				t.Errorf("keygen output does not show the verifier key %q:\n%s", vkey, stdout)
			}
			if strings.Contains(stdout, skey) || strings.Contains(stderr, skey) {
				t.Errorf("keygen printed the private key")
			}

			signer, err := note.NewSigner(skey)
			if err != nil {
				t.Fatalf("private key: %v", err)
			}
			if signer.Name() != tc.name {
				t.Errorf("key name %q, want %q", signer.Name(), tc.name)
			}
			msg, err := note.Sign(&note.Note{Text: "certmail-evidence/1\ntype COP\n"}, signer)
			if err != nil {
				t.Fatalf("sign: %v", err)
			}
			verifier, err := note.NewVerifier(vkey)
			if err != nil {
				t.Fatalf("verifier key: %v", err)
			}
			n, err := note.Open(msg, note.VerifierList(verifier))
			if err != nil {
				t.Fatalf("open signed note: %v", err)
			}
			if len(n.Sigs) != 1 || n.Sigs[0].Name != tc.name {
				t.Errorf("verified signatures %+v, want one by %q", n.Sigs, tc.name)
			}
		})
	}
}

// readLine reads a file that must hold exactly one line.
func readLine(t *testing.T, path string) string {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	s, ok := strings.CutSuffix(string(b), "\n")
	if !ok || strings.Contains(s, "\n") {
		t.Fatalf("%s: want exactly one line ending in a newline, got %q", path, b)
	}
	return s
}

func TestWriteKeyPairRefusesIfEitherFileExists(t *testing.T) {
	t.Parallel()
	for _, existing := range []string{".key", ".pub"} {
		t.Run(existing, func(t *testing.T) {
			t.Parallel()
			dir := t.TempDir()
			prefix := filepath.Join(dir, "k")
			if err := os.WriteFile(prefix+existing, []byte("keep me\n"), 0o644); err != nil {
				t.Fatal(err)
			}
			if _, err := writeKeyPair(rand.Reader, "a.example", prefix); err == nil {
				t.Fatal("writeKeyPair overwrote or ignored an existing file")
			}
			entries, err := os.ReadDir(dir)
			if err != nil {
				t.Fatal(err)
			}
			if len(entries) != 1 {
				t.Errorf("directory holds %d files after a refusal, want only the one that was there", len(entries))
			}
			if b, _ := os.ReadFile(prefix + existing); string(b) != "keep me\n" {
				t.Errorf("existing file changed to %q", b)
			}
		})
	}
}

// A dangling symbolic link is in the way too: following it would write a key elsewhere.
func TestWriteKeyPairRefusesDanglingSymlink(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	prefix := filepath.Join(dir, "k")
	target := filepath.Join(dir, "elsewhere")
	if err := os.Symlink(target, prefix+".key"); err != nil {
		t.Skipf("symlinks unsupported: %v", err)
	}
	if _, err := writeKeyPair(rand.Reader, "a.example", prefix); err == nil {
		t.Fatal("writeKeyPair followed a dangling symbolic link")
	}
	if _, err := os.Lstat(target); err == nil {
		t.Error("a key was written through the link")
	}
}

func TestKeyNames(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct{ address, want string }{
		{"alice@a.example", "alice@a.example"},
		{"bob+tax@b.example", "bob%2Btax@b.example"},
		{"100%@b.example", "100%25@b.example"},
		{"%2B@b.example", "%252B@b.example"},
		{"élodie@c.example", "élodie@c.example"},
	} {
		got, err := evidence.KeyName(tc.address)
		if err != nil || got != tc.want {
			t.Errorf("evidence.KeyName(%q) = %q, %v; want %q", tc.address, got, err, tc.want)
			continue
		}
		if _, _, err := note.GenerateKey(rand.Reader, got); err != nil {
			t.Errorf("note rejects key name %q: %v", got, err)
		}
	}
	for _, bad := range []string{
		"", "alice", "@a.example", "alice@", "alice smith@a.example", "alice@A.example",
		"<alice@a.example>", "al\"ice@a.example", "alice@a..example", "alice\t@a.example",
		strings.Repeat("a", 250) + "@a.example",
	} {
		if got, err := evidence.KeyName(bad); err == nil {
			t.Errorf("evidence.KeyName(%q) = %q, want an error", bad, got)
		}
	}
}

func TestHostNames(t *testing.T) {
	t.Parallel()
	for _, good := range []string{"a", "mail.a.example", "x-1.example", "localhost", "1.example"} {
		if err := evidence.CheckHost(good); err != nil {
			t.Errorf("evidence.CheckHost(%q): %v", good, err)
		}
	}
	for _, bad := range []string{
		"", "Mail.example", "mail..example", ".example", "example.", "-a.example", "a-.example",
		"mail_a.example", "a.example:25", "a example", "a+b.example", "a/b.example",
		strings.Repeat("a", 64) + ".example", strings.Repeat("a.", 127) + "ab",
	} {
		if err := evidence.CheckHost(bad); err == nil {
			t.Errorf("evidence.CheckHost(%q) accepted a bad host name", bad)
		}
	}
}

// Whatever keygen accepts as a host name or address must be a key name that note accepts, and a
// user's key name must give back the exact address, so two addresses never share a key name.
func FuzzKeyNames(f *testing.F) {
	for _, s := range []string{"mail.a.example", "bob+tax%2024@b.example", "%2B@b.example", "a b@c", "é@x"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		if evidence.CheckHost(s) == nil {
			if _, _, err := note.GenerateKey(rand.Reader, s); err != nil {
				t.Fatalf("host name %q accepted, but note rejects it: %v", s, err)
			}
		}
		name, err := evidence.KeyName(s)
		if err != nil {
			return
		}
		if _, _, err := note.GenerateKey(rand.Reader, name); err != nil {
			t.Fatalf("address %q: key name %q rejected by note: %v", s, name, err)
		}
		if back := strings.NewReplacer("%2B", "+", "%25", "%").Replace(name); back != s {
			t.Fatalf("address %q: key name %q reads back as %q", s, name, back)
		}
	})
}
