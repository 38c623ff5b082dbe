package audit_test

import (
	"bytes"
	"context"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"golang.org/x/mod/sumdb/tlog"

	"certmail/evlog/audit"
	"certmail/evlog/audit/audittest"
)

const agentName = "localhost"

// grownLog is a finished log of 300 entries: one full tile and entry bundle, a partial one of
// 44, and a level-1 tile of one hash.
func grownLog(t *testing.T) (dir, key string) {
	t.Helper()
	agent := audittest.NewIdentity(t, agentName, 1)
	dir = t.TempDir()
	l := audittest.NewLog(t, dir, agent)
	l.Add(t, audittest.Leaves("note", 300)...)
	l.Close(t)
	return dir, agent.Verifier
}

// copyLog copies a log directory, so that each case damages its own copy.
func copyLog(t *testing.T, dir string) string {
	t.Helper()
	out := filepath.Join(t.TempDir(), "log")
	if err := os.CopyFS(out, os.DirFS(dir)); err != nil {
		t.Fatal(err)
	}
	return out
}

func flipByte(t *testing.T, dir, path string, off int) {
	t.Helper()
	file := filepath.Join(dir, path)
	b, err := os.ReadFile(file)
	if err != nil {
		t.Fatal(err)
	}
	b[off] ^= 0x01
	if err := os.WriteFile(file, b, 0o644); err != nil {
		t.Fatal(err)
	}
}

func TestLogFsckPassesAnHonestLog(t *testing.T) {
	t.Parallel()
	dir, key := grownLog(t)
	r, err := audit.Fsck(context.Background(), audit.Dir(dir), key)
	if err != nil {
		t.Fatal(err)
	}
	if len(r.Problems) != 0 || r.Entries != 300 || r.Tiles != 3 || !r.Signed || r.Checkpoint.Origin != "localhost/log" {
		t.Fatalf("honest log: %+v", r)
	}
	// Without the key the tree is still recomputed; the report says the signature was not checked.
	r, err = audit.Fsck(context.Background(), audit.Dir(dir), "")
	if err != nil || len(r.Problems) != 0 || r.Signed {
		t.Fatalf("honest log without a key: %v %+v", err, r)
	}
}

// Each kind of damage is reported against the file that holds it, and only that file.
func TestLogFsckNamesTheDamagedFile(t *testing.T) {
	t.Parallel()
	dir, key := grownLog(t)
	for _, c := range []struct {
		name   string
		damage func(dir string)
		path   string
		says   string
	}{
		{"leaf hash", func(d string) { flipByte(t, d, "tile/0/000", 17*32+5) }, "tile/0/000", "hash 17 (tree level 0, node 17)"},
		{"partial tile", func(d string) { flipByte(t, d, "tile/0/001.p/44", 43*32) }, "tile/0/001.p/44", "hash 43 (tree level 0, node 299)"},
		{"level-1 tile", func(d string) { flipByte(t, d, "tile/1/000.p/1", 31) }, "tile/1/000.p/1", "hash 0 (tree level 8, node 0)"},
		{"entry", func(d string) { flipByte(t, d, "tile/entries/001.p/44", 2+34*3+9) }, "tile/entries/001.p/44", "entry 3 (log index 259) is not the one the checkpoint's tree holds"},
		{"missing tile", func(d string) { os.Remove(filepath.Join(d, "tile/0/001.p/44")) }, "tile/0/001.p/44", "missing"},
		{"missing bundle", func(d string) { os.Remove(filepath.Join(d, "tile/entries/000")) }, "tile/entries/000", "missing"},
		{"short tile", func(d string) { os.Truncate(filepath.Join(d, "tile/0/000"), 100) }, "tile/0/000", "holds 100 bytes, want 8192"},
	} {
		t.Run(c.name, func(t *testing.T) {
			d := copyLog(t, dir)
			c.damage(d)
			r, err := audit.Fsck(context.Background(), audit.Dir(d), key)
			if err != nil {
				t.Fatal(err)
			}
			if len(r.Problems) == 0 || r.Problems[0].Path != c.path || !strings.Contains(r.Problems[0].Reason, c.says) {
				t.Fatalf("want %s: %s, got %v", c.path, c.says, r.Problems)
			}
			for _, p := range r.Problems[1:] {
				if p.Path != c.path && c.name != "missing bundle" {
					t.Errorf("another file blamed: %v", p)
				}
			}
		})
	}
}

