package evlog_test

import (
	"context"
	"crypto/rand"
	"io"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"golang.org/x/mod/sumdb/note"
	"golang.org/x/mod/sumdb/tlog"
	"k8s.io/klog/v2"

	"certmail/evidence"
	"certmail/evlog"
)

// testKey is an agent's note key for the tests.
type testKey struct {
	signer   note.Signer
	verifier string
}

func newKey(tb testing.TB, name string) testKey {
	tb.Helper()
	skey, vkey, err := note.GenerateKey(rand.Reader, name)
	if err != nil {
		tb.Fatal(err)
	}
	s, err := note.NewSigner(skey)
	if err != nil {
		tb.Fatal(err)
	}
	return testKey{s, vkey}
}

// openLog opens a log in a fresh directory under a fresh key named log.test, with cfg's tuning,
// and closes it when the test ends.
func openLog(tb testing.TB, cfg evlog.Config) (*evlog.Log, testKey) {
	tb.Helper()
	k := newKey(tb, "log.test")
	cfg.Dir, cfg.Signer, cfg.Verifier = filepath.Join(tb.TempDir(), "log"), k.signer, k.verifier
	l, err := evlog.Open(cfg)
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		if err := l.Close(ctx); err != nil {
			tb.Errorf("Close: %v", err)
		}
	})
	return l, k
}

// TestMain quiets tessera's own logging (klog, to stderr by default), which would interleave
// with the benchmarks' output.
func TestMain(m *testing.M) {
	klog.LogToStderr(false)
	klog.SetOutput(io.Discard)
	os.Exit(m.Run())
}

