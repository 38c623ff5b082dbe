package protocol

import (
	"fmt"
	"io"
	"strings"

	"golang.org/x/mod/sumdb/note"

	"certmail/evidence"
)

// Identity is a party's signing key: an agent's, under its host name, or a user's, under the
// key name of its address (evidence.KeyName).
type Identity struct {
	Name     string // agent host name or user address
	Signer   note.Signer
	Verifier string // verifier key, as carried in bundles
}

// NewIdentity generates a key for an agent host name or a user address, reading randomness from
// r (crypto/rand.Reader in production; a seeded reader gives reproducible test keys).
func NewIdentity(name string, r io.Reader) (*Identity, error) {
	keyName := name
	if strings.Contains(name, "@") {
		var err error
		if keyName, err = evidence.KeyName(name); err != nil {
			return nil, err
		}
	}
	skey, vkey, err := note.GenerateKey(r, keyName)
	if err != nil {
		return nil, fmt.Errorf("protocol: identity %s: %w", name, err)
	}
	s, err := note.NewSigner(skey)
	if err != nil {
		return nil, fmt.Errorf("protocol: identity %s: %w", name, err)
	}
	return &Identity{Name: name, Signer: s, Verifier: vkey}, nil
}
