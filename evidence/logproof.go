package evidence

import (
	"bytes"
	"crypto/ed25519"
	"encoding/base64"
	"errors"
	"fmt"
	"slices"
	"strconv"
	"strings"
	"time"

	"golang.org/x/mod/sumdb/note"
	"golang.org/x/mod/sumdb/tlog"
)

// The evidence log (DESIGN.md §4) is a C2SP tlog-tiles log whose entries are the 32-byte leaves
// of evidence notes (Note.Leaf); its Merkle leaf hash is RFC 6962's, tlog.RecordHash of those 32
// bytes. Its checkpoints are C2SP tlog-checkpoint signed notes whose origin is LogOrigin(agent),
// signed with the agent's own key.

// LogOrigin is the origin line of the evidence log kept by the agent of that key name.
func LogOrigin(agent string) string { return agent + "/log" }

// Checkpoint is the body of a C2SP tlog-checkpoint: the log's origin, its size and the RFC 6962
// root hash of its first Size entries, then optional extension lines.
type Checkpoint struct {
	Origin     string
	Size       int64
	Hash       tlog.Hash
	Extensions []string
	// Time is the log time: when the agent cosigned the checkpoint (cosignature/v1), zero when it
	// did not. Set by OpenCheckpoint, not part of the text.
	Time time.Time
}

// ParseCheckpoint parses the text of a checkpoint note (without its signatures). It is strict:
// a decimal size without leading zeros, a canonical base64 hash, no empty line; parsing then
// Text gives back the input. x/mod's tlog.ParseTree reads only the go.sum database's own
// origin, hence this parser.
func ParseCheckpoint(text []byte) (*Checkpoint, error) {
	s, ok := strings.CutSuffix(string(text), "\n")
	if !ok {
		return nil, malformed("checkpoint: does not end with a line end")
	}
	lines := strings.Split(s, "\n")
	if len(lines) < 3 {
		return nil, malformed("checkpoint: %d lines, want origin, size and root hash", len(lines))
	}
	c := &Checkpoint{Origin: lines[0]}
	if c.Origin == "" || strings.ContainsAny(c.Origin, " \t\r+") || !isPrintable(c.Origin) {
		return nil, malformed("checkpoint: bad origin line %q", c.Origin)
	}
	size, err := strconv.ParseUint(lines[1], 10, 63)
	if err != nil || strconv.FormatUint(size, 10) != lines[1] {
		return nil, malformed("checkpoint: bad tree size %q", lines[1])
	}
	c.Size = int64(size)
	h, err := base64.StdEncoding.DecodeString(lines[2])
	if err != nil || len(h) != tlog.HashSize || base64.StdEncoding.EncodeToString(h) != lines[2] {
		return nil, malformed("checkpoint: bad root hash %q", lines[2])
	}
	c.Hash = tlog.Hash(h)
	for _, l := range lines[3:] {
		if l == "" || !isPrintable(l) {
			return nil, malformed("checkpoint: bad extension line %q", l)
		}
		c.Extensions = append(c.Extensions, l)
	}
	return c, nil
}

func isPrintable(s string) bool {
	for _, r := range s {
		if r < 0x20 || r == 0x7f || r == 0xfffd {
			return false
		}
	}
	return true
}

// Text encodes the checkpoint body, the text its signatures sign.
func (c *Checkpoint) Text() []byte {
	var b bytes.Buffer
	fmt.Fprintf(&b, "%s\n%d\n%s\n", c.Origin, c.Size, base64.StdEncoding.EncodeToString(c.Hash[:]))
	for _, e := range c.Extensions {
		b.WriteString(e + "\n")
	}
	return b.Bytes()
}

// Tree is the checkpoint's tree in x/mod's terms.
func (c *Checkpoint) Tree() tlog.Tree { return tlog.Tree{N: c.Size, Hash: c.Hash} }

