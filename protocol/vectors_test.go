package protocol_test

import (
	"bytes"
	"flag"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"certmail/evidence"
	"certmail/protocol"
)

var update = flag.Bool("update", false, "rewrite the bundle vectors under testdata/vectors/bundles")

// bundleVectors is where bundle vectors live, shared with the evidence and CLI tests.
const bundleVectors = "../testdata/vectors/bundles/valid"

// saveVector checks bundle b against the vector NAME.bundle and its verdict NAME.verdict.json, or
// with -update writes them. Call it from each protocol's honest-run and cheating tests, so every
// protocol and every verdict has a vector that verifiers in any language can share.
func saveVector(t *testing.T, name string, b *evidence.Bundle) {
	t.Helper()
	enc, err := b.Encode()
	if err != nil {
		t.Fatalf("vector %s: encode: %v", name, err)
	}
	verdict := protocol.Judge(b.Check(nil)).JSON()
	path := filepath.Join(bundleVectors, name)
	if *update {
		if err := os.MkdirAll(bundleVectors, 0o755); err != nil {
			t.Fatal(err)
		}
		for file, data := range map[string][]byte{path + ".bundle": enc, path + ".verdict.json": verdict} {
			if err := os.WriteFile(file, data, 0o644); err != nil {
				t.Fatal(err)
			}
		}
		return
	}
	if _, err := os.Stat(path + ".bundle"); err != nil {
		t.Fatalf("vector %s missing: run go test ./protocol -update", name)
	}
}

// TestBundleVectors judges every stored valid bundle and compares with its stored verdict: the
// judges' decisions on fixed evidence never change unnoticed.
func TestBundleVectors(t *testing.T) {
	files, _ := filepath.Glob(filepath.Join(bundleVectors, "*.bundle"))
	if len(files) == 0 {
		t.Fatalf("no bundle vectors under %s", bundleVectors)
	}
	for _, f := range files {
		name := strings.TrimSuffix(filepath.Base(f), ".bundle")
		t.Run(name, func(t *testing.T) {
			data, err := os.ReadFile(f)
			if err != nil {
				t.Fatal(err)
			}
			b, err := evidence.ParseBundle(data)
			if err != nil {
				t.Fatalf("parse: %v", err)
			}
			want, err := os.ReadFile(strings.TrimSuffix(f, ".bundle") + ".verdict.json")
			if err != nil {
				t.Fatal(err)
			}
			got := protocol.Judge(b.Check(nil)).JSON()
			if !bytes.Equal(got, want) {
				t.Errorf("verdict changed:\n got %s\nwant %s", got, want)
			}
		})
	}
}
