package protocol

import (
	"fmt"
	"slices"
	"strings"
	"time"

	"certmail/evidence"
)

// The CEM family (PROTOCOLS.md §1; Zhou & Gollmann, "Certified Electronic Mail", seed 001 §4):
// the sender A posts M with its agent P1, the agents P1..Pn relay it, Pn has the recipient B
// accept it, and a report of delivery travels back to A. The state machines are CEMSender,
// CEMAgent and CEMRecipient (cem_*.go); this file is the judge they share with arbiters.

// judgeCEM is the judge of the CEM family (PROTOCOLS.md §1 "Judge"; seed 001 §4.6). It has no
// clock of its own: "now" is the latest time among the bundle's valid notes, so a compensation
// claim holds "as far as this bundle shows". JudgeAt passes the arbiter's time instead.
func judgeCEM(c *evidence.Checked, p evidence.Protocol, now time.Time) { weighCEM(c, p, now) }

// CODType is the certificate of delivery each CEM variant has B sign (PROTOCOLS.md §1), or ""
// for a protocol of another family, which has none.
func CODType(p evidence.Protocol) evidence.Type {
	switch p {
	case evidence.CEM:
		return evidence.CODBasic
	case evidence.CEMNSR:
		return evidence.CODNSR
	case evidence.CEMIP:
		return evidence.CODIP
	}
	return ""
}

// cemCase is what the judge found in one bundle: the certificate of posting every other note
// must agree with, the chain of agents the ACKs link, and the first consistent note of each kind.
// The parties use it to check what they receive exactly as an arbiter will.
type cemCase struct {
	cop      *evidence.Record
	chain    []string // P1..Pn
	acks     []*evidence.Record
	ntf, key *evidence.Record
	cod, dlv *evidence.Record
	rod      *evidence.Record
	ndn, rej *evidence.Record
	rtr, wrn *evidence.Record
	latest   time.Time // the latest time among the valid notes
}

// pn is the last agent of the chain: B's agent.
func (cs *cemCase) pn() string { return cs.chain[len(cs.chain)-1] }

// accepted is B's acceptance: its certificate of delivery, else the agent's attestation.
func (cs *cemCase) accepted() *evidence.Record {
	if cs.cod != nil {
		return cs.cod
	}
	return cs.dlv
}

// cemWeigher holds one judgement in progress.
type cemWeigher struct {
	v *evidence.Verdict
}

func (w *cemWeigher) fail(g good, check, format string, args ...any) {
	w.v.Fail(g.pos, g.rec.Type, check, format, args...)
}

// same checks that one field of g equals the COP's (or the chain's) value.
func (w *cemWeigher) same(g good, check, field, got, want string) bool {
	if got == want {
		return true
	}
	w.fail(g, check, "%s is %q, but the exchange's is %q", field, got, want)
	return false
}

