package protocol_test

import (
	"bytes"
	"strings"
	"testing"
	"time"

	"certmail/evidence"
	"certmail/protocol"
	"certmail/protocol/sim"
)

// TestSelectiveReceiptUnderCEM: seed 001 §4.3 — "B likes the software but does not want to pay
// for it. So, B does not acknowledge receipt." Under cem B reads M and never signs: A gets no
// delivery verdict (the known flaw, which leaves A a notice and B the message). Under cem-nsr
// and cem-ip the same B gets nothing of M, because nothing is released before it commits.
func TestSelectiveReceiptUnderCEM(t *testing.T) {
	w := newCEMWorld(t)
	for _, p := range cemVariants {
		t.Run(string(p), func(t *testing.T) {
			run := w.setup(t, cemSetup{p: p, n: 2, keyed: true, behavior: protocol.CEMNeverSign})
			tr := run.runQuiet(t)
			l := run.label(t)
			_, v := run.judged(t)
			// The judge's winner: no delivery; Pn's timeout notice, given before T, stands.
			cemWant(t, v, true, evidence.OutcomeNotDelivered)
			if v.Attestation != "" {
				t.Errorf("attestation %q for an item nobody accepted", v.Attestation)
			}
			got, _, holds := run.B.Message(l)
			sent := false
			for _, e := range tr.Events {
				if e.What == "deliver" && e.Msg.To == cemBob && cemCarries(e.Msg, run.message) {
					sent = true
				}
			}
			if p == evidence.CEM {
				if !holds || !bytes.Equal(got, run.message) || !sent {
					t.Fatalf("under cem B should hold M without signing (holds=%v)", holds)
				}
				return
			}
			if holds || sent {
				t.Fatalf("under %s B got M without committing (holds=%v, sent=%v)", p, holds, sent)
			}
		})
	}
}

// cemTap wraps B and tells the bogus agent the label of every notification B receives: the
// network adversary reads the notification to B.
type cemTap struct {
	protocol.Party
	to string
}

func (x *cemTap) Receive(now time.Time, m protocol.Msg) []protocol.Msg {
	out := x.Party.Receive(now, m)
	if strings.HasSuffix(m.Step, "/5") {
		if n, err := evidence.ParseNote(m.Notes[0]); err == nil {
			out = append(out, protocol.Msg{From: x.Name(), To: x.to, Step: "tap", Data: map[string][]byte{"label": []byte(n.Record.Label.String())}})
		}
	}
	return out
}

// cemBogusAgent notifies B of an item under a label it learned, with content of its own,
// signed with its own (trusted) key: seed 001 §4.5's bogus delivery agent.
type cemBogusAgent struct {
	id      *protocol.Identity
	p       evidence.Protocol
	content []byte
	sent    int
	heard   evidence.Label
}

func (g *cemBogusAgent) Name() string                   { return g.id.Name }
func (g *cemBogusAgent) Start(time.Time) []protocol.Msg { return nil }
func (g *cemBogusAgent) Wake() (time.Time, bool)        { return time.Time{}, false }
func (g *cemBogusAgent) Tick(time.Time) []protocol.Msg  { return nil }
func (g *cemBogusAgent) Done() bool                     { return true }
func (g *cemBogusAgent) notify(now time.Time, l evidence.Label) protocol.Msg {
	r := &evidence.Record{Type: evidence.NTF, Label: l, Protocol: g.p, Agent: g.id.Name, Recipient: cemBob,
		Content: evidence.Sum(g.content), Commitment: evidence.Commitment(l, g.content),
		Deadline: cemStart.Add(time.Hour), Time: evidence.CanonicalTime(now)}
	n, err := evidence.Sign(r, g.id.Signer)
	if err != nil {
		panic(err)
	}
	g.sent++
	return protocol.Msg{From: g.id.Name, To: cemBob, Step: string(g.p) + "/5", Notes: [][]byte{n.Bytes()}}
}
func (g *cemBogusAgent) Receive(now time.Time, m protocol.Msg) []protocol.Msg {
	if m.Step != "tap" || g.sent > 0 {
		return nil
	}
	l, err := evidence.ParseLabel(string(m.Data["label"]))
	if err != nil {
		return nil
	}
	g.heard = l
	return []protocol.Msg{g.notify(now, l)}
}

// cemRelayTap wraps an agent and tells the bogus agent the label of every item relayed to it.
type cemRelayTap struct {
	protocol.Party
	to string
}

func (x *cemRelayTap) Receive(now time.Time, m protocol.Msg) []protocol.Msg {
	var out []protocol.Msg
	if strings.HasSuffix(m.Step, "/3") {
		if n, err := evidence.ParseNote(m.Notes[0]); err == nil {
			out = append(out, protocol.Msg{From: x.Name(), To: x.to, Step: "tap", Data: map[string][]byte{"label": []byte(n.Record.Label.String())}})
		}
	}
	return append(out, x.Party.Receive(now, m)...)
}

