package protocol_test

import (
	"bytes"
	"math/rand/v2"
	"testing"
	"time"

	"certmail/evidence"
	"certmail/protocol"
	"certmail/protocol/sim"
)

// srHorizon covers B's deadline T (two hours after A's offer reaches B), B's grace and A's
// RequestWait, so that every honest party reaches its final state within the run.
const srHorizon = 3*time.Hour + 30*time.Minute

// TestSRProperties checks PROTOCOLS.md §6 for Schneier–Riordan over 1,000 schedules, half of
// them optimistic: fairness, no selective receipt, one publication per label, timeliness (B's
// run ends by T + Grace, A's by T), and a judge that refuses targeted changes of A's proof.
func TestSRProperties(t *testing.T) {
	t.Parallel()
	const name, base = "TestSRProperties", 3_000_000
	w := newTTPWorld(t)
	a0, b0, x := w.srParties(t, false, base-1, nil)
	warm := ttpHonest(t, srHorizon, a0, b0, x)
	if !a0.Proven() {
		t.Fatalf("the earlier run did not complete:\n%s", warm)
	}
	seeds, replays := ttpSeeds(base), 0
	for _, seed := range seeds {
		rng := rand.New(rand.NewPCG(seed, 0x5a))
		optimistic := seed%2 == 1
		x1 := x.Clone()
		a, b, _ := w.srParties(t, optimistic, seed, x1)
		run := &ttpSimRun{test: name, seed: seed,
			faults: sim.Random(rng, ttpHostileFor, []string{ttpAlice, ttpBob}, []string{ttpHost})}
		var err error
		run.trace, err = sim.Run(sim.Config{Seed: seed, Start: ttpT0, Horizon: srHorizon,
			Parties: []protocol.Party{a, b, x1}, Faults: run.faults, ReplayPool: warm.Sent})
		if err != nil {
			run.fail(t, "%v", err)
		}
		srCheckRun(t, w, run, a, b, x1, rng)
		for l, n := range ttpDistinctNotes(w.pinned(t), evidence.PUB, warm.Sent, run.trace.Sent) {
			if n > 1 {
				run.fail(t, "X published %d different keys for label %s", n, l)
			}
		}
		if b.Committed(a0.Label()) {
			replays++
		}
	}
	if len(seeds) > 1 && replays == 0 {
		t.Fatal("no run replayed the earlier exchange to B: the replay check is vacuous")
	}
	t.Logf("%d runs; in %d, B was offered the earlier exchange again", len(seeds), replays)
}

func srCheckRun(t *testing.T, w *ttpWorld, run *ttpSimRun, a *protocol.SRSender, b *protocol.SRRecipient, x *protocol.SRPublisher, rng *rand.Rand) {
	t.Helper()
	l := a.Label()
	aGone, bGone := run.stopped(ttpAlice), run.stopped(ttpBob)
	m, bHas := b.Message(l)
	if bHas && !bytes.Equal(m, w.msg) {
		run.fail(t, "B holds a message other than A's")
	}
	if b.PublishedLate(l) {
		run.fail(t, "an honest A published after T")
	}
	// No selective receipt: K travels only after B committed, from A (to B in the optimistic
	// step, to X to publish) or from X in the PUB record.
	ttpCheckSecretFlow(run, t, [][]byte{a.Key()},
		func(m protocol.Msg) bool {
			return m.From == ttpBob && m.Step == "sr/b" && string(m.Data["label"]) == l.String()
		},
		func(m protocol.Msg) bool {
			return m.From == ttpAlice && (m.Step == "sr/k" && m.To == ttpBob || m.Step == "sr/c" && m.To == ttpHost) ||
				m.From == ttpHost && (m.Step == "sr/c-pub" || m.Step == "sr/d-pub")
		})
	if bHas && !b.Committed(l) {
		run.fail(t, "B holds the message without having committed")
	}
	pub := x.Published(l)
	pubOnTime := pub != nil && !pub.Record.Time.After(b.Deadline(l))
	// Fairness for A: B holds M, so A holds its proof (unless A walked away).
	if bHas && !aGone && !a.Proven() {
		run.fail(t, "B holds the message, A holds no proof of receipt")
	}
	// Fairness for B: A holds its proof, so B holds M, or can still fetch K from X.
	if a.Proven() && !bHas && !(bGone && pubOnTime) {
		run.fail(t, "A holds a proof of receipt, B holds no message and cannot obtain K (B gone %v, published %v)", bGone, pubOnTime)
	}
	// Timeliness: B's exchange is closed by T + Grace; A's run is final, by T once B asked.
	if !bGone && b.Committed(l) {
		closed, at := b.Closed(l)
		if !closed || at.After(b.Deadline(l).Add(srGrace)) {
			run.fail(t, "B's exchange closed %v at %s, want by T + Grace = %s", closed, at, b.Deadline(l).Add(srGrace))
		}
	}
	if !aGone {
		if !a.Done() {
			run.fail(t, "A is not in a final state at the end")
		}
		if a.Requested() && a.DoneAt().After(b.Deadline(l)) {
			run.fail(t, "A reached its final state at %s, after T = %s", a.DoneAt(), b.Deadline(l))
		}
	}
	if !aGone && !bGone && (!a.Proven() || !bHas) {
		run.fail(t, "no one walked away, yet A proven %v, B has the message %v", a.Proven(), bHas)
	}
	// B wins when A did not publish in time: the judge refuses whatever A holds.
	if b.NotPublished(l) {
		if bn := a.Bundle(); bn != nil {
			if v := protocol.Judge(bn.Check(w.pinned(t))); v.Outcome == evidence.OutcomeReceiptProven {
				run.fail(t, "B concluded A did not publish by T, yet the judge accepts A's proof:\n%s", v.Text())
			}
		}
	}
	if !a.Proven() {
		return
	}
	bn := ttpRoundTrip(t, a.Bundle())
	if v := protocol.Judge(bn.Check(w.pinned(t))); !v.Valid || v.Outcome != evidence.OutcomeReceiptProven {
		run.fail(t, "the judge refuses A's proof of receipt:\n%s", v.Text())
	}
	ttpCheckMutations(t, w, run, srMutations(t, w, bn), rng)
}