// OpenCheckpoint checks a signed checkpoint against the verifier keys of the agents one trusts
// and returns it with the name of the agent whose log it is. The checkpoint must carry a valid
// signature by one of those agents' keys, and its origin must be that agent's log. The signature
// line may name the agent or the log's origin: the same Ed25519 key either way (tessera names a
// checkpoint's signature after its origin). It verifies with crypto/ed25519 (note's verifiers);
// a bundle check verifies the same signatures in its batch (see sigBatch).
func OpenCheckpoint(signed []byte, agentKeys []string) (*Checkpoint, string, error) {
	return openCheckpoint(signed, agentKeys, nil)
}

// checkpointVerify verifies one signature of a checkpoint by an agent's key pub: sig, the
// signature line's bytes after the key hash, over msg, the checkpoint's text; when cosig, sig is
// a cosignature/v1 signature (C2SP tlog-cosignature: an 8-byte time, then the Ed25519 signature
// of the cosignature/v1 message).
type checkpointVerify func(pub ed25519.PublicKey, cosig bool, msg, sig []byte) bool

// checkpointVerifier is one of the verifiers OpenCheckpoint accepts, verifying with verify.
type checkpointVerifier struct {
	note.Verifier
	pub    ed25519.PublicKey
	cosig  bool
	verify checkpointVerify
}

func (v checkpointVerifier) Verify(msg, sig []byte) bool { return v.verify(v.pub, v.cosig, msg, sig) }

// openCheckpoint is OpenCheckpoint, with its signatures verified by verify when it is not nil
// (a bundle check's batch), by the verifiers of note and tlog-cosignature otherwise.
func openCheckpoint(signed []byte, agentKeys []string, verify checkpointVerify) (*Checkpoint, string, error) {
	var verifiers []note.Verifier
	agentOf := map[string]string{} // "name+hash" of each accepted verifier -> agent name
	cosigID := map[string]bool{}   // which of them are timestamped cosignatures (log time)
	for _, k := range agentKeys {
		v, err := note.NewVerifier(k)
		if err != nil {
			return nil, "", fmt.Errorf("evidence: checkpoint: %w", err)
		}
		pub, err := PublicKey(k)
		if err != nil {
			return nil, "", fmt.Errorf("evidence: checkpoint: %w", err)
		}
		alias, err := logVerifier(v.Name(), pub)
		if err != nil {
			return nil, "", fmt.Errorf("evidence: checkpoint: %w", err)
		}
		cosig, err := cosignatureVerifier(k)
		if err != nil {
			return nil, "", fmt.Errorf("evidence: checkpoint: %w", err)
		}
		cosigID[fmt.Sprintf("%s+%08x", cosig.Name(), cosig.KeyHash())] = true
		for _, w := range []note.Verifier{v, alias, cosig} {
			id := fmt.Sprintf("%s+%08x", w.Name(), w.KeyHash())
			if _, dup := agentOf[id]; !dup {
				agentOf[id] = v.Name()
				if verify != nil {
					w = checkpointVerifier{w, pub, w == cosig, verify}
				}
				verifiers = append(verifiers, w)
			}
		}
	}
	n, err := note.Open(signed, note.VerifierList(verifiers...))
	if err != nil {
		var unverified *note.UnverifiedNoteError
		if errors.As(err, &unverified) {
			return nil, "", fmt.Errorf("evidence: checkpoint: not signed by a trusted agent key (signed by %s)", sigNames(unverified.Note.UnverifiedSigs))
		}
		return nil, "", fmt.Errorf("evidence: checkpoint: %w", err)
	}
	c, err := ParseCheckpoint([]byte(n.Text))
	if err != nil {
		return nil, "", err
	}
	var signers []string
	for _, s := range n.Sigs {
		id := fmt.Sprintf("%s+%08x", s.Name, s.Hash)
		agent := agentOf[id]
		if LogOrigin(agent) == c.Origin && !cosigID[id] {
			// The log time, when the agent cosigned this checkpoint with a timestamp.
			for _, cs := range n.Sigs {
				csID := fmt.Sprintf("%s+%08x", cs.Name, cs.Hash)
				if cosigID[csID] && agentOf[csID] == agent {
					if c.Time, err = cosignatureTime(cs); err != nil {
						return nil, "", err
					}
				}
			}
			return c, agent, nil
		}
		signers = append(signers, agent)
	}
	if len(signers) == 0 {
		return nil, "", fmt.Errorf("evidence: checkpoint: only cosigned, not signed, by a trusted agent key")
	}
	return nil, "", fmt.Errorf("evidence: checkpoint: origin %q is not the log of the agent that signed it (%s, whose log is %s)", c.Origin, strings.Join(signers, ", "), LogOrigin(signers[0]))
}

