package sqlite

import (
	"context"
	"database/sql"
	"errors"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"certmail/evidence"
	"certmail/store"
	"certmail/store/storetest"
)

// queueBatch makes the next batch deterministic: it holds the committer in one Update until the
// n calls started by start are all queued behind it, then lets them go. It returns each call's
// error, in the order of start's index, and the number of commits the n calls took.
func queueBatch(t *testing.T, s *Store, n int, start func(i int) error) ([]error, int64) {
	t.Helper()
	inside, release := make(chan struct{}), make(chan struct{})
	blocker := make(chan error, 1)
	go func() {
		blocker <- s.Update(t.Context(), func(store.Tx) error { close(inside); <-release; return nil })
	}()
	<-inside
	errs := make([]chan error, n)
	for i := range errs {
		errs[i] = make(chan error, 1)
		go func() { errs[i] <- start(i) }()
	}
	for wait := time.Now().Add(30 * time.Second); len(s.queue) < n; time.Sleep(time.Millisecond) {
		if time.Now().After(wait) {
			t.Fatalf("only %d of %d Updates queued after 30 s", len(s.queue), n)
		}
	}
	before := s.batches.Load()
	close(release)
	if err := <-blocker; err != nil {
		t.Fatal(err)
	}
	out := make([]error, n)
	for i := range errs {
		out[i] = <-errs[i]
	}
	return out, s.batches.Load() - before - 1 // less the blocker's own commit
}

