package protocol_test

import (
	"slices"
	"strings"
	"testing"
	"time"

	"certmail/evidence"
	"certmail/protocol"
)

// TestCEMJudgeRefusals: the judge refuses a delivery bundle holding a note for another label,
// party, hash or protocol, a certificate of delivery of another variant, a report of delivery
// without P1's countersignature, or a message that is not the one certified — each time naming
// the note and the check.
func TestCEMJudgeRefusals(t *testing.T) {
	w := newCEMWorld(t)
	run := w.setup(t, cemSetup{p: evidence.CEMIP, n: 2, keyed: true})
	run.runQuiet(t)
	b, v := run.judged(t)
	cemWant(t, v, true, evidence.OutcomeDelivered)
	earlier := w.setup(t, cemSetup{p: evidence.CEMIP, n: 2, keyed: true, rand: 7})
	earlier.runQuiet(t)

	cases := []struct {
		kind  string
		check string
		typ   evidence.Type // the note type the problem names ("" for the bundle)
	}{
		{"label", "label", evidence.ROD},
		{"replay", "label", evidence.ROD},
		{"recipient", "party", evidence.ROD},
		{"sender", "party", evidence.WRN},
		{"content", "content", evidence.ROD},
		{"commitment", "commitment", evidence.NTF},
		{"deadline", "deadline", evidence.WRN},
		{"agent", "agent chain", evidence.WRN},
		{"chain", "agent chain", ""},
		{"protocol", "protocol", ""},
		{"cod-variant", "protocol", ""},
		{"countersignature", "signature", evidence.ROD},
		{"origin", "countersignature", evidence.ROD},
		{"message", "message", ""},
		{"second-outcome", "outcome", ""},
	}
	for _, c := range cases {
		t.Run(c.kind, func(t *testing.T) {
			m := cemMutate(t, w, b, earlier.A.Bundle(), c.kind)
			v := protocol.Judge(m.Check(nil))
			if v.Valid {
				t.Fatalf("judge accepted:\n%s", v.Text())
			}
			found := slices.ContainsFunc(v.Problems, func(p evidence.Problem) bool {
				return p.Check == c.check && (c.typ == "" || p.Type == c.typ)
			})
			if !found {
				t.Errorf("no %q problem for a %s note:\n%s", c.check, c.typ, v.Text())
			}
		})
	}
}

// cemHand builds bundles note by note, signed with the world's keys: a one-agent exchange of
// cem-ip between alice and bob through p1.example, with deadline T.
type cemHand struct {
	t   *testing.T
	w   *cemWorld
	l   evidence.Label
	msg []byte
	T   time.Time
	b   *evidence.Bundle
}

func newCEMHand(t *testing.T) *cemHand {
	w := newCEMWorld(t)
	l, err := evidence.NewLabel(cemRand(42))
	if err != nil {
		t.Fatal(err)
	}
	h := &cemHand{t: t, w: w, l: l, msg: []byte("hand-made message\r\n"), T: cemStart.Add(time.Hour)}
	h.b = &evidence.Bundle{Label: l}
	h.b.AddKey(w.agents[0].Verifier)
	h.b.AddKey(w.bob.Verifier)
	h.b.SetItem(evidence.ItemMessage, h.msg)
	return h
}

func (h *cemHand) at(d time.Duration) time.Time { return cemStart.Add(d) }

