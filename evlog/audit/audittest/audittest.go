// Package audittest makes real evidence logs for tests: tessera's POSIX driver in a directory,
// checkpoints signed with an agent's key for the origin <agent>/log, 32-byte leaves, and an
// HTTP server that serves them as an agent does (/log/ and /.well-known/certmail).
package audittest

import (
	"context"
	"crypto/sha256"
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/transparency-dev/tessera"
	"github.com/transparency-dev/tessera/storage/posix"

	"certmail/evidence"
	"certmail/evlog/audit"
	"certmail/protocol"
)

// NewIdentity returns an agent identity from a fixed seed, so a test can make two logs that
// share a key.
func NewIdentity(t testing.TB, name string, seed byte) *protocol.Identity {
	t.Helper()
	id, err := protocol.NewIdentity(name, seededReader(seed))
	if err != nil {
		t.Fatal(err)
	}
	return id
}

type seededReader byte

func (s seededReader) Read(p []byte) (int, error) {
	for i := range p {
		p[i] = byte(s) + byte(i)
	}
	return len(p), nil
}

// Log is an evidence log being written by tessera.
type Log struct {
	Dir      string
	Agent    *protocol.Identity
	appender *tessera.Appender
	awaiter  *tessera.PublicationAwaiter
	shutdown func(context.Context) error
	cancel   context.CancelFunc
}

// NewLog starts a log in dir, signed by agent. Partial tiles are collected every 100 ms, so a
// test sees them disappear as tiles fill.
func NewLog(t testing.TB, dir string, agent *protocol.Identity) *Log {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	driver, err := posix.New(ctx, posix.Config{Path: dir})
	if err != nil {
		t.Fatal(err)
	}
	signer, err := evidence.LogSigner(agent.Signer, agent.Verifier)
	if err != nil {
		t.Fatal(err)
	}
	opts := tessera.NewAppendOptions().
		WithCheckpointSigner(signer).
		WithBatching(256, 10*time.Millisecond).
		WithCheckpointInterval(100 * time.Millisecond).
		WithGarbageCollectionInterval(100 * time.Millisecond)
	appender, shutdown, reader, err := tessera.NewAppender(ctx, driver, opts)
	if err != nil {
		t.Fatal(err)
	}
	l := &Log{Dir: dir, Agent: agent, appender: appender, shutdown: shutdown, cancel: cancel,
		awaiter: tessera.NewPublicationAwaiter(ctx, reader.ReadCheckpoint, 10*time.Millisecond)}
	t.Cleanup(func() { l.Close(t) })
	return l
}

// Leaf is the 32-byte leaf of a made-up note: what the agent logs for each evidence note.
func Leaf(s string) []byte {
	h := sha256.Sum256([]byte(s))
	return h[:]
}

// Add appends the leaves and waits until a published checkpoint covers them all.
func (l *Log) Add(t testing.TB, leaves ...[]byte) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	futures := make([]tessera.IndexFuture, len(leaves))
	for i, leaf := range leaves {
		futures[i] = l.appender.Add(ctx, tessera.NewEntry(leaf))
	}
	for _, f := range futures {
		if _, _, err := l.awaiter.Await(ctx, f); err != nil {
			t.Fatal(err)
		}
	}
}

// Close stops the appender; the directory stays as it is.
func (l *Log) Close(t testing.TB) {
	if l.cancel == nil {
		return
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if err := l.shutdown(ctx); err != nil {
		t.Errorf("tessera shutdown: %v", err)
	}
	l.cancel()
	l.cancel = nil
}

// Checkpoint returns the log's published checkpoint.
func (l *Log) Checkpoint(t testing.TB) []byte {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(l.Dir, audit.CheckpointPath))
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// WaitGone waits until the log's garbage collector removed the file at path.
func (l *Log) WaitGone(t testing.TB, path string) {
	t.Helper()
	l.wait(t, path, false)
}

// WaitExists waits until the log wrote the file at path.
func (l *Log) WaitExists(t testing.TB, path string) {
	t.Helper()
	l.wait(t, path, true)
}

func (l *Log) wait(t testing.TB, path string, exists bool) {
	t.Helper()
	for range 600 {
		if _, err := os.Stat(filepath.Join(l.Dir, path)); (err == nil) == exists {
			return
		}
		time.Sleep(50 * time.Millisecond)
	}
	t.Fatalf("%s: still not in the state wanted (exists: %v) after 30 s", path, exists)
}

// Leaves returns n distinct leaves named prefix-0, prefix-1, ...
func Leaves(prefix string, n int) [][]byte {
	out := make([][]byte, n)
	for i := range out {
		out[i] = Leaf(fmt.Sprintf("%s-%d", prefix, i))
	}
	return out
}

// Server serves a log directory as an agent does, under /log/, with the agent's well-known
// document. Serve switches the directory it serves, as a log that rewrote its history would.
type Server struct {
	*httptest.Server
	mu  sync.Mutex
	dir string
}

// NewServer serves dir for agent.
func NewServer(t testing.TB, dir string, agent *protocol.Identity) *Server {
	t.Helper()
	s := &Server{dir: dir}
	mux := http.NewServeMux()
	mux.HandleFunc("GET "+audit.WellKnownPath, func(w http.ResponseWriter, r *http.Request) {
		doc := map[string]any{"name": agent.Name, "verifier_key": agent.Verifier,
			"log": map[string]string{"origin": evidence.LogOrigin(agent.Name), "url": "/log/"}}
		w.Header().Set("Content-Type", "application/json")
		_ = json.NewEncoder(w).Encode(doc)
	})
	mux.HandleFunc("GET /log/{path...}", func(w http.ResponseWriter, r *http.Request) {
		p := r.PathValue("path")
		if _, err := audit.ParseTilePath(p); err != nil && p != audit.CheckpointPath {
			http.NotFound(w, r)
			return
		}
		s.mu.Lock()
		dir := s.dir
		s.mu.Unlock()
		http.ServeFile(w, r, filepath.Join(dir, filepath.FromSlash(p)))
	})
	s.Server = httptest.NewServer(mux)
	t.Cleanup(s.Close)
	return s
}

// Serve makes the server serve another directory from now on.
func (s *Server) Serve(dir string) {
	s.mu.Lock()
	s.dir = dir
	s.mu.Unlock()
}
