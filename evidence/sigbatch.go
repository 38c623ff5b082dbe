package evidence

import (
	"bytes"
	"crypto/ed25519"
	"crypto/rand"
	"crypto/sha512"
	"encoding/binary"
	"fmt"
	"hash"

	"github.com/oasisprotocol/curve25519-voi/curve"
	"github.com/oasisprotocol/curve25519-voi/curve/scalar"
	voi "github.com/oasisprotocol/curve25519-voi/primitives/ed25519"
)

// How bundle checks verify signatures (sigBatch).
//
// A bundle's check verifies each signature by a trusted key with the cofactored equation of
// RFC 8032 §5.1.7, [8][S]B = [8]R + [8][k]A, which the RFC names as the check (the cofactorless
// [S]B = R + [k]A that crypto/ed25519 uses being allowed). It is the one that batch
// verification can use: the signatures of many notes, of many bundles, and of their log
// checkpoints are checked with one multiscalar multiplication, and a failed batch is checked
// again bundle by bundle, then signature by signature, so that the verdicts are those of
// checking each signature alone.
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
// The batch equation, for signatures i with random 128-bit z_i (Bernstein et al., "High-speed
// high-security signatures", §5), is
//
//	[8]( [-Σ z_i·S_i]B + Σ [z_i]R_i + Σ_A [Σ_{i signed by A} z_i·k_i]A ) = 0
//
// with one term per distinct key A: the two agents sign six of a bundle's seven signatures, so a
// batch of n signatures multiplies about n + n/7 + 1 points instead of 2n + 1. It is written here
// over curve25519-voi's scalar and point types (its Pippenger and Straus multiscalar
// multiplications, its point decompression) because no Go library merges the terms of a
// repeated key: curve25519-voi's BatchVerifier and github.com/hdevalence/ed25519consensus both
// take a term per signature (BENCHMARKS.md compares them). Each distinct key is also decoded
// once per run. A signature verified alone, when a batch fails, is verified by curve25519-voi
// itself (verifyOptions), with the same rules.

// verifyOptions are crypto/ed25519's rules for keys and signature encodings with the cofactored
// equation: sigBatch's rules, for curve25519-voi's verification of one signature.
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

// cpRef names one signature of a bundle's log checkpoint: the line's signature bytes (with the
// time of a cosignature), checked with one key over the checkpoint's text.
type cpRef struct {
	checkpoint *byte // the bundle's Checkpoint[0]: which checkpoint
	cosig      bool
	pub        [ed25519.PublicKeySize]byte
	sig        [cosigSize]byte
}

// cosigSize is the size of a cosignature/v1 signature: an 8-byte time, then Ed25519's.
const cosigSize = 8 + ed25519.SignatureSize

// sigBatch collects the signatures that the checks of some bundles will make, verifies them
// together, and answers each check from the results.
type sigBatch struct {
	entries   []sigEntry
	results   map[sigRef]bool
	cpResults map[cpRef]bool
	keys      map[[ed25519.PublicKeySize]byte]*batchKey
	opts      *voi.Options
	h         hash.Hash
}

// sigEntry is one queued signature: sig by pub over msg, for the bundle numbered bundle; note
// or cp says where its result goes.
type sigEntry struct {
	bundle int
	pub    [ed25519.PublicKeySize]byte
	msg    []byte
	sig    []byte
	note   sigRef
	cp     *cpRef
}

// batchKey is a decoded key: A, or ok false when its encoding is not a curve point.
type batchKey struct {
	a     curve.EdwardsPoint
	ok    bool
	coeff scalar.Scalar // Σ z_i·k_i in the batch being verified
	term  bool          // whether the batch being verified has a term for it yet
}

// newSigBatch returns a batch for the checks of some bundles, sized for seven signatures each.
func newSigBatch(bundles int) *sigBatch {
	return &sigBatch{
		entries:   make([]sigEntry, 0, 8*bundles),
		results:   make(map[sigRef]bool, 8*bundles),
		cpResults: map[cpRef]bool{},
		keys:      map[[ed25519.PublicKeySize]byte]*batchKey{},
		opts:      verifyOptions(),
		h:         sha512.New(),
	}
}

