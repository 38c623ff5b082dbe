package evidence

import (
	"crypto/ed25519"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"fmt"
	"slices"
	"strconv"
	"strings"

	"golang.org/x/mod/sumdb/note"
)

// checkVerifierKey accepts a signed-note verifier key "name+hash+base64" for an Ed25519 key, in
// the canonical form note.NewEd25519VerifierKey writes: a valid key name, the key hash in eight
// lower-case hex digits, and the algorithm byte 1 with the 32-byte key in base64. It checks the
// text in one pass rather than with note.NewVerifier and a re-encoding, which cost three times as
// much for the four keys of every bundle; FuzzCheckVerifierKey holds it to them.
func checkVerifierKey(s string) error {
	name, rest, ok := strings.Cut(s, "+")
	hash16, key64, ok2 := strings.Cut(rest, "+")
	if !ok || !ok2 || !validKeyName(name) || len(hash16) != 8 {
		return fmt.Errorf("verifier key %q: want name+hash+key", s)
	}
	// 33 bytes are 44 base64 characters with no padding and no spare bits: a string of that
	// length that decodes to 33 bytes is their one encoding.
	var key [1 + ed25519.PublicKeySize]byte
	if len(key64) != 44 {
		return fmt.Errorf("verifier key %q: not an Ed25519 key", s)
	}
	if n, err := base64.StdEncoding.Decode(key[:], []byte(key64)); err != nil || n != len(key) || key[0] != 1 {
		return fmt.Errorf("verifier key %q: not an Ed25519 key", s)
	}
	// The key hash of note's Ed25519 keys: the first four bytes of SHA-256(name "\n" key).
	h := sha256.New()
	h.Write([]byte(name))
	h.Write([]byte{'\n'})
	h.Write(key[:])
	var sum [sha256.Size]byte
	var want [8]byte
	hex.Encode(want[:], h.Sum(sum[:0])[:4])
	if string(want[:]) != hash16 {
		return fmt.Errorf("verifier key %q: non-canonical", s)
	}
	return nil
}

// PublicKey extracts the Ed25519 public key from a verifier key.
func PublicKey(vkey string) (ed25519.PublicKey, error) {
	parts := strings.SplitN(vkey, "+", 3)
	if len(parts) != 3 {
		return nil, fmt.Errorf("verifier key %q: want name+hash+key", vkey)
	}
	b, err := base64.StdEncoding.DecodeString(parts[2])
	if err != nil || len(b) != 1+ed25519.PublicKeySize || b[0] != 1 {
		return nil, fmt.Errorf("verifier key %q: not an Ed25519 key", vkey)
	}
	return ed25519.PublicKey(b[1:]), nil
}

// Keys is a set of verifier keys: the note.Verifiers an arbiter trusts for one check.
type Keys struct {
	list  []string // canonical verifier keys, sorted
	byKey map[keyID]trustedKey
}

// keyID names a key as signature lines do: its name and key hash.
type keyID struct {
	name string
	hash uint32
}

type trustedKey struct {
	v   note.Verifier
	pub ed25519.PublicKey
}

// NewKeys parses verifier keys. Duplicates collapse; a malformed key is an error.
func NewKeys(vkeys ...string) (*Keys, error) {
	k := &Keys{byKey: make(map[keyID]trustedKey, len(vkeys))}
	for _, s := range vkeys {
		if err := k.Add(s); err != nil {
			return nil, err
		}
	}
	return k, nil
}

// Add adds one verifier key.
func (k *Keys) Add(vkey string) error {
	if err := checkVerifierKey(vkey); err != nil {
		return fmt.Errorf("evidence: %w", err)
	}
	v, _ := note.NewVerifier(vkey)
	pub, _ := PublicKey(vkey)
	k.add(vkey, trustedKey{v, pub})
	return nil
}

func (k *Keys) add(vkey string, t trustedKey) {
	id := keyID{t.v.Name(), t.v.KeyHash()}
	if _, dup := k.byKey[id]; dup {
		return
	}
	k.byKey[id] = t
	i, _ := slices.BinarySearch(k.list, vkey)
	k.list = slices.Insert(k.list, i, vkey)
}

// union returns a new set holding the keys of k and of other, which were checked when added.
func (k *Keys) union(other *Keys) *Keys {
	u := &Keys{list: slices.Clone(k.list), byKey: make(map[keyID]trustedKey, len(k.byKey)+len(other.byKey))}
	for id, t := range k.byKey {
		u.byKey[id] = t
	}
	for _, vkey := range other.list {
		u.add(vkey, other.byKey[verifierID(vkey)])
	}
	return u
}

// verifierID is the keyID of a canonical verifier key.
func verifierID(vkey string) keyID {
	name, rest, _ := strings.Cut(vkey, "+")
	h, _ := strconv.ParseUint(rest[:min(8, len(rest))], 16, 32)
	return keyID{name, uint32(h)}
}

// List returns the verifier keys, sorted.
func (k *Keys) List() []string { return slices.Clone(k.list) }

// Has reports whether a key of that name is in the set.
func (k *Keys) Has(name string) bool {
	for id := range k.byKey {
		if id.name == name {
			return true
		}
	}
	return false
}

// Verifier implements note.Verifiers.
func (k *Keys) Verifier(name string, hash uint32) (note.Verifier, error) {
	if t, ok := k.byKey[keyID{name, hash}]; ok {
		return t.v, nil
	}
	return nil, &note.UnknownVerifierError{Name: name, KeyHash: hash}
}

// publicKey returns the Ed25519 key that signature lines by name and hash refer to.
func (k *Keys) publicKey(name string, hash uint32) (ed25519.PublicKey, bool) {
	t, ok := k.byKey[keyID{name, hash}]
	return t.pub, ok
}

// KeyID is the "name+hash" prefix of a verifier key that identifies it in signature lines.
func KeyID(vkey string) string {
	parts := strings.SplitN(vkey, "+", 3)
	if len(parts) < 2 {
		return vkey
	}
	return parts[0] + "+" + parts[1]
}
