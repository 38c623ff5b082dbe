// Package seed gives fuzz targets their seed corpus from the project's test vectors.
package seed

import (
	"os"
	"path/filepath"
	"testing"
)

// Files adds every file matching the patterns to f's corpus, and fails when there is none: a
// fuzz target whose vectors moved away would otherwise start from nothing without a word.
func Files(f *testing.F, patterns ...string) {
	f.Helper()
	n := 0
	for _, p := range patterns {
		files, _ := filepath.Glob(p)
		for _, file := range files {
			b, err := os.ReadFile(file)
			if err != nil {
				f.Fatal(err)
			}
			f.Add(b)
			n++
		}
	}
	if n == 0 {
		f.Fatalf("no seed files match %v", patterns)
	}
}
