package web_test

import (
	"encoding/json"
	"strings"
	"testing"
	"time"

	"golang.org/x/mod/sumdb/note"

	"certmail/evidence"
)

// TestWellKnownAndLog: a verifier that knows only the agent's address finds its key and its log
// at /.well-known/certmail, reads the log's checkpoint at /log/, and finds a submission's notes
// in it; the bundle the sender downloads carries the checkpoint and the proofs.
func TestWellKnownAndLog(t *testing.T) {
	w := newWorld(t, options{log: true})
	r := w.get(t, w.srv.URL+"/.well-known/certmail")
	var doc struct {
		Name        string `json:"name"`
		VerifierKey string `json:"verifier_key"`
		Log         struct {
			Origin string `json:"origin"`
			URL    string `json:"url"`
		} `json:"log"`
	}
	if r.status != 200 || r.header.Get("Content-Type") != "application/json" || json.Unmarshal(r.body, &doc) != nil {
		t.Fatalf("/.well-known/certmail: %s", r)
	}
	if doc.Name != "certmail.test" || doc.VerifierKey != w.id.Verifier || doc.Log.Origin != "certmail.test/log" || doc.Log.URL != w.srv.URL+"/log/" {
		t.Fatalf("/.well-known/certmail: %+v", doc)
	}

	s := w.submitJSON(t, map[string]any{"to": []string{bob}, "text": "for the log"})
	b, _ := w.bundleRaw(t, s.Messages[0].Label)
	cop := b.Notes[0]

	// The checkpoint verifies with the key the document named, under the origin it named.
	var cpText string
	deadline := time.Now().Add(10 * time.Second)
	for {
		r = w.get(t, doc.Log.URL+"checkpoint")
		v, _ := note.NewVerifier(doc.VerifierKey)
		n, err := note.Open(r.body, note.VerifierList(v))
		if r.status != 200 || err != nil || r.header.Get("Cache-Control") != "no-cache" || !strings.HasPrefix(n.Text, doc.Log.Origin+"\n") {
			t.Fatalf("checkpoint: %s (%v), Cache-Control %q", r, err, r.header.Get("Cache-Control"))
		}
		if cpText = n.Text; strings.HasPrefix(cpText, doc.Log.Origin+"\n1\n") || time.Now().After(deadline) {
			break
		}
		time.Sleep(20 * time.Millisecond)
	}
	if !strings.HasPrefix(cpText, doc.Log.Origin+"\n1\n") {
		t.Fatalf("checkpoint after one COP:\n%s", cpText)
	}
	r = w.get(t, doc.Log.URL+"tile/entries/000.p/1")
	leaf := cop.Leaf()
	if r.status != 200 || string(r.body) != "\x00\x20"+string(leaf[:]) {
		t.Fatalf("entry bundle: %s, want the COP's leaf", r)
	}
	for _, p := range []string{".state/treeState", "tile/entries/000.p/2", "checkpoint.tmp"} {
		if r := w.get(t, doc.Log.URL+p); r.status != 404 {
			t.Errorf("GET /log/%s: %d, want 404", p, r.status)
		}
	}

	b, _ = w.bundleRaw(t, s.Messages[0].Label)
	if len(b.Proofs) != 1 || b.Proofs[0].Index != 0 || !strings.HasPrefix(string(b.Checkpoint), doc.Log.Origin+"\n1\n") {
		t.Fatalf("bundle: %d proofs, checkpoint %q", len(b.Proofs), b.Checkpoint)
	}
}

// TestWellKnownWithoutLog: an agent run without a log still names itself and its key.
func TestWellKnownWithoutLog(t *testing.T) {
	w := newWorld(t, options{})
	r := w.get(t, w.srv.URL+"/.well-known/certmail")
	if r.status != 200 || strings.Contains(string(r.body), `"log"`) || !strings.Contains(string(r.body), w.id.Verifier) {
		t.Fatalf("/.well-known/certmail: %s", r)
	}
	if r := w.get(t, w.srv.URL+"/log/checkpoint"); r.status != 404 {
		t.Fatalf("/log/checkpoint without a log: %d", r.status)
	}
}

// bundleRaw downloads a bundle as alice and parses it.
func (w *world) bundleRaw(t *testing.T, label string) (*evidence.Bundle, []byte) {
	t.Helper()
	r := w.api(t, "GET", "/api/v1/messages/"+label+"/bundle", alice, "", nil)
	if r.status != 200 {
		t.Fatalf("bundle: %s", r)
	}
	b, err := evidence.ParseBundle(r.body)
	if err != nil {
		t.Fatal(err)
	}
	return b, r.body
}
