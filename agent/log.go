package agent

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"time"

	"certmail/evidence"
	"certmail/evlog"
	"certmail/store"
)

// Log is the public evidence log (package evlog) every note the agent stores is appended to
// (DESIGN.md §4). Append returns once the entries are durably sequenced; Prove gives the latest
// checkpoint and the inclusion proofs of the entries it covers.
type Log interface {
	Append(ctx context.Context, leaves ...evidence.Hash) ([]uint64, error)
	Size(ctx context.Context) (uint64, error)
	Leaves(ctx context.Context, from, to uint64) ([]evidence.Hash, error)
	Prove(ctx context.Context, indices []uint64) (evlog.Checkpoint, [][]evidence.Hash, error)
}

var _ Log = (*evlog.Log)(nil)

// update runs fn as one step: it commits fn's transaction and hands the notes fn stored to the
// publisher, which appends them to the evidence log shortly after (publishInterval), many steps'
// notes at once. The step is acknowledged once it is committed: the store holds its notes
// durably, and a note a crash keeps out of the log is appended at the next start (RecoverLog),
// so the log's writes need not be on the way to the acknowledgement nor as small as the store's
// commit groups (BENCHMARKS.md, "Evidence log: appends and integration").
func (a *Agent) update(ctx context.Context, fn func(store.Tx) error) error {
	return a.updateWithin(ctx, 0, fn)
}

// updateWithin is update for a step nobody waits on to acknowledge anything: with within > 0
// its commit may wait that long to share a commit another step makes (store.UpdateWithin).
func (a *Agent) updateWithin(ctx context.Context, within time.Duration, fn func(store.Tx) error) error {
	var added []store.Evidence
	step := func(tx store.Tx) error {
		added = added[:0]
		return fn(loggedTx{Tx: tx, added: &added})
	}
	var err error
	if within > 0 {
		err = a.st.UpdateWithin(ctx, within, step)
	} else {
		err = a.st.Update(ctx, step)
	}
	if err != nil {
		return err
	}
	a.pub.add(added)
	return nil
}

// loggedTx remembers the notes a step stores, for update to append once they are committed.
type loggedTx struct {
	store.Tx
	added *[]store.Evidence
}

func (t loggedTx) AddEvidence(l evidence.Label, n *evidence.Note) (store.Evidence, error) {
	e, err := t.Tx.AddEvidence(l, n)
	if err == nil {
		*t.added = append(*t.added, e)
	}
	return e, err
}

// takingNew refuses new items (a submission, a relay) while the evidence log refuses appends,
// before anything is stored, so that the notes waiting for the log are those of the items
// already taken. Steps of those items go on — a delivery recorded, a deadline, an acceptance —
// and their notes wait with the others: refusing them would only make the queue deliver a
// notification again, or a deadline fire late.
func (a *Agent) takingNew() error {
	if err := a.pub.failing(); err != nil {
		return &Error{Kind: KindUnavailable, Message: fmt.Sprintf("the evidence log is failing, try again later: %v", err)}
	}
	return nil
}

// LogAppended is how many notes this process has appended to the evidence log, for /metrics.
func (a *Agent) LogAppended() uint64 { return a.appended.Load() }

// publish appends stored notes to the log and has their indices recorded.
func (a *Agent) publish(ctx context.Context, es []store.Evidence) error {
	if a.settings.Log == nil || len(es) == 0 {
		return nil
	}
	leaves := make([]evidence.Hash, len(es))
	for i, e := range es {
		leaves[i] = e.Leaf
	}
	idx, err := a.settings.Log.Append(ctx, leaves...)
	if err != nil {
		return fmt.Errorf("agent: evidence log: %w", err)
	}
	a.appended.Add(uint64(len(leaves)))
	entries := make([]logEntry, len(es))
	for i, e := range es {
		entries[i] = logEntry{e.Seq, idx[i]}
	}
	a.book.record(entries)
	return nil
}

