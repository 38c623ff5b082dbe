package protocol_test

import (
	"context"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"certmail/evidence"
	"certmail/evlog"
)

// TestSRLogTime: X's PUB record in X's real evidence log (tessera). With a checkpoint X
// cosigned by the deadline, the verdict says the log shows the publication by then; with one
// cosigned after it, that the PUB's time is X's word; with the PUB dated after the log time
// that holds it, the bundle is invalid.
func TestSRLogTime(t *testing.T) {
	w := newTTPWorld(t)
	a, b, x := w.srParties(t, false, 1, nil)
	ttpHonest(t, 4*time.Hour, a, b, x)
	base := a.Bundle()
	pub := ttpNoteOf(base, evidence.PUB)
	if pub == nil {
		t.Fatal("no PUB in A's bundle")
	}
	var req *evidence.Record
	for _, n := range base.Notes {
		if n.Record.Type == evidence.SRREQ {
			req = n.Record
		}
	}

	logged := func(t *testing.T, logTime time.Time) *evidence.Verdict {
		t.Helper()
		cosigner, err := w.ttp.LogCosigner(func() time.Time { return logTime })
		if err != nil {
			t.Fatal(err)
		}
		l, err := evlog.Open(evlog.Config{Dir: filepath.Join(t.TempDir(), "log"), Signer: w.ttp.Signer,
			Verifier: w.ttp.Verifier, Cosigner: cosigner})
		if err != nil {
			t.Fatal(err)
		}
		defer l.Close(context.Background())
		ctx := context.Background()
		idx, err := l.Append(ctx, pub.Leaf())
		if err != nil {
			t.Fatal(err)
		}
		var cp evlog.Checkpoint
		var proofs [][]evidence.Hash
		for deadline := time.Now().Add(10 * time.Second); ; {
			if cp, proofs, err = l.Prove(ctx, idx); err != nil {
				t.Fatal(err)
			}
			if proofs[0] != nil || time.Now().After(deadline) {
				break
			}
			time.Sleep(20 * time.Millisecond)
		}
		bb := *base
		bb.Checkpoint = cp.Raw
		for i, n := range base.Notes {
			if n == pub {
				bb.Proofs = []evidence.Proof{{Note: i, Index: idx[0], Hashes: proofs[0]}}
			}
		}
		return ttpVerdict(t, w, ttpRoundTrip(t, &bb))
	}

	t.Run("cosigned by the deadline", func(t *testing.T) {
		v := logged(t, req.Deadline.Add(-time.Minute))
		if !v.Valid || v.Outcome != evidence.OutcomeReceiptProven || !strings.Contains(v.Summary, "evidence log shows (log time") {
			t.Fatalf("verdict:\n%s", v.Text())
		}
		if strings.Contains(strings.Join(v.Notices, "\n"), "word") {
			t.Errorf("a notice still says the PUB's time is X's word:\n%s", v.Text())
		}
	})
	t.Run("cosigned after the deadline", func(t *testing.T) {
		v := logged(t, req.Deadline.Add(time.Hour))
		if !v.Valid || v.Outcome != evidence.OutcomeReceiptProven || !strings.Contains(strings.Join(v.Notices, "\n"), "only after the deadline") {
			t.Fatalf("verdict:\n%s", v.Text())
		}
	})
	t.Run("PUB dated after the log time", func(t *testing.T) {
		v := logged(t, pub.Record.Time.Add(-time.Hour))
		if v.Valid || !strings.Contains(v.Text(), "log time") {
			t.Fatalf("verdict:\n%s", v.Text())
		}
	})
}
