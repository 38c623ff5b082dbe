package protocol_test

import (
	"bytes"
	"math/rand/v2"
	"slices"
	"testing"
	"time"

	"certmail/evidence"
	"certmail/protocol"
	"certmail/protocol/sim"
)

// The simulated CMP runs: the network is hostile for the first 20 minutes (drop, delay,
// duplicate, tamper, replay of an earlier run's messages), A or B may walk away at any step, and
// T may crash and restart from its durable state; then the network is reliable for the rest of
// the three hours. T is the same agent that served the earlier run, so replays of that run's
// requests meet a label it already served.
const (
	ttpHostileFor = 20 * time.Minute
	cmpHorizon    = 3 * time.Hour
)

// TestCMP1Properties and TestCMP2Properties check PROTOCOLS.md §6 over 1,000 schedules each.
func TestCMP1Properties(t *testing.T) {
	cmpProperties(t, "TestCMP1Properties", evidence.CMP1, 1_000_000)
}
func TestCMP2Properties(t *testing.T) {
	cmpProperties(t, "TestCMP2Properties", evidence.CMP2, 2_000_000)
}

func cmpProperties(t *testing.T, name string, p evidence.Protocol, base uint64) {
	t.Parallel()
	w := newTTPWorld(t)
	// The earlier run: an honest exchange whose messages the network replays later.
	a0, b0, ttp := w.cmpParties(t, p, false, base-1, nil)
	warm := ttpHonest(t, time.Hour, a0, b0, ttp)
	if !a0.Done() {
		t.Fatalf("the earlier run did not complete:\n%s", warm)
	}
	_, _, nrdType := cmpTypesOf(p)
	seeds, replays := ttpSeeds(base), 0
	for _, seed := range seeds {
		rng := rand.New(rand.NewPCG(seed, 0xc3))
		linked := p == evidence.CMP2 && seed%2 == 1
		a, b, t1 := w.cmpParties(t, p, linked, seed, ttp.Clone())
		run := &ttpSimRun{test: name, seed: seed,
			faults: sim.Random(rng, ttpHostileFor, []string{ttpAlice, ttpBob}, []string{ttpHost})}
		var err error
		run.trace, err = sim.Run(sim.Config{Seed: seed, Start: ttpT0, Horizon: cmpHorizon,
			Parties: []protocol.Party{a, b, t1}, Faults: run.faults, ReplayPool: warm.Sent})
		if err != nil {
			run.fail(t, "%v", err)
		}
		cmpCheckRun(t, w, run, p, a, b, t1, rng)
		for l, n := range ttpDistinctNotes(w.pinned(t), nrdType, warm.Sent, run.trace.Sent) {
			if n > 1 {
				run.fail(t, "T signed %d different NRDs for label %s", n, l)
			}
		}
		if slices.Contains(b.Refused(a0.Label()), "label-served") {
			replays++
		}
	}
	// The runs did meet replays of the earlier run: B committed again to the earlier label, and
	// T refused to serve it a second time.
	if len(seeds) > 1 && replays == 0 {
		t.Fatal("no run replayed the earlier exchange to B: the replay check is vacuous")
	}
	t.Logf("%d runs; in %d, T refused a replay of the earlier exchange", len(seeds), replays)
}

func cmpCheckRun(t *testing.T, w *ttpWorld, run *ttpSimRun, p evidence.Protocol, a *protocol.CMPSender, b *protocol.CMPRecipient, ttp *protocol.CMPTTP, rng *rand.Rand) {
	t.Helper()
	l := a.Label()
	aGone, bGone := run.stopped(ttpAlice), run.stopped(ttpBob)
	toB, toA := ttp.Pending(l)
	m, bHasM := b.Message(l)
	_, bHasK := b.Key(l)
	if bHasM && !bytes.Equal(m, w.msg) {
		run.fail(t, "B holds a message other than A's")
	}
	if b.BadKey(l) {
		run.fail(t, "B saw a key that does not open c, though A is honest")
	}
	// No selective receipt: m (CMP1) or K (CMP2) leaves T only in step 3, after B committed.
	secret := w.msg
	if p == evidence.CMP2 {
		secret = a.Key()
	}
	ttpCheckSecretFlow(run, t, [][]byte{secret},
		func(m protocol.Msg) bool {
			return m.From == ttpBob && m.Step == string(p)+"/2" && string(m.Data["label"]) == l.String()
		},
		func(m protocol.Msg) bool { return m.From == ttpHost && m.To == ttpBob && m.Step == string(p)+"/3" })
	if (bHasM || bHasK) && !b.Committed(l) {
		run.fail(t, "B holds the content without having committed")
	}
	// Fairness for A: B holds m or K, so A holds its receipt or T still holds it for A.
	if bHasM || bHasK {
		if !ttp.Served(l) {
			run.fail(t, "B holds the content, but T did not serve the label")
		}
		if !a.Done() && !(aGone && toA) {
			run.fail(t, "B holds the content, A has no receipt and cannot obtain one (A gone %v, T resending %v)", aGone, toA)
		}
	}
	// Fairness for B: A holds its receipt, so B holds m or T still holds it for B.
	if a.Done() && !bHasM && !(bGone && toB) {
		run.fail(t, "A holds a receipt, B holds no message and cannot obtain it (B gone %v, T resending %v)", bGone, toB)
	}
	// After the reliable tail, a run where nobody walked away is complete.
	if !aGone && !bGone && (!a.Done() || !bHasM) {
		run.fail(t, "no one walked away, yet A done %v, B has the message %v", a.Done(), bHasM)
	}
	if !a.Done() {
		return
	}
	// The judge accepts A's proof, and refuses targeted changes of it.
	bn := ttpRoundTrip(t, a.Bundle())
	if v := protocol.Judge(bn.Check(w.pinned(t))); !v.Valid || v.Outcome != evidence.OutcomeReceiptProven {
		run.fail(t, "the judge refuses A's proof of receipt:\n%s", v.Text())
	}
	ttpCheckMutations(t, w, run, cmpMutations(t, w, bn), rng)
}

// ttpCheckMutations judges two of the targeted changes, drawn by the run's randomness.
func ttpCheckMutations(t *testing.T, w *ttpWorld, run *ttpSimRun, muts []ttpMutation, rng *rand.Rand) {
	t.Helper()
	for range 2 {
		mu := muts[rng.IntN(len(muts))]
		if v := protocol.Judge(mu.b.Check(w.pinned(t))); v.Outcome == evidence.OutcomeReceiptProven {
			run.fail(t, "the judge accepts a proof with %s:\n%s", mu.name, v.Text())
		}
	}
}
