package sqlite

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"sync/atomic"
	"time"

	"certmail/store"
)

// Group commit (DESIGN.md §6: throughput from one writer batching concurrent submissions, never
// from weaker syncing). One goroutine, the committer, owns the writer connection. It takes every
// Update waiting when it is free, runs them one after another in one BEGIN IMMEDIATE
// transaction, each inside a SAVEPOINT of its own, and ends the batch with one COMMIT: one
// fsync of the WAL for all of them. A call whose fn fails is rolled back to its savepoint and
// leaves the rest of the batch alone; every caller returns only once the shared COMMIT is on
// disk, and if that COMMIT fails, every caller of the batch gets the error and nothing is kept.
//
// The batch is whatever queued while the previous one ran and synced. With a commit delay
// (SetCommitDelay), a batch that starts while many submissions are under way waits a little
// for them to join it; a lone Update never waits for company. A batch of UpdateWithin calls
// alone waits for an Update, until the earliest of their deadlines: under a steady load the
// records of delivered mails then ride on the submissions' commits instead of taking one each.

// maxBatch bounds how many Updates share one transaction, so one batch's latency stays bounded.
const maxBatch = 128

// commitSiblings is how many callers, beyond those already in a batch, must be under way
// for the batch to wait for them (PostgreSQL's commit_siblings, whose default it takes).
const commitSiblings = 5

// commitDelay is how long a batch may wait for more Updates, and who says how many are
// coming.
type commitDelay struct {
	d        time.Duration
	underWay func() int
}

// SetCommitDelay has a batch wait up to d for more Updates before it begins, when underWay
// says that at least commitSiblings more callers than the batch holds are under way
// (PostgreSQL's commit_delay and commit_siblings). Under a load of many concurrent
// submissions each commit then takes more of them: fewer commits, and a shorter wait at the
// tail (BENCHMARKS.md). Zero d, the default, never waits.
func (s *Store) SetCommitDelay(d time.Duration, underWay func() int) {
	if d <= 0 || underWay == nil {
		s.delay.Store(nil)
		return
	}
	s.delay.Store(&commitDelay{d: d, underWay: underWay})
}

// errClosed is what an Update gets after Close.
var errClosed = errors.New("store: update: store closed")

// request states: the committer takes a pending request, or its caller abandons it first.
const (
	pending int32 = iota
	taken
	abandoned
)

// request is one Update waiting for the committer.
type request struct {
	ctx   context.Context
	fn    func(store.Tx) error
	by    time.Time // UpdateWithin's: when it must be committing; zero for Update
	state atomic.Int32
	done  chan outcome // buffered: the committer never waits for a caller
}

// outcome is what the committer hands back: fn's error (or the commit's), or fn's panic, which
// the caller raises again in its own goroutine.
type outcome struct {
	err      error
	panicked bool
	panicVal any
}

// Update runs fn inside a transaction on the writer connection and returns once the COMMIT is on
// disk. Concurrent Updates share a transaction and its commit (group commit), each in a
// savepoint of its own: fn's error or panic undoes only fn's own writes. One whose ctx ends
// while it waits, or before the commit, keeps nothing and returns ctx's error. fn must not call
// Update or View.
func (s *Store) Update(ctx context.Context, fn func(store.Tx) error) error {
	return s.update(ctx, time.Time{}, fn)
}

// UpdateWithin is Update whose commit may wait up to within for an Update to share it: when
// the committer is free and holds only UpdateWithin calls, it waits until the earliest of
// their deadlines for an Update, and commits them all with it, or alone at the deadline.
func (s *Store) UpdateWithin(ctx context.Context, within time.Duration, fn func(store.Tx) error) error {
	return s.update(ctx, time.Now().Add(max(within, 0)), fn)
}

func (s *Store) update(ctx context.Context, by time.Time, fn func(store.Tx) error) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	r := &request{ctx: ctx, fn: fn, by: by, done: make(chan outcome, 1)}
	if err := s.enqueue(r); err != nil {
		return err
	}
	var o outcome
	select {
	case o = <-r.done:
	case <-ctx.Done():
		if r.state.CompareAndSwap(pending, abandoned) {
			return ctx.Err() // the committer will skip it
		}
		// fn is running or has run: its statements now fail on ctx, and the committer checks
		// ctx before the commit; wait to hear which way it went.
		o = <-r.done
	}
	if o.panicked {
		panic(o.panicVal)
	}
	return o.err
}

