package audit_test

import (
	"context"
	"flag"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"certmail/evlog/audit"
	"certmail/evlog/audit/audittest"
)

var update = flag.Bool("update", false, "rewrite the log vectors under testdata/vectors/log")

// logVectors holds fork proofs that any implementation can check: valid/*.proof prove a fork
// by the agent whose key is in key.txt; invalid/*.proof do not, each with the reason in .err.
const logVectors = "../../testdata/vectors/log"

// forkVectors makes real logs with one key: an honest one of 20 entries, and rewrites of it.
func forkVectors(t *testing.T) (key string, valid map[string]*audit.Fork, invalid map[string]struct {
	data []byte
	want string
}) {
	agent := audittest.NewIdentity(t, agentName, 1)
	honest := t.TempDir()
	l := audittest.NewLog(t, honest, agent)
	l.Add(t, audittest.Leaves("note", 20)...)
	l.Close(t)
	prev, err := audit.OpenCheckpoint(l.Checkpoint(t), agent.Verifier)
	if err != nil {
		t.Fatal(err)
	}
	valid = map[string]*audit.Fork{}
	for name, size := range map[string]int{"grown": 300, "same-size": 20} {
		_, fork, err := audit.Follow(context.Background(), audit.Dir(rewritten(t, size)), agent.Verifier, prev)
		if err != nil || fork == nil {
			t.Fatalf("%s: %v", name, err)
		}
		valid[name] = fork
	}
	grownHonest := t.TempDir()
	l = audittest.NewLog(t, grownHonest, agent)
	l.Add(t, audittest.Leaves("note", 300)...)
	l.Close(t)
	honestLatest, err := audit.OpenCheckpoint(l.Checkpoint(t), agent.Verifier)
	if err != nil {
		t.Fatal(err)
	}
	noFork := *valid["grown"]
	noFork.New = honestLatest
	badPrefix := *valid["grown"]
	badPrefix.Prefix[3] ^= 0x10
	// The same fork, but the earlier checkpoint is a stranger's who took the agent's name.
	stranger := audittest.NewIdentity(t, agentName, 9)
	strangerDir := t.TempDir()
	l = audittest.NewLog(t, strangerDir, stranger)
	l.Add(t, audittest.Leaves("note", 20)...)
	l.Close(t)
	otherKey := *valid["grown"]
	if otherKey.Old, err = audit.OpenCheckpoint(l.Checkpoint(t), stranger.Verifier); err != nil {
		t.Fatal(err)
	}
	swapped := *valid["grown"]
	swapped.Old, swapped.New = swapped.New, swapped.Old
	invalid = map[string]struct {
		data []byte
		want string
	}{
		"one-history":  {noFork.Encode(), "consistency proof does not show"},
		"bad-prefix":   {badPrefix.Encode(), "consistency proof does not show"},
		"other-key":    {otherKey.Encode(), "not signed by a trusted agent key"},
		"swapped":      {swapped.Encode(), "must be no larger than the new one"},
		"truncated":    {valid["grown"].Encode()[:400], "truncated"},
		"not-a-proof":  {[]byte("certmail-bundle/1\n"), "not a certmail fork proof"},
		"trailing-end": {append(valid["grown"].Encode(), "end\n"...), "after the end line"},
	}
	return agent.Verifier, valid, invalid
}

func TestLogForkVectors(t *testing.T) {
	if *update {
		key, valid, invalid := forkVectors(t)
		for _, d := range []string{"valid", "invalid"} {
			if err := os.MkdirAll(filepath.Join(logVectors, d), 0o755); err != nil {
				t.Fatal(err)
			}
		}
		write(t, filepath.Join(logVectors, "key.txt"), []byte(key+"\n"))
		for name, f := range valid {
			write(t, filepath.Join(logVectors, "valid", name+".proof"), f.Encode())
		}
		for name, c := range invalid {
			write(t, filepath.Join(logVectors, "invalid", name+".proof"), c.data)
			write(t, filepath.Join(logVectors, "invalid", name+".err"), []byte(c.want+"\n"))
		}
	}
	keyText, err := os.ReadFile(filepath.Join(logVectors, "key.txt"))
	if err != nil {
		t.Fatalf("%v (go test ./evlog/audit -update writes the vectors)", err)
	}
	key := strings.TrimSpace(string(keyText))
	valid, _ := filepath.Glob(filepath.Join(logVectors, "valid", "*.proof"))
	invalid, _ := filepath.Glob(filepath.Join(logVectors, "invalid", "*.proof"))
	if len(valid) < 2 || len(invalid) < 7 {
		t.Fatalf("found %d valid and %d invalid fork vectors, want 2 and 7", len(valid), len(invalid))
	}
	for _, file := range valid {
		data, _ := os.ReadFile(file)
		f, err := audit.CheckFork(data, key)
		if err != nil {
			t.Errorf("%s: %v", file, err)
			continue
		}
		if string(f.Encode()) != string(data) {
			t.Errorf("%s: parse then encode changed it", file)
		}
	}
	for _, file := range invalid {
		data, _ := os.ReadFile(file)
		want, err := os.ReadFile(strings.TrimSuffix(file, ".proof") + ".err")
		if err != nil {
			t.Fatalf("%s: no .err beside it", file)
		}
		if _, err := audit.CheckFork(data, key); err == nil || !strings.Contains(err.Error(), strings.TrimSpace(string(want))) {
			t.Errorf("%s: error %v, want %q", file, err, want)
		}
	}
}

func write(t *testing.T, path string, data []byte) {
	t.Helper()
	if err := os.WriteFile(path, data, 0o644); err != nil {
		t.Fatal(err)
	}
}
