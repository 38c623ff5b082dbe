package evidence_test

import (
	"bytes"
	"crypto/ed25519"
	"crypto/sha512"
	"encoding/base64"
	"encoding/hex"
	"strings"
	"testing"

	"github.com/oasisprotocol/curve25519-voi/curve"
	"github.com/oasisprotocol/curve25519-voi/curve/scalar"
	"golang.org/x/mod/sumdb/note"

	"certmail/evidence"
)

// offsetSigner signs as the holder of a signed-note key, but with R offset by a point of order
// 8: R' = [r]B + T, S = r + k·a with k = SHA-512(R' || A || message). Then [S]B = R' - T + [k]A:
// the cofactored equation holds, the cofactorless one does not. Only the key's holder can make
// such a signature.
type offsetSigner struct {
	note.Signer
	a      scalar.Scalar // the secret scalar
	prefix []byte
	pub    []byte
	t      curve.EdwardsPoint
}

func newOffsetSigner(t *testing.T, skey string) *offsetSigner {
	t.Helper()
	s, err := note.NewSigner(skey)
	if err != nil {
		t.Fatal(err)
	}
	raw, err := base64.StdEncoding.DecodeString(strings.SplitN(skey, "+", 5)[4])
	if err != nil || len(raw) != 1+ed25519.SeedSize {
		t.Fatal("not an Ed25519 signed-note key")
	}
	h := sha512.Sum512(raw[1:]) // RFC 8032 §5.1.5
	h[0] &= 248
	h[31] &= 127
	h[31] |= 64
	o := &offsetSigner{Signer: s, prefix: h[32:], pub: ed25519.NewKeyFromSeed(raw[1:]).Public().(ed25519.PublicKey)}
	if _, err := o.a.SetBytesModOrder(h[:32]); err != nil {
		t.Fatal(err)
	}
	// A point of order 8 ("Taming the many EdDSAs", Chalkias et al., table of small-order points).
	enc, _ := hex.DecodeString("26e8958fc2b227b045c3f489f2ef98f0d5dfac05d3c63339b13802886d53fc05")
	c, err := curve.NewCompressedEdwardsYFromBytes(enc)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := o.t.SetCompressedY(c); err != nil {
		t.Fatal(err)
	}
	var t4 curve.EdwardsPoint
	t4.Add(&o.t, &o.t)
	t4.Add(&t4, &t4)
	if !o.t.IsSmallOrder() || t4.IsIdentity() {
		t.Fatal("T is not of order 8")
	}
	return o
}

func (o *offsetSigner) Sign(msg []byte) ([]byte, error) {
	rh := sha512.Sum512(append(bytes.Clone(o.prefix), msg...))
	var r, k, s scalar.Scalar
	if _, err := r.SetBytesModOrderWide(rh[:]); err != nil {
		return nil, err
	}
	var R curve.EdwardsPoint
	R.MulBasepoint(curve.ED25519_BASEPOINT_TABLE, &r)
	R.Add(&R, &o.t)
	var rc curve.CompressedEdwardsY
	rc.SetEdwardsPoint(&R)
	kh := sha512.New()
	kh.Write(rc[:])
	kh.Write(o.pub)
	kh.Write(msg)
	if _, err := k.SetBytesModOrderWide(kh.Sum(nil)); err != nil {
		return nil, err
	}
	s.Mul(&k, &o.a)
	s.Add(&s, &r)
	sig := append(bytes.Clone(rc[:]), make([]byte, 32)...)
	if err := s.ToBytes(sig[32:]); err != nil {
		return nil, err
	}
	return sig, nil
}

// A signature whose R its signer offset by a small-order point passes the bundle check's
// cofactored equation and fails crypto/ed25519's, as SECURITY.md says: the bundle check accepts
// it, alone, in a batch and when the batch falls back to checking signatures one by one; a party
// accepting the note during an exchange (Note.Verify) refuses it.
func TestSmallOrderOffsetR(t *testing.T) {
	t.Parallel()
	f := newFixture(t)
	keys := f.keys(t)
	// Notes of sampleBundle: 1 COP, 2 ACK, 3 KEY, 4 NTF, 5 COD-IP, 6 ROD. The NTF is p2.example's.
	bundles := distinctBundles(t, f, 40)
	const odd = 11
	b := bundles[odd]
	n, err := evidence.Sign(b.Notes[3].Record, newOffsetSigner(t, f.skeys[agent2]))
	if err != nil {
		t.Fatal(err)
	}
	b.Notes[3] = n

	pub, _ := evidence.PublicKey(f.vkeys[agent2])
	raw := n.Bytes()
	text := raw[:bytes.LastIndex(raw, []byte("\n\n"))+1]
	sig, _ := base64.StdEncoding.DecodeString(n.Sigs[0].Base64)
	if ed25519.Verify(pub, text, sig[4:]) {
		t.Fatal("crypto/ed25519 accepts the offset signature: the test makes no small-order case")
	}
	if err := n.Verify(keys); err == nil || !strings.Contains(err.Error(), "invalid signature") {
		t.Errorf("Note.Verify (cofactorless) = %v, want an invalid signature", err)
	}

	check := func(name string, c *evidence.Checked) {
		t.Helper()
		if !c.Verdict.Valid || len(c.Verdict.Problems) != 0 || !c.OK[3] {
			t.Errorf("%s: the cofactored check refuses the offset signature: %+v", name, c.Verdict.Problems)
		}
	}
	check("alone", b.Check(keys))
	check("in a batch", evidence.CheckBundles(bundles, keys)[odd])
	// A forged signature in the same bundle fails the batch and the bundle's own: each
	// signature of the bundle is then checked alone.
	damage(t, b, 0, resign(func(sig []byte) { sig[40] ^= 1 }))
	for name, c := range map[string]*evidence.Checked{"alone, one by one": b.Check(keys), "one by one": evidence.CheckBundles(bundles, keys)[odd]} {
		if p := c.Verdict.Problems; len(p) != 1 || p[0].Note != 1 || !c.OK[3] {
			t.Errorf("%s: problems %+v, NTF OK %v; want only the forged COP refused", name, p, c.OK[3])
		}
	}
}