// enqueue hands r to the committer, or gives up when ctx ends or the store is closed.
func (s *Store) enqueue(r *request) error {
	s.mu.RLock()
	defer s.mu.RUnlock()
	if s.closed {
		return errClosed
	}
	select {
	case s.queue <- r:
		return nil
	case <-r.ctx.Done():
		return r.ctx.Err()
	}
}

// commitLoop is the committer: it runs until Close closes the queue and it has drained it.
func (s *Store) commitLoop() {
	defer close(s.stopped)
	batch := make([]*request, 0, maxBatch)
	for r := range s.queue {
		batch = append(batch[:0], r)
	gather:
		for len(batch) < maxBatch {
			select {
			case r, ok := <-s.queue:
				if !ok {
					break gather
				}
				batch = append(batch, r)
			default:
				break gather
			}
		}
		batch = s.waitForUpdate(batch)
		batch = s.waitForCompany(batch)
		s.commit(batch)
		clear(batch) // let the requests go
	}
}

// waitForUpdate adds to a batch of UpdateWithin calls alone what comes until the earliest of
// their deadlines, and returns as soon as an Update comes with it.
func (s *Store) waitForUpdate(batch []*request) []*request {
	var by time.Time
	for _, r := range batch {
		if r.by.IsZero() {
			return batch
		}
		if by.IsZero() || r.by.Before(by) {
			by = r.by
		}
	}
	wait := time.Until(by)
	if wait <= 0 {
		return batch
	}
	t := time.NewTimer(wait)
	defer t.Stop()
	return s.gather(batch, t, func(r *request, _ []*request) bool {
		if r.by.IsZero() {
			return true
		}
		if r.by.Before(by) {
			t.Reset(time.Until(r.by))
			by = r.by
		}
		return false
	})
}

// waitForCompany adds to batch the Updates that come within the commit delay, when it has
// one and enough callers are under way (SetCommitDelay).
func (s *Store) waitForCompany(batch []*request) []*request {
	cd := s.delay.Load()
	if cd == nil || len(batch) >= maxBatch || cd.underWay() < len(batch)+commitSiblings {
		return batch
	}
	t := time.NewTimer(cd.d)
	defer t.Stop()
	return s.gather(batch, t, func(_ *request, batch []*request) bool {
		return len(batch) >= cd.underWay() // all that are under way have come
	})
}

// gather adds to batch the Updates that come until t fires, the batch is full, the queue is
// closed, or enough says, of the Update just added and the batch, that it need wait no longer.
func (s *Store) gather(batch []*request, t *time.Timer, enough func(r *request, batch []*request) bool) []*request {
	for len(batch) < maxBatch {
		select {
		case r, ok := <-s.queue:
			if !ok {
				return batch
			}
			batch = append(batch, r)
			if enough(r, batch) {
				return batch
			}
		case <-t.C:
			return batch
		}
	}
	return batch
}

// commit runs one batch in one transaction and tells each caller its outcome.
func (s *Store) commit(batch []*request) {
	live := make([]*request, 0, len(batch))
	for _, r := range batch {
		if r.state.CompareAndSwap(pending, taken) {
			live = append(live, r)
		}
	}
	if len(live) == 0 {
		return
	}
	out := make([]outcome, len(live))
	fail := func(err error) {
		for i := range out {
			if out[i].err == nil && !out[i].panicked {
				out[i].err = err
			}
		}
	}
	defer func() {
		for i, r := range live {
			r.done <- out[i]
		}
	}()
	// Statements run under a context of their own: a caller's ctx ending must not reach the
	// driver, which would interrupt SQLite and could roll back the whole batch with it.
	bg := context.Background()
	sqlTx, err := s.w.BeginTx(bg, nil) // BEGIN IMMEDIATE (the writer's _txlock)
	if err != nil {
		fail(fmt.Errorf("store: update: begin: %w", err))
		return
	}
	g := guard{tx: sqlTx, stmts: s.stmts, unprepared: &s.unprepared}
	kept := 0
	for i, r := range live {
		var broken error
		out[i], broken = runOne(g, r)
		if broken != nil {
			sqlTx.Rollback()
			fail(broken)
			return
		}
		if out[i].err == nil && !out[i].panicked {
			kept++
		}
	}
	if kept == 0 {
		sqlTx.Rollback()
		s.prepare()
		return
	}
	if err := sqlTx.Commit(); err != nil {
		// A failed COMMIT can leave SQLite's transaction open (a deferred constraint, a full
		// disk) though database/sql has let the connection go: end it, so the next batch
		// starts clean. With no transaction open, ROLLBACK fails harmlessly.
		s.w.ExecContext(bg, "ROLLBACK")
		fail(fmt.Errorf("store: update: commit: %w", err))
		return
	}
	s.batches.Add(1)
	s.prepare()
}

