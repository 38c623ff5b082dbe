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

// Bundle vectors live here, shared with the evidence and CLI tests: valid/ holds bundles whose
// verdict is valid, whatever their outcome (delivered, refused, receipt-not-proven…);
// refused/ would hold well-formed bundles whose verdict is invalid.
const (
	bundleVectors  = "../testdata/vectors/bundles/valid"
	refusedVectors = "../testdata/vectors/bundles/refused"
)

// saveVector checks bundle b against the vector NAME.bundle and its verdict NAME.verdict.json, or
// with -update writes them. Call it from each protocol's honest-run and cheating tests, so every
// protocol and every verdict has a vector that verifiers in any language can share.
func saveVector(t *testing.T, name string, b *evidence.Bundle) {
	t.Helper()
	enc, err := b.Encode()
	if err != nil {
		t.Fatalf("vector %s: encode: %v", name, err)
	}
	v := protocol.Judge(b.Check(nil))
	verdict := v.JSON()
	dir := bundleVectors
	if !v.Valid {
		dir = refusedVectors
	}
	path := filepath.Join(dir, name)
	if *update {
		if err := os.MkdirAll(dir, 0o755); err != nil {
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
	refused, _ := filepath.Glob(filepath.Join(refusedVectors, "*.bundle"))
	files = append(files, refused...)
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
