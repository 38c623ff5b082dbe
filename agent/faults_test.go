package agent_test

import (
	"context"
	"testing"
	"time"

	"certmail/agent"
	"certmail/evidence"
	"certmail/store"
)

// Clock faults: the agent's clock (agent.New's now) jumps forward past a deadline and back again,
// as a machine's clock does when NTP steps it or a VM resumes. Timers are rows deleted in the
// transaction that acts on them, so whatever the clock does each fires at most once, and the
// evidence it leaves must still be judged valid.

// evidenceCount counts the notes stored for l, by type.
func (w *world) evidenceCount(t *testing.T, l evidence.Label) map[evidence.Type]int {
	t.Helper()
	got := map[evidence.Type]int{}
	err := w.st.View(context.Background(), func(tx store.Tx) error {
		evs, err := tx.Evidence(l)
		for _, e := range evs {
			got[e.Type]++
		}
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	return got
}

func (w *world) timersOf(t *testing.T, l evidence.Label) []store.Timer {
	t.Helper()
	var ts []store.Timer
	if err := w.st.View(context.Background(), func(tx store.Tx) (err error) { ts, err = tx.Timers(l); return err }); err != nil {
		t.Fatal(err)
	}
	return ts
}

// TestFaultClockJumpsForwardPastTheDeadline: the clock leaps ten days while an item waits for its
// recipient. Both its timers are due at once and fire once each — the warning, too late to be
// of use, gives way to the notice (NDN) — and never again, not after a restart nor after the
// clock steps back to before the deadline: the item stays expired, with one outcome, and no acceptance, refusal or retraction is taken. The
// NDN is dated after the deadline, as the agent's clock says it was given, so the judge reads
// the bundle as valid and "compensation due": an agent that was away past a deadline owes it.
func TestFaultClockJumpsForwardPastTheDeadline(t *testing.T) {
	w := newWorld(t)
	ctx := t.Context()
	T := t0.Add(4 * time.Hour)
	p := w.submit(t, agent.Submission{Deadline: T})
	w.deliverQueue(t)
	tok := w.mails.token(t, bob)

	w.clock.add(10 * 24 * time.Hour)
	if n, err := w.a.RunTimers(ctx); err != nil || n != 2 {
		t.Fatalf("after the leap: %d timers fired (%v), want the warning and the deadline", n, err)
	}
	for range 2 {
		if n, err := w.a.RunTimers(ctx); err != nil || n != 0 {
			t.Fatalf("again: %d fired, %v", n, err)
		}
		w.open(t) // a restart loses no timer and revives none
	}
	if ts := w.timersOf(t, p.Label); len(ts) != 0 {
		t.Fatalf("timers left: %v", ts)
	}
	want := map[evidence.Type]int{evidence.COP: 1, evidence.NTF: 1, evidence.NDN: 1}
	if got := w.evidenceCount(t, p.Label); !equalCounts(got, want) {
		t.Fatalf("evidence %v, want %v", got, want)
	}
	if got := w.mails.kinds(alice); len(got) != 2 || got[1] != agent.ReceiptNonDelivery {
		t.Fatalf("the sender's mails: %v", got)
	}
	v := w.verdict(t, p.Label)
	if !v.Valid || v.Outcome != evidence.OutcomeCompensation {
		t.Fatalf("want a valid bundle, compensation due (the notice came after T):\n%s", v.Text())
	}

	// NTP steps the clock back to before the deadline: the item is closed all the same.
	w.clock.add(-10*24*time.Hour + time.Hour)
	if n, err := w.a.RunTimers(ctx); err != nil || n != 0 {
		t.Fatalf("after the step back: %d fired, %v", n, err)
	}
	if _, err := w.a.Accept(ctx, tok, agent.Acceptance{}); agent.KindOf(err) != agent.KindGone {
		t.Fatalf("acceptance after the notice, clock back before T: %v", err)
	}
	if err := w.a.Refuse(ctx, tok, ""); agent.KindOf(err) != agent.KindGone {
		t.Fatalf("refusal after the notice, clock back before T: %v", err)
	}
	if err := w.a.Retract(ctx, alice, p.Label); agent.KindOf(err) != agent.KindGone {
		t.Fatalf("retraction after the notice, clock back before T: %v", err)
	}
	if got := w.evidenceCount(t, p.Label); !equalCounts(got, want) {
		t.Fatalf("evidence after the step back %v, want %v", got, want)
	}
	if v := w.verdict(t, p.Label); !v.Valid || v.Outcome != evidence.OutcomeCompensation {
		t.Fatalf("after the step back:\n%s", v.Text())
	}
}

// TestFaultClockStepsBackBetweenTimers: the warning fires, the clock steps back past it; the
// warning does not fire again, and the deadline fires once when the clock reaches it, in time:
// the judge reads a valid notice of non-delivery.
func TestFaultClockStepsBackBetweenTimers(t *testing.T) {
	w := newWorld(t)
	ctx := t.Context()
	p := w.submit(t, agent.Submission{Deadline: t0.Add(4 * time.Hour)})
	w.deliverQueue(t)

	w.clock.add(2 * time.Hour)
	if n, err := w.a.RunTimers(ctx); err != nil || n != 1 {
		t.Fatalf("warning: %d fired, %v", n, err)
	}
	w.clock.add(-2 * time.Hour)
	for _, step := range []time.Duration{0, time.Hour, time.Hour, time.Hour + 30*time.Minute} {
		w.clock.add(step)
		if n, err := w.a.RunTimers(ctx); err != nil || n != 0 {
			t.Fatalf("at %s: %d fired, %v", w.clock.now(), n, err)
		}
	}
	w.clock.add(30 * time.Minute) // T: the deadline timer was due a little before
	if n, err := w.a.RunTimers(ctx); err != nil || n != 1 {
		t.Fatalf("deadline: %d fired, %v", n, err)
	}
	want := map[evidence.Type]int{evidence.COP: 1, evidence.NTF: 1, evidence.WRN: 1, evidence.NDN: 1}
	if got := w.evidenceCount(t, p.Label); !equalCounts(got, want) {
		t.Fatalf("evidence %v, want %v", got, want)
	}
	v := w.verdict(t, p.Label)
	if !v.Valid || v.Outcome != evidence.OutcomeNotDelivered {
		t.Fatalf("want valid, not delivered:\n%s", v.Text())
	}
}

// TestFaultClockStepsBackUnderASignedAcceptance: the recipient signs its certificate of delivery
// with the time the agent gave it, and the agent's clock then steps back an hour. A ROD signed
// now would predate the acceptance it reports, which the judge rejects: the agent refuses the
// acceptance instead (and changes nothing), and takes it once its clock has caught up, leaving a
// valid bundle.
func TestFaultClockStepsBackUnderASignedAcceptance(t *testing.T) {
	w := newWorld(t)
	ctx := t.Context()
	p := w.submit(t, agent.Submission{})
	w.deliverQueue(t)
	tok := w.mails.token(t, bob)
	k := browserKey(7)
	w.clock.add(time.Hour)
	if _, err := w.a.EnrolKey(ctx, tok, "", vkeyOf(t, bob, k)); err != nil {
		t.Fatal(err)
	}
	w.clock.add(time.Second)
	cod := signIn(t, w, tok, k)
	before := w.evidenceCount(t, p.Label)

	w.clock.add(-time.Hour)
	if _, err := w.a.Accept(ctx, tok, agent.Acceptance{COD: cod}); agent.KindOf(err) != agent.KindInvalid {
		t.Fatalf("a certificate dated after the agent's clock: %v, want refused", err)
	}
	if got := w.evidenceCount(t, p.Label); !equalCounts(got, before) || w.stateOf(t, p.Label) != store.StateNotified {
		t.Fatalf("the refused acceptance changed the item: %v, %s", got, w.stateOf(t, p.Label))
	}
	w.clock.add(time.Hour)
	if _, err := w.a.Accept(ctx, tok, agent.Acceptance{COD: cod}); err != nil {
		t.Fatalf("once the clock caught up: %v", err)
	}
	v := w.verdict(t, p.Label)
	if !v.Valid || v.Outcome != evidence.OutcomeDelivered || v.Attestation != evidence.RecipientSigned {
		t.Fatalf("want valid, delivered, recipient-signed:\n%s", v.Text())
	}
}

// TestFaultClockStepsBackBeforeThePosting: the clock steps back a day between the notification
// and the recipient's acceptance. The agent signs DLV and ROD at its own time, before the COP
// and the NTF of the same label; no check of the agent or rule of the judge catches it, and the
// bundle is judged valid and delivered, with a delivery that predates its posting.
func TestFaultClockStepsBackBeforeThePosting(t *testing.T) {
	w := newWorld(t)
	ctx := t.Context()
	p := w.submit(t, agent.Submission{})
	w.deliverQueue(t)
	tok := w.mails.token(t, bob)

	w.clock.add(-24 * time.Hour)
	if _, err := w.a.Accept(ctx, tok, agent.Acceptance{}); err != nil {
		t.Fatal(err)
	}
	want := map[evidence.Type]int{evidence.COP: 1, evidence.NTF: 1, evidence.DLV: 1, evidence.ROD: 1}
	if got := w.evidenceCount(t, p.Label); !equalCounts(got, want) {
		t.Fatalf("evidence %v, want %v", got, want)
	}
	v := w.verdict(t, p.Label)
	if !v.Valid || v.Outcome != evidence.OutcomeDelivered || v.Attestation != evidence.AgentAttested {
		t.Fatalf("want valid, delivered, agent-attested:\n%s", v.Text())
	}
	// The delivery is dated no earlier than the posting and notification before it.
	b, err := w.a.Bundle(ctx, p.Label, false)
	if err != nil {
		t.Fatal(err)
	}
	var latest time.Time
	for _, n := range b.Notes {
		if n.Record.Time.Before(latest) {
			t.Errorf("%s dated %s, before the note before it (%s)", n.Record.Type, n.Record.Time, latest)
		}
		latest = n.Record.Time
	}
}

func equalCounts(a, b map[evidence.Type]int) bool {
	if len(a) != len(b) {
		return false
	}
	for k, v := range a {
		if b[k] != v {
			return false
		}
	}
	return true
}
