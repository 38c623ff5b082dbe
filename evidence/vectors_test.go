package evidence_test

import (
	"bytes"
	"flag"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"golang.org/x/mod/sumdb/note"

	"certmail/evidence"
)

var update = flag.Bool("update", false, "rewrite the note vectors under testdata/vectors/notes")

const noteVectors = "../testdata/vectors/notes"

// invalidNotes derives the invalid vectors from valid notes: each with the words its error must
// contain.
func invalidNotes(t *testing.T, f *fixture) map[string]struct {
	note []byte
	want string
} {
	cop := f.sign(t, f.record(evidence.COP)).Bytes()
	sig := bytes.LastIndex(cop, []byte("\n\n")) + 2
	body := string(cop[:sig-1])
	lines := strings.Split(strings.TrimSuffix(body, "\n"), "\n")
	resign := func(text string, s note.Signer) []byte {
		b, err := note.Sign(&note.Note{Text: text}, s)
		if err != nil {
			t.Fatal(err)
		}
		return b
	}
	swapped := append([]string{}, lines...)
	swapped[4], swapped[5] = swapped[5], swapped[4]
	dup := append(append([]string{}, lines...), lines[len(lines)-1])
	badSig := bytes.Clone(cop)
	badSig[len(badSig)-6] ^= 0x01
	if badSig[len(badSig)-6] == '+' || badSig[len(badSig)-6] == '/' {
		badSig[len(badSig)-6] = 'A'
	}
	stranger, _, _ := note.GenerateKey(seeded(99), agent1)
	strangerSigner, _ := note.NewSigner(stranger)
	codByAgent := f.sign(t, f.record(evidence.CODIP)).Bytes()
	codText := string(codByAgent[:bytes.LastIndex(codByAgent, []byte("\n\n"))+1])

	return map[string]struct {
		note []byte
		want string
	}{
		"bad-signature":      {badSig, "invalid signature"},
		"unknown-key":        {resign(body, strangerSigner), "no signature by a known key"},
		"fields-reordered":   {resign(strings.Join(swapped, "\n")+"\n", f.signers[agent1]), "where field"},
		"field-duplicated":   {resign(strings.Join(dup, "\n")+"\n", f.signers[agent1]), "duplicate or unknown"},
		"unknown-version":    {resign(strings.Replace(body, evidence.Version, "certmail-evidence/9", 1), f.signers[agent1]), "unsupported version"},
		"non-canonical-time": {resign(strings.Replace(body, "time 2026-01-05T09:01:00Z", "time 2026-01-05T09:01:00.0Z", 1), f.signers[agent1]), "not canonical"},
		"upper-case-hash":    {resign(strings.Replace(body, "content sha256:", "content SHA256:", 1), f.signers[agent1]), "sha256:"},
		"trailing-bytes":     {append(bytes.Clone(cop), "— p1.example extra\n"...), "malformed note"},
		"truncated":          {cop[:len(cop)/2], "no blank line"},
		"wrong-signer":       {resign(codText, f.signers[agent2]), "no signature by a known key"},
		"crlf":               {bytes.ReplaceAll(cop, []byte("\n"), []byte("\r\n")), "no blank line"},
	}
}

// TestNoteVectors writes (with -update) and then checks the note vectors: every valid note
// parses, round-trips and verifies; every invalid one is refused with its reason.
func TestNoteVectors(t *testing.T) {
	if *update {
		f := newFixture(t)
		writeNoteVectors(t, f)
	}
	keysText, err := os.ReadFile(filepath.Join(noteVectors, "keys.txt"))
	if err != nil {
		t.Fatalf("note vectors missing (go test ./evidence -update writes them): %v", err)
	}
	keys, err := evidence.NewKeys(strings.Fields(string(keysText))...)
	if err != nil {
		t.Fatal(err)
	}
	valid, _ := filepath.Glob(filepath.Join(noteVectors, "valid", "*.note"))
	if len(valid) < len(evidence.Types()) {
		t.Fatalf("found %d valid note vectors, want one per type (%d)", len(valid), len(evidence.Types()))
	}
	for _, file := range valid {
		b, _ := os.ReadFile(file)
		n, err := evidence.ParseNote(b)
		if err != nil {
			t.Errorf("%s: %v", file, err)
			continue
		}
		if !bytes.Equal(n.Bytes(), b) {
			t.Errorf("%s: bytes changed", file)
		}
		if err := n.Verify(keys); err != nil {
			t.Errorf("%s: %v", file, err)
		}
		if want := strings.TrimSuffix(filepath.Base(file), ".note"); string(n.Record.Type) != want {
			t.Errorf("%s: holds a %s", file, n.Record.Type)
		}
	}
	invalid, _ := filepath.Glob(filepath.Join(noteVectors, "invalid", "*.note"))
	if len(invalid) == 0 {
		t.Fatal("no invalid note vectors")
	}
	for _, file := range invalid {
		b, _ := os.ReadFile(file)
		want, err := os.ReadFile(strings.TrimSuffix(file, ".note") + ".err")
		if err != nil {
			t.Fatalf("%s: no .err file beside it", file)
		}
		n, err := evidence.ParseNote(b)
		if err == nil {
			err = n.Verify(keys)
		}
		if err == nil {
			t.Errorf("%s: accepted", file)
		} else if !strings.Contains(err.Error(), strings.TrimSpace(string(want))) {
			t.Errorf("%s: error %q does not say %q", file, err, want)
		}
	}
}