func TestLogFsckRefusesAForeignCheckpoint(t *testing.T) {
	t.Parallel()
	dir, key := grownLog(t)
	stranger := audittest.NewIdentity(t, agentName, 9)
	if _, err := audit.Fsck(context.Background(), audit.Dir(dir), stranger.Verifier); err == nil || !strings.Contains(err.Error(), "not signed by a trusted agent key") {
		t.Fatalf("checkpoint checked with another key: %v", err)
	}
	d := copyLog(t, dir)
	cp, _ := os.ReadFile(filepath.Join(d, "checkpoint"))
	os.WriteFile(filepath.Join(d, "checkpoint"), bytes.Replace(cp, []byte("\n300\n"), []byte("\n299\n"), 1), 0o644)
	if _, err := audit.Fsck(context.Background(), audit.Dir(d), key); err == nil || !strings.Contains(err.Error(), "invalid signature") {
		t.Fatalf("altered checkpoint: %v", err)
	}
}

// A reader holding an older checkpoint finds the partial tiles of its tree gone once the tiles
// filled up, and reads the full ones instead.
func TestLogOlderTreeReadsFullTiles(t *testing.T) {
	t.Parallel()
	agent := audittest.NewIdentity(t, agentName, 1)
	dir := t.TempDir()
	l := audittest.NewLog(t, dir, agent)
	l.Add(t, audittest.Leaves("early", 10)...)
	old := l.Checkpoint(t)
	l.Add(t, audittest.Leaves("late", 290)...)
	l.WaitGone(t, "tile/0/000.p/10")
	l.WaitGone(t, "tile/entries/000.p/10")
	l.Close(t)

	d := copyLog(t, dir)
	if err := os.WriteFile(filepath.Join(d, "checkpoint"), old, 0o644); err != nil {
		t.Fatal(err)
	}
	r, err := audit.Fsck(context.Background(), audit.Dir(d), agent.Verifier)
	if err != nil || len(r.Problems) != 0 || r.Entries != 10 {
		t.Fatalf("fsck at the older size: %v %+v", err, r)
	}
	prev, err := audit.OpenCheckpoint(old, agent.Verifier)
	if err != nil {
		t.Fatal(err)
	}
	latest, fork, err := audit.Follow(context.Background(), audit.Dir(dir), agent.Verifier, prev)
	if err != nil || fork != nil || latest.Size != 300 {
		t.Fatalf("follow 10 → 300: %v %v %+v", err, fork, latest)
	}
}

func TestLogFollowHonestGrowth(t *testing.T) {
	t.Parallel()
	agent := audittest.NewIdentity(t, agentName, 1)
	dir := t.TempDir()
	l := audittest.NewLog(t, dir, agent)
	l.Add(t, audittest.Leaves("a", 5)...)
	srv := audittest.NewServer(t, dir, agent)

	a, logURL, err := audit.Discover(context.Background(), srv.Client(), srv.URL)
	if err != nil || a.VerifierKey != agent.Verifier || logURL.String() != srv.URL+"/log/" {
		t.Fatalf("discover: %v %+v %v", err, a, logURL)
	}
	src, err := audit.NewHTTP(logURL.String(), srv.Client())
	if err != nil {
		t.Fatal(err)
	}
	first, fork, err := audit.Follow(context.Background(), src, a.VerifierKey, nil)
	if err != nil || fork != nil || first.Size != 5 {
		t.Fatalf("first contact: %v %v %+v", err, fork, first)
	}
	prev := first
	for _, n := range []int{1, 250, 300} {
		l.Add(t, audittest.Leaves("b", n)...)
		latest, fork, err := audit.Follow(context.Background(), src, a.VerifierKey, prev)
		if err != nil || fork != nil || latest.Size <= prev.Size {
			t.Fatalf("growth from %d: %v %v %+v", prev.Size, err, fork, latest)
		}
		prev = latest
	}
	same, fork, err := audit.Follow(context.Background(), src, a.VerifierKey, prev)
	if err != nil || fork != nil || same.Size != prev.Size {
		t.Fatalf("no growth: %v %v", err, fork)
	}
}

