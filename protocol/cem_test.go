package protocol_test

import (
	"bytes"
	"fmt"
	"strings"
	"testing"
	"time"

	"certmail/evidence"
	"certmail/protocol"
)

var cemVariants = []evidence.Protocol{evidence.CEM, evidence.CEMNSR, evidence.CEMIP}

// cemVectorNames are the honest runs kept as bundle vectors.
var cemVectorNames = map[string]string{
	"cem-ip/n1/key":   "cem-ip-n1-signed",
	"cem-ip/n3/nokey": "cem-ip-n3-agent-attested",
	"cem-ip/n2/key":   "cem-ip-n2-signed",
	"cem-nsr/n2/key":  "cem-nsr-n2",
	"cem/n1/key":      "cem-n1",
	"cem/n2/nokey":    "cem-n2-agent-attested",
}

// TestCEMHonestRuns: every variant, one to three agents, with and without a recipient key. A's
// bundle proves delivery with the right attestation, B holds exactly M, everyone finishes.
func TestCEMHonestRuns(t *testing.T) {
	w := newCEMWorld(t)
	for _, p := range cemVariants {
		for n := 1; n <= 3; n++ {
			for _, keyed := range []bool{true, false} {
				name := fmt.Sprintf("%s/n%d/%s", p, n, map[bool]string{true: "key", false: "nokey"}[keyed])
				t.Run(name, func(t *testing.T) {
					run := w.setup(t, cemSetup{p: p, n: n, keyed: keyed, rand: uint64(n)})
					tr := run.runQuiet(t)
					b, v := run.judged(t)
					if !v.Valid || v.Outcome != evidence.OutcomeDelivered {
						t.Fatalf("verdict %s\n%s\n%s", v.Outcome, v.Text(), tr)
					}
					want := evidence.AgentAttested
					if keyed {
						want = evidence.RecipientSigned
					}
					if v.Attestation != want {
						t.Errorf("attestation %q, want %q", v.Attestation, want)
					}
					if !strings.HasPrefix(v.Summary, "delivered: ") || !strings.Contains(v.Summary, cemBob) || !strings.Contains(v.Summary, cemAlice) {
						t.Errorf("summary %q", v.Summary)
					}
					l := run.label(t)
					got, _, ok := run.B.Message(l)
					if !ok || !bytes.Equal(got, run.message) {
						t.Errorf("B holds %q, want the message", got)
					}
					for _, party := range run.parties() {
						if !party.Done() {
							t.Errorf("%s is not done", party.Name())
						}
					}
					if alarms := run.B.Alarms(); len(alarms) > 0 {
						t.Errorf("B raised alarms in an honest run: %q", alarms)
					}
					// A's bundle has what the judge needs: COP, n-1 ACKs, NTF, COD+KEY or DLV, ROD.
					counts := map[evidence.Type]int{}
					for _, note := range b.Notes {
						counts[note.Record.Type]++
					}
					if counts[evidence.ACK] != n-1 || counts[evidence.ROD] != 1 || counts[evidence.NTF] != 1 {
						t.Errorf("bundle notes %v", counts)
					}
					if vec, ok := cemVectorNames[name]; ok {
						saveVector(t, vec, b)
					}
				})
			}
		}
	}
}

// TestCEMOutcomes: the runs that end otherwise than in delivery, each with the verdict an
// arbiter must reach, kept as vectors.
func TestCEMOutcomes(t *testing.T) {
	w := newCEMWorld(t)
	t.Run("refused", func(t *testing.T) {
		run := w.setup(t, cemSetup{p: evidence.CEMIP, n: 2, keyed: true, behavior: protocol.CEMRefuseAll})
		run.runQuiet(t)
		b, v := run.judged(t)
		cemWant(t, v, true, evidence.OutcomeRefused)
		if _, _, ok := run.B.Message(run.label(t)); ok {
			t.Error("B holds the message it refused")
		}
		saveVector(t, "cem-ip-refused", b)
	})
	t.Run("retracted", func(t *testing.T) {
		// B never answers; A withdraws the item ten minutes in.
		run := w.setup(t, cemSetup{p: evidence.CEMIP, n: 2, keyed: true, behavior: protocol.CEMNeverSign, retractAt: 10 * time.Minute})
		run.runQuiet(t)
		b, v := run.judged(t)
		cemWant(t, v, true, evidence.OutcomeRetracted)
		saveVector(t, "cem-ip-retracted", b)
	})
	t.Run("not-accepted", func(t *testing.T) {
		// B never answers: Pn's timeout passes before T and it gives notice (reason not-accepted).
		run := w.setup(t, cemSetup{p: evidence.CEMIP, n: 3, keyed: false, behavior: protocol.CEMNeverSign})
		run.runQuiet(t)
		b, v := run.judged(t)
		cemWant(t, v, true, evidence.OutcomeNotDelivered)
		if !strings.Contains(v.Summary, "not-accepted") {
			t.Errorf("summary %q", v.Summary)
		}
		saveVector(t, "cem-ip-ndn-not-accepted", b)
	})
	t.Run("ndn-deadline", func(t *testing.T) {
		// P2 takes the item and then never passes it on nor reports: P1 gives notice at T, which
		// discharges its duty (seed 001 §3): not delivered, no compensation.
		run := w.setup(t, cemSetup{p: evidence.CEMIP, n: 3, keyed: true})
		tr := run.runWith(t, run.A, run.P[0], &cemMuted{Party: run.P[1], steps: []string{"/3", "/8"}}, run.P[2], run.B)
		b, v := run.judged(t)
		cemWant(t, v, true, evidence.OutcomeNotDelivered)
		if cemCount(b, evidence.NDN) != 1 || !strings.Contains(v.Summary, "reason deadline") {
			t.Errorf("want P1's deadline notice; %s\n%s", v.Text(), tr)
		}
		saveVector(t, "cem-ip-ndn-deadline", b)
	})
}

func cemWant(t *testing.T, v *evidence.Verdict, valid bool, o evidence.Outcome) {
	t.Helper()
	if v.Valid != valid || v.Outcome != o {
		t.Fatalf("verdict valid=%v outcome %s, want valid=%v %s\n%s", v.Valid, v.Outcome, valid, o, v.Text())
	}
}

func cemCount(b *evidence.Bundle, typ evidence.Type) int {
	n := 0
	for _, note := range b.Notes {
		if note.Record.Type == typ {
			n++
		}
	}
	return n
}