func writeNoteVectors(t *testing.T, f *fixture) {
	for _, dir := range []string{"valid", "invalid"} {
		if err := os.MkdirAll(filepath.Join(noteVectors, dir), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	keys := f.keys(t).List()
	write(t, filepath.Join(noteVectors, "keys.txt"), []byte(strings.Join(keys, "\n")+"\n"))
	for _, typ := range evidence.Types() {
		write(t, filepath.Join(noteVectors, "valid", string(typ)+".note"), f.sign(t, f.record(typ)).Bytes())
	}
	for name, c := range invalidNotes(t, f) {
		write(t, filepath.Join(noteVectors, "invalid", name+".note"), c.note)
		write(t, filepath.Join(noteVectors, "invalid", name+".err"), []byte(c.want+"\n"))
	}
}

func write(t *testing.T, path string, b []byte) {
	t.Helper()
	if err := os.WriteFile(path, b, 0o644); err != nil {
		t.Fatal(err)
	}
}

const bundleVectors = "../testdata/vectors/bundles"

// invalidBundles derives broken bundles from the sample exchange, each with the words that
// `certmail verify` must print about it (they name the note and the check).
func invalidBundles(t *testing.T, f *fixture) map[string]struct {
	data []byte
	want string
} {
	enc := func(b *evidence.Bundle) []byte {
		out, err := b.Encode()
		if err != nil {
			t.Fatal(err)
		}
		return out
	}
	resignNote := func(i int, change func(r *evidence.Record)) []byte {
		b := sampleBundle(t, f)
		r := *b.Notes[i].Record
		change(&r)
		b.Notes[i] = f.sign(t, &r)
		return enc(b)
	}
	good := enc(sampleBundle(t, f))

	badSig := sampleBundle(t, f)
	raw := bytes.Clone(badSig.Notes[4].Bytes())
	i := len(raw) - 20 // inside bob's signature
	if raw[i] == 'A' {
		raw[i] = 'B'
	} else {
		raw[i] = 'A'
	}
	if n, err := evidence.ParseNote(raw); err == nil {
		badSig.Notes[4] = n
	} else {
		t.Fatal(err)
	}

	noP2 := sampleBundle(t, f)
	noP2.Keys = []string{f.vkeys[agent1], f.vkeys[bobKey]}
	if noP2.Keys[0] > noP2.Keys[1] {
		noP2.Keys[0], noP2.Keys[1] = noP2.Keys[1], noP2.Keys[0]
	}

	otherLabel, _ := evidence.NewLabel(seeded(3))
	otherMsg := append(bytes.Clone(f.msg), "P.S. and one more clause.\r\n"...)

	wrongMsg := sampleBundle(t, f)
	wrongMsg.SetItem(evidence.ItemMessage, otherMsg)

	reordered := bytes.Replace(good, []byte("sender alice@a.example\nrecipient bob+certified@b.example\n"), []byte("recipient bob+certified@b.example\nsender alice@a.example\n"), 1)
	duplicated := bytes.Replace(good, []byte("agent p1.example\n"), []byte("agent p1.example\nagent p1.example\n"), 1)

	return map[string]struct {
		data []byte
		want string
	}{
		"bad-signature":    {enc(badSig), "note 5 COD-IP: signature check failed"},
		"unknown-key":      {enc(noP2), "note 2 ACK: signature check failed"},
		"wrong-label":      {resignNote(3, func(r *evidence.Record) { r.Label = otherLabel }), "note 4 NTF: label check failed"},
		"wrong-hash":       {resignNote(3, func(r *evidence.Record) { r.Content = evidence.Sum(otherMsg) }), "note 4 NTF"},
		"other-protocol":   {resignNote(1, func(r *evidence.Record) { r.Protocol = evidence.CEM }), "note 2"},
		"message-mismatch": {enc(wrongMsg), "message"},
		"fields-reordered": {reordered, "bundle note 1"},
		"field-duplicated": {duplicated, "bundle"},
		"trailing-bytes":   {append(bytes.Clone(good), "extra\n"...), "after the end line"},
		"truncated":        {good[:len(good)*2/3], "truncated"},
	}
}

func writeBundleVectors(t *testing.T, f *fixture) {
	dir := filepath.Join(bundleVectors, "invalid")
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	for name, c := range invalidBundles(t, f) {
		write(t, filepath.Join(dir, name+".bundle"), c.data)
		write(t, filepath.Join(dir, name+".err"), []byte(c.want+"\n"))
	}
}

// TestInvalidBundleVectorsExist makes sure the broken bundles the verifier tests use are there;
// package protocol and the CLI check what verify says about each.
func TestInvalidBundleVectorsExist(t *testing.T) {
	if *update {
		writeBundleVectors(t, newFixture(t))
	}
	files, _ := filepath.Glob(filepath.Join(bundleVectors, "invalid", "*.bundle"))
	if len(files) < 10 {
		t.Fatalf("found %d invalid bundle vectors, want 10 (go test ./evidence -update writes them)", len(files))
	}
}
