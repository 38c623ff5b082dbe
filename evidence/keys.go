package evidence

import (
	"crypto/ed25519"
	"encoding/base64"
	"fmt"
	"slices"
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
	byKey map[string]note.Verifier
}

// NewKeys parses verifier keys. Duplicates collapse; a malformed key is an error.
func NewKeys(vkeys ...string) (*Keys, error) {
	k := &Keys{byKey: map[string]note.Verifier{}}
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
	id := v.Name() + "+" + fmt.Sprintf("%08x", v.KeyHash())
	if _, dup := k.byKey[id]; dup {
		return nil
	}
	k.byKey[id] = v
	i, _ := slices.BinarySearch(k.list, vkey)
	k.list = slices.Insert(k.list, i, vkey)
	return nil
}

// List returns the verifier keys, sorted.
func (k *Keys) List() []string { return slices.Clone(k.list) }

// Has reports whether a key of that name is in the set.
func (k *Keys) Has(name string) bool {
	for _, v := range k.byKey {
		if v.Name() == name {
			return true
		}
	}
	return false
}

// Verifier implements note.Verifiers.
func (k *Keys) Verifier(name string, hash uint32) (note.Verifier, error) {
	if v, ok := k.byKey[name+"+"+fmt.Sprintf("%08x", hash)]; ok {
		return v, nil
	}
	return nil, &note.UnknownVerifierError{Name: name, KeyHash: hash}
}

// KeyID is the "name+hash" prefix of a verifier key that identifies it in signature lines.
func KeyID(vkey string) string {
	parts := strings.SplitN(vkey, "+", 3)
	if len(parts) < 2 {
		return vkey
	}
	return parts[0] + "+" + parts[1]
}
