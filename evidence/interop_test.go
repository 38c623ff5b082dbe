package evidence_test

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"golang.org/x/mod/sumdb/note"
)

// TestNotesVerifyWithXModAlone checks every valid note vector with golang.org/x/mod/sumdb/note and
// the verifier keys only: no certmail code is on this verification path, so any holder of a note
// can check it without trusting certmail's own verifier.
func TestNotesVerifyWithXModAlone(t *testing.T) {
	keysText, err := os.ReadFile("../testdata/vectors/notes/keys.txt")
	if err != nil {
		t.Fatal(err)
	}
	var verifiers []note.Verifier
	for _, k := range strings.Fields(string(keysText)) {
		v, err := note.NewVerifier(k)
		if err != nil {
			t.Fatal(err)
		}
		verifiers = append(verifiers, v)
	}
	files, _ := filepath.Glob("../testdata/vectors/notes/valid/*.note")
	if len(files) == 0 {
		t.Fatal("no note vectors")
	}
	for _, f := range files {
		msg, _ := os.ReadFile(f)
		n, err := note.Open(msg, note.VerifierList(verifiers...))
		if err != nil {
			t.Errorf("%s: x/mod note.Open: %v", f, err)
			continue
		}
		if len(n.Sigs) == 0 || !strings.HasPrefix(n.Text, "certmail-evidence/1\ntype ") {
			t.Errorf("%s: opened but not as expected: %d signatures, text %q", f, len(n.Sigs), n.Text)
		}
	}
}