// add queues the signature sig of n, by pub, for the bundle numbered bundle.
func (s *sigBatch) add(bundle int, n *Note, sig int, pub ed25519.PublicKey) {
	ref := sigRef{note: n, sig: sig, pub: [ed25519.PublicKeySize]byte(pub)}
	s.entries = append(s.entries, sigEntry{bundle: bundle, pub: ref.pub, msg: n.raw[:n.text], sig: n.sigs[sig], note: ref})
}

// checkpointSig is what a checkpoint's signature line signs: the Ed25519 signature of the
// line, the message it signs, and its name in a batch; ok is false when the line cannot verify.
// A cosignature/v1 signs "cosignature/v1\ntime T\n" and the checkpoint (C2SP tlog-cosignature),
// as transparency-dev/formats' verifier reads it.
func checkpointSig(checkpoint []byte, pub ed25519.PublicKey, cosig bool, text, sig []byte) (ref cpRef, msg, edSig []byte, ok bool) {
	ref = cpRef{checkpoint: &checkpoint[0], cosig: cosig, pub: [ed25519.PublicKeySize]byte(pub)}
	if !cosig {
		if len(sig) != ed25519.SignatureSize {
			return ref, nil, nil, false
		}
		copy(ref.sig[:], sig)
		return ref, text, sig, true
	}
	if len(sig) != cosigSize || bytes.Count(text, []byte("\n")) < 2 {
		return ref, nil, nil, false
	}
	copy(ref.sig[:], sig)
	msg = fmt.Appendf(nil, "cosignature/v1\ntime %d\n%s", binary.BigEndian.Uint64(sig), text)
	return ref, msg, sig[8:], true
}

// queueCheckpoint is a checkpointVerify that queues each signature of b's checkpoint for the
// bundle numbered bundle, and answers true.
func (s *sigBatch) queueCheckpoint(b *Bundle, bundle int) checkpointVerify {
	return func(pub ed25519.PublicKey, cosig bool, text, sig []byte) bool {
		if ref, msg, edSig, ok := checkpointSig(b.Checkpoint, pub, cosig, text, sig); ok {
			s.entries = append(s.entries, sigEntry{bundle: bundle, pub: ref.pub, msg: msg, sig: edSig, cp: &ref})
		}
		return true
	}
}

// verifyCheckpoint is a checkpointVerify that answers for the signatures of b's checkpoint: from
// the batch when they were in it, else by verifying each alone with the same equation.
func (s *sigBatch) verifyCheckpoint(b *Bundle) checkpointVerify {
	return func(pub ed25519.PublicKey, cosig bool, text, sig []byte) bool {
		ref, msg, edSig, ok := checkpointSig(b.Checkpoint, pub, cosig, text, sig)
		if !ok {
			return false
		}
		if ok, done := s.cpResults[ref]; done {
			return ok
		}
		ok = voi.VerifyWithOptions(voi.PublicKey(pub), msg, edSig, s.opts)
		s.cpResults[ref] = ok
		return ok
	}
}

func (s *sigBatch) done(e *sigEntry, ok bool) {
	if e.cp != nil {
		s.cpResults[*e.cp] = ok
	} else {
		s.results[e.note] = ok
	}
}

// run verifies every queued signature: in batches of whole bundles up to batchSize signatures;
// a batch that fails is verified again bundle by bundle, and a bundle that fails signature by
// signature.
func (s *sigBatch) run() {
	for start := 0; start < len(s.entries); {
		end := start + 1
		for end < len(s.entries) && (end-start < batchSize || s.entries[end].bundle == s.entries[end-1].bundle) {
			end++
		}
		chunk := s.entries[start:end]
		if s.verifyBatch(chunk) {
			for i := range chunk {
				s.done(&chunk[i], true)
			}
		} else {
			for b := 0; b < len(chunk); {
				e := b + 1
				for e < len(chunk) && chunk[e].bundle == chunk[b].bundle {
					e++
				}
				s.verifyEach(chunk[b:e])
				b = e
			}
		}
		start = end
	}
	s.entries = s.entries[:0]
}

