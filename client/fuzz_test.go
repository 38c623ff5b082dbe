package client

import (
	"regexp"
	"testing"
)

// FuzzPickupLink: a link is refused, or it names exactly one token and an https agent with no
// path, user or query of its own.
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
	serverRE := regexp.MustCompile(`^https://[^/?#@]+$`)
	tokenRE := regexp.MustCompile(`^[A-Za-z0-9_-]{16,128}$`)
	f.Fuzz(func(t *testing.T, link string) {
		server, token, err := ParsePickupLink(link)
		if err != nil {
			return
		}
		if !serverRE.MatchString(server) || !tokenRE.MatchString(token) {
			t.Fatalf("%q gives agent %q and token %q", link, server, token)
		}
		if _, err := New(Options{Server: server}); err != nil {
			t.Fatalf("%q gives agent %q, which the client refuses: %v", link, server, err)
		}
	})
}
