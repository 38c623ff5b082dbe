package main

import (
	"crypto/rand"
	"strings"
	"testing"

	"golang.org/x/mod/sumdb/note"
)

// FuzzUserKey: a key file is refused, or its derived verifier key verifies what its signer signs.
func FuzzUserKey(f *testing.F) {
	skey, _, err := note.GenerateKey(rand.Reader, "bob@example.org")
	if err != nil {
		f.Fatal(err)
	}
	f.Add([]byte(skey + "\n"))
	f.Add([]byte(strings.Replace(skey, "+", "-", 1)))
	f.Add([]byte("PRIVATE+KEY+bob@example.org+00000000+AQ=="))
	f.Fuzz(func(t *testing.T, b []byte) {
		k, err := parseUserKey(b)
		if err != nil {
			return
		}
		msg, err := note.Sign(&note.Note{Text: "certmail\n"}, k.signer)
		if err != nil {
			t.Fatal(err)
		}
		v, err := note.NewVerifier(k.verifier)
		if err != nil {
			t.Fatalf("derived verifier key %q: %v", k.verifier, err)
		}
		if _, err := note.Open(msg, note.VerifierList(v)); err != nil {
			t.Fatalf("the derived verifier key does not verify the key's signature: %v", err)
		}
	})
}
