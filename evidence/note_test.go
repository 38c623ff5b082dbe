package evidence_test

import (
	"bytes"
	"errors"
	"strings"
	"testing"

	"golang.org/x/mod/sumdb/note"

	"certmail/evidence"
)

func TestSignRefusesWrongSigner(t *testing.T) {
	f := newFixture(t)
	r := f.record(evidence.COP)
	if _, err := evidence.Sign(r, f.signers[agent2]); err == nil || !strings.Contains(err.Error(), "may not sign") {
		t.Fatalf("COP for p1 signed by p2: %v", err)
	}
	if _, err := evidence.Sign(f.record(evidence.CODIP), f.signers[agent2]); err == nil {
		t.Fatal("COD-IP signed by an agent instead of the recipient")
	}
}

func TestVerifyNamesWhatFailed(t *testing.T) {
	f := newFixture(t)
	n := f.sign(t, f.record(evidence.COP))

	// A key set without p1's key: no signature by a known key.
	others, _ := evidence.NewKeys(f.vkeys[agent2])
	var se *evidence.SignatureError
	if err := n.Verify(others); !errors.As(err, &se) || !strings.Contains(se.Reason, "no signature by a known key") {
		t.Fatalf("unknown key: %v", err)
	}

	// Same name, another key: an impostor p1.
	skey, vkey, _ := note.GenerateKey(seeded(77), agent1)
	impostor, _ := note.NewSigner(skey)
	forged, err := evidence.Sign(f.record(evidence.COP), impostor)
	if err != nil {
		t.Fatal(err)
	}
	if err := forged.Verify(f.keys(t)); err == nil {
		t.Fatal("note signed by an impostor key of the same name verified")
	}
	_ = vkey

	// A changed body with the original signature.
	tampered := bytes.Replace(n.Bytes(), []byte("sender alice@a.example"), []byte("sender alice@a.exampla"), 1)
	tn, err := evidence.ParseNote(tampered)
	if err != nil {
		t.Fatal(err)
	}
	if err := tn.Verify(f.keys(t)); !errors.As(err, &se) || !strings.Contains(se.Reason, "invalid signature") {
		t.Fatalf("tampered body: %v", err)
	}
}

// A report of delivery needs Pn's and P1's signatures.
func TestRODNeedsCountersignature(t *testing.T) {
	f := newFixture(t)
	r := f.record(evidence.ROD)
	n, err := evidence.Sign(r, f.signers[agent2])
	if err != nil {
		t.Fatal(err)
	}
	if err := n.Verify(f.keys(t)); err == nil || !strings.Contains(err.Error(), agent1) {
		t.Fatalf("ROD without P1's countersignature: %v", err)
	}
	both, err := evidence.Countersign(n, f.signers[agent1])
	if err != nil {
		t.Fatal(err)
	}
	if err := both.Verify(f.keys(t)); err != nil {
		t.Fatalf("countersigned ROD: %v", err)
	}
	if _, err := evidence.Countersign(both, f.signers[agent1]); err == nil {
		t.Fatal("P1 countersigned twice")
	}
	if _, err := evidence.Countersign(n, f.signers[bobKey]); err == nil {
		t.Fatal("the recipient countersigned a ROD")
	}
}

func TestParseNoteIsStrict(t *testing.T) {
	f := newFixture(t)
	good := f.sign(t, f.record(evidence.COP)).Bytes()
	sigStart := bytes.LastIndex(good, []byte("\n\n")) + 2
	cases := map[string][]byte{
		"no signature":       good[:sigStart],
		"trailing bytes":     append(bytes.Clone(good), 'x'),
		"extra blank line":   append(bytes.Clone(good), '\n'),
		"truncated":          good[:len(good)-5],
		"signature repeated": append(bytes.Clone(good), good[sigStart:]...),
		"no blank line":      bytes.Replace(good, []byte("\n\n"), []byte("\n"), 1),
		"stray base64 bits":  strayBits(t, good),
	}
	for name, b := range cases {
		if _, err := evidence.ParseNote(b); err == nil {
			t.Errorf("%s: accepted", name)
		}
	}
	n, err := evidence.ParseNote(good)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(n.Bytes(), good) || n.Leaf() != evidence.Sum(good) {
		t.Fatal("note bytes or leaf changed in parsing")
	}
}

// strayBits sets a spare low bit of the last base64 character of the note's signature: Go's
// base64 (and note.Open) read the same signature, but the text is no longer its one encoding.
func strayBits(t *testing.T, note []byte) []byte {
	t.Helper()
	const alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/"
	// A signature line carries 4 + 64 bytes: 92 characters, the last "=", the one before it
	// with two spare bits.
	if !bytes.HasSuffix(note, []byte("=\n")) || bytes.HasSuffix(note, []byte("==\n")) {
		t.Fatal("the signature's base64 does not end with one '='")
	}
	out := bytes.Clone(note)
	i := len(out) - 3
	out[i] = alphabet[strings.IndexByte(alphabet, out[i])|1]
	if bytes.Equal(out, note) {
		t.Fatal("the spare bit was already set")
	}
	return out
}
