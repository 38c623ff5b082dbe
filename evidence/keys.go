package evidence

import (
	"crypto/ed25519"
	"encoding/base64"
	"fmt"
	"slices"
	"strconv"
	"strings"

	"golang.org/x/mod/sumdb/note"
)

// checkVerifierKey accepts a signed-note verifier key "name+hash+base64" for an Ed25519 key, in
// the canonical form note.NewEd25519VerifierKey writes.
func checkVerifierKey(s string) error {
	v, err := note.NewVerifier(s)
	if err != nil {
		return fmt.Errorf("verifier key %q: %v", s, err)
	}
	pub, err := PublicKey(s)
	if err != nil {
		return err
	}
	canon, err := note.NewEd25519VerifierKey(v.Name(), pub)
	if err != nil || canon != s {
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
