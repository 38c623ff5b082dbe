package evidence_test

import (
	"bytes"
	"encoding/base64"
	"errors"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"golang.org/x/mod/sumdb/note"

	"certmail/evidence"
	"certmail/internal/seed"
)

func FuzzParseRecord(f *testing.F) {
	seed.Files(f, "../testdata/vectors/notes/*/*.note")
	f.Fuzz(func(t *testing.T, data []byte) {
		if i := bytes.LastIndex(data, []byte("\n\n")); i >= 0 {
			data = data[:i+1] // the body of a note, when the input is one
		}
		r, err := evidence.ParseRecord(data)
		if err != nil {
			return
		}
		enc, err := r.Encode()
		if err != nil {
			t.Fatalf("parsed record does not encode: %v", err)
		}
		if !bytes.Equal(enc, data) {
			t.Fatalf("parse then encode changed the bytes:\n%q\n%q", data, enc)
		}
	})
}

func FuzzParseNote(f *testing.F) {
	seed.Files(f, "../testdata/vectors/notes/*/*.note")
	f.Fuzz(func(t *testing.T, data []byte) {
		n, err := evidence.ParseNote(data)
		if err != nil {
			return
		}
		if !bytes.Equal(n.Bytes(), data) {
			t.Fatal("note bytes changed")
		}
		body, err := n.Record.Encode()
		if err != nil || !bytes.HasPrefix(data, body) || !bytes.Equal(data[len(body):len(body)+1], []byte("\n")) {
			t.Fatalf("note body is not the canonical record: %v", err)
		}
		// Each signature is the one base64 encoding of its bytes.
		for _, s := range n.Sigs {
			raw, err := base64.StdEncoding.DecodeString(s.Base64)
			if err != nil || base64.StdEncoding.EncodeToString(raw) != s.Base64 {
				t.Fatalf("signature of %s: base64 %q is not canonical", s.Name, s.Base64)
			}
		}
	})
}

func FuzzParseBundle(f *testing.F) {
	seed.Files(f, "../testdata/vectors/bundles/*/*.bundle")
	f.Fuzz(func(t *testing.T, data []byte) {
		b, err := evidence.ParseBundle(data)
		if err != nil {
			return
		}
		enc, err := b.Encode()
		if err != nil {
			t.Fatalf("parsed bundle does not encode: %v", err)
		}
		if !bytes.Equal(enc, data) {
			t.Fatalf("parse then encode changed the bundle")
		}
		b.Check(nil) // must not panic on any parsed bundle
	})
}

func FuzzParseCheckpoint(f *testing.F) {
	f.Add([]byte("p1.example/log\n0\n47DEQpj8HBSa+/TImW+5JCeuQeRkm5NMpJWZG3hSuFU=\n"))
	f.Add([]byte("p1.example/log\n13\namKAvW49GaKqzBghxi+UmJjOj1e/C4d/8OvFdfOMC9k=\nTimestamp: 1\n"))
	f.Fuzz(func(t *testing.T, data []byte) {
		c, err := evidence.ParseCheckpoint(data)
		if err != nil {
			return
		}
		if !bytes.Equal(c.Text(), data) {
			t.Fatalf("parse then encode changed the checkpoint:\n%q\n%q", data, c.Text())
		}
	})
}

// FuzzOpenCheckpoint feeds signed checkpoints, whole or damaged, to the bundle check's opener.
func FuzzOpenCheckpoint(f *testing.F) {
	files, _ := filepath.Glob("../testdata/vectors/bundles/*/*.bundle")
	var keys []string
	for _, file := range files {
		data, err := os.ReadFile(file)
		if err != nil {
			f.Fatal(err)
		}
		b, err := evidence.ParseBundle(data)
		if err != nil || b.Checkpoint == nil {
			continue
		}
		f.Add(b.Checkpoint)
		keys = b.Keys
	}
	if keys == nil {
		f.Fatal("no bundle vector with a checkpoint (go test ./evidence -update writes them)")
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		c, agent, err := evidence.OpenCheckpoint(data, keys)
		if err == nil && (c.Origin != evidence.LogOrigin(agent) || !bytes.HasPrefix(data, c.Text())) {
			t.Fatalf("opened checkpoint %+v of %q does not match its text", c, agent)
		}
		if c, err := evidence.CheckpointText(data); err == nil && !bytes.HasPrefix(data, c.Text()) {
			t.Fatalf("checkpoint %+v does not match its text", c)
		}
	})
}

// FuzzParseNoteAgreesWithOpen holds ParseNote's own reading of the signature lines to
// note.Open's: a note ParseNote accepts, note.Open reads too, with the same signatures.
func FuzzParseNoteAgreesWithOpen(f *testing.F) {
	seed.Files(f, "../testdata/vectors/notes/*/*.note")
	f.Fuzz(func(t *testing.T, data []byte) {
		n, err := evidence.ParseNote(data)
		_, openErr := note.Open(data, note.VerifierList())
		var unverified *note.UnverifiedNoteError
		if !errors.As(openErr, &unverified) {
			if err == nil {
				t.Fatalf("ParseNote accepts what note.Open refuses (%v)", openErr)
			}
			return
		}
		if err != nil {
			return // certmail's rules are stricter: canonical body and lines
		}
		if !slices.Equal(n.Sigs, unverified.Note.UnverifiedSigs) {
			t.Fatalf("signatures %+v, note.Open reads %+v", n.Sigs, unverified.Note.UnverifiedSigs)
		}
	})
}

// FuzzCheckVerifierKey holds the verifier keys that Keys.Add (and bundles, and KEY records)
// accept to x/mod's reading: exactly the keys note.NewVerifier reads and
// note.NewEd25519VerifierKey writes back unchanged.
func FuzzCheckVerifierKey(f *testing.F) {
	for _, v := range newFixture(f).vkeys {
		f.Add(v)
		name, rest, _ := strings.Cut(v, "+")
		hash, key, _ := strings.Cut(rest, "+")
		f.Add(name + "+" + strings.ToUpper(hash) + "+" + key) // x/mod reads it; not canonical
		f.Add(v + "\n")
	}
	f.Add("a+00000000+AQ==")
	f.Fuzz(func(t *testing.T, s string) {
		k, _ := evidence.NewKeys()
		err := k.Add(s)
		want := false
		if v, verr := note.NewVerifier(s); verr == nil {
			if pub, perr := evidence.PublicKey(s); perr == nil && len(pub) == 32 {
				canon, cerr := note.NewEd25519VerifierKey(v.Name(), pub)
				want = cerr == nil && canon == s
			}
		}
		if (err == nil) != want {
			t.Fatalf("Keys.Add(%q) = %v, x/mod accepts it: %v", s, err, want)
		}
	})
}

// FuzzFormatTime holds FormatTime to time.Format with the layout it stands for.
func FuzzFormatTime(f *testing.F) {
	for _, s := range []int64{0, 1767603660, -62135596800, 253402300799, 253402300800, -62135596801} {
		f.Add(s, int64(0))
		f.Add(s, int64(120_000_000))
		f.Add(s, int64(999_999_999))
	}
	f.Fuzz(func(t *testing.T, sec, nsec int64) {
		tm := time.Unix(sec, nsec)
		want := tm.UTC().Truncate(time.Millisecond).Format("2006-01-02T15:04:05.999Z")
		if got := evidence.FormatTime(tm); got != want {
			t.Fatalf("FormatTime(%v) = %q, want %q", tm, got, want)
		}
	})
}
