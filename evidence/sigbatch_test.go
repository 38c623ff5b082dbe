package evidence_test

import (
	"bytes"
	"crypto/ed25519"
	"encoding/base64"
	"encoding/json"
	"math/big"
	"strings"
	"testing"
	"time"

	"golang.org/x/mod/sumdb/note"

	"certmail/evidence"
)

// distinctBundles returns n sample bundles, each with its own label and message.
func distinctBundles(t *testing.T, f *fixture, n int) []*evidence.Bundle {
	t.Helper()
	out := make([]*evidence.Bundle, n)
	for i := range out {
		g := *f
		var err error
		if g.label, err = evidence.NewLabel(seeded(uint64(100 + i))); err != nil {
			t.Fatal(err)
		}
		g.msg = append(bytes.Clone(f.msg), byte('a'+i%26), byte('a'+i/26%26))
		out[i] = sampleBundle(t, &g)
	}
	return out
}

// alone is the verdict of checking each signature of b on its own, with crypto/ed25519: the
// check as it was before batches, to compare with.
func alone(t *testing.T, b *evidence.Bundle, pinned *evidence.Keys) []byte {
	t.Helper()
	for _, n := range b.Notes {
		text := n.Bytes()[:bytes.LastIndex(n.Bytes(), []byte("\n\n"))+1]
		for _, s := range n.Sigs {
			for _, k := range b.Keys {
				if evidence.KeyID(k) == s.Name+"+"+hex8(s.Hash) {
					pub, _ := evidence.PublicKey(k)
					sig, _ := base64.StdEncoding.DecodeString(s.Base64)
					if !ed25519.Verify(pub, text, sig[4:]) {
						return nil // a bad signature: the caller compares verdicts another way
					}
				}
			}
		}
	}
	return b.Check(pinned).Verdict.JSON()
}

func hex8(h uint32) string {
	const digits = "0123456789abcdef"
	var b [8]byte
	for i := range b {
		b[7-i] = digits[h>>(4*i)&15]
	}
	return string(b[:])
}

func TestCheckBundlesAgreesWithCheckingEachBundle(t *testing.T) {
	t.Parallel()
	f := newFixture(t)
	bundles := distinctBundles(t, f, 40)
	for _, pinned := range []*evidence.Keys{nil, f.keys(t)} {
		got := evidence.CheckBundles(bundles, pinned)
		if len(got) != len(bundles) {
			t.Fatalf("%d verdicts for %d bundles", len(got), len(bundles))
		}
		for i, c := range got {
			want := alone(t, bundles[i], pinned)
			if want == nil {
				t.Fatalf("bundle %d: a signature does not verify with crypto/ed25519", i)
			}
			if !bytes.Equal(c.Verdict.JSON(), want) || len(c.Verdict.Problems) != 0 {
				t.Errorf("bundle %d: batch verdict\n%s\ndiffers from alone\n%s", i, c.Verdict.JSON(), want)
			}
			for j, ok := range c.OK {
				if !ok {
					t.Errorf("bundle %d: note %d not OK", i, j+1)
				}
			}
		}
	}
}

// damage replaces note i of b by the note that edit makes of its bytes.
func damage(t *testing.T, b *evidence.Bundle, i int, edit func([]byte) []byte) {
	t.Helper()
	n, err := evidence.ParseNote(edit(bytes.Clone(b.Notes[i].Bytes())))
	if err != nil {
		t.Fatalf("damaged note does not parse: %v", err)
	}
	b.Notes[i] = n
}

// resign rewrites the signature of the last line of a note with change applied to its bytes.
func resign(change func(sig []byte)) func([]byte) []byte {
	return func(msg []byte) []byte {
		i := bytes.LastIndex(msg[:len(msg)-1], []byte("\n")) + 1
		line := string(msg[i : len(msg)-1])
		sp := strings.LastIndexByte(line, ' ')
		sig, _ := base64.StdEncoding.DecodeString(line[sp+1:])
		change(sig[4:])
		return append(msg[:i:i], line[:sp+1]+base64.StdEncoding.EncodeToString(sig)+"\n"...)
	}
}

