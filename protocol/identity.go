package protocol

import (
	"crypto/ed25519"
	"encoding/base64"
	"fmt"
	"io"
	"strings"
	"time"

	"golang.org/x/mod/sumdb/note"

	"certmail/evidence"
)

// Identity is a party's signing key: an agent's, under its host name, or a user's, under the
// key name of its address (evidence.KeyName).
type Identity struct {
	Name     string // agent host name or user address
	Signer   note.Signer
	Verifier string // verifier key, as carried in bundles
	skey     string // the private key, for LogCosigner
}

// IdentityFromKey is the identity of name with the signed-note private key skey.
func IdentityFromKey(name, skey string) (*Identity, error) {
	s, err := note.NewSigner(skey)
	if err != nil {
		return nil, fmt.Errorf("protocol: identity %s: %w", name, err)
	}
	raw, err := base64.StdEncoding.DecodeString(strings.SplitN(skey, "+", 5)[4])
	if err != nil || len(raw) != 1+ed25519.SeedSize || raw[0] != 1 {
		return nil, fmt.Errorf("protocol: identity %s: not an Ed25519 key", name)
	}
	vkey, err := note.NewEd25519VerifierKey(s.Name(), ed25519.NewKeyFromSeed(raw[1:]).Public().(ed25519.PublicKey))
	if err != nil {
		return nil, fmt.Errorf("protocol: identity %s: %w", name, err)
	}
	return &Identity{Name: name, Signer: s, Verifier: vkey, skey: skey}, nil
}

// LogCosigner is the agent's timestamped cosigner of its log checkpoints (cosignature/v1,
// evidence.NewLogCosigner), stamping the time now gives.
func (id *Identity) LogCosigner(now func() time.Time) (note.Signer, error) {
	if id.skey == "" {
		return nil, fmt.Errorf("protocol: identity %s: no private key to cosign with", id.Name)
	}
	return evidence.NewLogCosigner(id.skey, now)
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
	id, err := IdentityFromKey(name, skey)
	if err != nil {
		return nil, err
	}
	if id.Verifier != vkey {
		return nil, fmt.Errorf("protocol: identity %s: the generated verifier key does not match", name)
	}
	return id, nil
}
