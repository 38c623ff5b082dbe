package blobfs_test

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io/fs"
	"math/rand/v2"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"certmail/evidence"
	"certmail/internal/killtest"
	"certmail/store"
	"certmail/store/blobfs"
	"certmail/store/storetest"
)

// crashChildEnv names the directory a re-executed test binary puts blobs in until it is killed.
const crashChildEnv = "CERTMAIL_BLOBFS_CRASH_CHILD"

func TestMain(m *testing.M) { killtest.Main(m, crashChildEnv, crashChild) }

// crashChild puts blobs of up to 64 KiB and prints each hash as soon as Put has returned.
func crashChild(dir string) error {
	s, err := blobfs.Open(dir)
	if err != nil {
		return err
	}
	rng := rand.New(rand.NewPCG(uint64(os.Getpid()), uint64(time.Now().UnixNano())))
	for range 100000 {
		data := make([]byte, rng.IntN(64<<10))
		for i := range data {
			data[i] = byte(rng.Uint32())
		}
		h, err := s.Put(context.Background(), data)
		if err != nil {
			return err
		}
		if _, err := os.Stdout.WriteString(h.String() + "\n"); err != nil {
			return err
		}
	}
	return nil
}

func open(t *testing.T) *blobfs.Store {
	t.Helper()
	s, err := blobfs.Open(filepath.Join(t.TempDir(), "blobs"))
	if err != nil {
		t.Fatal(err)
	}
	return s
}

func TestBlobs(t *testing.T) {
	storetest.RunBlobs(t, func(t *testing.T) store.Blobs { return open(t) })
}

func TestLayoutAndModes(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "data", "blobs")
	s, err := blobfs.Open(dir)
	if err != nil {
		t.Fatal(err)
	}
	data := []byte("Subject: hello\r\n\r\nbody\r\n")
	h, err := s.Put(t.Context(), data)
	if err != nil {
		t.Fatal(err)
	}
	hex := strings.TrimPrefix(h.String(), "sha256:")
	file := filepath.Join(dir, "sha256", hex[:2], hex[2:])
	got, err := os.ReadFile(file)
	if err != nil || !bytes.Equal(got, data) {
		t.Fatalf("blob not at %s: %v", file, err)
	}
	for _, c := range []struct {
		path string
		mode os.FileMode
	}{{filepath.Dir(dir), 0o700}, {dir, 0o700}, {filepath.Join(dir, "sha256"), 0o700}, {filepath.Dir(file), 0o700}, {file, 0o600}} {
		fi, err := os.Stat(c.path)
		if err != nil {
			t.Error(err)
			continue
		}
		if fi.Mode().Perm() != c.mode {
			t.Errorf("%s: mode %v, want %v", c.path, fi.Mode().Perm(), c.mode)
		}
	}
	entries, err := os.ReadDir(filepath.Dir(file))
	if err != nil {
		t.Fatal(err)
	}
	if len(entries) != 1 {
		t.Errorf("blob directory holds %d entries, want the blob alone (no temporary files left)", len(entries))
	}
}

func TestCorruptBlob(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "blobs")
	s, err := blobfs.Open(dir)
	if err != nil {
		t.Fatal(err)
	}
	data := bytes.Repeat([]byte("the signed contract\r\n"), 100)
	h, err := s.Put(t.Context(), data)
	if err != nil {
		t.Fatal(err)
	}
	hex := strings.TrimPrefix(h.String(), "sha256:")
	file := filepath.Join(dir, "sha256", hex[:2], hex[2:])
	for _, damage := range []struct {
		name  string
		bytes []byte
	}{
		{"one bit flipped", func() []byte { b := bytes.Clone(data); b[len(b)/2] ^= 1; return b }()},
		{"truncated", data[:len(data)-1]},
		{"empty", nil},
	} {
		if err := os.WriteFile(file, damage.bytes, 0o600); err != nil {
			t.Fatal(err)
		}
		if got, err := s.Get(t.Context(), h); !errors.Is(err, blobfs.ErrCorrupt) {
			t.Errorf("Get of a blob %s: %d bytes, error %v; want ErrCorrupt", damage.name, len(got), err)
		}
		// Putting the content again repairs it.
		if _, err := s.Put(t.Context(), data); err != nil {
			t.Fatal(err)
		}
		if got, err := s.Get(t.Context(), h); err != nil || !bytes.Equal(got, data) {
			t.Errorf("Get after Put repaired a blob %s: %v", damage.name, err)
		}
	}
}

// TestDurabilityAfterKill kills a child putting blobs at random moments and checks that every
// blob it reported stored reads back whole.
func TestDurabilityAfterKill(t *testing.T) {
	const rounds = 20
	seed := uint64(20260302)
	rng := rand.New(rand.NewPCG(seed, seed))
	dir := filepath.Join(t.TempDir(), "blobs")
	var promised []evidence.Hash
	checked := map[evidence.Hash]bool{} // read back whole already; blobs never change
	for round := range rounds {
		delay := time.Duration(rng.IntN(150)) * time.Millisecond
		hashes := runAndKill(t, dir, delay)
		t.Logf("round %d: killed after %v, %d blobs reported", round, delay, len(hashes))
		promised = append(promised, hashes...)
		s, err := blobfs.Open(dir)
		if err != nil {
			t.Fatal(err)
		}
		// Every blob reported stored reads back whole, and no file holds a torn blob.
		for _, h := range append(hashes, blobNames(t, dir)...) {
			if checked[h] {
				continue
			}
			if _, err := s.Get(t.Context(), h); err != nil {
				t.Fatalf("round %d (seed %d): %v", round, seed, err)
			}
			checked[h] = true
		}
		for _, h := range promised {
			if !checked[h] {
				t.Fatalf("round %d: blob %s reported stored was never read back", round, h)
			}
		}
	}
	if len(promised) < rounds {
		t.Fatalf("only %d blobs reported in %d rounds: the child hardly ran", len(promised), rounds)
	}
}

// blobNames lists the hashes of the blob files in dir, leaving out temporary files.
func blobNames(t *testing.T, dir string) []evidence.Hash {
	t.Helper()
	var out []evidence.Hash
	root := filepath.Join(dir, "sha256")
	err := filepath.WalkDir(root, func(path string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() || strings.HasPrefix(d.Name(), ".tmp-") {
			return err
		}
		rel, err := filepath.Rel(root, path)
		if err != nil {
			return err
		}
		h, err := evidence.ParseHash("sha256:" + strings.ReplaceAll(rel, string(filepath.Separator), ""))
		if err != nil {
			return fmt.Errorf("stray file %s: %w", path, err)
		}
		out = append(out, h)
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return out
}

// runAndKill runs the crash child on dir, SIGKILLs it after delay, and returns the hashes of
// the blobs it reported stored.
func runAndKill(t *testing.T, dir string, delay time.Duration) []evidence.Hash {
	t.Helper()
	lines, _ := killtest.Run(t, crashChildEnv, dir, delay)
	hashes := make([]evidence.Hash, len(lines))
	for i, line := range lines {
		h, err := evidence.ParseHash(line)
		if err != nil {
			t.Fatalf("the child reported %q: %v", line, err)
		}
		hashes[i] = h
	}
	return hashes
}
