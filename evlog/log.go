// Package evlog is the public evidence log (DESIGN.md §4): an append-only Merkle tree, in the
// C2SP tlog-tiles layout, of the SHA-256 hash of every evidence note the agent stores, with
// checkpoints signed by the agent's own note key. It is built on tessera's POSIX driver in the
// data directory, and served read-only over HTTP by Handler.
//
// Each entry is the 32 raw bytes of a note's leaf (evidence.Note.Leaf); its Merkle leaf hash is
// the RFC 6962 hash of those bytes (tlog.RecordHash). So the log reveals no address, subject or
// content, yet the holder of a note proves that it was published, and no agent can quietly
// rewrite or back-date what it published.
//
// Two moments are distinct: Append returns once its entries are durably sequenced (in the tree
// on disk, surviving any crash), which is what the agent's publisher waits for; a checkpoint
// that commits to them is published a little later, and only then can Prove give their
// inclusion proofs.
//
// The package logs what it is given and decides nothing: which notes are logged, and the
// bookkeeping of which are, is the agent's. It must never put anything but leaf hashes in the log.
package evlog

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"time"

	f_log "github.com/transparency-dev/formats/log"
	"github.com/transparency-dev/tessera"
	"github.com/transparency-dev/tessera/api"
	"github.com/transparency-dev/tessera/api/layout"
	"github.com/transparency-dev/tessera/client"
	"github.com/transparency-dev/tessera/storage/posix"
	"golang.org/x/mod/sumdb/note"

	"certmail/durable"
	"certmail/evidence"
)

// Origin is the checkpoint origin line of the log of the agent named name.
func Origin(name string) string { return name + "/log" }

// Tuning of the appender (DESIGN.md §4, measured in BENCHMARKS.md). tessera's defaults (a batch
// every 250 ms or 256 entries) make a lone step wait a quarter of a second for its batch.
const (
	// DefaultBatchMaxAge is how long tessera holds a batch open after its first entry. The
	// committer (group.go) does the batching: this only has to let the burst in which it hands
	// over one group's entries make one batch, and a lone step pays it on top of the write.
	DefaultBatchMaxAge = 500 * time.Microsecond
	// DefaultBatchMaxSize flushes a batch early: one entry bundle's width, so that a batch of
	// that size writes full tiles.
	DefaultBatchMaxSize = layout.EntryBundleWidth
	// DefaultCheckpointInterval is how often a grown tree gets a new checkpoint: the delay
	// before appended notes can be proven. The POSIX driver allows no less than 100 ms.
	DefaultCheckpointInterval = 100 * time.Millisecond
	// dedupWindow is how many recent entries the appender remembers, so that a note appended
	// twice in one process (a step and a backfill racing) gets its first index back.
	dedupWindow = 1 << 16
)

// Config says where the log lives and whose it is.
type Config struct {
	// Dir is the log directory (the data directory's "log").
	Dir string
	// Signer is the agent's note key; the origin is Origin(Signer.Name()).
	Signer note.Signer
	// Verifier is the agent's verifier key, with which the log checks what it reads back.
	Verifier string
	// Cosigner, when set, adds the agent's timestamped cosignature (cosignature/v1,
	// evidence.NewLogCosigner) to every checkpoint: the log time verifiers weigh deadlines with.
	Cosigner note.Signer
	// BatchMaxAge, BatchMaxSize and CheckpointInterval default to the tuned values above.
	BatchMaxAge        time.Duration
	BatchMaxSize       uint
	CheckpointInterval time.Duration
}

// Log is an open evidence log. It is safe for concurrent use.
type Log struct {
	dir      string
	origin   string
	verifier note.Verifier
	add      tessera.AddFn
	reader   tessera.LogReader
	shutdown func(context.Context) error
	ctx      context.Context
	cancel   context.CancelFunc
	group    committer
	closed   sync.Once
}

