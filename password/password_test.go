package password_test

import (
	"errors"
	"strings"
	"testing"

	"certmail/password"
)

// cheap keeps the tests fast; the format and the checks are the same at any cost.
var cheap = password.Params{Memory: 64, Time: 1, Threads: 1}

func TestHashAndCheck(t *testing.T) {
	h, err := password.Hash("correct horse battery", cheap, nil)
	if err != nil {
		t.Fatal(err)
	}
	if !strings.HasPrefix(h, "$argon2id$v=19$m=64,t=1,p=1$") || strings.Contains(h, "correct horse") {
		t.Fatalf("hash %q", h)
	}
	if err := password.Check(h, "correct horse battery"); err != nil {
		t.Fatalf("right password: %v", err)
	}
	if err := password.Check(h, "correct horse batterz"); !errors.Is(err, password.ErrMismatch) {
		t.Fatalf("wrong password: %v", err)
	}
	h2, _ := password.Hash("correct horse battery", cheap, nil)
	if h2 == h {
		t.Fatal("two hashes of one password share a salt")
	}
}

func TestRefusals(t *testing.T) {
	if _, err := password.Hash("short", cheap, nil); err == nil {
		t.Fatal("a 5-character password was hashed")
	}
	for _, bad := range []string{"", "plain", "$argon2i$v=19$m=64,t=1,p=1$c2FsdHNhbHQ$aGFzaGhhc2hoYXNoaGFzaA",
		"$argon2id$v=19$m=99999999,t=1,p=1$c2FsdHNhbHQ$aGFzaGhhc2hoYXNoaGFzaA", "$argon2id$v=19$m=64,t=1,p=1$!!$!!"} {
		if err := password.Check(bad, "whatever-password"); err == nil || errors.Is(err, password.ErrMismatch) {
			t.Errorf("Check(%q) = %v, want a format error", bad, err)
		}
	}
}

func FuzzCheck(f *testing.F) {
	h, _ := password.Hash("correct horse battery", cheap, nil)
	f.Add(h, "correct horse battery")
	f.Add("$argon2id$v=19$m=64,t=1,p=1$$", "x")
	f.Fuzz(func(t *testing.T, encoded, pw string) {
		_ = password.Check(encoded, pw) // must not panic nor run away with memory
	})
}
