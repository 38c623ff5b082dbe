package protocol

import (
	"bytes"
	"crypto/aes"
	"crypto/cipher"
	"crypto/ecdh"
	"crypto/hkdf"
	"crypto/hpke"
	"crypto/rand"
	"crypto/sha256"
	"encoding/binary"
	"errors"
	"fmt"
	"io"

	"certmail/evidence"
)

// The cryptography the on-line TTP protocols share (PROTOCOLS.md "Common rules"):
//
//   - E_K(M) is AES-256-GCM under a 32-byte key K, no associated data, the 12-byte nonce
//     prefixed to the ciphertext.
//   - PKE_X(…) is HPKE (RFC 9180) in base mode with DHKEM(X25519, HKDF-SHA256), HKDF-SHA256 and
//     AES-256-GCM, to X's encryption key; the info string names the protocol step, so a box
//     sealed for one step never opens as another.
//   - The linked key (Oppliger, seed 000, "derive the message key from the message"):
//     K = HKDF-SHA256(ikm=M, salt=L, info="certmail linked key", 32 bytes) and the nonce
//     HKDF-SHA256(ikm=M, salt=L, info="certmail linked nonce", 12 bytes), where L is the label's
//     canonical text (26 characters, as evidence.Commitment hashes it). C is then a function of
//     (L, M): an arbiter given M recomputes C and checks H(C), with no need for anyone to keep K.

// MessageKeySize is the size of K in E_K.
const MessageKeySize = 32

const gcmNonceSize = 12

// Errors of the seal helpers. A failed decryption never says more than ErrOpen: which byte was
// wrong is of no use to an honest party and of some use to an attacker.
var (
	ErrOpen       = errors.New("protocol: ciphertext does not open under this key")
	ErrKeySize    = errors.New("protocol: message key is not 32 bytes")
	ErrFieldCount = errors.New("protocol: packed fields: wrong number of fields")
)

// randOr returns r, or crypto/rand.Reader when r is nil.
func randOr(r io.Reader) io.Reader {
	if r == nil {
		return rand.Reader
	}
	return r
}

// NewMessageKey draws a random K from r (crypto/rand.Reader when r is nil).
func NewMessageKey(r io.Reader) ([]byte, error) {
	k := make([]byte, MessageKeySize)
	if _, err := io.ReadFull(randOr(r), k); err != nil {
		return nil, fmt.Errorf("protocol: new message key: %w", err)
	}
	return k, nil
}

func newGCM(key []byte) (cipher.AEAD, error) {
	if len(key) != MessageKeySize {
		return nil, ErrKeySize
	}
	block, err := aes.NewCipher(key)
	if err != nil {
		return nil, err
	}
	return cipher.NewGCM(block)
}

// Encrypt returns E_K(m): a random nonce from r (crypto/rand.Reader when r is nil), then the
// AES-256-GCM ciphertext and tag.
func Encrypt(key, m []byte, r io.Reader) ([]byte, error) {
	nonce := make([]byte, gcmNonceSize)
	if _, err := io.ReadFull(randOr(r), nonce); err != nil {
		return nil, fmt.Errorf("protocol: encrypt: nonce: %w", err)
	}
	return sealWithNonce(key, nonce, m)
}

func sealWithNonce(key, nonce, m []byte) ([]byte, error) {
	aead, err := newGCM(key)
	if err != nil {
		return nil, err
	}
	out := make([]byte, 0, len(nonce)+len(m)+aead.Overhead())
	out = append(out, nonce...)
	return aead.Seal(out, nonce, m, nil), nil
}

// Decrypt opens E_K(m). Any failure, a wrong key or a changed byte, is ErrOpen.
func Decrypt(key, c []byte) ([]byte, error) {
	aead, err := newGCM(key)
	if err != nil {
		return nil, err
	}
	if len(c) < gcmNonceSize+aead.Overhead() {
		return nil, ErrOpen
	}
	m, err := aead.Open(nil, c[:gcmNonceSize], c[gcmNonceSize:], nil)
	if err != nil {
		return nil, ErrOpen
	}
	return m, nil
}