// Open opens the log in cfg.Dir, creating it (and its first, empty checkpoint) when it does not
// exist, and checks that its published checkpoint is this agent's. Close it to publish what was
// appended and stop.
func Open(cfg Config) (*Log, error) {
	if cfg.Dir == "" || cfg.Signer == nil {
		return nil, errors.New("evlog: open: no directory or no signer")
	}
	v, err := note.NewVerifier(cfg.Verifier)
	if err != nil {
		return nil, fmt.Errorf("evlog: open %s: verifier key: %w", cfg.Dir, err)
	}
	if v.Name() != cfg.Signer.Name() || v.KeyHash() != cfg.Signer.KeyHash() {
		return nil, fmt.Errorf("evlog: open %s: the verifier key is not the signer's", cfg.Dir)
	}
	if cfg.BatchMaxAge <= 0 {
		cfg.BatchMaxAge = DefaultBatchMaxAge
	}
	if cfg.BatchMaxSize == 0 {
		cfg.BatchMaxSize = DefaultBatchMaxSize
	}
	if cfg.CheckpointInterval <= 0 {
		cfg.CheckpointInterval = DefaultCheckpointInterval
	}
	l := &Log{dir: cfg.Dir, origin: Origin(cfg.Signer.Name()), verifier: v}
	// The log is public, but its directory holds tessera's private state too: 0700 like the rest
	// of the data directory. tessera creates what is inside.
	if err := durable.MkdirAll(cfg.Dir); err != nil {
		return nil, fmt.Errorf("evlog: open %s: %w", cfg.Dir, err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	driver, err := posix.New(ctx, posix.Config{Path: cfg.Dir})
	if err != nil {
		cancel()
		return nil, fmt.Errorf("evlog: open %s: %w", cfg.Dir, err)
	}
	signer := &originSigner{Signer: cfg.Signer, name: l.origin}
	var more []note.Signer
	if cfg.Cosigner != nil {
		more = append(more, cfg.Cosigner)
	}
	opts := tessera.NewAppendOptions().
		WithCheckpointSigner(signer, more...).
		WithBatching(cfg.BatchMaxSize, cfg.BatchMaxAge).
		WithCheckpointInterval(cfg.CheckpointInterval).
		WithAntispam(dedupWindow, nil).
		WithShutdownTimeout(10 * time.Second)
	signer.name = cfg.Signer.Name() // see originSigner
	app, shutdown, reader, err := tessera.NewAppender(ctx, driver, opts)
	if err != nil {
		cancel()
		return nil, fmt.Errorf("evlog: open %s: %w", cfg.Dir, err)
	}
	l.add, l.reader, l.shutdown, l.ctx, l.cancel = app.Add, reader, shutdown, ctx, cancel
	if _, err := l.Checkpoint(ctx); err != nil {
		l.cancel()
		return nil, fmt.Errorf("evlog: open %s: %w", cfg.Dir, err)
	}
	return l, nil
}

// originSigner lets tessera write checkpoints whose origin line is the log's origin ("<agent>/log")
// and whose signature is the agent's own key's ("<agent>"), the key its evidence verifies with.
// tessera v1.0.4 reads the origin from the signer's Name when the checkpoint-signer option is set,
// and names the signature line after the signer's Name when it signs: Open sets the option while
// Name answers the origin, then gives Name back the key's own name. Open verifies the checkpoint
// it reads back against both, so a tessera that behaved otherwise would fail loudly.
type originSigner struct {
	note.Signer
	name string
}

func (s *originSigner) Name() string { return s.name }

// Origin is the log's checkpoint origin line.
func (l *Log) Origin() string { return l.origin }

// Dir is the log's directory.
func (l *Log) Dir() string { return l.dir }

// Close publishes a checkpoint committing to everything appended (waiting at most until ctx
// ends) and stops the log. Append fails after Close; closing again does nothing.
func (l *Log) Close(ctx context.Context) error {
	var err error
	l.closed.Do(func() {
		err = l.shutdown(ctx)
		l.cancel()
	})
	if err != nil {
		return fmt.Errorf("evlog: close %s: %w", l.dir, err)
	}
	return nil
}

// Append adds one entry per leaf, in order, and returns their indices once every one is durably
// sequenced. A leaf appended before in this process gets its first index back. If ctx ends first,
// Append returns ctx's error, but the entries may still be sequenced: the caller must treat them
// as possibly logged (and find them again, as the agent's recovery does).
func (l *Log) Append(ctx context.Context, leaves ...evidence.Hash) ([]uint64, error) {
	if len(leaves) == 0 {
		return nil, nil
	}
	r := &request{leaves: leaves, done: make(chan struct{})}
	l.group.submit(r, l.commit)
	select {
	case <-r.done:
		if r.err != nil {
			return nil, fmt.Errorf("evlog: append: %w", r.err)
		}
		return r.idx, nil
	case <-ctx.Done():
		return nil, ctx.Err()
	}
}

// commit hands one group of requests to tessera and waits until all are sequenced. The entries
// are added in one burst, well within the batch age, so that tessera writes them as one batch.
func (l *Log) commit(rs []*request) {
	type pending struct {
		r *request
		f []tessera.IndexFuture
	}
	ps := make([]pending, len(rs))
	for i, r := range rs {
		ps[i].r = r
		for _, leaf := range r.leaves {
			// The appender's own context: a caller giving up must not fail the others' batch.
			ps[i].f = append(ps[i].f, l.add(l.ctx, tessera.NewEntry(leaf[:])))
		}
	}
	for _, p := range ps {
		p.r.idx = make([]uint64, len(p.f))
		for i, f := range p.f {
			got, err := f()
			if err != nil {
				p.r.err = err
				break
			}
			p.r.idx[i] = got.Index
		}
		close(p.r.done)
	}
}

// Size is the number of entries durably in the tree, published in a checkpoint or not yet.
func (l *Log) Size(ctx context.Context) (uint64, error) {
	n, err := l.reader.IntegratedSize(ctx)
	if err != nil {
		return 0, fmt.Errorf("evlog: size: %w", err)
	}
	return n, nil
}

// Leaves reads the entries [from, to) back from the log's entry bundles; to must not pass Size.
func (l *Log) Leaves(ctx context.Context, from, to uint64) ([]evidence.Hash, error) {
	size, err := l.Size(ctx)
	if err != nil {
		return nil, err
	}
	if from > to || to > size {
		return nil, fmt.Errorf("evlog: leaves [%d, %d) of a tree of %d", from, to, size)
	}
	out := make([]evidence.Hash, 0, to-from)
	for ri := range layout.Range(from, to-from, size) {
		raw, err := l.reader.ReadEntryBundle(ctx, ri.Index, ri.Partial)
		if err != nil {
			return nil, fmt.Errorf("evlog: entry bundle %d: %w", ri.Index, err)
		}
		var b api.EntryBundle
		if err := b.UnmarshalText(raw); err != nil {
			return nil, fmt.Errorf("evlog: entry bundle %d: %w", ri.Index, err)
		}
		if uint64(len(b.Entries)) < uint64(ri.First)+uint64(ri.N) {
			return nil, fmt.Errorf("evlog: entry bundle %d holds %d entries, want at least %d", ri.Index, len(b.Entries), uint64(ri.First)+uint64(ri.N))
		}
		for i, e := range b.Entries[ri.First : ri.First+ri.N] {
			if len(e) != len(evidence.Hash{}) {
				return nil, fmt.Errorf("evlog: entry %d is %d bytes, not a leaf hash", ri.Index*layout.EntryBundleWidth+uint64(ri.First)+uint64(i), len(e))
			}
			out = append(out, evidence.Hash(e))
		}
	}
	return out, nil
}

// Checkpoint is a published checkpoint, verified.
type Checkpoint struct {
	Raw  []byte // the signed note, as served
	Size uint64
	Hash [32]byte // the root hash
}

// Checkpoint reads the latest published checkpoint and verifies that it is this log's.
func (l *Log) Checkpoint(ctx context.Context) (Checkpoint, error) {
	raw, err := l.reader.ReadCheckpoint(ctx)
	if err != nil {
		return Checkpoint{}, fmt.Errorf("evlog: checkpoint: %w", err)
	}
	cp, _, _, err := f_log.ParseCheckpoint(raw, l.origin, l.verifier)
	if err != nil {
		return Checkpoint{}, fmt.Errorf("evlog: checkpoint of %s: %w", l.dir, err)
	}
	if len(cp.Hash) != 32 {
		return Checkpoint{}, fmt.Errorf("evlog: checkpoint of %s: root hash of %d bytes", l.dir, len(cp.Hash))
	}
	return Checkpoint{Raw: raw, Size: cp.Size, Hash: [32]byte(cp.Hash)}, nil
}

// Prove returns the latest checkpoint and, for each entry index, its RFC 6962 inclusion proof at
// the checkpoint's size, or nil for an index the checkpoint does not cover yet.
func (l *Log) Prove(ctx context.Context, indices []uint64) (Checkpoint, [][]evidence.Hash, error) {
	cp, err := l.Checkpoint(ctx)
	if err != nil {
		return Checkpoint{}, nil, err
	}
	pb, err := client.NewProofBuilder(ctx, cp.Size, l.reader.ReadTile)
	if err != nil {
		return Checkpoint{}, nil, fmt.Errorf("evlog: proofs at %d: %w", cp.Size, err)
	}
	proofs := make([][]evidence.Hash, len(indices))
	for i, idx := range indices {
		if idx >= cp.Size {
			continue
		}
		hs, err := pb.InclusionProof(ctx, idx)
		if err != nil {
			return Checkpoint{}, nil, fmt.Errorf("evlog: inclusion proof of %d at %d: %w", idx, cp.Size, err)
		}
		p := make([]evidence.Hash, len(hs))
		for j, h := range hs {
			if len(h) != 32 {
				return Checkpoint{}, nil, fmt.Errorf("evlog: inclusion proof of %d: hash of %d bytes", idx, len(h))
			}
			p[j] = evidence.Hash(h)
		}
		proofs[i] = p
	}
	return cp, proofs, nil
}