// rewritten builds, with the same key and origin, a log whose entry 7 differs from the honest
// one's, with n entries.
func rewritten(t *testing.T, n int) string {
	t.Helper()
	agent := audittest.NewIdentity(t, agentName, 1)
	dir := t.TempDir()
	l := audittest.NewLog(t, dir, agent)
	leaves := audittest.Leaves("note", n)
	leaves[7] = audittest.Leaf("a note the agent wants forgotten")
	l.Add(t, leaves...)
	l.Close(t)
	return dir
}

func TestLogFollowProvesAFork(t *testing.T) {
	t.Parallel()
	agent := audittest.NewIdentity(t, agentName, 1)
	honest := t.TempDir()
	l := audittest.NewLog(t, honest, agent)
	l.Add(t, audittest.Leaves("note", 20)...)
	l.Close(t)
	prev, err := audit.OpenCheckpoint(l.Checkpoint(t), agent.Verifier)
	if err != nil {
		t.Fatal(err)
	}
	srv := audittest.NewServer(t, honest, agent)
	src, _ := audit.NewHTTP(srv.URL+"/log/", srv.Client())

	for _, size := range []int{40, 20, 300} {
		srv.Serve(rewritten(t, size))
		latest, fork, err := audit.Follow(context.Background(), src, agent.Verifier, prev)
		if err != nil || latest != nil || fork == nil {
			t.Fatalf("rewritten log of %d: %v %v %v", size, err, latest, fork)
		}
		proof := fork.Encode()
		checked, err := audit.CheckFork(proof, agent.Verifier)
		if err != nil {
			t.Fatalf("size %d: the fork proof does not check: %v\n%s", size, err, proof)
		}
		if checked.New.Size != int64(size) || checked.Old.Size != 20 || !strings.Contains(checked.String(), "rewrites") {
			t.Fatalf("size %d: %s", size, checked)
		}
		if size == 20 && len(checked.Proof) != 0 {
			t.Fatalf("same size: proof of %d hashes", len(checked.Proof))
		}
		if _, err := audit.CheckFork(proof, audittest.NewIdentity(t, agentName, 9).Verifier); err == nil {
			t.Fatal("fork proof accepted with another agent's key")
		}
		// An honest pair of checkpoints, dressed up as a fork, is refused.
		honestLatest, _ := audit.OpenCheckpoint(l.Checkpoint(t), agent.Verifier)
		fake := *fork
		fake.New = honestLatest
		if _, err := audit.CheckFork(fake.Encode(), agent.Verifier); err == nil {
			t.Fatal("fork proof accepted for two checkpoints of one history")
		}
		altered := *fork
		altered.Prefix[0] ^= 1
		if _, err := audit.CheckFork(altered.Encode(), agent.Verifier); err == nil {
			t.Fatal("fork proof accepted with another prefix")
		}
	}

	srv.Serve(rewritten(t, 10))
	if _, _, err := audit.Follow(context.Background(), src, agent.Verifier, prev); err == nil || !strings.Contains(err.Error(), "smaller than the size 20") {
		t.Fatalf("rollback: %v", err)
	}
}

func TestLogFollowRefusesWhatTheAgentDidNotSign(t *testing.T) {
	t.Parallel()
	agent := audittest.NewIdentity(t, agentName, 1)
	stranger := audittest.NewIdentity(t, agentName, 9)
	dir := t.TempDir()
	l := audittest.NewLog(t, dir, stranger)
	l.Add(t, audittest.Leaves("x", 3)...)
	l.Close(t)
	if _, _, err := audit.Follow(context.Background(), audit.Dir(dir), agent.Verifier, nil); err == nil || !strings.Contains(err.Error(), "not signed by a trusted agent key") {
		t.Fatalf("checkpoint by a stranger: %v", err)
	}

	// Tiles that do not support the signed root are refused, not taken for a fork.
	honest, key := grownLog(t)
	d := copyLog(t, honest)
	flipByte(t, d, "tile/0/000", 0)
	old := smallerCheckpoint(t, key)
	if _, fork, err := audit.Follow(context.Background(), audit.Dir(d), key, old); err == nil || fork != nil || !strings.Contains(err.Error(), "tiles do not match the checkpoint") {
		t.Fatalf("damaged tiles: %v %v", err, fork)
	}
}

func mustCheckpointAt(t *testing.T, dir, key string, size int64) *audit.Checkpoint {
	t.Helper()
	cp, err := audit.ReadCheckpoint(context.Background(), audit.Dir(dir), key)
	if err != nil || cp.Size != size {
		t.Fatalf("%v %+v", err, cp)
	}
	return cp
}

