package evidence_test

import (
	"bytes"
	"encoding/base64"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"golang.org/x/mod/sumdb/note"
	"golang.org/x/mod/sumdb/tlog"

	"certmail/evidence"
	"certmail/protocol"
)

// memLog is an evidence log held in memory: the RFC 6962 tree of x/mod's tlog over 32-byte
// note leaves, as tessera stores it. It lets the vectors carry real proofs without a log on disk.
type memLog struct {
	hashes []tlog.Hash // stored hashes, in tlog's order
	n      int64
}

func (l *memLog) ReadHashes(idx []int64) ([]tlog.Hash, error) {
	out := make([]tlog.Hash, len(idx))
	for i, x := range idx {
		out[i] = l.hashes[x]
	}
	return out, nil
}

func (l *memLog) add(t testing.TB, leaf evidence.Hash) int64 {
	t.Helper()
	hs, err := tlog.StoredHashes(l.n, leaf[:], l)
	if err != nil {
		t.Fatal(err)
	}
	l.hashes = append(l.hashes, hs...)
	l.n++
	return l.n - 1
}

// checkpoint signs the current tree as origin with s.
func (l *memLog) checkpoint(t testing.TB, origin string, s note.Signer) []byte {
	t.Helper()
	root, err := tlog.TreeHash(l.n, l)
	if err != nil {
		t.Fatal(err)
	}
	cp := &evidence.Checkpoint{Origin: origin, Size: l.n, Hash: root}
	signed, err := note.Sign(&note.Note{Text: string(cp.Text())}, s)
	if err != nil {
		t.Fatal(err)
	}
	return signed
}

func (l *memLog) prove(t testing.TB, index int64) []evidence.Hash {
	t.Helper()
	p, err := tlog.ProveRecord(l.n, index, l)
	if err != nil {
		t.Fatal(err)
	}
	out := make([]evidence.Hash, len(p))
	for i, h := range p {
		out[i] = evidence.Hash(h)
	}
	return out
}

// logSigner is p1.example's checkpoint signer: its own key, named after its log.
func (f *fixture) logSigner(t testing.TB, agent string) note.Signer {
	t.Helper()
	s, err := evidence.LogSigner(f.signers[agent], f.vkeys[agent])
	if err != nil {
		t.Fatal(err)
	}
	return s
}

// loggedBundle is the sample bundle with p1.example's checkpoint and an inclusion proof for
// every note. Other entries come before and after its notes, so the proofs have some depth.
func loggedBundle(t testing.TB, f *fixture) (*evidence.Bundle, *memLog) {
	t.Helper()
	b := sampleBundle(t, f)
	l := &memLog{}
	for i := range 3 {
		l.add(t, evidence.Sum([]byte{byte(i)}))
	}
	for i, n := range b.Notes {
		b.Proofs = append(b.Proofs, evidence.Proof{Note: i, Index: uint64(l.add(t, n.Leaf()))})
	}
	for i := range 4 {
		l.add(t, evidence.Sum([]byte{'x', byte(i)}))
	}
	b.Checkpoint = l.checkpoint(t, evidence.LogOrigin(agent1), f.logSigner(t, agent1))
	for i := range b.Proofs {
		b.Proofs[i].Hashes = l.prove(t, int64(b.Proofs[i].Index))
	}
	return b, l
}

// invalidLogBundles derives bundles whose log checkpoint or proofs are wrong, each with what
// `certmail verify` must print about it.
func invalidLogBundles(t *testing.T, f *fixture) map[string]struct {
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
	otherNote, _ := loggedBundle(t, f)
	otherNote.Proofs[1].Index, otherNote.Proofs[1].Hashes = otherNote.Proofs[2].Index, otherNote.Proofs[2].Hashes

	badPath, _ := loggedBundle(t, f)
	badPath.Proofs[3].Hashes[1][7] ^= 0x40

	otherKey, l := loggedBundle(t, f)
	strangerKey, _, _ := note.GenerateKey(seeded(99), agent1)
	stranger, _ := note.NewSigner(strangerKey)
	otherKey.Checkpoint = l.checkpoint(t, evidence.LogOrigin(agent1), stranger)

	wrongOrigin, l := loggedBundle(t, f)
	wrongOrigin.Checkpoint = l.checkpoint(t, evidence.LogOrigin(agent2), f.logSigner(t, agent1))

	return map[string]struct {
		data []byte
		want string
	}{
		"log-proof-other-note":     {enc(otherNote), "note 2 ACK: log inclusion check failed"},
		"log-bad-path":             {enc(badPath), "note 4 NTF: log inclusion check failed"},
		"log-checkpoint-other-key": {enc(otherKey), "bundle: log checkpoint check failed: not signed by a trusted agent key"},
		"log-wrong-origin":         {enc(wrongOrigin), "bundle: log checkpoint check failed: origin \"p2.example/log\" is not the log of the agent that signed it"},
	}
}

