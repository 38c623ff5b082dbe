package durable_test

import (
	"os"
	"path/filepath"
	"syscall"
	"testing"

	"certmail/durable"
)

func TestFilesAndDirectories(t *testing.T) {
	old := syscall.Umask(0)
	defer syscall.Umask(old)
	root := t.TempDir()
	dir := filepath.Join(root, "a", "b", "c")
	if err := durable.MkdirAll(dir); err != nil {
		t.Fatal(err)
	}
	for _, d := range []string{filepath.Join(root, "a"), dir} {
		if fi, err := os.Stat(d); err != nil || fi.Mode().Perm() != 0o700 {
			t.Fatalf("%s: %v %v", d, fi.Mode(), err)
		}
	}
	p := filepath.Join(dir, "key")
	if err := durable.CreateExclusive(p, []byte("one"), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := durable.CreateExclusive(p, []byte("two"), 0o600); err == nil {
		t.Fatal("CreateExclusive overwrote a file")
	}
	if b, _ := os.ReadFile(p); string(b) != "one" {
		t.Fatalf("content %q", b)
	}
	if err := durable.WriteAtomic(p, []byte("three"), 0o644); err != nil {
		t.Fatal(err)
	}
	fi, _ := os.Stat(p)
	if b, _ := os.ReadFile(p); string(b) != "three" || fi.Mode().Perm() != 0o644 {
		t.Fatalf("after WriteAtomic: %q %v", b, fi.Mode())
	}
	entries, _ := os.ReadDir(dir)
	if len(entries) != 1 {
		t.Fatalf("temporary files left: %v", entries)
	}
	if err := durable.MkdirAll(p); err == nil {
		t.Fatal("MkdirAll over a file")
	}
}
