package main

import (
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// archiveDir copies every valid vector, and the invalid vector named bad, into a directory.
func archiveDir(t *testing.T, bad string) (dir string, valid []string) {
	t.Helper()
	dir = t.TempDir()
	for _, f := range vectorFiles(t, "valid") {
		data, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(dir, filepath.Base(f)), data, 0o644); err != nil {
			t.Fatal(err)
		}
		valid = append(valid, filepath.Join(dir, filepath.Base(f)))
	}
	data, err := os.ReadFile(filepath.Join(vectors, "invalid", bad+".bundle"))
	if err != nil {
		t.Fatal(err)
	}
	if err := os.MkdirAll(filepath.Join(dir, "sub"), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "sub", "x-"+bad+".bundle"), data, 0o644); err != nil {
		t.Fatal(err)
	}
	return dir, valid
}

func TestVerifyManyBundlesReportsEach(t *testing.T) {
	t.Parallel()
	bad := strings.TrimSuffix(filepath.Base(vectorFiles(t, "invalid")[0]), ".bundle")
	dir, valid := archiveDir(t, bad)
	want, err := os.ReadFile(filepath.Join(vectors, "invalid", bad+".err"))
	if err != nil {
		t.Fatal(err)
	}
	badFile := filepath.Join(dir, "sub", "x-"+bad+".bundle")

	code, out, errs := verify(t, dir)
	if code != exitFail {
		t.Fatalf("exit %d with one invalid bundle, want 1\n%s%s", code, out, errs)
	}
	for _, f := range valid {
		if !strings.Contains(out, f+": VALID: ") {
			t.Errorf("%s not reported valid:\n%s", f, out)
		}
	}
	i := strings.Index(out, badFile+": NOT VALID: ")
	if i < 0 || !strings.Contains(out[i:], strings.TrimSpace(string(want))) {
		t.Errorf("%s not reported with its reason %q:\n%s", badFile, want, out)
	}
	if n := len(valid) + 1; !strings.Contains(out, strings.Join([]string{itoa(n), " bundles: ", itoa(n - 1), " valid, 1 not valid"}, "")) {
		t.Errorf("no count line:\n%s", out)
	}

	// The valid files alone, named one by one: exit 0.
	if code, out, _ := verify(t, valid...); code != exitOK || strings.Contains(out, "NOT VALID") {
		t.Errorf("valid bundles: exit %d\n%s", code, out)
	}

	// JSON: one entry per file, in order, with its verdict.
	code, out, _ = verify(t, "--json", dir)
	var entries []struct {
		File    string `json:"file"`
		Verdict struct {
			Valid    bool `json:"valid"`
			Problems []struct {
				Reason string `json:"reason"`
			} `json:"problems"`
		} `json:"verdict"`
	}
	if err := json.Unmarshal([]byte(out), &entries); err != nil || code != exitFail {
		t.Fatalf("exit %d, JSON %v:\n%s", code, err, out)
	}
	if len(entries) != len(valid)+1 {
		t.Fatalf("%d entries, want %d", len(entries), len(valid)+1)
	}
	for _, e := range entries {
		if e.Verdict.Valid != (e.File != badFile) {
			t.Errorf("%s: valid %v", e.File, e.Verdict.Valid)
		}
	}
}

func TestVerifyManyUsage(t *testing.T) {
	t.Parallel()
	files := vectorFiles(t, "valid")
	for _, args := range [][]string{
		{files[0], files[1], "--message", files[0]}, // --message names one bundle's message
		{files[0], filepath.Join(t.TempDir(), "missing.bundle")},
		{t.TempDir()}, // no bundle in it
	} {
		if code, out, errs := verify(t, args...); code != exitUsage || out != "" || errs == "" {
			t.Errorf("verify %q: exit %d, want 2 and an error\n%s%s", args, code, out, errs)
		}
	}
}

func itoa(n int) string { b, _ := json.Marshal(n); return string(b) }