// TestGroupCommitFailureIsItsOwn: in one batch, the call whose fn fails leaves nothing behind,
// and every other call of the batch is committed, all with one commit.
func TestGroupCommitFailureIsItsOwn(t *testing.T) {
	s, err := Open(filepath.Join(t.TempDir(), "certmail.db"))
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	f, err := storetest.NewFixture()
	if err != nil {
		t.Fatal(err)
	}
	const n, failing = 8, 3
	items := make([]store.Item, n)
	notes := make([]*evidence.Note, n)
	for i := range items {
		l, _ := f.NewLabel()
		items[i] = f.Item(l, f.T0.Add(time.Duration(i)*time.Second))
		if notes[i], err = f.Note(l, evidence.COP, items[i].Submitted); err != nil {
			t.Fatal(err)
		}
	}
	boom := errors.New("boom")
	errs, commits := queueBatch(t, s, n, func(i int) error {
		return s.Update(t.Context(), func(tx store.Tx) error {
			if err := tx.InsertItem(items[i]); err != nil {
				return err
			}
			if _, err := tx.AddEvidence(items[i].Label, notes[i]); err != nil {
				return err
			}
			if i == failing {
				return boom // after writing: its writes must go
			}
			return nil
		})
	})
	if commits != 1 {
		t.Errorf("%d queued Updates took %d commits, want 1 (group commit)", n, commits)
	}
	err = s.View(t.Context(), func(tx store.Tx) error {
		for i, it := range items {
			_, ierr := tx.Item(it.Label)
			ev, eerr := tx.Evidence(it.Label)
			if eerr != nil {
				return eerr
			}
			if i == failing {
				if errs[i] != boom {
					t.Errorf("failing call returned %v, want its own error", errs[i])
				}
				if !errors.Is(ierr, store.ErrNotFound) || len(ev) != 0 {
					t.Errorf("failing call's writes were kept: item %v, %d notes", ierr, len(ev))
				}
				continue
			}
			if errs[i] != nil {
				t.Errorf("call %d of the batch failed: %v", i, errs[i])
			}
			if ierr != nil || len(ev) != 1 {
				t.Errorf("call %d returned nil but its writes are missing: item %v, %d notes", i, ierr, len(ev))
			}
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
}

// TestGroupCommitFailedCommitFailsAll: when the shared COMMIT fails (here a deferred foreign
// key, which SQLite checks only at COMMIT), every caller of the batch is told, nothing of the
// batch is kept, and the next Update works.
func TestGroupCommitFailedCommitFailsAll(t *testing.T) {
	s, err := Open(filepath.Join(t.TempDir(), "certmail.db"))
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	for _, q := range []string{
		`CREATE TABLE parent (id INTEGER PRIMARY KEY)`,
		`CREATE TABLE child (p INTEGER REFERENCES parent (id) DEFERRABLE INITIALLY DEFERRED)`,
	} {
		if _, err := s.w.Exec(q); err != nil {
			t.Fatal(err)
		}
	}
	f, err := storetest.NewFixture()
	if err != nil {
		t.Fatal(err)
	}
	const n, bad = 5, 2
	items := make([]store.Item, n)
	for i := range items {
		l, _ := f.NewLabel()
		items[i] = f.Item(l, f.T0)
	}
	errs, _ := queueBatch(t, s, n, func(i int) error {
		return s.Update(t.Context(), func(st store.Tx) error {
			if i == bad {
				_, err := st.(*tx).exec(`INSERT INTO child (p) VALUES (42)`)
				return err
			}
			return st.InsertItem(items[i])
		})
	})
	for i, err := range errs {
		if err == nil || !strings.Contains(err.Error(), "commit") {
			t.Errorf("call %d of a batch whose COMMIT failed returned %v, want the commit's error", i, err)
		}
	}
	err = s.View(t.Context(), func(tx store.Tx) error {
		for i, it := range items {
			if _, err := tx.Item(it.Label); !errors.Is(err, store.ErrNotFound) {
				t.Errorf("item %d of a failed commit: %v, want ErrNotFound", i, err)
			}
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(t.Context(), 10*time.Second)
	defer cancel()
	if err := s.Update(ctx, func(tx store.Tx) error { return tx.InsertItem(items[0]) }); err != nil {
		t.Fatalf("Update after a failed commit: %v", err)
	}
}

// TestUpdateAfterClose: a closed store refuses writes instead of hanging.
func TestUpdateAfterClose(t *testing.T) {
	s, err := Open(filepath.Join(t.TempDir(), "certmail.db"))
	if err != nil {
		t.Fatal(err)
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	if err := s.Update(t.Context(), func(store.Tx) error { return nil }); !errors.Is(err, errClosed) {
		t.Fatalf("Update after Close: %v, want %v", err, errClosed)
	}
}

// TestMigrateOutboundData: a database of schema version 1, with mail in its queue, opens at the
// current version with every mail's data intact.
func TestMigrateOutboundData(t *testing.T) {
	path := databaseOfVersion(t, 1, func(db *sql.DB) error {
		_, err := db.Exec(`INSERT INTO outbound (id, label, kind, mail_from, rcpt_to, data, state, attempts, next_attempt,
		last_error, created, updated) VALUES (7, NULL, 'notification', 'a@a.example', 'b@b.example', X'6869', 'queued', 0, 0, '', 0, 0)`)
		return err
	})
	s, err := Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	err = s.View(t.Context(), func(tx store.Tx) error {
		due, err := tx.DueOutbound(time.Now(), 0)
		if err != nil {
			return err
		}
		if len(due) != 1 || due[0].ID != 7 || string(due[0].Data) != "hi" || due[0].To != "b@b.example" {
			t.Errorf("queued mail after the migration: %+v", due)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
}

// TestCommitDelay: with many submissions under way, a batch waits for them and they share one
// commit, which ends as soon as all of them have come, not when the delay runs out; a lone
// Update, with few under way, is committed at once.
func TestCommitDelay(t *testing.T) {
	s, err := Open(filepath.Join(t.TempDir(), "certmail.db"))
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	const delay, n = time.Minute, 10
	asked := make(chan struct{}, 1)
	var underWay atomic.Int64
	s.SetCommitDelay(delay, func() int {
		select {
		case asked <- struct{}{}:
		default:
		}
		return int(underWay.Load())
	})

	underWay.Store(n)
	before := s.batches.Load()
	start := time.Now()
	errs := make(chan error, n)
	go func() { errs <- s.Update(t.Context(), func(store.Tx) error { return nil }) }()
	select { // the committer holds the first Update and asks how many are coming
	case <-asked:
	case <-time.After(30 * time.Second):
		t.Fatal("the committer never asked how many Updates were under way")
	}
	for range n - 1 {
		go func() { errs <- s.Update(t.Context(), func(store.Tx) error { return nil }) }()
	}
	for range n {
		if err := <-errs; err != nil {
			t.Fatal(err)
		}
	}
	if took := time.Since(start); took >= delay {
		t.Errorf("the batch waited out the whole delay (%v) though all %d under way had come", took, n)
	}
	if got := s.batches.Load() - before; got != 1 {
		t.Errorf("%d Updates under way took %d commits, want 1", n, got)
	}

	underWay.Store(1)
	start = time.Now()
	if err := s.Update(t.Context(), func(store.Tx) error { return nil }); err != nil {
		t.Fatal(err)
	}
	if took := time.Since(start); took >= delay {
		t.Errorf("a lone Update waited %v for company", took)
	}
}

// TestUpdateWithin checks that an UpdateWithin waits for an Update to share its commit, commits
// alone at its deadline when none comes, and keeps nothing when its caller gives up waiting.
func TestUpdateWithin(t *testing.T) {
	s, err := Open(filepath.Join(t.TempDir(), "certmail.db"))
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	put := func(addr string) func(store.Tx) error {
		return func(tx store.Tx) error { return tx.PutUser(store.User{Address: addr, Created: time.Now()}) }
	}
	stored := func(addr string) bool {
		t.Helper()
		err := s.View(t.Context(), func(tx store.Tx) error { _, err := tx.User(addr); return err })
		if err != nil && !errors.Is(err, store.ErrNotFound) {
			t.Fatal(err)
		}
		return err == nil
	}

	// Waiting for company: a minute, unless an Update comes.
	before := s.batches.Load()
	lazy := make(chan error, 1)
	go func() { lazy <- s.UpdateWithin(t.Context(), time.Minute, put("lazy@example.org")) }()
	select {
	case err := <-lazy:
		t.Fatalf("UpdateWithin returned (%v) with no Update to share its commit, its minute not out", err)
	case <-time.After(100 * time.Millisecond):
	}
	eager := time.Now()
	if err := s.Update(t.Context(), put("eager@example.org")); err != nil {
		t.Fatal(err)
	}
	if err := <-lazy; err != nil {
		t.Fatal(err)
	}
	if took := time.Since(eager); took >= 30*time.Second {
		t.Errorf("the Update waited %v with the UpdateWithin, for the UpdateWithin's deadline", took)
	}
	if got := s.batches.Load() - before; got != 1 {
		t.Errorf("an UpdateWithin and the Update it waited for took %d commits, want 1", got)
	}
	if !stored("lazy@example.org") || !stored("eager@example.org") {
		t.Error("the shared commit lost a write")
	}

	// Alone, it commits at its deadline, not before.
	const within = 50 * time.Millisecond
	start := time.Now()
	if err := s.UpdateWithin(t.Context(), within, put("alone@example.org")); err != nil {
		t.Fatal(err)
	}
	if took := time.Since(start); took < within {
		t.Errorf("a lone UpdateWithin committed after %v, before its %v were out", took, within)
	}
	if !stored("alone@example.org") {
		t.Error("a lone UpdateWithin's write is not stored")
	}

	// Its caller gives up while it waits: nothing of it is kept, and the committer goes on.
	ctx, cancel := context.WithTimeout(t.Context(), 50*time.Millisecond)
	defer cancel()
	if err := s.UpdateWithin(ctx, time.Minute, put("gone@example.org")); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("UpdateWithin whose ctx ended while it waited returned %v", err)
	}
	if err := s.Update(t.Context(), put("after@example.org")); err != nil {
		t.Fatal(err)
	}
	if stored("gone@example.org") || !stored("after@example.org") {
		t.Error("an abandoned UpdateWithin was kept, or the Update after it was not")
	}
}