// key returns the decoded key pub, decoding it once per run as crypto/ed25519 and
// curve25519-voi (AllowSmallOrderA, AllowNonCanonicalA) do.
func (s *sigBatch) key(pub *[ed25519.PublicKeySize]byte) *batchKey {
	k, ok := s.keys[*pub]
	if !ok {
		k = &batchKey{}
		var c curve.CompressedEdwardsY
		if _, err := c.SetBytes(pub[:]); err == nil {
			_, err = k.a.SetCompressedY(&c)
			k.ok = err == nil
		}
		s.keys[*pub] = k
	}
	return k
}

// verifyBatch reports whether every signature of the entries verifies (see the equation above).
// A false answer says only that some signature does not.
func (s *sigBatch) verifyBatch(entries []sigEntry) bool {
	n := len(entries)
	// Terms: B, then each R_i, then each distinct key.
	points := make([]*curve.EdwardsPoint, 1, 1+n+n/4+2)
	scalars := make([]*scalar.Scalar, 1, cap(points))
	rs := make([]curve.EdwardsPoint, n)
	zs := make([]scalar.Scalar, n)
	var bCoeff scalar.Scalar
	points[0], scalars[0] = curve.ED25519_BASEPOINT_POINT, &bCoeff

	// z_i: 128 random bits each, never zero (2^128 in place of 0), as curve25519-voi draws them.
	random := make([]byte, 16*n)
	if _, err := rand.Read(random); err != nil {
		panic("evidence: crypto/rand: " + err.Error())
	}
	var keys []*batchKey
	defer func() {
		for _, k := range keys {
			k.term = false
		}
	}()
	var (
		buf        [scalar.ScalarSize]byte
		sum        [sha512.Size]byte
		rc         curve.CompressedEdwardsY
		sc, kc, zk scalar.Scalar
	)
	for i := range entries {
		e := &entries[i]
		k := s.key(&e.pub)
		sig := e.sig
		// RFC 8032 §5.1.7: S below L; R a canonical encoding of a curve point.
		if !k.ok || len(sig) != ed25519.SignatureSize || !scalar.ScMinimalVartime(sig[32:]) {
			return false
		}
		if _, err := rc.SetBytes(sig[:32]); err != nil || !rc.IsCanonicalVartime() {
			return false
		}
		if _, err := rs[i].SetCompressedY(&rc); err != nil {
			return false
		}
		if _, err := sc.SetBytesModOrder(sig[32:]); err != nil {
			return false
		}
		// k = SHA-512(R || A || message) mod L.
		s.h.Reset()
		s.h.Write(sig[:32])
		s.h.Write(e.pub[:])
		s.h.Write(e.msg)
		if _, err := kc.SetBytesModOrderWide(s.h.Sum(sum[:0])); err != nil {
			return false
		}
		copy(buf[:16], random[16*i:])
		if buf == [scalar.ScalarSize]byte{} {
			buf[16] = 1
		}
		if _, err := zs[i].SetBits(buf[:]); err != nil {
			return false
		}
		clear(buf[16:])
		bCoeff.Add(&bCoeff, sc.Mul(&zs[i], &sc))
		points, scalars = append(points, &rs[i]), append(scalars, &zs[i])
		if !k.term {
			k.term = true
			k.coeff.Zero()
			keys = append(keys, k)
		}
		k.coeff.Add(&k.coeff, zk.Mul(&zs[i], &kc))
	}
	bCoeff.Neg(&bCoeff)
	for _, k := range keys {
		points, scalars = append(points, &k.a), append(scalars, &k.coeff)
	}
	var check curve.EdwardsPoint
	return check.MultiscalarMulVartime(scalars, points).IsSmallOrder()
}

// verifyEach verifies the entries of one bundle as a batch and, when it fails, one by one with
// curve25519-voi's cofactored verification.
func (s *sigBatch) verifyEach(entries []sigEntry) {
	if s.verifyBatch(entries) {
		for i := range entries {
			s.done(&entries[i], true)
		}
		return
	}
	for i := range entries {
		e := &entries[i]
		s.done(e, voi.VerifyWithOptions(voi.PublicKey(e.pub[:]), e.msg, e.sig, s.opts))
	}
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
