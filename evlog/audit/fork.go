package audit

import (
	"context"
	"errors"
	"fmt"

	"golang.org/x/mod/sumdb/tlog"

	"certmail/evidence"
)

// ForkVersion is the first line of a fork proof file.
const ForkVersion = "certmail-log-fork/1"

// Fork is the self-contained proof that a log signed two trees that cannot both be its history:
// Old, a checkpoint seen earlier, and New, whose tree's first Old.Size entries hash to Prefix,
// not to Old's root. Proof is the consistency proof that Prefix is the root of New's first
// Old.Size entries; when both trees have the same size, Prefix is New's root and Proof is empty.
// Anyone holding the agent's verifier key checks it with CheckFork, offline.
//
// The file is canonical text:
//
//	certmail-log-fork/1
//	key <the agent's verifier key>
//	old <n>\n<n bytes: the earlier signed checkpoint>\n
//	new <n>\n<n bytes: the later signed checkpoint>\n
//	prefix <base64 root of New's first Old.Size entries>
//	proof <k>\n<k lines of base64 hashes>
//	end
type Fork struct {
	Key      string
	Old, New *Checkpoint
	Prefix   tlog.Hash
	Proof    tlog.TreeProof
}

// Encode writes the fork proof file.
func (f *Fork) Encode() []byte {
	var w textWriter
	w.WriteString(ForkVersion + "\n")
	w.line("key", f.Key)
	w.block("old", f.Old.Note)
	w.block("new", f.New.Note)
	w.line("prefix", b64(f.Prefix[:]))
	w.hashes("proof", f.Proof)
	w.WriteString("end\n")
	return w.Bytes()
}

// ParseFork parses a fork proof file. It checks the form, not the signatures nor the proof:
// that is CheckFork's work. Parsing then encoding gives the input back.
func ParseFork(data []byte) (*Fork, error) {
	r := &textReader{what: "fork proof", data: data}
	first, err := r.rawLine()
	if err != nil || first != ForkVersion {
		return nil, r.errorf("not a certmail fork proof (want first line %s)", ForkVersion)
	}
	f := &Fork{}
	if f.Key, err = r.line("key"); err != nil {
		return nil, err
	}
	if _, err := evidence.PublicKey(f.Key); err != nil {
		return nil, r.errorf("%v", err)
	}
	for _, c := range []struct {
		key string
		cp  **Checkpoint
	}{{"old", &f.Old}, {"new", &f.New}} {
		signed, err := r.block(c.key)
		if err != nil {
			return nil, err
		}
		if *c.cp, err = OpenCheckpoint(signed, ""); err != nil {
			return nil, r.errorf("%s checkpoint: %v", c.key, err)
		}
	}
	if f.Prefix, err = r.hash("prefix"); err != nil {
		return nil, err
	}
	proof, err := r.hashes("proof")
	if err != nil {
		return nil, err
	}
	f.Proof = tlog.TreeProof(proof)
	if err := r.end(); err != nil {
		return nil, err
	}
	return f, nil
}

// CheckFork checks a fork proof file with the agent's verifier key (the file's own key when
// agentKey is ""): both checkpoints are the agent's, for its log, and the earlier one's tree is
// not the first entries of the later one's. It returns the fork when the file proves one.
func CheckFork(data []byte, agentKey string) (*Fork, error) {
	f, err := ParseFork(data)
	if err != nil {
		return nil, err
	}
	if err := f.Check(agentKey); err != nil {
		return nil, err
	}
	return f, nil
}