func (h *cemHand) add(typ evidence.Type, when time.Time, edit ...func(*evidence.Record)) *cemHand {
	p1 := h.w.agents[0].Name
	r := &evidence.Record{Type: typ, Label: h.l, Protocol: evidence.CEMIP, Agent: p1, Time: when}
	hm, cm := evidence.Sum(h.msg), evidence.Commitment(h.l, h.msg)
	switch typ {
	case evidence.COP:
		r.Sender, r.Recipient, r.Content, r.Deadline = cemAlice, cemBob, hm, h.T
	case evidence.NTF:
		r.Recipient, r.Content, r.Commitment, r.Deadline = cemBob, hm, cm, h.T
	case evidence.KEY:
		r.Label, r.Protocol, r.Subject, r.Key = evidence.Label{}, "", cemBob, h.w.bob.Verifier
	case evidence.CODIP:
		r.Protocol, r.Recipient, r.Commitment = "", cemBob, cm
	case evidence.ROD:
		r.Origin, r.Recipient, r.Content = p1, cemBob, hm
	case evidence.NDN:
		r.Sender, r.Recipient, r.Content, r.Deadline, r.Reason = cemAlice, cemBob, hm, h.T, "not-accepted"
	case evidence.NAC:
		r.Sender, r.Reason, r.Detail = cemAlice, "option", "deadline too far"
	}
	for _, e := range edit {
		e(r)
	}
	h.b.Notes = append(h.b.Notes, h.w.resign(h.t, r))
	return h
}

func (h *cemHand) judge(now time.Time) *evidence.Verdict {
	if now.IsZero() {
		return protocol.Judge(h.b.Check(nil))
	}
	return protocol.JudgeAt(h.b.Check(nil), now)
}

func (h *cemHand) delivered(rod time.Duration) *cemHand {
	return h.add(evidence.COP, h.at(0)).add(evidence.KEY, h.at(time.Second)).add(evidence.NTF, h.at(time.Second)).
		add(evidence.CODIP, h.at(2*time.Second)).add(evidence.ROD, h.at(rod))
}

