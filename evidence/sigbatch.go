package evidence

import (
	"crypto/ed25519"

	voi "github.com/oasisprotocol/curve25519-voi/primitives/ed25519"
)

// How bundle checks verify signatures (sigBatch).
//
// A bundle's check verifies each signature by a trusted key with the cofactored equation of
// RFC 8032 §5.1.7, [8][S]B = [8]R + [8][k]A, which the RFC names as the check (the cofactorless
// [S]B = R + [k]A that crypto/ed25519 uses being allowed). It is the one that batch
// verification can use: the signatures of many notes, of many bundles, are checked with one
// multiscalar multiplication, and a failed batch is checked again bundle by bundle, then
// signature by signature, so that the verdicts are those of checking each signature alone.
//
// What is accepted beside the cofactorless check: S must be below the group order L and R
// canonically encoded, as crypto/ed25519 requires, and keys are decoded as crypto/ed25519 decodes
// them (small-order and non-canonical encodings of A allowed). The two equations differ only for a
// signature whose R is off by a point of small order from [S]B - [k]A, or whose key has a
// small-order component; making one needs the private key (the signer picks R, or the key). A
// third party can neither forge nor alter a signature: S is fixed below L, and a change to R
// changes k, which hashes R's bytes. And what a certmail party accepts during an exchange
// (Note.Verify) passes both checks, so an honest party's evidence verifies everywhere.
//
// The batch is curve25519-voi's: ZIP-215-style cofactored verification with per-key options, a
// Pippenger multiscalar multiplication for large batches, and precomputed tables for keys used
// many times. It was measured against github.com/hdevalence/ed25519consensus, which uses the same
// equation but Straus only and decodes the key of every signature: on one core, about 22 µs a
// signature in batches of 70 to 7,000, against 10–14 µs here (BENCHMARKS.md). Neither merges the
// terms of a key that signs many times in a batch.

// verifyOptions are crypto/ed25519's rules for keys and signature encodings with the cofactored
// equation.
func verifyOptions() *voi.Options {
	return &voi.Options{Verify: &voi.VerifyOptions{
		AllowSmallOrderA:   true,
		AllowSmallOrderR:   true,
		AllowNonCanonicalA: true,
	}}
}

// batchSize is how many signatures go into one batch at most: beyond a few thousand the cost of
// a signature in the batch no longer falls, and memory grows.
const batchSize = 4096

// sigRef names one signature line of one note, checked with one key.
type sigRef struct {
	note *Note
	sig  int
	pub  [ed25519.PublicKeySize]byte
}

// sigBatch collects the signatures that the checks of some bundles will make, verifies them
// together, and answers each check from the results.
type sigBatch struct {
	entries []sigEntry
	results map[sigRef]bool
	opts    *voi.Options
}

type sigEntry struct {
	ref    sigRef
	bundle int // index of the bundle the signature is checked for
}

func newSigBatch() *sigBatch {
	return &sigBatch{results: map[sigRef]bool{}, opts: verifyOptions()}
}

// add queues the signature sig of n, by pub, for the bundle numbered bundle.
func (s *sigBatch) add(bundle int, n *Note, sig int, pub ed25519.PublicKey) {
	ref := sigRef{note: n, sig: sig, pub: [ed25519.PublicKeySize]byte(pub)}
	s.entries = append(s.entries, sigEntry{ref, bundle})
}

// run verifies every queued signature: in batches of whole bundles up to batchSize signatures;
// a batch that fails is verified again bundle by bundle, and a bundle that fails signature by
// signature.
func (s *sigBatch) run() {
	expanded := map[[ed25519.PublicKeySize]byte]*voi.ExpandedPublicKey{}
	for start := 0; start < len(s.entries); {
		end := start + 1
		for end < len(s.entries) && (end-start < batchSize || s.entries[end].bundle == s.entries[end-1].bundle) {
			end++
		}
		chunk := s.entries[start:end]
		if s.verifyBatch(chunk, expanded) {
			for _, e := range chunk {
				s.results[e.ref] = true
			}
		} else {
			for b := 0; b < len(chunk); {
				e := b + 1
				for e < len(chunk) && chunk[e].bundle == chunk[b].bundle {
					e++
				}
				s.verifyEach(chunk[b:e], expanded)
				b = e
			}
		}
		start = end
	}
	s.entries = s.entries[:0]
}

// verifyBatch reports whether every signature of the entries verifies.
func (s *sigBatch) verifyBatch(entries []sigEntry, expanded map[[ed25519.PublicKeySize]byte]*voi.ExpandedPublicKey) bool {
	v := voi.NewBatchVerifier()
	if len(entries) < 64 {
		// A small batch uses the keys' precomputed tables in its multiplication.
		for _, e := range entries {
			n := e.ref.note
			v.AddExpandedWithOptions(expand(expanded, e.ref.pub), n.raw[:n.text], n.sigs[e.ref.sig], s.opts)
		}
		return v.VerifyBatchOnly(nil)
	}
	// A large one does not: a table saves only the key's decoding, which is worth it for a key
	// that signs more than once (an agent's), not for a user's that signs once.
	uses := map[[ed25519.PublicKeySize]byte]int{}
	for _, e := range entries {
		uses[e.ref.pub]++
	}
	v.ForceNoPublicKeyExpansion()
	for _, e := range entries {
		n := e.ref.note
		if uses[e.ref.pub] > 1 {
			v.AddExpandedWithOptions(expand(expanded, e.ref.pub), n.raw[:n.text], n.sigs[e.ref.sig], s.opts)
		} else {
			v.AddWithOptions(e.ref.pub[:], n.raw[:n.text], n.sigs[e.ref.sig], s.opts)
		}
	}
	return v.VerifyBatchOnly(nil)
}

// verifyEach verifies the entries of one bundle as a batch and, when it fails, one by one.
func (s *sigBatch) verifyEach(entries []sigEntry, expanded map[[ed25519.PublicKeySize]byte]*voi.ExpandedPublicKey) {
	v := voi.NewBatchVerifier()
	for _, e := range entries {
		n := e.ref.note
		v.AddExpandedWithOptions(expand(expanded, e.ref.pub), n.raw[:n.text], n.sigs[e.ref.sig], s.opts)
	}
	_, valid := v.Verify(nil)
	for i, e := range entries {
		s.results[e.ref] = valid[i]
	}
}

// expand returns the precomputed form of a key, computing it once per run.
func expand(cache map[[ed25519.PublicKeySize]byte]*voi.ExpandedPublicKey, pub [ed25519.PublicKeySize]byte) *voi.ExpandedPublicKey {
	x, ok := cache[pub]
	if !ok {
		// A key that does not decode gets a nil table, which the verifier counts as invalid.
		x, _ = voi.NewExpandedPublicKey(pub[:])
		cache[pub] = x
	}
	return x
}

// verify answers for one signature: from the batch when it was in it, else by verifying it
// alone with the same equation.
func (s *sigBatch) verify(n *Note, sig int, pub ed25519.PublicKey) bool {
	ref := sigRef{note: n, sig: sig, pub: [ed25519.PublicKeySize]byte(pub)}
	if ok, done := s.results[ref]; done {
		return ok
	}
	ok := voi.VerifyWithOptions(voi.PublicKey(pub), n.raw[:n.text], n.sigs[sig], s.opts)
	s.results[ref] = ok
	return ok
}