// weighCEM completes c.Verdict for a bundle of protocol p and returns what it found, or nil
// when there is no certificate of posting to weigh the rest against. A zero now means the
// latest time among the valid notes.
func weighCEM(c *evidence.Checked, p evidence.Protocol, now time.Time) *cemCase {
	v := c.Verdict
	v.Outcome = evidence.OutcomeInvalid
	notes, pos := c.Good()
	all := make([]good, len(notes))
	for i, n := range notes {
		all[i] = good{pos[i], n.Record}
	}

	// seed 001 §4.1: COP = S_P1(B, L, M, T). Every other note must agree with it.
	var copG *good
	for i := range all {
		if all[i].rec.Type != evidence.COP {
			continue
		}
		if copG == nil {
			copG = &all[i]
			continue
		}
		v.Fail(all[i].pos, evidence.COP, "posting", "a second certificate of posting for the label (the first is note %d)", copG.pos)
	}
	var nac *good
	for i := range all {
		if all[i].rec.Type == evidence.NAC && nac == nil {
			nac = &all[i]
		}
	}
	switch {
	case nac != nil && copG != nil:
		v.Fail(nac.pos, evidence.NAC, "posting", "the agent both refused (this NAC) and accepted (COP, note %d) the submission under one label", copG.pos)
	case nac != nil:
		// The agent refused the submission: nothing was posted, and that is all there is to say.
		r := nac.rec
		if r.Protocol != p {
			v.Fail(nac.pos, evidence.NAC, "protocol", "protocol is %q, but the bundle's is %q", r.Protocol, p)
		}
		for _, g := range all {
			if g.rec != r && g.rec.Type != evidence.KEY {
				v.Fail(g.pos, g.rec.Type, "posting", "a %s for a submission the agent refused (NAC, note %d)", g.rec.Type, nac.pos)
			}
		}
		v.Outcome = evidence.OutcomeRefusedAtPosting
		v.Summary = fmt.Sprintf("%s refused the submission of %s at %s: %s (%s); nothing was posted",
			r.Agent, r.Sender, evidence.FormatTime(r.Time), r.Reason, r.Detail)
		return nil
	}
	if copG == nil {
		v.Fail(0, evidence.COP, "posting", "the bundle holds no valid certificate of posting (COP)")
		v.Summary = "nothing shows that an agent accepted the message: there is no valid certificate of posting"
		return nil
	}
	cop := copG.rec
	w := &cemWeigher{v: v}
	cs := &cemCase{cop: cop}
	w.same(*copG, "protocol", "protocol", string(cop.Protocol), string(p))

	msg, hasMsg := c.Bundle.Item(evidence.ItemMessage)
	var commitment evidence.Hash
	if hasMsg {
		if got := evidence.Sum(msg); got != cop.Content {
			v.Fail(0, "", "message", "the message item hashes to %s, but the COP certifies content %s", got, cop.Content)
			hasMsg = false
		} else {
			commitment = evidence.Commitment(cop.Label, msg)
		}
	}

	// seed 001 §4.3 steps 3-4: ACK_i = S_P(i+1)(P_i, B, L) links P1 to Pn, one hop at a time.
	var acks []good
	for _, g := range all {
		if g.rec.Type == evidence.ACK {
			acks = append(acks, g)
		}
	}
	cs.chain = []string{cop.Agent}
	used := make([]bool, len(acks))
	for {
		last := cs.chain[len(cs.chain)-1]
		next := -1
		for i, a := range acks {
			if used[i] || a.rec.From != last {
				continue
			}
			if next >= 0 {
				w.fail(a, "agent chain", "a second agent (%s) took the item from %s (the first is %s, note %d)", a.rec.Agent, last, acks[next].rec.Agent, acks[next].pos)
				used[i] = true
				continue
			}
			next = i
		}
		if next < 0 {
			break
		}
		used[next] = true
		a := acks[next]
		ok := w.same(a, "protocol", "protocol", string(a.rec.Protocol), string(p))
		ok = w.same(a, "party", "recipient", a.rec.Recipient, cop.Recipient) && ok
		ok = w.same(a, "content", "content", a.rec.Content.String(), cop.Content.String()) && ok
		if slices.Contains(cs.chain, a.rec.Agent) {
			w.fail(a, "agent chain", "%s appears twice in the chain of agents", a.rec.Agent)
			ok = false
		}
		if !ok {
			break
		}
		cs.chain = append(cs.chain, a.rec.Agent)
		cs.acks = append(cs.acks, a.rec)
	}
	for i, a := range acks {
		if !used[i] {
			w.fail(a, "agent chain", "the ACK of %s for an item from %s does not continue the chain of agents from %s", a.rec.Agent, a.rec.From, cop.Agent)
		}
	}
	pn := cs.pn()
	inChain := func(a string) bool { return slices.Contains(cs.chain, a) }

	// Every other note: same label (checked with the signatures), protocol, parties, content.
	var outcomes []good
	latest := cop.Time
	for _, g := range all {
		r := g.rec
		if r.Time.After(latest) {
			latest = r.Time
		}
		ok := true
		proto := func() { ok = w.same(g, "protocol", "protocol", string(r.Protocol), string(p)) && ok }
		agent := func(want string, role string) {
			if r.Agent != want {
				w.fail(g, "agent chain", "signed by %s, but the %s of this exchange is %s", r.Agent, role, want)
				ok = false
			}
		}
		recipient := func() { ok = w.same(g, "party", "recipient", r.Recipient, cop.Recipient) && ok }
		sender := func() { ok = w.same(g, "party", "sender", r.Sender, cop.Sender) && ok }
		content := func() { ok = w.same(g, "content", "content", r.Content.String(), cop.Content.String()) && ok }
		deadline := func() {
			ok = w.same(g, "deadline", "deadline", evidence.FormatTime(r.Deadline), evidence.FormatTime(cop.Deadline)) && ok
		}
		commit := func() {
			if hasMsg && r.Commitment != commitment {
				w.fail(g, "commitment", "commitment is %s, but H(L,M) of the message item is %s", r.Commitment, commitment)
				ok = false
			}
		}
		switch r.Type {
		case evidence.COP, evidence.ACK:
			continue
		case evidence.NTF: // seed 001 §4.5 step 5: Pn -> B: L, H(L,M)
			proto()
			agent(pn, "recipient's agent Pn")
			recipient()
			content()
			deadline()
			commit()
			if ok && cs.ntf == nil {
				cs.ntf = r
			}
		case evidence.KEY:
			ok = w.same(g, "party", "subject", r.Subject, cop.Recipient)
			if !inChain(r.Agent) {
				w.fail(g, "agent chain", "the key of %s is bound by %s, which is not an agent of this exchange (%s)", r.Subject, r.Agent, strings.Join(cs.chain, ", "))
				ok = false
			}
			if ok && cs.key == nil {
				cs.key = r
			}
		case evidence.CODBasic, evidence.CODNSR, evidence.CODIP: // seed 001 §4.3-4.5 step 6
			if want := CODType(p); r.Type != want {
				w.fail(g, "protocol", "a %s certifies delivery under %s; under %s the recipient signs %s", r.Type, protocolOfType(r.Type), p, want)
				continue
			}
			agent(pn, "recipient's agent Pn")
			recipient()
			switch r.Type {
			case evidence.CODBasic:
				content()
			case evidence.CODIP:
				commit()
			}
			if ok && cs.cod == nil {
				cs.cod = r
			} else if ok {
				w.fail(g, "delivery", "a second certificate of delivery")
			}
		case evidence.DLV:
			proto()
			agent(pn, "recipient's agent Pn")
			recipient()
			content()
			if ok && cs.dlv == nil {
				cs.dlv = r
			} else if ok {
				w.fail(g, "delivery", "a second attestation of delivery")
			}
		case evidence.ROD: // seed 001 §4.3 step 8: ROD_n = S_Pn(Pn, L), countersigned by P1
			proto()
			agent(pn, "recipient's agent Pn")
			if r.Origin != cop.Agent {
				w.fail(g, "countersignature", "countersigned by %s, not by the sender's agent %s that issued the COP", r.Origin, cop.Agent)
				ok = false
			}
			recipient()
			content()
			if ok && cs.rod == nil {
				cs.rod = r
			}
			if ok {
				outcomes = append(outcomes, g)
			}
		case evidence.NDN: // seed 001 §4.3 steps 4, 6, 8: "inform A that the mail could not be delivered"
			proto()
			if !inChain(r.Agent) {
				w.fail(g, "agent chain", "signed by %s, which is not an agent of this exchange (%s)", r.Agent, strings.Join(cs.chain, ", "))
				ok = false
			}
			sender()
			recipient()
			content()
			deadline()
			if ok && cs.ndn == nil {
				cs.ndn = r
			}
			if ok {
				outcomes = append(outcomes, g)
			}
		case evidence.REJ:
			proto()
			agent(pn, "recipient's agent Pn")
			recipient()
			if ok && cs.rej == nil {
				cs.rej = r
			}
			if ok {
				outcomes = append(outcomes, g)
			}
		case evidence.RTR:
			proto()
			agent(cop.Agent, "sender's agent P1")
			sender()
			recipient()
			content()
			if ok && cs.rtr == nil {
				cs.rtr = r
			}
			if ok {
				outcomes = append(outcomes, g)
			}
		case evidence.WRN:
			proto()
			agent(cop.Agent, "sender's agent P1")
			sender()
			recipient()
			deadline()
			if ok && cs.wrn == nil {
				cs.wrn = r
			}
		case evidence.RET: // seed 001 §4.4 step 7: B <-> Pn: L, M
			agent(pn, "recipient's agent Pn")
			recipient()
			content()
		default:
			w.fail(g, "protocol", "a %s is not evidence of the CEM family", r.Type)
		}
	}
	cs.latest = latest
	if now.IsZero() {
		now = latest
	}

	// seed 001 §4.3 step 9: the delivery agent keeps COP, ROD and COD consistent; an agent gives
	// one outcome per label.
	if len(outcomes) > 1 {
		var parts []string
		for _, g := range outcomes {
			parts = append(parts, fmt.Sprintf("%s (note %d)", g.rec.Type, g.pos))
		}
		v.Fail(0, "", "outcome", "the bundle holds more than one outcome for the label: %s", strings.Join(parts, ", "))
	}
	if acc := cs.accepted(); acc != nil && cs.rod != nil && acc.Time.After(cs.rod.Time) {
		v.Fail(0, acc.Type, "time", "the report of delivery (%s) predates the acceptance it reports (%s)", evidence.FormatTime(cs.rod.Time), evidence.FormatTime(acc.Time))
	}
	if cs.cod != nil && cs.cod.Type == evidence.CODIP && !hasMsg && cs.ntf == nil {
		v.Fail(0, evidence.CODIP, "commitment", "nothing ties the commitment H(L,M) the recipient signed to the content of the COP: the bundle holds neither the message nor the agent's notification (NTF)")
	}
	if cs.cod != nil && cs.ntf != nil && cs.cod.Type == evidence.CODIP && cs.cod.Commitment != cs.ntf.Commitment {
		v.Fail(0, evidence.CODIP, "commitment", "the recipient signed commitment %s, but the agent notified %s", cs.cod.Commitment, cs.ntf.Commitment)
	}

	cemOutcome(v, cs, now)
	return cs
}