// Timing of the publisher. Each append to the log is a batch of tessera's (entry bundle, tiles
// and tree state written and synced): gathering the notes of many steps into one append is what
// keeps the log cheap under load. A checkpoint that can prove them comes at most every 100 ms
// anyway (evlog.DefaultCheckpointInterval).
const (
	// publishInterval is the least time between two appends: a note stored after a quiet spell
	// is appended at once, and under load each append carries the notes of this long.
	publishInterval = 50 * time.Millisecond
	// publishRetry is how long the publisher waits to try again after the log refused an append.
	publishRetry = time.Second
	// publishTimeout bounds one append.
	publishTimeout = 30 * time.Second
)

// publisher appends committed notes to the evidence log in the background, in groups. Notes it
// could not append stay in its queue and are tried again every publishRetry; a crash loses the
// queue, not the notes, which are in the store (RecoverLog, Backfill).
type publisher struct {
	a       *Agent
	mu      sync.Mutex
	pending []store.Evidence
	running bool
	idle    chan struct{} // closed when no goroutine is appending
	err     error         // the last append's error, nil once one succeeds
	last    time.Time     // when the last append started
}

func newPublisher(a *Agent) *publisher {
	idle := make(chan struct{})
	close(idle)
	return &publisher{a: a, idle: idle}
}

// add queues committed notes for the log.
func (p *publisher) add(es []store.Evidence) {
	if p.a.settings.Log == nil || len(es) == 0 {
		return
	}
	p.mu.Lock()
	p.pending = append(p.pending, es...)
	p.start()
	p.mu.Unlock()
}

// start runs the append loop unless it runs already; p.mu is held.
func (p *publisher) start() {
	if p.running || len(p.pending) == 0 {
		return
	}
	p.running, p.idle = true, make(chan struct{})
	go p.run(p.idle)
}

func (p *publisher) run(idle chan struct{}) {
	for {
		p.mu.Lock()
		wait := publishInterval - time.Since(p.last)
		p.mu.Unlock()
		if wait > 0 {
			time.Sleep(wait)
		}
		p.mu.Lock()
		batch := p.pending
		p.pending, p.last = nil, time.Now()
		if len(batch) == 0 {
			p.stop(idle)
			p.mu.Unlock()
			return
		}
		p.mu.Unlock()
		ctx, cancel := context.WithTimeout(context.Background(), publishTimeout)
		err := p.a.publish(ctx, batch)
		cancel()
		p.mu.Lock()
		p.err = err
		if err != nil {
			// The notes wait for the log to work again, before any stored since.
			p.pending = append(batch, p.pending...)
			p.stop(idle)
			p.mu.Unlock()
			p.a.logger().Error("agent: appending to the evidence log failed; new messages are refused until it works again",
				"notes", len(batch), "err", err)
			time.AfterFunc(publishRetry, p.retry)
			return
		}
		p.mu.Unlock()
	}
}

// stop marks the loop stopped; p.mu is held.
func (p *publisher) stop(idle chan struct{}) {
	p.running = false
	close(idle)
}

func (p *publisher) retry() {
	p.mu.Lock()
	p.start()
	p.mu.Unlock()
}

// failing returns the error of the last append when it failed.
func (p *publisher) failing() error {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.err
}