// smallerCheckpoint is the honest log's checkpoint at size 10: the same entries as grownLog's.
func smallerCheckpoint(t *testing.T, key string) *audit.Checkpoint {
	t.Helper()
	agent := audittest.NewIdentity(t, agentName, 1)
	dir := t.TempDir()
	l := audittest.NewLog(t, dir, agent)
	l.Add(t, audittest.Leaves("note", 300)[:10]...)
	l.Close(t)
	return mustCheckpointAt(t, dir, key, 10)
}

func TestLogTilePaths(t *testing.T) {
	t.Parallel()
	for path, want := range map[string]tlog.Tile{
		"tile/0/000":                 {H: 8, L: 0, N: 0, W: 256},
		"tile/0/x001/234.p/5":        {H: 8, L: 0, N: 1234, W: 5},
		"tile/2/001":                 {H: 8, L: 2, N: 1, W: 256},
		"tile/entries/x002/003.p/17": {H: 8, L: -1, N: 2003, W: 17},
	} {
		got, err := audit.ParseTilePath(path)
		if err != nil || got != want || audit.TilePath(got) != path {
			t.Errorf("%s: %v %+v", path, err, got)
		}
	}
	for _, bad := range []string{"checkpoint", "tile/8/0/000", "tile/data/000", "tile/0/1", "tile/0/000.p/256", "tile/0/000.p/0", "tile/0/../../etc", "tile/entries/000.tmp"} {
		if _, err := audit.ParseTilePath(bad); err == nil {
			t.Errorf("%s accepted", bad)
		}
	}
}

func TestLogStateRoundTrip(t *testing.T) {
	t.Parallel()
	dir, key := grownLog(t)
	cp := mustCheckpointAt(t, dir, key, 300)
	s := &audit.State{Agent: "https://agent.example", Log: "https://agent.example/log/", Key: key, Checkpoint: cp}
	file := filepath.Join(t.TempDir(), "monitor.state")
	if err := s.Save(file); err != nil {
		t.Fatal(err)
	}
	back, err := audit.LoadState(file)
	if err != nil || !bytes.Equal(back.Encode(), s.Encode()) || back.Checkpoint.Size != 300 {
		t.Fatalf("%v %+v", err, back)
	}
	if st, err := audit.LoadState(filepath.Join(t.TempDir(), "none")); st != nil || err != nil {
		t.Fatalf("missing state: %v %v", st, err)
	}
	// A state whose checkpoint is not signed by its key is refused.
	other := *s
	other.Key = audittest.NewIdentity(t, agentName, 9).Verifier
	if _, err := audit.ParseState(other.Encode()); err == nil {
		t.Fatal("state with a checkpoint of another key accepted")
	}
}

func TestLogHTTPSourceRefusesBadURLs(t *testing.T) {
	t.Parallel()
	for _, u := range []string{"ftp://x/log/", "/log/", "https:///log/", "::"} {
		if _, err := audit.NewHTTP(u, http.DefaultClient); err == nil {
			t.Errorf("%q accepted", u)
		}
	}
}

// A new log's checkpoint is the empty tree's: fsck finds nothing to blame, and the monitor
// follows it to the first entries.
func TestLogEmpty(t *testing.T) {
	t.Parallel()
	agent := audittest.NewIdentity(t, agentName, 1)
	dir := t.TempDir()
	l := audittest.NewLog(t, dir, agent)
	l.WaitExists(t, audit.CheckpointPath)
	empty, err := audit.ReadCheckpoint(context.Background(), audit.Dir(dir), agent.Verifier)
	if err != nil || empty.Size != 0 {
		t.Fatalf("%v %+v", err, empty)
	}
	r, err := audit.Fsck(context.Background(), audit.Dir(dir), agent.Verifier)
	if err != nil || len(r.Problems) != 0 || r.Entries != 0 {
		t.Fatalf("fsck of the empty log: %v %+v", err, r)
	}
	l.Add(t, audittest.Leaves("first", 2)...)
	latest, fork, err := audit.Follow(context.Background(), audit.Dir(dir), agent.Verifier, empty)
	if err != nil || fork != nil || latest.Size != 2 {
		t.Fatalf("follow from the empty tree: %v %v %+v", err, fork, latest)
	}
}