func TestCheckBundlesNamesOnlyTheDamagedNote(t *testing.T) {
	t.Parallel()
	f := newFixture(t)
	// Notes of sampleBundle: 1 COP, 2 ACK, 3 KEY, 4 NTF, 5 COD-IP, 6 ROD.
	cases := []struct {
		name  string
		note  int
		edit  func([]byte) []byte
		check string
		says  string
	}{
		{"forged signature", 4, resign(func(sig []byte) { sig[40] ^= 1 }), "signature", "signature of p2.example: invalid signature"},
		{"forged R", 1, resign(func(sig []byte) { sig[3] ^= 0x10 }), "signature", "signature of p1.example: invalid signature"},
		{"edited note", 1, func(m []byte) []byte { return bytes.Replace(m, []byte("alice@"), []byte("alick@"), 1) }, "signature", "invalid signature"},
		{"non-canonical S", 5, resign(addOrder), "signature", "invalid signature"},
		{"countersignature", 6, resign(func(sig []byte) { sig[63] ^= 2 }), "signature", "signature of p1.example: invalid signature"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			bundles := distinctBundles(t, f, 60)
			const bad = 37
			damage(t, bundles[bad], tc.note-1, tc.edit)
			for _, pinned := range []*evidence.Keys{nil, f.keys(t)} {
				for i, c := range evidence.CheckBundles(bundles, pinned) {
					v := c.Verdict
					if i != bad {
						if !bytes.Equal(v.JSON(), alone(t, bundles[i], pinned)) || len(v.Problems) != 0 {
							t.Errorf("bundle %d, undamaged: %s", i, v.JSON())
						}
						continue
					}
					if len(v.Problems) != 1 || v.Problems[0].Note != tc.note || v.Problems[0].Check != tc.check ||
						!strings.Contains(v.Problems[0].Reason, tc.says) {
						t.Errorf("damaged bundle: problems %+v, want note %d %s: %s", v.Problems, tc.note, tc.check, tc.says)
					}
					if c.OK[tc.note-1] {
						t.Error("damaged note counted OK")
					}
					// The same verdict as the bundle checked on its own.
					if !bytes.Equal(v.JSON(), bundles[i].Check(pinned).Verdict.JSON()) {
						t.Errorf("damaged bundle: verdict in the batch differs from alone")
					}
				}
			}
		})
	}
}

// addOrder adds the group order L to the S half of a signature: the same value mod L, which
// RFC 8032 §5.1.7 refuses (S must be below L).
func addOrder(sig []byte) {
	le := func(b []byte) *big.Int {
		r := make([]byte, len(b))
		for i := range b {
			r[len(b)-1-i] = b[i]
		}
		return new(big.Int).SetBytes(r)
	}
	l, _ := new(big.Int).SetString("7237005577332262213973186563042994240857116359379907606001950938285454250989", 10)
	s := le(sig[32:])
	s.Add(s, l)
	out := s.FillBytes(make([]byte, 32))
	for i := range out {
		sig[32+i] = out[31-i]
	}
}

