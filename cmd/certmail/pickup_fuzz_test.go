package main

import (
	"crypto/rand"
	"regexp"
	"strings"
	"testing"

	"golang.org/x/mod/sumdb/note"
)

// FuzzPickupLink: a link is refused, or it names exactly one token whose API base is on the
// same https host.
func FuzzPickupLink(f *testing.F) {
	for _, s := range []string{
		"https://localhost:8443/pickup/aFS_m1cNRpck49yxaiIi8KUsrLmZhfl1q9Tn9cqnygI",
		"https://certmail.example/pickup/aFS_m1cNRpck49yxaiIi8KUsrLmZhfl1q9Tn9cqnygI/",
		"http://localhost/pickup/aFS_m1cNRpck49yxaiIi8KUsrLmZhfl1q9Tn9cqnygI",
		"https://localhost/pickup/../api/v1/messages",
		"https://user@localhost/pickup/aFS_m1cNRpck49yxaiIi8KUsrLmZhfl1q9Tn9cqnygI?x=1#y",
	} {
		f.Add(s)
	}
	base := regexp.MustCompile(`^https://[^/?#@]+/api/v1/pickup/[A-Za-z0-9_-]{16,128}$`)
	f.Fuzz(func(t *testing.T, link string) {
		api, err := pickupAPIBase(link)
		if err != nil {
			return
		}
		if !base.MatchString(api) {
			t.Fatalf("%q gives API base %q", link, api)
		}
	})
}

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