// wait returns once every note queued so far is appended, or an append failed.
func (p *publisher) wait(ctx context.Context) error {
	p.mu.Lock()
	idle := p.idle
	p.mu.Unlock()
	select {
	case <-idle:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

// logbookDelay is how long the logbook gathers indices before it writes them: under load, one
// commit records the indices of many steps instead of one commit per step competing with the
// steps' own for the store's writer. A checkpoint covering them is not published sooner anyway.
const logbookDelay = 50 * time.Millisecond

// logEntry is a stored note's place in the log.
type logEntry struct {
	seq   int64
	index uint64
}

// logbook writes the log index of appended notes into the store after the fact, many per
// transaction, so that a step does not pay a second commit. An index lost in a crash is found
// again in the log by RecoverLog.
type logbook struct {
	st      store.Store
	log     *slog.Logger
	mu      sync.Mutex
	pending []logEntry
	running bool
	idle    chan struct{} // closed when no goroutine is writing
}

func newLogbook(st store.Store, log *slog.Logger) *logbook {
	idle := make(chan struct{})
	close(idle)
	return &logbook{st: st, log: log, idle: idle}
}

func (b *logbook) record(es []logEntry) {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.pending = append(b.pending, es...)
	if b.running {
		return
	}
	b.running, b.idle = true, make(chan struct{})
	go b.run(b.idle)
}

func (b *logbook) run(idle chan struct{}) {
	for {
		time.Sleep(logbookDelay)
		b.mu.Lock()
		batch := b.pending
		b.pending = nil
		if len(batch) == 0 {
			b.running = false
			close(idle)
			b.mu.Unlock()
			return
		}
		b.mu.Unlock()
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		err := b.st.Update(ctx, func(tx store.Tx) error { return b.write(tx, batch) })
		cancel()
		if err != nil {
			b.log.Error("agent: recording where notes are in the evidence log failed; the next start finds them in the log",
				"notes", len(batch), "err", err)
		}
	}
}

func (b *logbook) write(tx store.Tx, es []logEntry) error {
	for _, e := range es {
		err := tx.SetLogIndex(e.seq, e.index)
		if errors.Is(err, store.ErrDuplicate) {
			// The log holds the note twice (an append repeated across a crash): the first stays.
			b.log.Warn("agent: a note is in the evidence log twice", "seq", e.seq, "index", e.index, "err", err)
			continue
		}
		if err != nil {
			return err
		}
	}
	return nil
}

// wait returns once every index recorded so far is written (or its write failed).
func (b *logbook) wait(ctx context.Context) error {
	b.mu.Lock()
	idle := b.idle
	b.mu.Unlock()
	select {
	case <-idle:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

// Flush waits until every note stored so far is appended to the log (unless the log fails) and
// the store records its index. Call it before closing the log and the store.
func (a *Agent) Flush(ctx context.Context) error {
	if err := a.pub.wait(ctx); err != nil {
		return err
	}
	return a.book.wait(ctx)
}

// backfillBatch is how many notes Backfill appends at once.
const backfillBatch = 1024

// RecoverLog makes the store and the log agree again after a crash. Run it at start, before the
// agent serves. It first records the index of each entry the log holds whose index the store did
// not record (the process died between an append and its record), so that those notes are not
// appended twice; then Backfill appends the notes the log does not hold (the process died
// between a step's commit and its append). It returns how many of each it found.
func (a *Agent) RecoverLog(ctx context.Context) (recorded, appended int, err error) {
	if a.settings.Log == nil {
		return 0, 0, nil
	}
	if recorded, err = a.recordUnrecorded(ctx); err != nil {
		return recorded, 0, err
	}
	appended, err = a.Backfill(ctx)
	return recorded, appended, err
}

// recordUnrecorded finds the log entries whose index the store lacks and records them. Those
// are the last ones appended before a crash, so it reads only the end of the log: from the
// lowest position below which the store records every entry.
func (a *Agent) recordUnrecorded(ctx context.Context) (int, error) {
	size, err := a.settings.Log.Size(ctx)
	if err != nil {
		return 0, err
	}
	var logged, beyond int64
	err = a.st.View(ctx, func(tx store.Tx) (err error) {
		if logged, err = tx.CountLogged(0); err != nil {
			return err
		}
		beyond, err = tx.CountLogged(size)
		return err
	})
	if err != nil {
		return 0, err
	}
	if beyond > 0 {
		return 0, fmt.Errorf("agent: the store records %d notes at log indices past the log's %d entries: the evidence log lost entries; restore its directory from a backup", beyond, size)
	}
	missing := int64(size) - logged
	if missing <= 0 {
		return 0, nil
	}
	// Widen [from, size) until it holds every unrecorded entry.
	from, span := uint64(0), uint64(missing)
	for span < size {
		from = size - span
		var n int64
		if err := a.st.View(ctx, func(tx store.Tx) (err error) { n, err = tx.CountLogged(from); return err }); err != nil {
			return 0, err
		}
		if int64(size-from)-n == missing {
			break
		}
		from, span = 0, span*2
	}
	// The log holds leaves only; the store finds notes by label and leaf. The entries to record
	// are of notes the store has not recorded as logged, so those are matched by leaf.
	var unlogged []store.Evidence
	if err := a.st.View(ctx, func(tx store.Tx) (err error) { unlogged, err = tx.UnloggedEvidence(0); return err }); err != nil {
		return 0, err
	}
	seqOf := make(map[evidence.Hash]int64, len(unlogged))
	for _, e := range unlogged {
		seqOf[e.Leaf] = e.Seq
	}
	recorded := 0
	for start := from; start < size; start += backfillBatch {
		end := min(start+backfillBatch, size)
		leaves, err := a.settings.Log.Leaves(ctx, start, end)
		if err != nil {
			return recorded, err
		}
		err = a.st.Update(ctx, func(tx store.Tx) error {
			for i, leaf := range leaves {
				index := start + uint64(i)
				seq, ok := seqOf[leaf]
				if !ok {
					// Already recorded (the note is in the log twice), or not stored at all.
					a.logger().Warn("agent: the evidence log holds an entry the store has no unlogged note for", "index", index, "leaf", leaf)
					continue
				}
				if err := tx.SetLogIndex(seq, index); err != nil {
					return err
				}
				delete(seqOf, leaf)
				recorded++
			}
			return nil
		})
		if err != nil {
			return recorded, err
		}
	}
	return recorded, nil
}

// Backfill appends every stored note the log does not hold yet, in storage order, and records
// their indices; it returns how many it appended. Notes a step is appending at the same moment
// are not appended twice (the log gives their first index back), so it is safe to run at any
// time; at start, run RecoverLog instead.
func (a *Agent) Backfill(ctx context.Context) (int, error) {
	if a.settings.Log == nil {
		return 0, nil
	}
	appended := 0
	done := map[int64]bool{} // notes appended by this call: one still unlogged means recording fails
	for {
		var es []store.Evidence
		if err := a.st.View(ctx, func(tx store.Tx) (err error) { es, err = tx.UnloggedEvidence(backfillBatch); return err }); err != nil {
			return appended, err
		}
		if len(es) == 0 {
			return appended, nil
		}
		leaves := make([]evidence.Hash, len(es))
		for i, e := range es {
			if done[e.Seq] {
				return appended, fmt.Errorf("agent: backfill the evidence log: note %d stays unlogged after its append", e.Seq)
			}
			done[e.Seq] = true
			leaves[i] = e.Leaf
		}
		idx, err := a.settings.Log.Append(ctx, leaves...)
		if err != nil {
			return appended, fmt.Errorf("agent: backfill the evidence log: %w", err)
		}
		entries := make([]logEntry, len(es))
		for i, e := range es {
			entries[i] = logEntry{e.Seq, idx[i]}
		}
		if err := a.st.Update(ctx, func(tx store.Tx) error { return a.book.write(tx, entries) }); err != nil {
			return appended, err
		}
		appended += len(es)
	}
}

// Prove sets the bundle's checkpoint to the log's latest and gives each of its notes that the
// checkpoint covers an inclusion proof, replacing what the bundle carried. Notes this agent did
// not store, or has not logged yet, get none; a bundle with none gets no checkpoint either.
func (a *Agent) Prove(ctx context.Context, b *evidence.Bundle) error {
	if a.settings.Log == nil {
		return nil
	}
	var pos []int
	var indices []uint64
	err := a.st.View(ctx, func(tx store.Tx) error {
		for i, n := range b.Notes {
			e, err := tx.EvidenceByLeaf(n.Record.Label, n.Leaf())
			if errors.Is(err, store.ErrNotFound) {
				continue
			}
			if err != nil {
				return err
			}
			if e.Logged {
				pos, indices = append(pos, i), append(indices, e.LogIndex)
			}
		}
		return nil
	})
	if err != nil {
		return err
	}
	b.Checkpoint, b.Proofs = nil, nil
	if len(indices) == 0 {
		return nil
	}
	cp, proofs, err := a.settings.Log.Prove(ctx, indices)
	if err != nil {
		return fmt.Errorf("agent: log proofs for %s: %w", b.Label, err)
	}
	for k, p := range proofs {
		if p != nil {
			b.Proofs = append(b.Proofs, evidence.Proof{Note: pos[k], Index: indices[k], Hashes: p})
		}
	}
	if len(b.Proofs) > 0 {
		b.Checkpoint = cp.Raw
	}
	return nil
}

func (a *Agent) logger() *slog.Logger {
	if a.settings.Logger == nil {
		return slog.New(slog.DiscardHandler)
	}
	return a.settings.Logger
}