func TestCheckRefusesAKeySwapped(t *testing.T) {
	t.Parallel()
	f := newFixture(t)
	bundles := distinctBundles(t, f, 20)
	// Bundle 5's COD-IP is signed by another key of bob's name, which the bundle carries in
	// place of the key its KEY record binds.
	skey, vkey, err := note.GenerateKey(seeded(99), bobKey)
	if err != nil {
		t.Fatal(err)
	}
	s, _ := note.NewSigner(skey)
	b := bundles[5]
	n, err := evidence.Sign(b.Notes[4].Record, s)
	if err != nil {
		t.Fatal(err)
	}
	b.Notes[4] = n
	b.Keys = nil
	for _, k := range []string{f.vkeys[agent1], f.vkeys[agent2], vkey} {
		b.AddKey(k)
	}
	agents, _ := evidence.NewKeys(f.vkeys[agent1], f.vkeys[agent2])
	for i, c := range evidence.CheckBundles(bundles, agents) {
		v := c.Verdict
		if i != 5 {
			if len(v.Problems) != 0 {
				t.Errorf("bundle %d: %+v", i, v.Problems)
			}
			continue
		}
		if len(v.Problems) != 1 || v.Problems[0].Note != 5 || v.Problems[0].Check != "key binding" {
			t.Errorf("swapped key: problems %+v, want note 5 key binding", v.Problems)
		}
	}
	// Pinning agent keys other than the bundle's fails every agent-signed note.
	_, p2other, _ := note.GenerateKey(seeded(98), agent2)
	pinned, _ := evidence.NewKeys(f.vkeys[agent1], p2other)
	c := evidence.CheckBundles(bundles[:1], pinned)[0]
	var failed []int
	for _, p := range c.Verdict.Problems {
		failed = append(failed, p.Note)
	}
	if got, _ := json.Marshal(failed); string(got) != "[3,2,4,5,6]" {
		t.Errorf("p2.example's key swapped: failed notes %s, want the KEY record, then 2, 4, 5, 6: %+v", got, c.Verdict.Problems)
	}
}

// resignLine is resign for the signature line back lines before the note's last (0: the last).
func resignLine(back int, change func(sig []byte)) func([]byte) []byte {
	return func(msg []byte) []byte {
		lines := strings.SplitAfter(string(msg), "\n")
		lines = lines[:len(lines)-1] // after the final line end
		i := len(lines) - 1 - back
		lines[i] = string(resign(change)([]byte(lines[i])))
		return []byte(strings.Join(lines, ""))
	}
}

// A bundle check verifies the log checkpoint's signature and its agent's cosignature with the
// notes' signatures, in the batch: a damaged one refuses that bundle's checkpoint only.
func TestCheckBundlesChecksCheckpointSignatures(t *testing.T) {
	t.Parallel()
	f := newFixture(t)
	keys := f.keys(t)
	var bundles []*evidence.Bundle
	logTime := f.at(30)
	for range 30 {
		b, l := loggedBundle(t, f)
		b.Checkpoint = cosigned(t, f, l, logTime)
		bundles = append(bundles, b)
	}
	// Lines of the checkpoint: its text, then p1.example/log's signature, then p1.example's
	// cosignature.
	const badSig, badCosig, badTime = 7, 19, 23
	bundles[badSig].Checkpoint = resignLine(1, func(sig []byte) { sig[10] ^= 4 })(bundles[badSig].Checkpoint)
	bundles[badCosig].Checkpoint = resignLine(0, func(sig []byte) { sig[8+50] ^= 1 })(bundles[badCosig].Checkpoint)
	// The cosignature's time is signed: a changed time does not verify.
	bundles[badTime].Checkpoint = resignLine(0, func(sig []byte) { sig[7]++ })(bundles[badTime].Checkpoint)
	for i, c := range evidence.CheckBundles(bundles, keys) {
		v := c.Verdict
		if !bytes.Equal(v.JSON(), bundles[i].Check(keys).Verdict.JSON()) {
			t.Errorf("bundle %d: verdict in the batch differs from alone", i)
		}
		switch i {
		case badSig, badCosig, badTime:
			if v.Valid || len(v.Problems) != 1 || v.Problems[0].Check != "log checkpoint" ||
				!strings.Contains(v.Problems[0].Reason, "invalid signature") || c.LogTime != (time.Time{}) {
				t.Errorf("bundle %d, damaged checkpoint: %+v, log time %v", i, v.Problems, c.LogTime)
			}
		default:
			if !v.Valid || len(v.Problems) != 0 || !c.LogTime.Equal(logTime) {
				t.Errorf("bundle %d: %+v, log time %v", i, v.Problems, c.LogTime)
			}
		}
	}
}