// waitCheckpoint waits until the log publishes a checkpoint of at least size entries.
func waitCheckpoint(t *testing.T, l *evlog.Log, size uint64) evlog.Checkpoint {
	t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for {
		cp, err := l.Checkpoint(t.Context())
		if err != nil {
			t.Fatal(err)
		}
		if cp.Size >= size {
			return cp
		}
		if time.Now().After(deadline) {
			t.Fatalf("no checkpoint of %d entries within 20 s (latest %d)", size, cp.Size)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// TestAppendProve appends from many goroutines at once, then checks with x/mod's tlog and note
// alone what a verifier would: the checkpoint is the agent's, with the log's origin line, and
// every entry's inclusion proof leads to its root.
func TestAppendProve(t *testing.T) {
	l, k := openLog(t, evlog.Config{})
	const n = 300
	got := make([]uint64, n)
	var wg sync.WaitGroup
	for g := range 10 {
		wg.Go(func() {
			for i := g; i < n-50; i += 10 {
				idx, err := l.Append(t.Context(), leafN(uint64(i)))
				if err != nil {
					t.Error(err)
					return
				}
				got[i] = idx[0]
			}
		})
	}
	wg.Wait()
	var last []evidence.Hash // one step's notes, appended together, stay in order
	for i := n - 50; i < n; i++ {
		last = append(last, leafN(uint64(i)))
	}
	idx, err := l.Append(t.Context(), last...)
	if err != nil {
		t.Fatal(err)
	}
	copy(got[n-50:], idx)
	for i := 1; i < len(idx); i++ {
		if idx[i] != idx[i-1]+1 {
			t.Fatalf("one Append's entries are not consecutive: %v", idx)
		}
	}
	seen := map[uint64]bool{}
	for _, x := range got {
		if x >= n || seen[x] {
			t.Fatalf("indices %v: want each of 0..%d once", got, n-1)
		}
		seen[x] = true
	}

	// A note appended again in the same process gets its first index back, and the tree does
	// not grow.
	again, err := l.Append(t.Context(), leafN(7))
	if err != nil || again[0] != got[7] {
		t.Fatalf("appending leaf 7 again: index %v, %v; want %d", again, err, got[7])
	}
	if size, err := l.Size(t.Context()); err != nil || size != n {
		t.Fatalf("Size = %d, %v; want %d", size, err, n)
	}

	cp := waitCheckpoint(t, l, n)
	v, _ := note.NewVerifier(k.verifier)
	nt, err := note.Open(cp.Raw, note.VerifierList(v))
	if err != nil {
		t.Fatalf("the checkpoint does not verify with the agent's key: %v\n%s", err, cp.Raw)
	}
	lines := strings.Split(nt.Text, "\n")
	if lines[0] != "log.test/log" || lines[1] != strconv.Itoa(n) || len(nt.Sigs) != 1 || nt.Sigs[0].Name != "log.test" {
		t.Fatalf("checkpoint: want origin log.test/log, size %d, one signature by log.test:\n%s", n, cp.Raw)
	}
	root, err := tlog.ParseHash(lines[2])
	if err != nil || root != tlog.Hash(cp.Hash) {
		t.Fatalf("checkpoint root %q does not match %x", lines[2], cp.Hash)
	}

	cp2, proofs, err := l.Prove(t.Context(), append(got, n+5))
	if err != nil {
		t.Fatal(err)
	}
	if proofs[n] != nil {
		t.Errorf("a proof for index %d, past the tree", n+5)
	}
	for i, x := range got {
		p := make(tlog.RecordProof, len(proofs[i]))
		for j, h := range proofs[i] {
			p[j] = tlog.Hash(h)
		}
		leaf := leafN(uint64(i))
		if err := tlog.CheckRecord(p, int64(cp2.Size), tlog.Hash(cp2.Hash), int64(x), tlog.RecordHash(leaf[:])); err != nil {
			t.Fatalf("inclusion proof of entry %d: %v", x, err)
		}
	}

	leaves, err := l.Leaves(t.Context(), 0, n)
	if err != nil {
		t.Fatal(err)
	}
	for i, x := range got {
		if leaves[x] != leafN(uint64(i)) {
			t.Fatalf("entry %d reads back as %x, want leaf %d", x, leaves[x], i)
		}
	}
	if _, err := l.Leaves(t.Context(), 0, n+1); err == nil {
		t.Errorf("Leaves past the tree: no error")
	}
}

// TestReopen: a log closed and opened again goes on where it was, and refuses to open under
// another agent's key.
func TestReopen(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "log")
	k := newKey(t, "log.test")
	open := func(k testKey) (*evlog.Log, error) {
		return evlog.Open(evlog.Config{Dir: dir, Signer: k.signer, Verifier: k.verifier})
	}
	l, err := open(k)
	if err != nil {
		t.Fatal(err)
	}
	var leaves []evidence.Hash
	for i := range 10 {
		leaves = append(leaves, leafN(uint64(i)))
	}
	if _, err := l.Append(t.Context(), leaves...); err != nil {
		t.Fatal(err)
	}
	if err := l.Close(t.Context()); err != nil {
		t.Fatal(err)
	}
	if _, err := l.Append(t.Context(), leafN(99)); err == nil {
		t.Errorf("Append after Close: no error")
	}

	if _, err := open(newKey(t, "log.test")); err == nil || !strings.Contains(err.Error(), "checkpoint") {
		t.Fatalf("opening the log under another key: %v, want a refusal of its checkpoint", err)
	}

	l, err = open(k)
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close(t.Context())
	if cp, err := l.Checkpoint(t.Context()); err != nil || cp.Size != 10 {
		t.Fatalf("checkpoint after reopening: size %d, %v; want 10 (Close publishes)", cp.Size, err)
	}
	idx, err := l.Append(t.Context(), leafN(10), leafN(11))
	if err != nil || idx[0] != 10 || idx[1] != 11 {
		t.Fatalf("Append after reopening: %v, %v; want [10 11]", idx, err)
	}
	got, err := l.Leaves(t.Context(), 0, 12)
	if err != nil {
		t.Fatal(err)
	}
	for i, h := range got {
		if h != leafN(uint64(i)) {
			t.Fatalf("entry %d is %x after reopening", i, h)
		}
	}
}

func TestOpenChecksConfig(t *testing.T) {
	a, b := newKey(t, "a.test"), newKey(t, "b.test")
	dir := filepath.Join(t.TempDir(), "log")
	for _, cfg := range []evlog.Config{
		{Signer: a.signer, Verifier: a.verifier},
		{Dir: dir, Verifier: a.verifier},
		{Dir: dir, Signer: a.signer, Verifier: b.verifier},
		{Dir: dir, Signer: a.signer, Verifier: "not a key"},
	} {
		if l, err := evlog.Open(cfg); err == nil {
			l.Close(t.Context())
			t.Errorf("Open(%+v): no error", cfg)
		}
	}
}