const loggedVector = "cem-ip-logged"

// TestLogVectors writes (with -update) and checks the bundle vectors with log proofs: the valid
// one proves every note's publication, each invalid one is refused naming the note or the
// checkpoint.
func TestLogVectors(t *testing.T) {
	f := newFixture(t)
	valid := filepath.Join(bundleVectors, "valid", loggedVector)
	if *update {
		b, _ := loggedBundle(t, f)
		enc, err := b.Encode()
		if err != nil {
			t.Fatal(err)
		}
		write(t, valid+".bundle", enc)
		write(t, valid+".verdict.json", protocol.Judge(b.Check(nil)).JSON())
		for name, c := range invalidLogBundles(t, f) {
			write(t, filepath.Join(bundleVectors, "invalid", name+".bundle"), c.data)
			write(t, filepath.Join(bundleVectors, "invalid", name+".err"), []byte(c.want+"\n"))
		}
	}
	data, err := os.ReadFile(valid + ".bundle")
	if err != nil {
		t.Fatalf("%v (go test ./evidence -update writes it)", err)
	}
	b, err := evidence.ParseBundle(data)
	if err != nil {
		t.Fatal(err)
	}
	v := protocol.Judge(b.Check(f.keys(t)))
	if !v.Valid || !strings.Contains(v.Text(), "log checkpoint signed by p1.example: logged: notes 1–6 in p1.example/log at tree size 13") {
		t.Fatalf("logged bundle:\n%s", v.Text())
	}
	if strings.Contains(v.Text(), "no log proof") {
		t.Fatalf("logged bundle still says it has no proofs:\n%s", v.Text())
	}
	n := 0
	for name := range invalidLogBundles(t, f) {
		file := filepath.Join(bundleVectors, "invalid", name)
		data, err := os.ReadFile(file + ".bundle")
		if err != nil {
			t.Fatalf("%v (go test ./evidence -update writes it)", err)
		}
		want, _ := os.ReadFile(file + ".err")
		b, err := evidence.ParseBundle(data)
		if err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		v := protocol.Judge(b.Check(nil))
		if v.Valid || len(want) == 0 || !strings.Contains(v.Text(), strings.TrimSpace(string(want))) {
			t.Errorf("%s: verdict does not say %q:\n%s", name, want, v.Text())
		}
		n++
	}
	if n != 4 {
		t.Fatalf("checked %d invalid log vectors, want 4", n)
	}
}

func TestCheckpointRoundTrip(t *testing.T) {
	for _, text := range []string{
		"p1.example/log\n0\n47DEQpj8HBSa+/TImW+5JCeuQeRkm5NMpJWZG3hSuFU=\n",
		"p1.example/log\n18446744073\nAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=\nTimestamp: 1234\nanother extension\n",
	} {
		c, err := evidence.ParseCheckpoint([]byte(text))
		if err != nil {
			t.Fatalf("%q: %v", text, err)
		}
		if got := string(c.Text()); got != text {
			t.Fatalf("round trip: %q became %q", text, got)
		}
	}
}

func TestParseCheckpointRefuses(t *testing.T) {
	root := base64.StdEncoding.EncodeToString(make([]byte, 32))
	for text, want := range map[string]string{
		"p1.example/log\n3\n" + root:                          "line end",
		"p1.example/log\n3\n":                                 "2 lines",
		"\n3\n" + root + "\n":                                 "origin",
		"p1 example/log\n3\n" + root + "\n":                   "origin",
		"p1.example/log\n03\n" + root + "\n":                  "tree size",
		"p1.example/log\n-3\n" + root + "\n":                  "tree size",
		"p1.example/log\n9223372036854775808\n" + root + "\n": "tree size",
		"p1.example/log\n3\nAAAA\n":                           "root hash",
		"p1.example/log\n3\n" + root + "\n\n":                 "extension",
		"p1.example/log\r\n3\n" + root + "\n":                 "origin",
	} {
		if _, err := evidence.ParseCheckpoint([]byte(text)); err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("%q: error %v, want %q", text, err, want)
		}
	}
}

