package evidence

import (
	"crypto/ed25519"
	"fmt"
	"testing"
)

// The batch itself, below the fallbacks that keep the verdicts right whatever it answers: it
// must accept a batch of valid signatures (or every check would fall back to one by one) and
// refuse one with a single bad signature, whichever key made it.
func TestVerifyBatchAnswers(t *testing.T) {
	t.Parallel()
	var keys []ed25519.PrivateKey
	for i := range 3 {
		seed := make([]byte, ed25519.SeedSize)
		seed[0] = byte(i + 1)
		keys = append(keys, ed25519.NewKeyFromSeed(seed))
	}
	// Keys 0 and 1 sign many times (agents), key 2 once (a user).
	var entries []sigEntry
	for i := range 300 {
		k := keys[i%2]
		if i == 150 {
			k = keys[2]
		}
		msg := fmt.Appendf(nil, "note %d\n", i)
		entries = append(entries, sigEntry{bundle: i / 7, pub: [32]byte(k.Public().(ed25519.PublicKey)), msg: msg, sig: ed25519.Sign(k, msg)})
	}
	for _, n := range []int{1, 7, 60, 300} { // Straus below 190 points, Pippenger above
		if !newSigBatch(0).verifyBatch(entries[:n]) {
			t.Errorf("%d valid signatures: batch refused", n)
		}
	}
	for _, bad := range []int{0, 1, 150, 299} {
		for name, change := range map[string]func([]byte){
			"S":       func(sig []byte) { sig[40] ^= 1 },
			"R":       func(sig []byte) { sig[5] ^= 1 },
			"S + L":   addL,
			"message": nil,
		} {
			e := make([]sigEntry, len(entries))
			copy(e, entries)
			e[bad].sig = append([]byte(nil), e[bad].sig...)
			if change != nil {
				change(e[bad].sig)
			} else {
				e[bad].msg = []byte("another note\n")
			}
			if newSigBatch(0).verifyBatch(e) {
				t.Errorf("signature %d, %s changed: batch accepted", bad, name)
			}
		}
	}
}

// addL adds the group order L to the S half of a signature (little-endian).
func addL(sig []byte) {
	l := [32]byte{0xed, 0xd3, 0xf5, 0x5c, 0x1a, 0x63, 0x12, 0x58, 0xd6, 0x9c, 0xf7, 0xa2, 0xde, 0xf9, 0xde, 0x14, 31: 0x10}
	carry := 0
	for i := range 32 {
		v := int(sig[32+i]) + int(l[i]) + carry
		sig[32+i], carry = byte(v), v>>8
	}
}