// Check checks the fork as CheckFork does.
func (f *Fork) Check(agentKey string) error {
	if agentKey == "" {
		agentKey = f.Key
	}
	var err error
	if f.Old, err = OpenCheckpoint(f.Old.Note, agentKey); err != nil {
		return fmt.Errorf("audit: fork proof: old checkpoint: %w", err)
	}
	if f.New, err = OpenCheckpoint(f.New.Note, agentKey); err != nil {
		return fmt.Errorf("audit: fork proof: new checkpoint: %w", err)
	}
	earlier, later := f.Old, f.New
	switch {
	case earlier.Size == 0 || earlier.Size > later.Size:
		return fmt.Errorf("audit: fork proof: the old tree (size %d) must be no larger than the new one (size %d), and not empty", earlier.Size, later.Size)
	case f.Prefix == earlier.Hash:
		return errors.New("audit: fork proof: the prefix is the old tree's root: no fork")
	case earlier.Size == later.Size && (f.Prefix != later.Hash || len(f.Proof) != 0):
		return errors.New("audit: fork proof: for trees of one size the prefix must be the new root, with no proof")
	}
	if err := tlog.CheckTree(f.Proof, later.Size, later.Hash, earlier.Size, f.Prefix); err != nil {
		return fmt.Errorf("audit: fork proof: the consistency proof does not show that %s is the root of the first %d entries of the new tree: %v", b64(f.Prefix[:]), earlier.Size, err)
	}
	return nil
}

// String says what the fork proves, in plain words.
func (f *Fork) String() string {
	return fmt.Sprintf("the log %s signed a tree of size %d with root %s, and later a tree of size %d whose first %d entries have root %s: one of them rewrites the other's history",
		f.Old.Origin, f.Old.Size, b64(f.Old.Hash[:]), f.New.Size, f.Old.Size, b64(f.Prefix[:]))
}

// Follow reads the log's latest checkpoint, checks it with the agent's key, and proves that its
// tree extends prev's (the last checkpoint seen; nil on first contact). It returns the latest
// checkpoint when it does; a Fork when the log's own tiles, authenticated by the latest signed
// root, show a different history; an error when the checkpoint is not the agent's, the log went
// back to a smaller tree, or its tiles do not match its checkpoint.
func Follow(ctx context.Context, src Source, agentKey string, prev *Checkpoint) (*Checkpoint, *Fork, error) {
	if agentKey == "" {
		return nil, nil, errors.New("audit: follow: no agent key to check the checkpoints with")
	}
	latest, err := ReadCheckpoint(ctx, src, agentKey)
	if err != nil {
		return nil, nil, err
	}
	if prev == nil {
		return latest, nil, nil
	}
	fork := &Fork{Key: agentKey, Old: prev, New: latest}
	switch {
	case latest.Origin != prev.Origin:
		return nil, nil, fmt.Errorf("audit: the log's origin changed from %s to %s", prev.Origin, latest.Origin)
	case latest.Size < prev.Size:
		return nil, nil, fmt.Errorf("audit: %s serves a tree of size %d, smaller than the size %d it signed before: a stale copy, or a rollback", src, latest.Size, prev.Size)
	case latest.Size == prev.Size && latest.Hash == prev.Hash:
		return latest, nil, nil
	case latest.Size == prev.Size:
		fork.Prefix = latest.Hash
		return nil, fork, nil
	case prev.Size == 0:
		if empty, _ := tlog.TreeHash(0, nil); prev.Hash != empty {
			return nil, nil, fmt.Errorf("audit: the earlier checkpoint has size 0 and a root other than the empty tree's")
		}
		return latest, nil, nil
	}
	hashes := tlog.TileHashReader(latest.Tree(), newTileReader(ctx, src))
	prefix, err := tlog.TreeHash(prev.Size, hashes)
	if err != nil {
		return nil, nil, fmt.Errorf("audit: %s: the tiles do not match the checkpoint of size %d: %w", src, latest.Size, err)
	}
	proof, err := tlog.ProveTree(latest.Size, prev.Size, hashes)
	if err != nil {
		return nil, nil, fmt.Errorf("audit: %s: consistency proof from size %d to %d: %w", src, prev.Size, latest.Size, err)
	}
	if err := tlog.CheckTree(proof, latest.Size, latest.Hash, prev.Size, prefix); err != nil {
		return nil, nil, fmt.Errorf("audit: %s: consistency proof from size %d to %d: %w", src, prev.Size, latest.Size, err)
	}
	if prefix != prev.Hash {
		fork.Prefix, fork.Proof = prefix, proof
		return nil, fork, nil
	}
	return latest, nil, nil
}