// A checkpoint verifies with the agent's verifier key whether its signature line names the
// agent or the log; a stranger's key of the same name, or a key that does not match the origin,
// is refused.
func TestOpenCheckpoint(t *testing.T) {
	f := newFixture(t)
	l := &memLog{}
	l.add(t, evidence.Sum([]byte("a")))
	keys := []string{f.vkeys[agent1], f.vkeys[agent2]}
	for name, s := range map[string]note.Signer{"log name": f.logSigner(t, agent1), "agent name": f.signers[agent1]} {
		cp, agent, err := evidence.OpenCheckpoint(l.checkpoint(t, "p1.example/log", s), keys)
		if err != nil || agent != agent1 || cp.Size != 1 {
			t.Errorf("%s: %v, %q, %+v", name, err, agent, cp)
		}
	}
	if _, _, err := evidence.OpenCheckpoint(l.checkpoint(t, "p1.example/log", f.signers[agent1]), []string{f.vkeys[agent2]}); err == nil || !strings.Contains(err.Error(), "not signed by a trusted agent key (signed by p1.example+") {
		t.Errorf("untrusted signer: %v", err)
	}
	if _, _, err := evidence.OpenCheckpoint(l.checkpoint(t, "p1.example/other", f.logSigner(t, agent1)), keys); err == nil || !strings.Contains(err.Error(), "p1.example/log") {
		t.Errorf("other origin: %v", err)
	}
	cp := l.checkpoint(t, "p1.example/log", f.signers[agent1])
	bad := bytes.Replace(cp, []byte("\n1\n"), []byte("\n2\n"), 1)
	if _, _, err := evidence.OpenCheckpoint(bad, keys); err == nil || !strings.Contains(err.Error(), "invalid signature") {
		t.Errorf("altered size: %v", err)
	}
	if _, err := evidence.LogSigner(f.signers[agent1], f.vkeys[agent2]); err == nil {
		t.Error("LogSigner accepted another agent's verifier key")
	}
}

// Notes without a proof are named in a notice; a failed proof fails its note and takes it out
// of the judge's evidence; pinned keys decide which checkpoint signer counts.
func TestCheckLogProofs(t *testing.T) {
	f := newFixture(t)
	b, _ := loggedBundle(t, f)
	b.Proofs = append(b.Proofs[:2], b.Proofs[4:]...)
	c := b.Check(nil)
	if !c.Verdict.Valid {
		t.Fatalf("partial proofs: %+v", c.Verdict.Problems)
	}
	if !hasNotice(c.Verdict, "notes 3, 4 have no log proof yet") || !hasFactSaying(c.Verdict, "logged: notes 1, 2, 5, 6 in p1.example/log") {
		t.Fatalf("partial proofs: notices %q facts %+v", c.Verdict.Notices, c.Verdict.Facts)
	}

	b, _ = loggedBundle(t, f)
	b.Proofs[5].Index = 99
	c = b.Check(nil)
	if c.OK[5] || !hasProblem(c.Verdict, 6, "log inclusion") || !c.OK[4] {
		t.Fatalf("index outside the tree: OK %v, %+v", c.OK, c.Verdict.Problems)
	}

	b, _ = loggedBundle(t, f)
	pinned, _ := evidence.NewKeys(f.vkeys[agent2], f.vkeys[bobKey])
	c = b.Check(pinned)
	if !hasProblem(c.Verdict, 0, "log checkpoint") {
		t.Fatalf("checkpoint of an agent not pinned: %+v", c.Verdict.Problems)
	}

	b = sampleBundle(t, f)
	c = b.Check(nil)
	if !hasNotice(c.Verdict, "the bundle has no log proofs yet") || !c.Verdict.Valid {
		t.Fatalf("no proofs: %+v", c.Verdict)
	}
}

func hasNotice(v *evidence.Verdict, s string) bool {
	for _, n := range v.Notices {
		if strings.Contains(n, s) {
			return true
		}
	}
	return false
}

func hasFactSaying(v *evidence.Verdict, s string) bool {
	for _, f := range v.Facts {
		if strings.Contains(f.Says, s) {
			return true
		}
	}
	return false
}
