package main

import (
	"bytes"
	"crypto/rand"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"golang.org/x/mod/sumdb/note"

	"certmail/evidence"
)

const vectors = "../../testdata/vectors/bundles"

// verify runs `certmail verify ARGS...` in-process.
func verify(t *testing.T, args ...string) (code int, stdout, stderr string) {
	t.Helper()
	var out, errb bytes.Buffer
	code = run(append([]string{"verify"}, args...), strings.NewReader(""), &out, &errb)
	return code, out.String(), errb.String()
}

func vectorFiles(t *testing.T, kind string) []string {
	t.Helper()
	files, _ := filepath.Glob(filepath.Join(vectors, kind, "*.bundle"))
	if len(files) == 0 {
		t.Fatalf("no %s bundle vectors under %s", kind, vectors)
	}
	return files
}

func TestVerifyAcceptsEveryValidVector(t *testing.T) {
	t.Parallel()
	for _, f := range vectorFiles(t, "valid") {
		code, out, errs := verify(t, f)
		if code != exitOK || !strings.HasPrefix(out, "VALID: ") {
			t.Errorf("%s: exit %d\n%s%s", f, code, out, errs)
		}
	}
}

func TestVerifyRefusesEveryInvalidVectorWithItsReason(t *testing.T) {
	t.Parallel()
	for _, f := range vectorFiles(t, "invalid") {
		want, err := os.ReadFile(strings.TrimSuffix(f, ".bundle") + ".err")
		if err != nil {
			t.Fatalf("%s: no .err beside it", f)
		}
		code, out, _ := verify(t, f)
		if code != exitFail || !strings.HasPrefix(out, "NOT VALID: ") {
			t.Errorf("%s: exit %d, want 1\n%s", f, code, out)
		}
		if !strings.Contains(out, strings.TrimSpace(string(want))) {
			t.Errorf("%s: output does not say %q:\n%s", f, strings.TrimSpace(string(want)), out)
		}
	}
}

// Changing any byte of any signed note in any valid bundle makes verify fail and name the note.
func TestVerifyCatchesEveryByteChangeInEveryNote(t *testing.T) {
	t.Parallel()
	for _, f := range vectorFiles(t, "valid") {
		data, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		b, err := evidence.ParseBundle(data)
		if err != nil {
			t.Fatal(err)
		}
		for i, n := range b.Notes {
			raw := n.Bytes()
			start := bytes.Index(data, raw)
			name := fmt.Sprintf("note %d", i+1)
			for off := range raw {
				mutated := bytes.Clone(data)
				mutated[start+off] ^= 0x01
				v := verifyBundle(mutated, nil, false, nil, time.Now())
				if v.Valid {
					t.Fatalf("%s: %s byte %d (%q→%q) changed and still valid", f, name, off, raw[off], mutated[start+off])
				}
				if !strings.Contains(v.Text(), name) {
					t.Fatalf("%s: %s byte %d changed; verdict does not name it:\n%s", f, name, off, v.Text())
				}
			}
		}
	}
}

func TestVerifyJSON(t *testing.T) {
	t.Parallel()
	valid := vectorFiles(t, "valid")[0]
	code, out, _ := verify(t, valid, "--json")
	var v evidence.Verdict
	if err := json.Unmarshal([]byte(out), &v); err != nil || code != exitOK || !v.Valid || v.Label == "" {
		t.Fatalf("exit %d, %v: %s", code, err, out)
	}
	code, out, _ = verify(t, "--json", filepath.Join(vectors, "invalid", "truncated.bundle"))
	if err := json.Unmarshal([]byte(out), &v); err != nil || code != exitFail || v.Valid || len(v.Problems) == 0 {
		t.Fatalf("truncated: exit %d, %v: %s", code, err, out)
	}
}

func TestVerifyMessageMustMatch(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	other := filepath.Join(dir, "other.eml")
	if err := os.WriteFile(other, []byte("From: mallory@m.example\r\n\r\nnot the message\r\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	for _, f := range vectorFiles(t, "valid") {
		b, _ := os.ReadFile(f)
		pb, err := evidence.ParseBundle(b)
		if err != nil {
			t.Fatal(err)
		}
		if _, ok := pb.Item(evidence.ItemMessage); !ok {
			continue
		}
		if code, out, _ := verify(t, f, "--message", other); code != exitFail || !strings.Contains(out, "message") {
			t.Errorf("%s with another message: exit %d\n%s", f, code, out)
		}
	}
}

func TestVerifyUsage(t *testing.T) {
	t.Parallel()
	for _, args := range [][]string{
		{},
		{"a.bundle", "b.bundle"},
		{"/nonexistent/x.bundle"},
		{"--key", "not-a-key", vectorFiles(t, "valid")[0]},
		{"--bogus"},
	} {
		if code, _, errs := verify(t, args...); code != exitUsage || errs == "" {
			t.Errorf("verify %q: exit %d, stderr %q; want 2 with a message", args, code, errs)
		}
	}
}

// Pinning keys: with the right agents' keys the verdict no longer says keys came from the
// bundle; with a stranger's key pinned, every agent note fails.
func TestVerifyPinnedKeys(t *testing.T) {
	t.Parallel()
	f := vectorFiles(t, "valid")[0]
	data, _ := os.ReadFile(f)
	b, err := evidence.ParseBundle(data)
	if err != nil {
		t.Fatal(err)
	}
	var args []string
	for _, k := range b.Keys {
		args = append(args, "--key", k)
	}
	code, out, _ := verify(t, append(args, f)...)
	if code != exitOK || strings.Contains(out, "taken from the bundle") {
		t.Fatalf("pinned all keys: exit %d\n%s", code, out)
	}
	_, stranger, err := note.GenerateKey(rand.Reader, "stranger.example")
	if err != nil {
		t.Fatal(err)
	}
	code, out, _ = verify(t, "--key", stranger, f)
	if code != exitFail || !strings.Contains(out, "signature check failed") {
		t.Fatalf("pinned a stranger: exit %d\n%s", code, out)
	}
}