// TestCEMJudgeDeadline: only evidence issued before T counts (seed 001 §4.6), and the judge
// checks the order and completeness of what a delivery rests on.
func TestCEMJudgeDeadline(t *testing.T) {
	t.Run("delivered before T", func(t *testing.T) {
		h := newCEMHand(t).delivered(3 * time.Second)
		v := h.judge(time.Time{})
		cemWant(t, v, true, evidence.OutcomeDelivered)
		if v.Attestation != evidence.RecipientSigned {
			t.Errorf("attestation %q", v.Attestation)
		}
	})
	t.Run("report at T", func(t *testing.T) {
		h := newCEMHand(t).delivered(time.Hour)
		cemWant(t, h.judge(time.Time{}), true, evidence.OutcomeDelivered)
	})
	t.Run("report after T", func(t *testing.T) {
		h := newCEMHand(t).delivered(time.Hour + time.Millisecond)
		cemWant(t, h.judge(time.Time{}), true, evidence.OutcomeCompensation)
	})
	t.Run("report before acceptance", func(t *testing.T) {
		h := newCEMHand(t)
		h.add(evidence.COP, h.at(0)).add(evidence.KEY, h.at(time.Second)).add(evidence.NTF, h.at(time.Second)).
			add(evidence.CODIP, h.at(5*time.Second)).add(evidence.ROD, h.at(3*time.Second))
		v := h.judge(time.Time{})
		if v.Valid || !slices.ContainsFunc(v.Problems, func(p evidence.Problem) bool { return p.Check == "time" }) {
			t.Errorf("want a time problem:\n%s", v.Text())
		}
	})
	t.Run("report without certificate", func(t *testing.T) {
		h := newCEMHand(t)
		h.add(evidence.COP, h.at(0)).add(evidence.ROD, h.at(3*time.Second))
		v := h.judge(time.Time{})
		if v.Valid || v.Outcome == evidence.OutcomeDelivered {
			t.Errorf("a ROD alone proves delivery:\n%s", v.Text())
		}
	})
	t.Run("commitment tied by the notification only", func(t *testing.T) {
		h := newCEMHand(t).delivered(3 * time.Second)
		h.b.Items = nil
		cemWant(t, h.judge(time.Time{}), true, evidence.OutcomeDelivered)
	})
	t.Run("commitment tied by nothing", func(t *testing.T) {
		h := newCEMHand(t)
		h.b.Items = nil
		h.add(evidence.COP, h.at(0)).add(evidence.KEY, h.at(time.Second)).add(evidence.CODIP, h.at(2*time.Second)).add(evidence.ROD, h.at(3*time.Second))
		v := h.judge(time.Time{})
		if v.Valid || !slices.ContainsFunc(v.Problems, func(p evidence.Problem) bool { return p.Check == "commitment" }) {
			t.Errorf("want a commitment problem:\n%s", v.Text())
		}
	})
	t.Run("notice before T", func(t *testing.T) {
		h := newCEMHand(t)
		h.add(evidence.COP, h.at(0)).add(evidence.NDN, h.at(50*time.Minute))
		cemWant(t, h.judge(time.Time{}), true, evidence.OutcomeNotDelivered)
	})
	t.Run("notice at T", func(t *testing.T) {
		h := newCEMHand(t)
		h.add(evidence.COP, h.at(0)).add(evidence.NDN, h.at(time.Hour), func(r *evidence.Record) { r.Reason = "deadline" })
		cemWant(t, h.judge(time.Time{}), true, evidence.OutcomeNotDelivered)
	})
	t.Run("notice after T", func(t *testing.T) {
		h := newCEMHand(t)
		h.add(evidence.COP, h.at(0)).add(evidence.NDN, h.at(time.Hour+time.Millisecond), func(r *evidence.Record) { r.Reason = "deadline" })
		v := h.judge(time.Time{})
		cemWant(t, v, true, evidence.OutcomeCompensation)
		saveVector(t, "cem-ip-compensation", h.b)
		if !strings.Contains(v.Summary, "compensation due") {
			t.Errorf("summary %q", v.Summary)
		}
	})
	t.Run("COP alone", func(t *testing.T) {
		h := newCEMHand(t)
		h.add(evidence.COP, h.at(0))
		cemWant(t, h.judge(time.Time{}), true, evidence.OutcomePosted)
		cemWant(t, h.judge(h.T.Add(-time.Millisecond)), true, evidence.OutcomePosted)
		cemWant(t, h.judge(h.T), true, evidence.OutcomeCompensation)
	})
	t.Run("no COP", func(t *testing.T) {
		h := newCEMHand(t)
		h.add(evidence.NDN, h.at(time.Minute))
		cemWant(t, h.judge(time.Time{}), false, evidence.OutcomeInvalid)
	})
	t.Run("two COPs", func(t *testing.T) {
		h := newCEMHand(t)
		h.add(evidence.COP, h.at(0)).add(evidence.COP, h.at(time.Second))
		if v := h.judge(time.Time{}); v.Valid {
			t.Errorf("two certificates of posting for one label accepted:\n%s", v.Text())
		}
	})
	t.Run("not the CEM family", func(t *testing.T) {
		h := newCEMHand(t)
		h.add(evidence.COP, h.at(0), func(r *evidence.Record) { r.Protocol = evidence.CMP1 })
		v := protocol.JudgeAt(h.b.Check(nil), h.T)
		cemWant(t, v, false, evidence.OutcomeInvalid)
	})
}

// TestCEMJudgeNonAcceptance: a NAC alone shows that the agent refused the submission; a NAC
// beside a certificate of posting, or with later steps, is inconsistent evidence.
func TestCEMJudgeNonAcceptance(t *testing.T) {
	t.Run("refused", func(t *testing.T) {
		h := newCEMHand(t)
		h.b.Items = nil
		h.add(evidence.NAC, h.at(0))
		v := h.judge(time.Time{})
		cemWant(t, v, true, evidence.OutcomeRefusedAtPosting)
		if !strings.Contains(v.Summary, "deadline too far") || !strings.Contains(v.Summary, cemAlice) {
			t.Errorf("summary %q does not say who was refused and why", v.Summary)
		}
	})
	for name, then := range map[string]evidence.Type{"and posted": evidence.COP, "and notified": evidence.NTF} {
		t.Run(name, func(t *testing.T) {
			h := newCEMHand(t)
			h.add(evidence.NAC, h.at(0)).add(then, h.at(time.Second))
			v := h.judge(time.Time{})
			if v.Valid || !slices.ContainsFunc(v.Problems, func(p evidence.Problem) bool { return p.Check == "posting" }) {
				t.Errorf("want a posting problem:\n%s", v.Text())
			}
		})
	}
}