// TestBogusAgentSecondNotification: seed 001 §4.5. A bogus agent, whose key B trusts, notifies B
// under the label of a genuine exchange with other content. After the genuine notification, B
// rejects it and the genuine exchange completes. Before it, B cannot tell which is genuine and
// commits to the bogus one — then, as the seed says, "Pn will note the discrepancy and A will
// not be notified about the success of delivery": B rejects the genuine notification, and A's
// verdict is a notice, never a delivery.
func TestBogusAgentSecondNotification(t *testing.T) {
	w := newCEMWorld(t)
	bogusContent := []byte("From: alice@a.example\r\nTo: bob@b.example\r\nSubject: offer\r\n\r\nA lousy piece of code.\r\n")
	newB := func(t *testing.T) *protocol.CEMRecipient {
		b, err := protocol.NewCEMRecipient(protocol.CEMRecipientConfig{Address: cemBob, Identity: w.bob, Secret: w.secretB,
			Client: "198.51.100.7", Trust: append(w.agentKeys(), w.bogus.Verifier), Seen: protocol.NewCEMSeen()})
		if err != nil {
			t.Fatal(err)
		}
		return b
	}
	t.Run("after the genuine one", func(t *testing.T) {
		run := w.setup(t, cemSetup{p: evidence.CEMIP, n: 2, keyed: true})
		run.B = newB(t)
		bogus := &cemBogusAgent{id: w.bogus, p: evidence.CEMIP, content: bogusContent}
		tr := run.runWith(t, run.A, run.P[0], run.P[1], &cemTap{Party: run.B, to: w.bogus.Name}, bogus)
		l := run.label(t)
		if bogus.sent != 1 || bogus.heard != l {
			t.Fatalf("the bogus agent did not notify B under the genuine label (sent %d)", bogus.sent)
		}
		if !cemHasPrefix(run.B.Alarms(), "label "+l.String()+": a second, different notification from bogus.example") {
			t.Errorf("B raised no alarm for the second notification: %q", run.B.Alarms())
		}
		for _, e := range tr.Events {
			if e.What == "send" && e.Msg.From == cemBob && e.Msg.To == w.bogus.Name && e.Msg.Step != "tap" {
				t.Errorf("B answered the bogus agent: %s", e.Msg.Step)
			}
		}
		_, v := run.judged(t)
		cemWant(t, v, true, evidence.OutcomeDelivered)
		got, _, ok := run.B.Message(l)
		if !ok || !bytes.Equal(got, run.message) {
			t.Errorf("B does not hold the genuine message")
		}
	})
	t.Run("before the genuine one", func(t *testing.T) {
		run := w.setup(t, cemSetup{p: evidence.CEMIP, n: 2, keyed: true})
		run.B = newB(t)
		bogus := &cemBogusAgent{id: w.bogus, p: evidence.CEMIP, content: bogusContent}
		// The adversary reads the relay to P2 and delays P2's first notification.
		pn := &cemDropFirst{Party: run.P[1], step: "/5"}
		run.runWith(t, run.A, run.P[0], &cemRelayTap{Party: pn, to: w.bogus.Name}, run.B, bogus)
		l := run.label(t)
		if !cemHasPrefix(run.B.Alarms(), "label "+l.String()+": a second, different notification from p2.example") {
			t.Errorf("B did not reject the genuine notification as the second: %q", run.B.Alarms())
		}
		_, v := run.judged(t)
		cemWant(t, v, true, evidence.OutcomeNotDelivered)
		if _, _, ok := run.B.Message(l); ok {
			t.Errorf("B holds the genuine message though it committed to the bogus notification")
		}
	})
}

// cemDropFirst drops the first message a party sends at a step.
type cemDropFirst struct {
	protocol.Party
	step    string
	dropped bool
}

func (d *cemDropFirst) filter(out []protocol.Msg) []protocol.Msg {
	var keep []protocol.Msg
	for _, m := range out {
		if !d.dropped && strings.HasSuffix(m.Step, d.step) {
			d.dropped = true
			continue
		}
		keep = append(keep, m)
	}
	return keep
}
func (d *cemDropFirst) Receive(now time.Time, m protocol.Msg) []protocol.Msg {
	return d.filter(d.Party.Receive(now, m))
}
func (d *cemDropFirst) Tick(now time.Time) []protocol.Msg { return d.filter(d.Party.Tick(now)) }

func cemHasPrefix(list []string, prefix string) bool {
	for _, s := range list {
		if strings.HasPrefix(s, prefix) {
			return true
		}
	}
	return false
}

