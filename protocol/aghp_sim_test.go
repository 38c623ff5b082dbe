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

// TestAGHPProperties checks PROTOCOLS.md §6 for AGHP over 1,000 schedules, in all four modes:
// fairness (R holds k exactly when S holds or can still obtain the receipt), no selective receipt
// (k travels only in the TTP's release, after R asked), one receipt per label, and a judge that
// accepts S's receipt only from modes with TTP authentication and refuses targeted changes.
func TestAGHPProperties(t *testing.T) {
	t.Parallel()
	const name, base = "TestAGHPProperties", 4_000_000
	w := newTTPWorld(t)
	s0, r0, ttp := w.aghpParties(t, protocol.AGHPTTPAuth, base-1, nil)
	warm := ttpHonest(t, time.Hour, s0, r0, ttp)
	if !s0.Done() {
		t.Fatalf("the earlier run did not complete:\n%s", warm)
	}
	seeds, replays := ttpSeeds(base), 0
	for _, seed := range seeds {
		rng := rand.New(rand.NewPCG(seed, 0xa6))
		mode := protocol.AGHPModes()[seed%4]
		s, r, t1 := w.aghpParties(t, mode, seed, ttp.Clone())
		run := &ttpSimRun{test: name, seed: seed,
			faults: sim.Random(rng, ttpHostileFor, []string{ttpAlice, ttpBob}, []string{ttpHost})}
		var err error
		run.trace, err = sim.Run(sim.Config{Seed: seed, Start: ttpT0, Horizon: cmpHorizon,
			Parties: []protocol.Party{s, r, t1}, Faults: run.faults, ReplayPool: warm.Sent})
		if err != nil {
			run.fail(t, "%v", err)
		}
		aghpCheckRun(t, w, run, mode, s, r, t1, rng)
		for l, n := range ttpDistinctNotes(w.pinned(t), evidence.AGHPRECEIPT, warm.Sent, run.trace.Sent) {
			if n > 1 {
				run.fail(t, "the TTP signed %d different receipts for label %s", n, l)
			}
		}
		if len(r.Refused(s0.Label())) > 0 {
			replays++
		}
	}
	if len(seeds) > 1 && replays == 0 {
		t.Fatal("no run replayed the earlier exchange to R: the replay check is vacuous")
	}
	t.Logf("%d runs; in %d, the TTP refused a replay of the earlier exchange", len(seeds), replays)
}

func aghpCheckRun(t *testing.T, w *ttpWorld, run *ttpSimRun, mode string, s *protocol.AGHPSender, r *protocol.AGHPRecipient, ttp *protocol.AGHPTTP, rng *rand.Rand) {
	t.Helper()
	l := s.Label()
	sGone, rGone := run.stopped(ttpAlice), run.stopped(ttpBob)
	toR, toS := ttp.Pending(l)
	m, rHas := r.Message(l)
	if rHas && !bytes.Equal(m, w.msg) {
		run.fail(t, "R holds a message other than S's")
	}
	if peer := ttp.Served(l); peer != "" && peer != ttpBob {
		run.fail(t, "the TTP released the key to %s", peer)
	}
	// No selective receipt: k leaves the TTP only in step 3 to R, after R asked for it.
	ttpCheckSecretFlow(run, t, [][]byte{s.Key()},
		func(m protocol.Msg) bool {
			return m.From == ttpBob && m.Step == "aghp/2" && string(m.Data["label"]) == l.String()
		},
		func(m protocol.Msg) bool { return m.From == ttpHost && m.To == ttpBob && m.Step == "aghp/3" })
	if rHas && !r.Asked(l) {
		run.fail(t, "R holds the message without having asked")
	}
	// Fairness both ways.
	if rHas && !s.Done() && !(sGone && toS) {
		run.fail(t, "R holds the message, S has no receipt and cannot obtain one (S gone %v, TTP resending %v)", sGone, toS)
	}
	if s.Done() && !rHas && !(rGone && toR) {
		run.fail(t, "S holds a receipt, R holds no message and cannot obtain it (R gone %v, TTP resending %v)", rGone, toR)
	}
	if !sGone && !rGone && (!s.Done() || !rHas) {
		run.fail(t, "no one walked away, yet S done %v, R has the message %v", s.Done(), rHas)
	}
	if !s.Done() {
		return
	}
	bn := ttpRoundTrip(t, s.Bundle())
	v := protocol.Judge(bn.Check(w.pinned(t)))
	proven := v.Valid && v.Outcome == evidence.OutcomeReceiptProven
	if want := mode == protocol.AGHPTTPAuth || mode == protocol.AGHPBothAuth; proven != want {
		run.fail(t, "mode %s: the judge proves receipt %v, want %v:\n%s", mode, proven, want, v.Text())
	}
	if proven {
		ttpCheckMutations(t, w, run, aghpMutations(t, w, bn), rng)
	}
}
