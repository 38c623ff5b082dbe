package evidence_test

import (
	"strings"
	"testing"
	"time"

	fnote "github.com/transparency-dev/formats/note"
	"golang.org/x/mod/sumdb/note"

	"certmail/evidence"
)

// cosigned re-signs the bundle's checkpoint with p1.example's key and its timestamped
// cosignature at logTime.
func cosigned(t *testing.T, f *fixture, l *memLog, logTime time.Time) []byte {
	t.Helper()
	cs, err := evidence.NewLogCosigner(f.skeys[agent1], func() time.Time { return logTime })
	if err != nil {
		t.Fatal(err)
	}
	cp, err := evidence.CheckpointText(l.checkpoint(t, evidence.LogOrigin(agent1), f.logSigner(t, agent1)))
	if err != nil {
		t.Fatal(err)
	}
	signed, err := note.Sign(&note.Note{Text: string(cp.Text())}, f.logSigner(t, agent1), cs)
	if err != nil {
		t.Fatal(err)
	}
	return signed
}

// The agent's timestamped cosignature of its checkpoint gives the log time: every logged note
// existed by then, and a note dated after it is refused.
func TestLogTime(t *testing.T) {
	f := newFixture(t)
	b, l := loggedBundle(t, f)
	logTime := f.at(30)
	b.Checkpoint = cosigned(t, f, l, logTime)

	// The cosignature is C2SP cosignature/v1, as transparency-dev/formats reads it.
	v, err := fnote.NewVerifierForCosignatureV1(f.vkeys[agent1])
	if err != nil {
		t.Fatal(err)
	}
	n, err := note.Open(b.Checkpoint, note.VerifierList(v))
	if err != nil || len(n.Sigs) != 1 {
		t.Fatalf("formats' verifier: %v", err)
	}
	if ts, err := fnote.CoSigV1Timestamp(n.Sigs[0]); err != nil || !ts.Equal(logTime) {
		t.Fatalf("formats reads time %v (%v), want %v", ts, err, logTime)
	}

	keys, _ := evidence.NewKeys(f.vkeys[agent1], f.vkeys[agent2])
	c := b.Check(keys)
	if !c.Verdict.Valid || !c.LogTime.Equal(logTime) || !hasFactSaying(c.Verdict, "log time "+evidence.FormatTime(logTime)) {
		t.Fatalf("log time %v:\n%s", c.LogTime, c.Verdict.Text())
	}
	for i, ok := range c.Logged {
		if !ok {
			t.Errorf("note %d not logged", i+1)
		}
	}

	// A log time before the notes' own times: the notes claim to be later than the log shows
	// them, which only a forward-dated note or a backdated cosignature explains.
	b.Checkpoint = cosigned(t, f, l, f.t0)
	c = b.Check(keys)
	if c.Verdict.Valid || !strings.Contains(c.Verdict.Text(), "log time") {
		t.Fatalf("notes dated after the log time:\n%s", c.Verdict.Text())
	}
	// Without a cosignature there is no log time, and nothing more is claimed.
	b.Checkpoint = l.checkpoint(t, evidence.LogOrigin(agent1), f.logSigner(t, agent1))
	if c = b.Check(keys); !c.Verdict.Valid || !c.LogTime.IsZero() || strings.Contains(c.Verdict.Text(), "log time") {
		t.Fatalf("an uncosigned checkpoint:\n%s", c.Verdict.Text())
	}
}