// TestAgentNeverSendsROD: Pn takes B's COD and never reports. At T, P1's deadline notice — or,
// if P1 is silent too, A's COP alone — proves the compensation claim (seed 001 §4.6).
func TestAgentNeverSendsROD(t *testing.T) {
	w := newCEMWorld(t)
	t.Run("P1 gives notice at T", func(t *testing.T) {
		run := w.setup(t, cemSetup{p: evidence.CEMIP, n: 2, keyed: true})
		run.runWith(t, run.A, run.P[0], &cemMuted{Party: run.P[1], steps: []string{"/8"}}, run.B)
		l := run.label(t)
		if v, _ := run.P[1].View(l); v.Accepted == nil || v.Accepted.Record.Type != evidence.CODIP {
			t.Fatalf("Pn did not take B's COD")
		}
		if _, _, ok := run.B.Message(l); ok {
			t.Errorf("B holds M though P1 never countersigned a report")
		}
		b, v := run.judged(t)
		// P1's notice at T discharges its duty: not delivered, and no compensation.
		cemWant(t, v, true, evidence.OutcomeNotDelivered)
		if cemCount(b, evidence.ROD)+cemCount(b, evidence.CODIP) != 0 || cemCount(b, evidence.NDN) != 1 || cemCount(b, evidence.WRN) != 1 {
			t.Errorf("A's bundle should hold COP, WRN and P1's NDN only")
		}
		if !strings.Contains(v.Summary, "could not be delivered (reason deadline)") {
			t.Errorf("summary %q", v.Summary)
		}
	})
	t.Run("P1 silent too", func(t *testing.T) {
		run := w.setup(t, cemSetup{p: evidence.CEMIP, n: 2, keyed: true})
		run.runWith(t, run.A, &cemMuted{Party: run.P[0], steps: []string{"/9"}}, &cemMuted{Party: run.P[1], steps: []string{"/8"}}, run.B)
		at, gaveUp := run.A.Finished()
		if !gaveUp || at.Before(run.T) {
			t.Errorf("A should give up after T, holding its COP (gave up %v at %s)", gaveUp, at)
		}
		b, v := run.judged(t)
		if len(b.Notes) != 1 || b.Notes[0].Record.Type != evidence.COP {
			t.Fatalf("A should hold its COP alone, holds %d notes", len(b.Notes))
		}
		// The bundle alone cannot show that T has passed...
		cemWant(t, v, true, evidence.OutcomePosted)
		// ...the arbiter's clock (or the log's checkpoint) can.
		v2 := protocol.JudgeAt(b.Check(nil), run.T.Add(time.Second))
		cemWant(t, v2, true, evidence.OutcomeCompensation)
		if !strings.Contains(v2.Summary, "as far as this bundle shows") {
			t.Errorf("summary %q", v2.Summary)
		}
		// Before T, the same COP proves only the posting.
		cemWant(t, protocol.JudgeAt(b.Check(nil), run.T.Add(-time.Second)), true, evidence.OutcomePosted)
	})
}

// TestCEMLateReportLosesToDeadline: a report of delivery that reaches P1 at or after T — before
// P1's own deadline timer ran — is answered with P1's deadline notice; Pn then withholds M, so B
// cannot hold M while A holds a notice.
func TestCEMLateReportLosesToDeadline(t *testing.T) {
	w := newCEMWorld(t)
	run := w.setup(t, cemSetup{p: evidence.CEMIP, n: 2, keyed: true, span: 40 * time.Second})
	byName := map[string]protocol.Party{}
	for _, p := range run.parties() {
		byName[p.Name()] = p
	}
	// Everything happens at once, up to P2's report to P1, which is held back.
	queue := run.A.Start(cemStart)
	var report protocol.Msg
	for len(queue) > 0 {
		m := queue[0]
		queue = queue[1:]
		if strings.HasSuffix(m.Step, "/8") {
			report = m
			continue
		}
		queue = append(queue, byName[m.To].Receive(cemStart, m)...)
	}
	if report.Step == "" {
		t.Fatal("P2 sent no report")
	}
	late := run.T.Add(time.Millisecond)
	out := run.P[0].Receive(late, report)
	l := run.label(t)
	p1, _ := run.P[0].View(l)
	if len(p1.Outcome) == 0 || p1.Outcome[0].Record.Type != evidence.NDN || p1.Outcome[0].Record.Reason != "deadline" {
		t.Fatalf("P1 should answer a report after T with its deadline notice")
	}
	decision := false
	for _, m := range out {
		decision = decision || strings.HasSuffix(m.Step, "/decision") && m.To == w.agents[1].Name
	}
	if !decision {
		t.Fatalf("P1 did not tell P2 its decision")
	}
	// The rest over a quiet network.
	if _, err := sim.Run(sim.Config{Seed: 3, Start: late, Horizon: run.horizon(), Parties: run.parties()}); err != nil {
		t.Fatal(err)
	}
	pn, _ := run.P[1].View(l)
	if pn.Accepted == nil || pn.Decision == nil || pn.Decision.Record.Type != evidence.NDN || pn.Released {
		t.Fatalf("Pn should learn P1's notice and withhold M (accepted %v, decision %v, released %v)", pn.Accepted != nil, pn.Decision != nil, pn.Released)
	}
	if _, _, ok := run.B.Message(l); ok {
		t.Error("B holds M")
	}
	if st := run.B.State(l); st != "not-delivered" {
		t.Errorf("B's state %q, want not-delivered", st)
	}
	_, v := run.judged(t)
	cemWant(t, v, true, evidence.OutcomeCompensation)
}