// LinkedKey derives the linked key K and nonce of message m under label l.
func LinkedKey(l evidence.Label, m []byte) (key, nonce []byte) {
	salt := []byte(l.String())
	// hkdf.Key fails only for lengths beyond 255 hash outputs.
	key, _ = hkdf.Key(sha256.New, m, salt, "certmail linked key", MessageKeySize)
	nonce, _ = hkdf.Key(sha256.New, m, salt, "certmail linked nonce", gcmNonceSize)
	return key, nonce
}

// EncryptLinked returns the linked key of m under l and C = E_K(m) with the linked nonce. The
// same (l, m) always gives the same K and C.
func EncryptLinked(l evidence.Label, m []byte) (key, c []byte, err error) {
	key, nonce := LinkedKey(l, m)
	c, err = sealWithNonce(key, nonce, m)
	return key, c, err
}

// BoxKey is a party's HPKE key pair for PKE_X: the private half of an agent acting as TTP.
type BoxKey struct{ priv hpke.PrivateKey }

var boxKEM = hpke.DHKEM(ecdh.X25519())

// NewBoxKey derives an X25519 key pair from 32 bytes read from r (crypto/rand.Reader when r is
// nil), so a seeded reader gives a reproducible test key.
func NewBoxKey(r io.Reader) (*BoxKey, error) {
	ikm := make([]byte, 32)
	if _, err := io.ReadFull(randOr(r), ikm); err != nil {
		return nil, fmt.Errorf("protocol: new box key: %w", err)
	}
	priv, err := boxKEM.DeriveKeyPair(ikm)
	if err != nil {
		return nil, fmt.Errorf("protocol: new box key: %w", err)
	}
	return &BoxKey{priv: priv}, nil
}

// Public returns the encryption key others seal to (RFC 9180 SerializePublicKey).
func (k *BoxKey) Public() []byte { return k.priv.PublicKey().Bytes() }

// SealBox returns PKE_X(plaintext) to the public key pub (as BoxKey.Public returns it), bound to
// the info string of one protocol step.
func SealBox(pub []byte, info string, plaintext []byte) ([]byte, error) {
	pk, err := boxKEM.NewPublicKey(pub)
	if err != nil {
		return nil, fmt.Errorf("protocol: seal box: %w", err)
	}
	box, err := hpke.Seal(pk, hpke.HKDFSHA256(), hpke.AES256GCM(), []byte(info), plaintext)
	if err != nil {
		return nil, fmt.Errorf("protocol: seal box: %w", err)
	}
	return box, nil
}

// Open opens a box sealed to k under the same info string. Any failure is ErrOpen.
func (k *BoxKey) Open(info string, box []byte) ([]byte, error) {
	pt, err := hpke.Open(k.priv, hpke.HKDFSHA256(), hpke.AES256GCM(), []byte(info), box)
	if err != nil {
		return nil, ErrOpen
	}
	return pt, nil
}

// packFields encodes byte strings unambiguously: each as a 4-byte big-endian length and the
// bytes. It is the plaintext format of every box and the input of every tuple hash here.
func packFields(fields ...[]byte) []byte {
	n := 0
	for _, f := range fields {
		n += 4 + len(f)
	}
	out := make([]byte, 0, n)
	for _, f := range fields {
		out = binary.BigEndian.AppendUint32(out, uint32(len(f)))
		out = append(out, f...)
	}
	return out
}

// unpackFields decodes exactly n fields packed by packFields, with nothing left over.
func unpackFields(b []byte, n int) ([][]byte, error) {
	out := make([][]byte, 0, n)
	for len(b) > 0 {
		if len(b) < 4 {
			return nil, ErrFieldCount
		}
		l := binary.BigEndian.Uint32(b)
		b = b[4:]
		if uint64(l) > uint64(len(b)) {
			return nil, ErrFieldCount
		}
		out = append(out, bytes.Clone(b[:l]))
		b = b[l:]
	}
	if len(out) != n {
		return nil, ErrFieldCount
	}
	return out, nil
}

// tupleHash is SHA-256 over a domain tag and fields, all packed by packFields: H(f1, f2, …) for
// the named use, never equal to the hash of another use or of another split of the same bytes.
func tupleHash(tag string, fields ...[]byte) evidence.Hash {
	return evidence.Sum(packFields(append([][]byte{[]byte(tag)}, fields...)...))
}
