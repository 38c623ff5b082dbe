// Package sqlite is the embedded store.Store: one SQLite database file in the data directory
// (DESIGN.md §6), through the pure-Go driver modernc.org/sqlite.
//
// The database runs in WAL mode with synchronous=FULL, so a commit is on disk when Update
// returns. SQLite allows one writer at a time: Updates run on the one writer connection, and
// concurrent Updates queue for it in process rather than fight over the file lock; the queue
// is drained in batches that share one transaction and one fsync (group commit, group.go). View runs on a separate pool of read-only connections, which in WAL
// mode neither wait for the writer nor see what it has not committed.
//
// The SQL is kept portable, so that a PostgreSQL backend is a mechanical port: plain types
// (INTEGER, BIGINT, TEXT, BOOLEAN, BLOB for BYTEA), explicit UNIQUE constraints, ON CONFLICT
// as PostgreSQL spells it, times as BIGINT Unix milliseconds (UTC), labels and hashes in their
// canonical text forms, NULL for the zero label or hash. Only ? placeholders, INTEGER PRIMARY
// KEY (an identity column there), a new row's id read as the last rowid (RETURNING there) and
// the PRAGMAs in Open are SQLite's own.
//
// This package stores what it is given; it never signs, sends or decides anything.
package sqlite

import (
	"certmail/durable"
	"context"
	"database/sql"
	"errors"
	"fmt"
	"io/fs"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"

	_ "modernc.org/sqlite" // registers the "sqlite" driver

	"certmail/store"
)

// busyTimeout is how long a connection waits for a lock another process holds (the CLI writing
// while the server runs) before SQLite reports the database locked.
const busyTimeout = "10000" // ms

// readers is the size of the read pool.
const readers = 4

// Store is a store.Store in one SQLite file.
type Store struct {
	path string
	w    *sql.DB // exactly one connection: the writer, used by the committer
	r    *sql.DB // read-only connections for View

	queue   chan *request // Updates waiting for the committer
	stopped chan struct{} // closed when the committer has drained the queue
	mu      sync.RWMutex  // Close takes it to close queue; senders hold it shared
	closed  bool
	batches atomic.Int64 // commits made, for tests
	delay   atomic.Pointer[commitDelay]

	// The committer's own: the writer's prepared statements, by query, and the queries a
	// batch ran unprepared, to prepare after it.
	stmts      map[string]*sql.Stmt
	unprepared []string

	// The read pool's prepared statements, by query (database/sql prepares each on a reader
	// connection the first time that connection runs it, and keeps it), under rmu.
	rmu    sync.Mutex
	rstmts map[string]*sql.Stmt
}

var _ store.Store = (*Store)(nil)

// Open opens the database at path, creating the file (0600), its directory (0700) and the schema
// as needed, and migrating an older schema. It refuses a database of a newer schema version.
func Open(path string) (*Store, error) {
	if path == "" {
		return nil, errors.New("store: open sqlite: no path")
	}
	abs, err := filepath.Abs(path)
	if err != nil {
		return nil, fmt.Errorf("store: open sqlite %s: %w", path, err)
	}
	if err := createFile(abs); err != nil {
		return nil, fmt.Errorf("store: open sqlite %s: %w", path, err)
	}
	s := &Store{path: abs}
	// The writer keeps its savepoints' journals in memory: each Update of a group commit is a
	// savepoint, and on disk every page it first changes would be copied to a temporary file,
	// a system call each — more than the WAL's own writes (BENCHMARKS.md). A larger page cache
	// was measured too and gave nothing: SQLite then scans it at the end of every commit.
	if s.w, err = sql.Open("sqlite", dsn(abs, url.Values{
		"_journal_mode": {"WAL"},
		"_synchronous":  {"FULL"},
		"_foreign_keys": {"1"},
		"_txlock":       {"immediate"},
		"_pragma":       {"temp_store(memory)"},
	})); err != nil {
		return nil, fmt.Errorf("store: open sqlite %s: %w", path, err)
	}
	s.w.SetMaxOpenConns(1)
	s.w.SetMaxIdleConns(1)
	s.w.SetConnMaxLifetime(0)
	s.w.SetConnMaxIdleTime(0)
	if err := s.check(); err != nil {
		s.w.Close()
		return nil, fmt.Errorf("store: open sqlite %s: %w", path, err)
	}
	if err := migrate(context.Background(), s.w); err != nil {
		s.w.Close()
		return nil, fmt.Errorf("store: open sqlite %s: %w", path, err)
	}
	// Readers open after the writer has made the file a WAL database with a schema.
	if s.r, err = sql.Open("sqlite", dsn(abs, url.Values{
		"_query_only":   {"1"},
		"_foreign_keys": {"1"},
	})); err != nil {
		s.w.Close()
		return nil, fmt.Errorf("store: open sqlite %s: %w", path, err)
	}
	s.r.SetMaxOpenConns(readers)
	s.r.SetMaxIdleConns(readers)
	s.queue = make(chan *request, maxBatch)
	s.stmts = map[string]*sql.Stmt{}
	s.rstmts = map[string]*sql.Stmt{}
	s.stopped = make(chan struct{})
	go s.commitLoop()
	return s, nil
}

// dsn builds the driver's data source name: a file: URI, so that any path works.
func dsn(path string, params url.Values) string {
	params.Set("_busy_timeout", busyTimeout)
	return "file:" + (&url.URL{Path: filepath.ToSlash(path)}).EscapedPath() + "?" + params.Encode()
}

