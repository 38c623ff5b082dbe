package main

import (
	"bytes"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"certmail/evlog/audit/audittest"
)

// certmail runs `certmail ARGS...` in-process.
func certmail(t *testing.T, args ...string) (code int, stdout, stderr string) {
	t.Helper()
	var out, errb bytes.Buffer
	code = run(args, strings.NewReader(""), &out, &errb)
	return code, out.String(), errb.String()
}

// The monitor learns the key on first contact, follows honest growth, and when the agent serves
// a checkpoint of a rewritten log (same key and origin, another history) exits 1 and writes a
// fork proof that check-fork accepts; the state keeps the last good checkpoint.
func TestLogMonitor(t *testing.T) {
	t.Parallel()
	agent := audittest.NewIdentity(t, "localhost", 1)
	honest := t.TempDir()
	l := audittest.NewLog(t, honest, agent)
	l.Add(t, audittest.Leaves("note", 5)...)
	srv := audittest.NewServer(t, honest, agent)
	state := filepath.Join(t.TempDir(), "monitor.state")

	code, out, errs := certmail(t, "log", "monitor", srv.URL, "--state", state)
	if code != exitOK || !strings.Contains(out, "first contact: localhost/log at size 5") || !strings.Contains(out, agent.Verifier) {
		t.Fatalf("first contact: exit %d\n%s%s", code, out, errs)
	}
	if fi, err := os.Stat(state); err != nil || fi.Mode().Perm() != 0o600 {
		t.Fatalf("state file: %v %v", err, fi)
	}
	l.Add(t, audittest.Leaves("more", 3)...)
	if code, out, errs := certmail(t, "log", "monitor", srv.URL, "--state", state); code != exitOK || !strings.Contains(out, "consistent: localhost/log grew from size 5 to 8") {
		t.Fatalf("growth: exit %d\n%s%s", code, out, errs)
	}
	if code, out, _ := certmail(t, "log", "monitor", srv.URL+"/", "--state", state); code != exitOK || !strings.Contains(out, "unchanged at size 8") {
		t.Fatalf("no growth: exit %d\n%s", code, out)
	}
	l.Close(t)
	stateBefore, _ := os.ReadFile(state)

	// The agent rewrites note 2 and serves the new history.
	forked := t.TempDir()
	f := audittest.NewLog(t, forked, agent)
	leaves := append(audittest.Leaves("note", 5), audittest.Leaves("more", 3)...)
	leaves[2] = audittest.Leaf("a note the agent wants forgotten")
	f.Add(t, append(leaves, audittest.Leaves("later", 4)...)...)
	f.Close(t)
	srv.Serve(forked)
	proof := filepath.Join(t.TempDir(), "fork.proof")
	code, out, errs = certmail(t, "log", "monitor", srv.URL, "--state", state, "--proof", proof)
	if code != exitFail || !strings.Contains(out, "FORK: the log localhost/log signed a tree of size 8") || !strings.Contains(out, proof) {
		t.Fatalf("rewritten log: exit %d\n%s%s", code, out, errs)
	}
	if stateAfter, _ := os.ReadFile(state); !bytes.Equal(stateAfter, stateBefore) {
		t.Fatal("the state moved to the forked checkpoint")
	}
	if code, out, errs := certmail(t, "log", "check-fork", proof, "--key", agent.Verifier); code != exitOK || !strings.Contains(out, "FORK PROVEN") {
		t.Fatalf("check-fork: exit %d\n%s%s", code, out, errs)
	}
	if code, out, _ := certmail(t, "log", "check-fork", proof); code != exitOK || !strings.Contains(out, "taken from the file itself") {
		t.Fatalf("check-fork without a key: exit %d\n%s", code, out)
	}
	stranger := audittest.NewIdentity(t, "localhost", 9)
	if code, out, _ := certmail(t, "log", "check-fork", proof, "--key", stranger.Verifier); code != exitFail || !strings.Contains(out, "NOT A FORK PROOF") {
		t.Fatalf("check-fork with another key: exit %d\n%s", code, out)
	}
	// The monitor keeps reporting the fork on every run.
	if code, _, _ := certmail(t, "log", "monitor", srv.URL, "--state", state, "--proof", proof); code != exitFail {
		t.Fatalf("second run after the fork: exit %d", code)
	}

	// A monitor pinned to another key refuses the agent's checkpoints.
	other := filepath.Join(t.TempDir(), "other.state")
	if code, _, errs := certmail(t, "log", "monitor", srv.URL, "--state", other, "--key", stranger.Verifier); code != exitFail || !strings.Contains(errs, "not signed by a trusted agent key") {
		t.Fatalf("pinned to a stranger: exit %d\n%s", code, errs)
	}
	if _, err := os.Stat(other); !os.IsNotExist(err) {
		t.Fatal("a state was written for a checkpoint that did not verify")
	}
	// The state is for one agent and one key.
	if code, _, errs := certmail(t, "log", "monitor", "http://127.0.0.1:1", "--state", state); code != exitUsage || !strings.Contains(errs, "follows "+srv.URL) {
		t.Fatalf("state of another agent: exit %d\n%s", code, errs)
	}
	if code, _, errs := certmail(t, "log", "monitor", srv.URL, "--state", state, "--key", stranger.Verifier); code != exitUsage || !strings.Contains(errs, "pinned the key") {
		t.Fatalf("state with another key: exit %d\n%s", code, errs)
	}
}

func TestLogFsck(t *testing.T) {
	t.Parallel()
	agent := audittest.NewIdentity(t, "localhost", 1)
	dir := t.TempDir()
	l := audittest.NewLog(t, dir, agent)
	l.Add(t, audittest.Leaves("note", 300)...)
	l.Close(t)

	code, out, errs := certmail(t, "log", "fsck", dir, "--key", agent.Verifier)
	if code != exitOK || !strings.Contains(out, "OK: 300 entries and 3 tiles give the checkpoint's tree") || !strings.Contains(out, "signature checked") {
		t.Fatalf("honest log: exit %d\n%s%s", code, out, errs)
	}
	if code, out, _ := certmail(t, "log", "fsck", dir); code != exitOK || !strings.Contains(out, "signature NOT checked") {
		t.Fatalf("without a key: exit %d\n%s", code, out)
	}

	tile := filepath.Join(dir, "tile", "0", "000")
	b, err := os.ReadFile(tile)
	if err != nil {
		t.Fatal(err)
	}
	b[100*32+7] ^= 0x80
	if err := os.WriteFile(tile, b, 0o644); err != nil {
		t.Fatal(err)
	}
	code, out, errs = certmail(t, "log", "fsck", dir, "--key", agent.Verifier)
	if code != exitFail || !strings.Contains(out, "DAMAGED: 1 problems") || !strings.Contains(out, "  tile/0/000: hash 100 ") {
		t.Fatalf("flipped byte in tile/0/000: exit %d\n%s%s", code, out, errs)
	}

	stranger := audittest.NewIdentity(t, "localhost", 9)
	if code, _, errs := certmail(t, "log", "fsck", dir, "--key", stranger.Verifier); code != exitFail || !strings.Contains(errs, "not signed by a trusted agent key") {
		t.Fatalf("another key: exit %d\n%s", code, errs)
	}
	if code, _, errs := certmail(t, "log", "fsck", t.TempDir()); code != exitFail || !strings.Contains(errs, "checkpoint") {
		t.Fatalf("a directory with no log: exit %d\n%s", code, errs)
	}
}
