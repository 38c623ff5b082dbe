package evidence

import (
	"crypto/ed25519"
	"encoding/base64"
	"encoding/binary"
	"fmt"
	"strings"
	"time"

	fnote "github.com/transparency-dev/formats/note"
	"golang.org/x/mod/sumdb/note"
)

// Log time: an agent cosigns each checkpoint of its log with a timestamped cosignature
// (C2SP tlog-cosignature, cosignature/v1) made with its own key. The timestamp says when the
// agent saw the tree, so every note the checkpoint holds existed by then: that is the log time
// a judge can weigh "by T" against, besides the time each note states.

// NewLogCosigner returns the cosignature/v1 signer for an agent's checkpoints, from the agent's
// signed-note private key skey, stamping the time now gives. It is written here rather than
// taken from transparency-dev/formats, whose signer always stamps the wall clock: tests and
// replays need a clock of their own. Its signatures verify with that package's verifier.
func NewLogCosigner(skey string, now func() time.Time) (note.Signer, error) {
	f := strings.SplitN(skey, "+", 5)
	if len(f) != 5 || f[0] != "PRIVATE" || f[1] != "KEY" {
		return nil, fmt.Errorf("evidence: log cosigner: not a signed-note private key")
	}
	raw, err := base64.StdEncoding.DecodeString(f[4])
	if err != nil || len(raw) != 1+ed25519.SeedSize || raw[0] != 1 {
		return nil, fmt.Errorf("evidence: log cosigner: not an Ed25519 private key")
	}
	priv := ed25519.NewKeyFromSeed(raw[1:])
	vkey, err := note.NewEd25519VerifierKey(f[2], priv.Public().(ed25519.PublicKey))
	if err != nil {
		return nil, fmt.Errorf("evidence: log cosigner: %w", err)
	}
	v, err := cosignatureVerifier(vkey)
	if err != nil {
		return nil, err
	}
	return &cosigner{name: f[2], hash: v.KeyHash(), key: priv, now: now}, nil
}

type cosigner struct {
	name string
	hash uint32
	key  ed25519.PrivateKey
	now  func() time.Time
}

func (c *cosigner) Name() string    { return c.name }
func (c *cosigner) KeyHash() uint32 { return c.hash }

// Sign signs "cosignature/v1\ntime T\n" and the checkpoint, and returns T (8 bytes, big-endian
// seconds) followed by the Ed25519 signature, as tlog-cosignature specifies.
func (c *cosigner) Sign(msg []byte) ([]byte, error) {
	t := c.now().Unix()
	if t < 0 {
		return nil, fmt.Errorf("evidence: log cosigner: time before 1970")
	}
	signed := append([]byte(fmt.Sprintf("cosignature/v1\ntime %d\n", t)), msg...)
	sig := binary.BigEndian.AppendUint64(nil, uint64(t))
	return append(sig, ed25519.Sign(c.key, signed)...), nil
}

// cosignatureVerifier is the cosignature/v1 verifier of an agent's signed-note verifier key.
func cosignatureVerifier(vkey string) (note.Verifier, error) {
	v, err := fnote.NewVerifierForCosignatureV1(vkey)
	if err != nil {
		return nil, fmt.Errorf("evidence: cosignature key of %q: %w", vkey, err)
	}
	return v, nil
}

// cosignatureTime is the time a verified cosignature/v1 signature states.
func cosignatureTime(s note.Signature) (time.Time, error) {
	t, err := fnote.CoSigV1Timestamp(s)
	if err != nil {
		return time.Time{}, fmt.Errorf("evidence: cosignature of %s: %w", s.Name, err)
	}
	return t.UTC(), nil
}
