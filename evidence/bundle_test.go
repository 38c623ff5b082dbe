package evidence_test

import (
	"bytes"
	"fmt"
	"strings"
	"testing"
	"time"

	"certmail/evidence"
)

// sampleBundle is a cem-ip exchange across two agents: COP by p1, ACK, KEY for bob, NTF by p2,
// bob's COD-IP, ROD by p2 countersigned by p1, with the message as an item.
func sampleBundle(t testing.TB, f *fixture) *evidence.Bundle {
	t.Helper()
	b := &evidence.Bundle{Label: f.label}
	for _, k := range []string{f.vkeys[agent1], f.vkeys[agent2], f.vkeys[bobKey]} {
		b.AddKey(k)
	}
	for _, typ := range []evidence.Type{evidence.COP, evidence.ACK, evidence.KEY, evidence.NTF, evidence.CODIP, evidence.ROD} {
		b.Notes = append(b.Notes, f.sign(t, f.record(typ)))
	}
	b.SetItem(evidence.ItemMessage, f.msg)
	return b
}

func TestBundleRoundTrip(t *testing.T) {
	f := newFixture(t)
	b := sampleBundle(t, f)
	b.Checkpoint = []byte("example.org/log\n3\nAAAA\n\n— example.org/log sig\n")
	b.Proofs = []evidence.Proof{{Note: 0, Index: 2, Hashes: []evidence.Hash{evidence.Sum([]byte("a")), evidence.Sum([]byte("b"))}}}
	enc, err := b.Encode()
	if err != nil {
		t.Fatal(err)
	}
	back, err := evidence.ParseBundle(enc)
	if err != nil {
		t.Fatalf("parse: %v\n%s", err, enc)
	}
	again, _ := back.Encode()
	if !bytes.Equal(enc, again) {
		t.Fatal("round trip changed the bundle")
	}
	if m, ok := back.Item(evidence.ItemMessage); !ok || !bytes.Equal(m, f.msg) {
		t.Fatal("message item lost")
	}
}

func TestParseBundleRefusesDamage(t *testing.T) {
	f := newFixture(t)
	enc, err := sampleBundle(t, f).Encode()
	if err != nil {
		t.Fatal(err)
	}
	cases := map[string]struct {
		data []byte
		want string
	}{
		"truncated":        {enc[:len(enc)-40], "truncated"},
		"no end line":      {enc[:len(enc)-4], "truncated"},
		"trailing bytes":   {append(bytes.Clone(enc), "x\n"...), "after the end line"},
		"other version":    {bytes.Replace(enc, []byte("certmail-bundle/1"), []byte("certmail-bundle/2"), 1), "unsupported version"},
		"empty":            {nil, "truncated"},
		"keys unsorted":    {swapKeyLines(enc), "not sorted"},
		"length too large": {bytes.Replace(enc, []byte("note "), []byte("note 9"), 1), "runs past the end"},
		"note repeated":    {repeatFirstNote(t, sampleBundle(t, f)), "repeats note 1"},
		"among 47 notes":   {repeatFirstNote(t, manyNotes(t, f, 40)), "note 2 repeats note 1"},
	}
	for name, c := range cases {
		if _, err := evidence.ParseBundle(c.data); err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%s: error %v, want %q", name, err, c.want)
		}
	}
}

func swapKeyLines(enc []byte) []byte {
	lines := bytes.Split(enc, []byte("\n"))
	lines[2], lines[3] = lines[3], lines[2]
	return bytes.Join(lines, []byte("\n"))
}

// manyNotes is the sample bundle with extra COP notes, each with its own time.
func manyNotes(t *testing.T, f *fixture, extra int) *evidence.Bundle {
	b := sampleBundle(t, f)
	for i := range extra {
		r := f.record(evidence.COP)
		r.Time = f.at(100 + i)
		b.Notes = append(b.Notes, f.sign(t, r))
	}
	return b
}

func repeatFirstNote(t *testing.T, b *evidence.Bundle) []byte {
	enc, err := b.Encode()
	if err != nil {
		t.Fatal(err)
	}
	n := b.Notes[0].Bytes()
	block := []byte(fmt.Sprintf("note %d\n", len(n)))
	block = append(append(block, n...), '\n')
	i := bytes.Index(enc, []byte("note "))
	return append(append(append([]byte{}, enc[:i]...), block...), enc[i:]...)
}

func TestCheckTrustsUserKeysOnlyThroughKEY(t *testing.T) {
	f := newFixture(t)
	b := sampleBundle(t, f)
	c := b.Check(nil)
	for i, ok := range c.OK {
		if !ok {
			t.Fatalf("note %d not OK: %+v", i+1, c.Verdict.Problems)
		}
	}

	// Without the KEY record, bob's COD-IP has no trusted key.
	b2 := sampleBundle(t, f)
	b2.Notes = append(b2.Notes[:2], b2.Notes[3:]...)
	c2 := b2.Check(nil)
	if c2.OK[3] || !hasProblem(c2.Verdict, 4, "key binding") {
		t.Fatalf("COD-IP without KEY: %+v", c2.Verdict.Problems)
	}

	// A KEY record dated after the COD does not vouch for it.
	late := f.record(evidence.KEY)
	late.Time = f.at(5)
	b3 := sampleBundle(t, f)
	b3.Notes[2] = f.sign(t, late)
	c3 := b3.Check(nil)
	if c3.OK[4] || !hasProblem(c3.Verdict, 5, "key binding") {
		t.Fatalf("COD-IP signed before its key was bound: %+v", c3.Verdict.Problems)
	}

	// Pinning only p2's key: p1's COP and ROD fail; nothing is taken from the bundle.
	pinned, _ := evidence.NewKeys(f.vkeys[agent2])
	c4 := b.Check(pinned)
	if c4.OK[0] || c4.OK[5] || !c4.OK[1] {
		t.Fatalf("pinned p2 only: OK=%v", c4.OK)
	}
	for _, n := range c4.Verdict.Notices {
		if strings.Contains(n, "taken from the bundle") {
			t.Fatal("pinned check still says keys were taken from the bundle")
		}
	}
}

func TestCheckRefusesNoteOfAnotherLabel(t *testing.T) {
	f := newFixture(t)
	b := sampleBundle(t, f)
	other := f.record(evidence.NTF)
	other.Label, _ = evidence.NewLabel(seeded(5))
	other.Time = other.Time.Add(time.Second)
	b.Notes = append(b.Notes, f.sign(t, other))
	c := b.Check(nil)
	if c.OK[6] || !hasProblem(c.Verdict, 7, "label") {
		t.Fatalf("note of another label: %+v", c.Verdict.Problems)
	}
}

func hasProblem(v *evidence.Verdict, note int, check string) bool {
	for _, p := range v.Problems {
		if p.Note == note && p.Check == check {
			return true
		}
	}
	return false
}