// CheckpointText returns the text of a signed checkpoint without checking any signature.
func CheckpointText(signed []byte) (*Checkpoint, error) {
	_, err := note.Open(signed, note.VerifierList())
	var unverified *note.UnverifiedNoteError
	if !errors.As(err, &unverified) {
		return nil, malformed("checkpoint: not a signed note: %v", err)
	}
	return ParseCheckpoint([]byte(unverified.Note.Text))
}

func sigNames(sigs []note.Signature) string {
	var names []string
	for _, s := range sigs {
		names = append(names, fmt.Sprintf("%s+%08x", s.Name, s.Hash))
	}
	if len(names) == 0 {
		return "nobody"
	}
	return strings.Join(names, ", ")
}

// logVerifier is the agent's key under the name of its log's origin.
func logVerifier(agent string, pub []byte) (note.Verifier, error) {
	vkey, err := note.NewEd25519VerifierKey(LogOrigin(agent), pub)
	if err != nil {
		return nil, err
	}
	return note.NewVerifier(vkey)
}

// LogSigner returns the signer for an agent's log checkpoints: the agent's own key (its signer
// and verifier key vkey), named after the log's origin so that a log library that takes the
// origin from the signer's name (tessera's WithCheckpointSigner) writes LogOrigin(agent).
// OpenCheckpoint accepts its signatures with the agent's verifier key.
func LogSigner(s note.Signer, vkey string) (note.Signer, error) {
	pub, err := PublicKey(vkey)
	if err != nil {
		return nil, fmt.Errorf("evidence: log signer: %w", err)
	}
	v, err := note.NewVerifier(vkey)
	if err != nil || v.Name() != s.Name() || v.KeyHash() != s.KeyHash() {
		return nil, fmt.Errorf("evidence: log signer: %q is not the verifier key of %s", vkey, s.Name())
	}
	lv, err := logVerifier(s.Name(), pub)
	if err != nil {
		return nil, fmt.Errorf("evidence: log signer: %w", err)
	}
	return renamedSigner{s, lv.Name(), lv.KeyHash()}, nil
}

type renamedSigner struct {
	note.Signer
	name string
	hash uint32
}

func (r renamedSigner) Name() string    { return r.name }
func (r renamedSigner) KeyHash() uint32 { return r.hash }

// CheckInclusion checks that the log entry leaf sits at index p.Index of the checkpoint's tree.
func (c *Checkpoint) CheckInclusion(p Proof, leaf Hash) error {
	if p.Index >= uint64(c.Size) {
		return fmt.Errorf("the proof is for index %d, outside the tree of %s, size %d", p.Index, c.Origin, c.Size)
	}
	proof := make(tlog.RecordProof, len(p.Hashes))
	for i, h := range p.Hashes {
		proof[i] = tlog.Hash(h)
	}
	if err := tlog.CheckRecord(proof, c.Size, c.Hash, int64(p.Index), tlog.RecordHash(leaf[:])); err != nil {
		return fmt.Errorf("the note's leaf %x is not at index %d of %s at tree size %d: the proof does not lead to the checkpoint's root", leaf[:8], p.Index, c.Origin, c.Size)
	}
	return nil
}