// prepare prepares the writer's statements that ran unprepared in the last batch, now that
// the writer connection is free, so that later batches skip SQLite's parsing and planning.
// Only the committer calls it, between batches.
func (s *Store) prepare() {
	for _, q := range s.unprepared {
		if _, ok := s.stmts[q]; ok {
			continue
		}
		st, err := s.w.PrepareContext(context.Background(), q)
		if err != nil {
			continue // it runs unprepared, as it did
		}
		s.stmts[q] = st
	}
	s.unprepared = s.unprepared[:0]
}

// runOne runs one request inside a savepoint of the batch's transaction. broken is an error
// that leaves the transaction in an unknown state, so the whole batch must go.
func runOne(g guard, r *request) (o outcome, broken error) {
	if err := r.ctx.Err(); err != nil {
		return outcome{err: err}, nil
	}
	g.ctx = context.Background() // the savepoints run whatever r.ctx says
	if _, err := g.ExecContext(g.ctx, "SAVEPOINT u"); err != nil {
		return outcome{}, fmt.Errorf("store: update: savepoint: %w", err)
	}
	g.ctx = r.ctx
	o = call(r.fn, &tx{ctx: r.ctx, q: g})
	if o.err == nil && !o.panicked {
		o.err = r.ctx.Err()
	}
	g.ctx = context.Background()
	if o.err != nil || o.panicked {
		if _, err := g.ExecContext(g.ctx, "ROLLBACK TO u"); err != nil {
			return outcome{}, fmt.Errorf("store: update: roll back one call: %w", err)
		}
	}
	if _, err := g.ExecContext(g.ctx, "RELEASE u"); err != nil {
		return outcome{}, fmt.Errorf("store: update: release savepoint: %w", err)
	}
	return o, nil
}

// call runs fn, turning a panic into an outcome for the caller to raise again.
func call(fn func(store.Tx) error, t *tx) (o outcome) {
	defer func() {
		if v := recover(); v != nil {
			o = outcome{panicked: true, panicVal: v}
		}
	}()
	return outcome{err: fn(t)}
}

// guard runs one caller's statements in the shared transaction. It checks the caller's ctx
// before each statement but hands the driver a context that cannot be cancelled (see commit),
// and runs the statements the store has prepared as such.
type guard struct {
	tx         *sql.Tx
	ctx        context.Context
	stmts      map[string]*sql.Stmt
	unprepared *[]string // queries to prepare after the batch
}

// stmt returns the prepared form of query for this transaction, or nil.
func (g guard) stmt(query string) *sql.Stmt {
	if st, ok := g.stmts[query]; ok {
		return g.tx.StmtContext(context.Background(), st)
	}
	*g.unprepared = append(*g.unprepared, query)
	return nil
}

func (g guard) ExecContext(_ context.Context, query string, args ...any) (sql.Result, error) {
	if err := g.ctx.Err(); err != nil {
		return nil, err
	}
	if st := g.stmt(query); st != nil {
		return st.ExecContext(context.WithoutCancel(g.ctx), args...)
	}
	return g.tx.ExecContext(context.WithoutCancel(g.ctx), query, args...)
}

func (g guard) QueryContext(_ context.Context, query string, args ...any) (*sql.Rows, error) {
	if err := g.ctx.Err(); err != nil {
		return nil, err
	}
	if st := g.stmt(query); st != nil {
		return st.QueryContext(context.WithoutCancel(g.ctx), args...)
	}
	return g.tx.QueryContext(context.WithoutCancel(g.ctx), query, args...)
}

func (g guard) QueryRowContext(_ context.Context, query string, args ...any) *sql.Row {
	if g.ctx.Err() != nil {
		// database/sql returns a Row holding ctx's error without running the query.
		return g.tx.QueryRowContext(g.ctx, query, args...)
	}
	if st := g.stmt(query); st != nil {
		return st.QueryRowContext(context.WithoutCancel(g.ctx), args...)
	}
	return g.tx.QueryRowContext(context.WithoutCancel(g.ctx), query, args...)
}
