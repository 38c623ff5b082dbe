package pki_test

import (
	"bytes"
	"math/rand/v2"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"certmail/pki"
	"certmail/protocol"
)

func identity(t testing.TB, name string, seed byte) *protocol.Identity {
	t.Helper()
	id, err := protocol.NewIdentity(name, rand.NewChaCha8([32]byte{seed}))
	if err != nil {
		t.Fatal(err)
	}
	return id
}

func sampleStore(t testing.TB) (*pki.TrustStore, *protocol.Identity) {
	t.Helper()
	op := identity(t, "agent1.example", 1)
	ts := &pki.TrustStore{Operator: op.Name, Serial: 7, Issued: time.Date(2026, 11, 23, 9, 0, 0, 0, time.UTC)}
	for i, name := range []string{"agent3.example", "agent2.example"} {
		p := pki.Peer{Name: name, Key: identity(t, name, byte(2+i)).Verifier, Relay: name + ":2525",
			Domains: []string{"Mail." + name, name}}
		if i == 0 {
			p.TLSSPKI = "sha256:" + strings.Repeat("ab", 32)
		}
		if err := ts.Put(p); err != nil {
			t.Fatal(err)
		}
	}
	return ts, op
}

func TestTrustStoreRoundTrip(t *testing.T) {
	ts, op := sampleStore(t)
	signed, err := pki.SignTrustStore(ts, op.Signer)
	if err != nil {
		t.Fatal(err)
	}
	got, err := pki.OpenTrustStore(signed, op.Verifier)
	if err != nil {
		t.Fatal(err)
	}
	if len(got.Peers) != 2 || got.Peers[0].Name != "agent2.example" || got.Serial != 7 {
		t.Fatalf("opened %+v", got)
	}
	p, ok := got.PeerFor("MAIL.agent3.example")
	if !ok || p.Name != "agent3.example" || p.TLSSPKI == "" {
		t.Fatalf("PeerFor: %+v %v", p, ok)
	}
	if _, ok := got.PeerFor("elsewhere.example"); ok {
		t.Fatal("a domain no peer serves has a peer")
	}

	// Any changed byte of the signed file is refused, and so is another operator's signature.
	for i := range signed {
		bad := bytes.Clone(signed)
		bad[i] ^= 0x01
		if _, err := pki.OpenTrustStore(bad, op.Verifier); err == nil {
			t.Fatalf("byte %d changed and the store still opens", i)
		}
	}
	other := identity(t, "agent1.example", 9)
	if _, err := pki.OpenTrustStore(signed, other.Verifier); err == nil || !strings.Contains(err.Error(), "not signed") {
		t.Fatalf("another key: %v", err)
	}
	stranger := identity(t, "agent9.example", 9)
	forged, _ := pki.SignTrustStore(ts, stranger.Signer)
	if _, err := pki.OpenTrustStore(forged, stranger.Verifier); err == nil || !strings.Contains(err.Error(), "names operator") {
		t.Fatalf("a store naming another operator: %v", err)
	}
}

func TestTrustStoreRefusesBadPeers(t *testing.T) {
	ts, _ := sampleStore(t)
	key := identity(t, "agent4.example", 4).Verifier
	for name, p := range map[string]pki.Peer{
		"key of another name": {Name: "agent5.example", Key: key, Relay: "agent5.example:25", Domains: []string{"e.example"}},
		"no domain":           {Name: "agent4.example", Key: key, Relay: "agent4.example:25"},
		"bad relay":           {Name: "agent4.example", Key: key, Relay: "agent4.example", Domains: []string{"e.example"}},
		"port zero":           {Name: "agent4.example", Key: key, Relay: "agent4.example:0", Domains: []string{"e.example"}},
		"domain taken":        {Name: "agent4.example", Key: key, Relay: "agent4.example:25", Domains: []string{"agent2.example"}},
		"bad pin":             {Name: "agent4.example", Key: key, Relay: "agent4.example:25", Domains: []string{"e.example"}, TLSSPKI: "md5:00"},
	} {
		before := len(ts.Peers)
		if err := ts.Put(p); err == nil || len(ts.Peers) != before {
			t.Errorf("%s: accepted (%v), %d peers", name, err, len(ts.Peers))
		}
	}
	if err := ts.Remove("agent9.example"); err == nil {
		t.Error("removed a peer that is not there")
	}
}

func TestTrustStoreSaveAndLoad(t *testing.T) {
	dir := t.TempDir()
	op := identity(t, "agent1.example", 1)
	ts, err := pki.LoadTrustStore(dir, op.Verifier)
	if err != nil || len(ts.Peers) != 0 {
		t.Fatalf("empty store: %+v %v", ts, err)
	}
	peer := identity(t, "agent2.example", 2)
	if err := ts.Put(pki.Peer{Name: peer.Name, Key: peer.Verifier, Relay: "127.0.0.1:2526", Domains: []string{"b.example"}}); err != nil {
		t.Fatal(err)
	}
	now := time.Date(2026, 11, 23, 10, 0, 0, 123456789, time.UTC)
	if err := pki.SaveTrustStore(dir, ts, op.Signer, now); err != nil {
		t.Fatal(err)
	}
	again, err := pki.LoadTrustStore(dir, op.Verifier)
	if err != nil || again.Serial != 1 || len(again.Peers) != 1 || !again.Issued.Equal(now.Truncate(time.Millisecond)) {
		t.Fatalf("loaded %+v %v", again, err)
	}
	if err := pki.SaveTrustStore(dir, again, op.Signer, now); err != nil || again.Serial != 2 {
		t.Fatalf("second save: serial %d, %v", again.Serial, err)
	}
	if _, err := pki.LoadTrustStore(filepath.Join(dir, "nowhere"), "not a key"); err == nil {
		t.Fatal("a bad operator key was taken")
	}
}

func FuzzParseTrustStore(f *testing.F) {
	ts, _ := sampleStore(f)
	enc, err := ts.Encode()
	if err != nil {
		f.Fatal(err)
	}
	f.Add(enc)
	f.Add([]byte("certmail trust store v1\noperator a.example\nserial 1\nissued 2026-01-01T00:00:00.000Z\n"))
	f.Add([]byte("certmail trust store v1\n\n\npeer x\n"))
	f.Fuzz(func(t *testing.T, text []byte) {
		ts, err := pki.ParseTrustStore(text)
		if err != nil {
			return
		}
		again, err := ts.Encode()
		if err != nil || !bytes.Equal(again, text) {
			t.Fatalf("parsed but encodes differently (%v):\n%q\n%q", err, text, again)
		}
	})
}