// cemOutcome sets the outcome, attestation and summary (PROTOCOLS.md §1 "Judge"; seed 001 §4.6).
// Only evidence issued by T (at or before it) counts against a compensation claim: an agent that
// gives notice at the deadline has discharged its duty (seed 001 §3).
func cemOutcome(v *evidence.Verdict, cs *cemCase, now time.Time) {
	cop := cs.cop
	a, b, p1, t := cop.Sender, cop.Recipient, cop.Agent, cop.Deadline
	T := evidence.FormatTime(t)
	before := func(x time.Time) bool { return !x.After(t) }
	acc := cs.accepted()
	switch {
	case cs.rod != nil && acc == nil:
		v.Fail(0, evidence.ROD, "delivery", "the report of delivery comes without the recipient's certificate of delivery (%s) or the agent's attestation (DLV)", CODType(v.Protocol))
		v.Outcome = evidence.OutcomePosted
		v.Summary = fmt.Sprintf("posted: %s reports delivery to %s, but nothing shows that %s accepted the message", cs.pn(), b, b)
	case cs.rod != nil && before(cs.rod.Time) && before(acc.Time):
		v.Outcome = evidence.OutcomeDelivered
		if cs.cod != nil {
			v.Attestation = evidence.RecipientSigned
			what := "the message"
			if cs.cod.Type == evidence.CODNSR {
				what = "the item (under cem-nsr the certificate names the label, not the content)"
			}
			v.Summary = fmt.Sprintf("delivered: %s signed for %s from %s on %s; %s reported it to the sender",
				b, what, a, evidence.FormatTime(cs.cod.Time), p1)
		} else {
			v.Attestation = evidence.AgentAttested
			v.Summary = fmt.Sprintf("delivered: %s attests that %s authenticated (%s, from %s) and accepted the message from %s on %s; %s reported it to the sender",
				cs.dlv.Agent, b, cs.dlv.Method, cs.dlv.Client, a, evidence.FormatTime(cs.dlv.Time), p1)
		}
	case cs.rod != nil:
		v.Outcome = evidence.OutcomeCompensation
		v.Summary = fmt.Sprintf("compensation due: the report of delivery of the message from %s to %s is dated %s, after the deadline %s",
			a, b, evidence.FormatTime(cs.rod.Time), T)
	case cs.ndn != nil && before(cs.ndn.Time):
		v.Outcome = evidence.OutcomeNotDelivered
		v.Summary = fmt.Sprintf("not delivered: %s gave notice on %s that the message from %s to %s could not be delivered (reason %s)",
			cs.ndn.Agent, evidence.FormatTime(cs.ndn.Time), a, b, cs.ndn.Reason)
	case cs.ndn != nil:
		v.Outcome = evidence.OutcomeCompensation
		v.Summary = fmt.Sprintf("compensation due: the message from %s to %s was not delivered by the deadline %s; %s gave notice only on %s (reason %s)",
			a, b, T, cs.ndn.Agent, evidence.FormatTime(cs.ndn.Time), cs.ndn.Reason)
	case cs.rej != nil:
		v.Outcome = evidence.OutcomeRefused
		v.Summary = fmt.Sprintf("refused: %s attests that %s refused the message from %s on %s (reason %s)",
			cs.rej.Agent, b, a, evidence.FormatTime(cs.rej.Time), cs.rej.Reason)
	case cs.rtr != nil:
		v.Outcome = evidence.OutcomeRetracted
		v.Summary = fmt.Sprintf("retracted: %s withdrew the message for %s on %s, before it was picked up; %s attests it",
			a, b, evidence.FormatTime(cs.rtr.Time), p1)
	case acc != nil && before(acc.Time):
		v.Outcome = evidence.OutcomePosted
		v.Summary = fmt.Sprintf("posted: %s accepted the message from %s on %s, but the bundle holds no report of delivery from the agents",
			b, a, evidence.FormatTime(acc.Time))
	case !now.Before(t):
		v.Outcome = evidence.OutcomeCompensation
		v.Summary = fmt.Sprintf("compensation due as far as this bundle shows: %s accepted the message from %s for %s with deadline %s, and the bundle holds no report of delivery nor notice issued by then",
			p1, a, b, T)
	default:
		v.Outcome = evidence.OutcomePosted
		v.Summary = fmt.Sprintf("posted: %s accepted the message from %s for %s on %s, to be delivered or reported by %s; the bundle holds no outcome yet (its latest evidence is of %s)",
			p1, a, b, evidence.FormatTime(cop.Time), T, evidence.FormatTime(cs.latest))
	}
}
