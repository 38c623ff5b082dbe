package pki

import (
	"certmail/durable"
	"crypto/ed25519"
	"encoding/base64"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"strings"

	"golang.org/x/mod/sumdb/note"

	"certmail/evidence"
	"certmail/protocol"
)

// File names of the agent key in the data directory.
const (
	AgentKeyFile = "agent.key" // "PRIVATE+KEY+host+hash+key", mode 0600
	AgentPubFile = "agent.pub" // the verifier key, mode 0644
)

// LoadOrCreateAgentKey returns the agent's signed-note key, named after host, from
// dir/agent.key, and created reports whether it was generated now (with randomness from rand).
//
// A key that exists is checked, never replaced: it must be private (mode 0600), named host and
// well formed, and agent.pub must hold its verifier key (agent.pub is written again when
// missing). An agent.pub without agent.key means the key was lost, and is refused too.
func LoadOrCreateAgentKey(dir, host string, rand io.Reader) (id *protocol.Identity, created bool, err error) {
	if err := evidence.CheckHost(host); err != nil {
		return nil, false, fmt.Errorf("pki: agent host name: %w", err)
	}
	if err := EnsurePrivateDir(dir); err != nil {
		return nil, false, err
	}
	keyPath := filepath.Join(dir, AgentKeyFile)
	pubPath := filepath.Join(dir, AgentPubFile)

	b, err := readPrivateFile(keyPath)
	if errors.Is(err, fs.ErrNotExist) {
		if _, err := os.Lstat(pubPath); err == nil {
			return nil, false, fmt.Errorf("pki: %s exists but %s does not, so the agent's key is lost: restore %s from a backup "+
				"(only if that is impossible, move %s away to create a new key; evidence signed by the old key stays verifiable with it)",
				pubPath, keyPath, keyPath, pubPath)
		}
		id, err := createAgentKey(keyPath, pubPath, host, rand)
		if err != nil {
			return nil, false, err
		}
		return id, true, nil
	}
	if err != nil {
		var perr *PermissionError
		if errors.As(err, &perr) {
			return nil, false, err
		}
		return nil, false, fmt.Errorf("pki: agent key: %w", err)
	}

	id, err = parseAgentKey(keyPath, b)
	if err != nil {
		return nil, false, err
	}
	if id.Name != host {
		return nil, false, fmt.Errorf("pki: agent key %s is for host %q, but the configured hostname is %q: "+
			"evidence signed so far names %q, so set hostname = %q, or move %s and %s away to create a key for %q",
			keyPath, id.Name, host, id.Name, id.Name, keyPath, pubPath, host)
	}

	pub, err := os.ReadFile(pubPath)
	switch {
	case errors.Is(err, fs.ErrNotExist):
		if err := durable.WriteAtomic(pubPath, []byte(id.Verifier+"\n"), 0o644); err != nil {
			return nil, false, fmt.Errorf("pki: write verifier key: %w", err)
		}
	case err != nil:
		return nil, false, fmt.Errorf("pki: verifier key: %w", err)
	case strings.TrimSuffix(string(pub), "\n") != id.Verifier:
		return nil, false, fmt.Errorf("pki: %s does not hold the verifier key of %s: delete %s to have it written again from the key",
			pubPath, keyPath, pubPath)
	}
	return id, false, nil
}

func createAgentKey(keyPath, pubPath, host string, rand io.Reader) (*protocol.Identity, error) {
	skey, vkey, err := note.GenerateKey(rand, host)
	if err != nil {
		return nil, fmt.Errorf("pki: generate agent key: %w", err)
	}
	id, err := protocol.IdentityFromKey(host, skey)
	if err != nil || id.Verifier != vkey {
		return nil, fmt.Errorf("pki: generate agent key: %v", err)
	}
	if err := durable.CreateExclusive(keyPath, []byte(skey+"\n"), 0o600); err != nil {
		if errors.Is(err, fs.ErrExist) {
			return nil, fmt.Errorf("pki: %s appeared while it was being created: is another certmail starting with this data directory?", keyPath)
		}
		return nil, fmt.Errorf("pki: write agent key: %w", err)
	}
	if err := durable.WriteAtomic(pubPath, []byte(vkey+"\n"), 0o644); err != nil {
		return nil, fmt.Errorf("pki: write verifier key: %w", err)
	}
	return id, nil
}

// parseAgentKey accepts exactly what createAgentKey writes: the canonical private key and a
// newline.
func parseAgentKey(path string, b []byte) (*protocol.Identity, error) {
	malformed := func(why string) error {
		return fmt.Errorf("pki: agent key %s is malformed (%s): restore it from a backup "+
			"(only if that is impossible, move %s and its %s away to create a new key)", path, why, path, AgentPubFile)
	}
	skey, ok := strings.CutSuffix(string(b), "\n")
	if !ok || strings.ContainsAny(skey, "\r\n") {
		return nil, malformed("want one line")
	}
	signer, err := note.NewSigner(skey)
	if err != nil {
		return nil, malformed(err.Error())
	}
	// NewSigner is lenient about the encoding (upper-case hash, say); insist on the canonical form.
	raw, err := base64.StdEncoding.DecodeString(strings.SplitN(skey, "+", 5)[4])
	if err != nil || len(raw) != 1+ed25519.SeedSize {
		return nil, malformed("not an Ed25519 key")
	}
	canon := fmt.Sprintf("PRIVATE+KEY+%s+%08x+%s", signer.Name(), signer.KeyHash(), base64.StdEncoding.EncodeToString(raw))
	if canon != skey {
		return nil, malformed("not in canonical form")
	}
	pub := ed25519.NewKeyFromSeed(raw[1:]).Public().(ed25519.PublicKey)
	vkey, err := note.NewEd25519VerifierKey(signer.Name(), pub)
	if err != nil {
		return nil, malformed(err.Error())
	}
	id, err := protocol.IdentityFromKey(signer.Name(), skey)
	if err != nil || id.Verifier != vkey {
		return nil, malformed(fmt.Sprint("verifier key: ", err))
	}
	return id, nil
}
