package evidence_test

import (
	"crypto/ed25519"
	"testing"

	"certmail/evidence"
)

// BenchmarkEd25519Verify is the floor: one raw Ed25519 verification, no parsing.
func BenchmarkEd25519Verify(b *testing.B) {
	seed := make([]byte, ed25519.SeedSize)
	priv := ed25519.NewKeyFromSeed(seed)
	msg := make([]byte, 400)
	sig := ed25519.Sign(priv, msg)
	pub := priv.Public().(ed25519.PublicKey)
	for b.Loop() {
		if !ed25519.Verify(pub, msg, sig) {
			b.Fatal("verify")
		}
	}
}

func BenchmarkSignNote(b *testing.B) {
	f := newFixture(b)
	r := f.record(evidence.COP)
	s := f.signers[agent1]
	for b.Loop() {
		if _, err := evidence.Sign(r, s); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkParseNote(b *testing.B) {
	f := newFixture(b)
	raw := f.sign(b, f.record(evidence.COP)).Bytes()
	for b.Loop() {
		if _, err := evidence.ParseNote(raw); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkVerifyNote parses a note and checks its one signature.
func BenchmarkVerifyNote(b *testing.B) {
	f := newFixture(b)
	raw := f.sign(b, f.record(evidence.COP)).Bytes()
	keys := f.keys(b)
	for b.Loop() {
		n, err := evidence.ParseNote(raw)
		if err != nil {
			b.Fatal(err)
		}
		if err := n.Verify(keys); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkParseAndCheckBundle reads the six-note sample bundle (seven signatures) and checks
// every signature and key binding; compare with 7 × BenchmarkEd25519Verify.
func BenchmarkParseAndCheckBundle(b *testing.B) {
	f := newFixture(b)
	enc, err := sampleBundle(b, f).Encode()
	if err != nil {
		b.Fatal(err)
	}
	for b.Loop() {
		bu, err := evidence.ParseBundle(enc)
		if err != nil {
			b.Fatal(err)
		}
		c := bu.Check(nil)
		if len(c.Verdict.Problems) != 0 {
			b.Fatal(c.Verdict.Problems)
		}
	}
}

// BenchmarkParseAndCheckLoggedBundle is BenchmarkParseAndCheckBundle with the log checkpoint
// and an inclusion proof for each of the six notes: one more signature and six proofs.
func BenchmarkParseAndCheckLoggedBundle(b *testing.B) {
	f := newFixture(b)
	bu, _ := loggedBundle(b, f)
	enc, err := bu.Encode()
	if err != nil {
		b.Fatal(err)
	}
	for b.Loop() {
		bu, err := evidence.ParseBundle(enc)
		if err != nil {
			b.Fatal(err)
		}
		c := bu.Check(nil)
		if len(c.Verdict.Problems) != 0 || len(c.Verdict.Facts) != 1 {
			b.Fatal(c.Verdict.Problems)
		}
	}
}
