package web_test

import (
	"bytes"
	"context"
	"encoding/json"
	"math/rand/v2"
	"net/http"
	"strings"
	"testing"
	"time"

	"certmail/api"
	"certmail/evidence"
	"certmail/protocol"
)

// Schneier–Riordan with this agent as the public location X: alice publishes K for bob's
// request, and anyone holding H(C) finds K, with the log's proof that it was published.
func TestPublishedKeys(t *testing.T) {
	t.Parallel()
	w := newWorld(t, options{log: true})
	ctx := context.Background()
	bobID, err := protocol.NewIdentity(bob, rand.NewChaCha8([32]byte{7}))
	if err != nil {
		t.Fatal(err)
	}
	keyNote, err := w.ag.RegisterKey(ctx, bob, bobID.Verifier)
	if err != nil {
		t.Fatal(err)
	}
	request := func(seed byte, sender, location string, c []byte) (evidence.Label, string) {
		l, err := evidence.NewLabel(rand.NewChaCha8([32]byte{seed}))
		if err != nil {
			t.Fatal(err)
		}
		n, err := evidence.Sign(&evidence.Record{Type: evidence.SRREQ, Label: l, Sender: sender, Recipient: bob,
			Ciphertext: evidence.Sum(c), Deadline: t0.Add(time.Hour), Location: location}, bobID.Signer)
		if err != nil {
			t.Fatal(err)
		}
		return l, string(n.Bytes())
	}
	k := bytes.Repeat([]byte{0x42}, 32)
	c := []byte("the ciphertext C")
	l, req := request(1, alice, w.id.Name, c)
	publish := func(user string, p api.Publication) response {
		b, _ := json.Marshal(p)
		return w.api(t, "POST", "/api/v1/published", user, "application/json", b)
	}

	// Refused: another sender's request, another location, a short key, a request B did not sign,
	// a key record this agent did not sign.
	_, otherLoc := request(2, alice, "elsewhere.example", []byte("C2"))
	_, forMallory := request(3, mallory, w.id.Name, []byte("C3"))
	malformed := strings.Replace(req, "ciphertext sha256:", "ciphertext sha256:0", 1)
	impostor, _ := protocol.NewIdentity(bob, rand.NewChaCha8([32]byte{8}))
	forgedNote, _ := evidence.Sign(&evidence.Record{Type: evidence.SRREQ, Label: l, Sender: alice, Recipient: bob,
		Ciphertext: evidence.Sum(c), Deadline: t0.Add(time.Hour), Location: w.id.Name}, impostor.Signer)
	forged := string(forgedNote.Bytes())
	for _, c := range []struct {
		name   string
		user   string
		p      api.Publication
		status int
	}{
		{"no credentials", "", api.Publication{Request: req, Key: k}, 401},
		{"not the request's sender", alice, api.Publication{Request: forMallory, Key: k}, 403},
		{"another location", alice, api.Publication{Request: otherLoc, Key: k}, 422},
		{"short key", alice, api.Publication{Request: req, Key: k[:16]}, 422},
		{"malformed request", alice, api.Publication{Request: malformed, Key: k}, 422},
		{"request signed by another key", alice, api.Publication{Request: forged, Key: k}, 403},
	} {
		if r := publish(c.user, c.p); r.status != c.status {
			t.Errorf("%s: %s, want %d", c.name, r, c.status)
		}
	}
	if r := w.api(t, "POST", "/api/v1/published", alice, "application/json", []byte(`{"request":"x","key":"AA==","colour":"red"}`)); r.status != 400 {
		t.Errorf("unknown field: %s", r)
	}
	hc := evidence.Sum(c)
	if r := w.get(t, w.srv.URL+"/api/v1/published/"+hc.String()); r.status != http.StatusNotFound {
		t.Fatalf("lookup before publication: %s", r)
	}

	r := publish(alice, api.Publication{Request: req, KeyRecord: string(keyNote.Bytes()), Key: k})
	if r.status != http.StatusCreated {
		t.Fatalf("publish: %s", r)
	}
	var got api.Published
	if err := json.Unmarshal(r.body, &got); err != nil {
		t.Fatal(err)
	}
	if got.Label != l.String() || got.Ciphertext != hc.String() || !bytes.Equal(got.Key, k) {
		t.Fatalf("published %+v", got)
	}
	// The same publication again is the same record; another key for the label is refused.
	var same api.Published
	if again := publish(alice, api.Publication{Request: req, Key: k}); again.status != http.StatusCreated || json.Unmarshal(again.body, &same) != nil || same.PUB != got.PUB {
		t.Fatalf("the same publication again: %s", again)
	}
	if other := publish(alice, api.Publication{Request: req, Key: bytes.Repeat([]byte{1}, 32)}); other.status != http.StatusGone {
		t.Fatalf("a second key for the ciphertext: %s", other)
	}

	// Anyone finds it by H(C), without credentials, and once the log covers the PUB the bundle
	// proves its publication.
	deadline := time.Now().Add(10 * time.Second)
	for {
		r = w.get(t, w.srv.URL+"/api/v1/published/"+hc.String())
		if r.status != http.StatusOK {
			t.Fatalf("lookup: %s", r)
		}
		if err := json.Unmarshal(r.body, &got); err != nil {
			t.Fatal(err)
		}
		if got.Logged || time.Now().After(deadline) {
			break
		}
		time.Sleep(50 * time.Millisecond)
	}
	b, err := evidence.ParseBundle([]byte(got.Bundle))
	if err != nil {
		t.Fatal(err)
	}
	keys, _ := evidence.NewKeys(w.id.Verifier)
	v := b.Check(keys).Verdict
	if !got.Logged || !v.Valid || len(v.Problems) > 0 || !strings.Contains(v.Text(), "logged: note") {
		t.Fatalf("the published key's bundle (logged %v):\n%s", got.Logged, v.Text())
	}
	if r := w.get(t, w.srv.URL+"/api/v1/published/not-a-hash"); r.status != http.StatusNotFound {
		t.Fatalf("lookup of a bad hash: %s", r)
	}
}