// checkLog checks the bundle's checkpoint with the agents' keys and every note's inclusion
// proof against it. A failed proof fails its note, as a failed signature does.
func (b *Bundle) checkLog(agents []string, c *Checked, verify checkpointVerify) {
	v := c.Verdict
	if len(b.Proofs) == 0 {
		v.Notices = append(v.Notices, "the bundle has no log proofs yet: the notes' publication in the evidence log was not checked")
		if b.Checkpoint == nil {
			return
		}
	}
	cp, agent, err := openCheckpoint(b.Checkpoint, agents, verify)
	if err != nil {
		v.Fail(0, "", "log checkpoint", "%s", strings.TrimPrefix(err.Error(), "evidence: checkpoint: "))
		return
	}
	var logged, unlogged []int
	proven := make([]bool, len(b.Notes))
	for _, p := range b.Proofs {
		n := b.Notes[p.Note]
		if err := cp.CheckInclusion(p, n.Leaf()); err != nil {
			v.Fail(p.Note+1, n.Record.Type, "log inclusion", "%v", err)
			c.OK[p.Note] = false
			continue
		}
		// A note the log held at its cosigned time cannot have been made after it: the agent
		// signed both, so a later date is a forward-dated note (or a backdated cosignature).
		// Cosignatures state whole seconds.
		if t := n.Record.Time; !cp.Time.IsZero() && t.After(cp.Time.Add(time.Second)) {
			v.Fail(p.Note+1, n.Record.Type, "log time", "dated %s, after the log time %s of the checkpoint that holds it",
				FormatTime(t), FormatTime(cp.Time))
			c.OK[p.Note] = false
			continue
		}
		proven[p.Note] = true
	}
	c.Logged, c.LogTime = proven, cp.Time
	for i, ok := range proven {
		if ok {
			logged = append(logged, i+1)
		} else if !slices.ContainsFunc(b.Proofs, func(p Proof) bool { return p.Note == i }) {
			unlogged = append(unlogged, i+1)
		}
	}
	if len(logged) > 0 {
		says := fmt.Sprintf("logged: %s in %s at tree size %d (root %s)",
			noteRanges(logged), cp.Origin, cp.Size, base64.StdEncoding.EncodeToString(cp.Hash[:]))
		if !cp.Time.IsZero() {
			says += fmt.Sprintf("; log time %s: %s existed by then", FormatTime(cp.Time), itThey(len(logged)))
		}
		v.Facts = append(v.Facts, Fact{Signer: agent, Says: says})
	}
	if len(unlogged) > 0 && len(b.Proofs) > 0 {
		v.Notices = append(v.Notices, fmt.Sprintf("%s no log proof yet: %s publication in the evidence log was not checked",
			haveHas(noteRanges(unlogged), len(unlogged)), itsTheir(len(unlogged))))
	}
}

// noteRanges writes note positions as people read them: "note 3", "notes 1–4, 6".
func noteRanges(pos []int) string {
	var parts []string
	for i := 0; i < len(pos); {
		j := i
		for j+1 < len(pos) && pos[j+1] == pos[j]+1 {
			j++
		}
		switch {
		case j == i:
			parts = append(parts, strconv.Itoa(pos[i]))
		case j == i+1:
			parts = append(parts, strconv.Itoa(pos[i]), strconv.Itoa(pos[j]))
		default:
			parts = append(parts, fmt.Sprintf("%d–%d", pos[i], pos[j]))
		}
		i = j + 1
	}
	if len(pos) == 1 {
		return "note " + parts[0]
	}
	return "notes " + strings.Join(parts, ", ")
}

func haveHas(subject string, n int) string {
	if n == 1 {
		return subject + " has"
	}
	return subject + " have"
}

func itThey(n int) string {
	if n == 1 {
		return "it"
	}
	return "they"
}

func itsTheir(n int) string {
	if n == 1 {
		return "its"
	}
	return "their"
}