// check makes sure the pragmas that durability rests on took effect: WAL can be refused (some
// network file systems), and a typo in a DSN key would otherwise pass silently.
func (s *Store) check() error {
	ctx := context.Background()
	var mode string
	var sync, fk int
	if err := s.w.QueryRowContext(ctx, "PRAGMA journal_mode").Scan(&mode); err != nil {
		return err
	}
	if err := s.w.QueryRowContext(ctx, "PRAGMA synchronous").Scan(&sync); err != nil {
		return err
	}
	if err := s.w.QueryRowContext(ctx, "PRAGMA foreign_keys").Scan(&fk); err != nil {
		return err
	}
	if !strings.EqualFold(mode, "wal") || sync != 2 || fk != 1 {
		return fmt.Errorf("journal_mode %s, synchronous %d, foreign_keys %d: want wal, 2 (FULL), 1", mode, sync, fk)
	}
	return nil
}

// createFile creates the database file 0600 in a directory 0700 (which it creates, with any
// missing parents), and syncs the directories so that the new entries survive a crash. SQLite
// gives its -wal and -shm files the mode of the database file. An existing file is left as it is.
func createFile(path string) error {
	dir := filepath.Dir(path)
	if err := durable.MkdirAll(dir); err != nil {
		return err
	}
	f, err := os.OpenFile(path, os.O_RDWR|os.O_CREATE|os.O_EXCL, 0o600)
	if errors.Is(err, fs.ErrExist) {
		return nil
	}
	if err != nil {
		return err
	}
	if err := f.Close(); err != nil {
		return err
	}
	return durable.SyncDir(dir)
}

// Path returns the absolute path of the database file.
func (s *Store) Path() string { return s.path }

// View runs fn in a read-only transaction on the read pool: one snapshot of the database, taken
// at fn's first read.
func (s *Store) View(ctx context.Context, fn func(store.Tx) error) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	sqlTx, err := s.r.BeginTx(ctx, &sql.TxOptions{ReadOnly: true})
	if err != nil {
		if ctx.Err() != nil {
			return ctx.Err()
		}
		return fmt.Errorf("store: view: begin: %w", err)
	}
	r := &reader{tx: sqlTx, s: s}
	err = fn(&tx{ctx: ctx, q: r, readOnly: true})
	sqlTx.Rollback()
	s.prepareReads(ctx, r.missed)
	return err
}

// reader runs a View's statements, prepared when the store has prepared them.
type reader struct {
	tx     *sql.Tx
	s      *Store
	missed []string // queries run unprepared, to prepare once the View is over
}

func (r *reader) stmt(ctx context.Context, query string) *sql.Stmt {
	r.s.rmu.Lock()
	st, ok := r.s.rstmts[query]
	r.s.rmu.Unlock()
	if !ok {
		r.missed = append(r.missed, query)
		return nil
	}
	return r.tx.StmtContext(ctx, st)
}

func (r *reader) ExecContext(ctx context.Context, query string, args ...any) (sql.Result, error) {
	if st := r.stmt(ctx, query); st != nil {
		return st.ExecContext(ctx, args...)
	}
	return r.tx.ExecContext(ctx, query, args...)
}

func (r *reader) QueryContext(ctx context.Context, query string, args ...any) (*sql.Rows, error) {
	if st := r.stmt(ctx, query); st != nil {
		return st.QueryContext(ctx, args...)
	}
	return r.tx.QueryContext(ctx, query, args...)
}

func (r *reader) QueryRowContext(ctx context.Context, query string, args ...any) *sql.Row {
	if st := r.stmt(ctx, query); st != nil {
		return st.QueryRowContext(ctx, args...)
	}
	return r.tx.QueryRowContext(ctx, query, args...)
}

// prepareReads prepares the queries a View ran unprepared, for the Views after it: SQLite's
// parsing and planning of each read was a twentieth of the agent's CPU. It runs after the
// View has given its connection back, since preparing takes a reader connection of its own.
func (s *Store) prepareReads(ctx context.Context, queries []string) {
	for _, q := range queries {
		s.rmu.Lock()
		_, ok := s.rstmts[q]
		s.rmu.Unlock()
		if ok {
			continue
		}
		st, err := s.r.PrepareContext(ctx, q)
		if err != nil {
			continue // it runs unprepared, as it did
		}
		s.rmu.Lock()
		if _, ok := s.rstmts[q]; ok {
			st.Close()
		} else {
			s.rstmts[q] = st
		}
		s.rmu.Unlock()
	}
}

// Close waits for the Updates already queued, then closes the database. The writer closes
// last, so that SQLite checkpoints the WAL. An Update after Close returns an error.
func (s *Store) Close() error {
	s.mu.Lock()
	if !s.closed {
		s.closed = true
		close(s.queue)
	}
	s.mu.Unlock()
	<-s.stopped
	for _, st := range s.stmts {
		st.Close()
	}
	var errs []error
	s.rmu.Lock()
	for _, st := range s.rstmts {
		st.Close()
	}
	clear(s.rstmts)
	s.rmu.Unlock()
	if s.r != nil {
		errs = append(errs, s.r.Close())
	}
	errs = append(errs, s.w.Close())
	if err := errors.Join(errs...); err != nil {
		return fmt.Errorf("store: close sqlite %s: %w", s.path, err)
	}
	return nil
}
