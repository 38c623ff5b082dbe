package agent

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"

	"golang.org/x/mod/sumdb/note"

	"certmail/evidence"
	"certmail/protocol"
	"certmail/relay"
	"certmail/store"
)

// This file is the agent in a chain P1..Pn of several agents (PROTOCOLS.md §1 steps 3, 4 and 8;
// DESIGN.md §1 shape 2). An item whose recipient's domain a trusted peer serves is relayed to it
// (step 3); the peer acknowledges with ACK (step 4), relays onward or delivers as on one agent,
// and the outcome — the report of delivery with the recipient's COD or the agent's DLV, or a
// notice of non-delivery or refusal — goes back hop by hop to P1 (step 8). P1 is the one party
// that decides: it countersigns a report of delivery only before its deadline, tells the sender,
// and sends its decision forward, and only then does Pn release the content. A report that
// reaches P1 after it gave notice is answered with that notice, so the recipient can never hold
// M while the sender holds a notice of non-delivery.
//
// Each step is one transaction that stores the item's new state, its evidence and the mails it
// owes, and a relay mail is answered 250 only once that transaction is durable; the mails go
// out through the same durable queue as every other, with retries and backoff.

// Peers are the agents of the trust store: their evidence keys by name and the mail domains
// each serves.
type Peers struct {
	Keys   map[string]string // agent name -> signed-note verifier key
	Routes map[string]string // mail domain (lower case) -> agent name
}

// route returns the peer that serves rcpt's domain.
func (p Peers) route(rcpt string) (string, bool) {
	_, domain, _ := strings.Cut(rcpt, "@")
	next, ok := p.Routes[strings.ToLower(domain)]
	return next, ok
}

// Key returns the verifier key of a trusted peer.
func (p Peers) Key(name string) (string, bool) {
	k, ok := p.Keys[name]
	return k, ok
}

// Peer mail kinds in the outbound queue: "peer-" and the relay step.
const peerKind = "peer-"

// IsPeerMail reports whether an outbound mail of this kind goes to a peer agent's relay
// endpoint rather than to a mail server.
func IsPeerMail(kind string) bool { return strings.HasPrefix(kind, peerKind) }

// timerRelay fires when the next agent has not acknowledged a relay in time.
const timerRelay = "relay"

// relayBy is when a relay must be acknowledged: a quarter of the time to the deadline, as the
// protocol machines wait (seed 001 §4.3 step 4, "within its timeout period").
func relayBy(now, deadline time.Time) time.Time { return now.Add(deadline.Sub(now) / 4) }

// acceptBy is when an item stops taking the recipient's acceptance. At P1 = Pn it is closing's
// lead before T; at the last agent of a chain one lead earlier, so that the report still reaches
// P1 before P1 closes.
func acceptBy(it store.Item) time.Time {
	c := closing(it.Submitted, it.Deadline)
	if it.Prev != "" {
		c = c.Add(-it.Deadline.Sub(c))
	}
	return c
}

// peerMail queues a relay mail for step to agent to.
func (a *Agent) peerMail(tx store.Tx, l evidence.Label, step relay.Step, to string, notes []*evidence.Note, msg []byte, now time.Time) error {
	m, err := a.peerOutbound(l, step, to, notes, msg, nil, now)
	if err != nil {
		return err
	}
	_, err = tx.Enqueue(m)
	return err
}

// relayOnward queues the relay of item it to it.Next (seed 001 §4.3 step 3) with notes, M and
// the message password's hash, so that the recipient's agent asks for the same password.
func (a *Agent) relayOnward(tx store.Tx, it store.Item, notes []*evidence.Note, msg []byte, now time.Time) error {
	m, err := a.relayMail(it, notes, msg, now)
	if err != nil {
		return err
	}
	_, err = tx.Enqueue(m)
	return err
}

// relayMail is the relay of item it to it.Next, ready to queue.
func (a *Agent) relayMail(it store.Item, notes []*evidence.Note, msg []byte, now time.Time) (store.Outbound, error) {
	var pickup *relay.Pickup
	if it.PasswordHash != "" {
		pickup = &relay.Pickup{PasswordHash: it.PasswordHash, Hint: it.PasswordHint}
	}
	return a.peerOutbound(it.Label, relay.StepRelay, it.Next, notes, msg, pickup, now)
}

// peerOutbound signs and composes a relay mail for step to agent to, ready to queue.
func (a *Agent) peerOutbound(l evidence.Label, step relay.Step, to string, notes []*evidence.Note, msg []byte, pickup *relay.Pickup, now time.Time) (store.Outbound, error) {
	m, err := relay.NewRelayMail(step, l, to, notes, msg, pickup, now, a.id.Signer)
	if err != nil {
		return store.Outbound{}, fmt.Errorf("agent: %s to %s: %w", step, to, err)
	}
	id := make([]byte, 8)
	if _, err := a.rand.Read(id); err != nil {
		return store.Outbound{}, err
	}
	data, err := m.Encode(fmt.Sprintf("%s.%s.%x", l, step, id))
	if err != nil {
		return store.Outbound{}, err
	}
	return store.Outbound{Label: l, Kind: peerKind + string(step), From: relay.Address(a.Name()), To: relay.Address(to),
		Data: data, State: store.OutQueued, NextAttempt: now, Created: now, Updated: now}, nil
}

// trustedKeys are the keys an agent weighs foreign evidence with: its own and its peers'.
func (a *Agent) trustedKeys() *evidence.Keys {
	k, _ := evidence.NewKeys(a.id.Verifier)
	for _, v := range a.settings.Peers.Keys {
		_ = k.Add(v)
	}
	return k
}

// refused is a relay mail refused for good: the reason goes to the log and the sending agent.
func refused(format string, args ...any) error {
	return &relay.RefusedError{Reason: fmt.Sprintf(format, args...)}
}

// Take handles a relay mail from a peer whose envelope the transport has opened with the key of
// its sender. It returns nil only once what the mail asks for is durably done (or was done
// before: every step may arrive twice); a *relay.RefusedError says why it never will be.
func (a *Agent) Take(ctx context.Context, m *relay.Mail) error {
	e := m.Envelope
	if e.To != a.Name() {
		return refused("the mail is for agent %s, this is %s", e.To, a.Name())
	}
	if _, ok := a.settings.Peers.Key(e.From); !ok {
		return refused("agent %s is not in the trust store", e.From)
	}
	if len(m.Notes) == 0 {
		return refused("a %s with no evidence", e.Step)
	}
	defer a.queued()
	switch e.Step {
	case relay.StepRelay:
		return a.takeRelay(ctx, m)
	case relay.StepAck:
		return a.takeAck(ctx, m)
	case relay.StepReport:
		return a.takeReport(ctx, m)
	case relay.StepDecision:
		return a.takeDecision(ctx, m)
	}
	return refused("unknown step %q", e.Step)
}

// chainOf follows the ACKs from P1 (seed 001 §4.3 step 4: ACK_i names P_i and is signed by
// P(i+1)) and returns the agents in order; the ACKs must form one unbroken chain.
func chainOf(cop *evidence.Record, acks []*evidence.Record) ([]string, error) {
	chain := []string{cop.Agent}
	for _, r := range acks {
		if r.From != chain[len(chain)-1] {
			return nil, fmt.Errorf("the ACK of %s for an item from %s does not continue the chain %s", r.Agent, r.From, strings.Join(chain, " -> "))
		}
		if slices.Contains(chain, r.Agent) {
			return nil, fmt.Errorf("%s appears twice in the chain of agents", r.Agent)
		}
		chain = append(chain, r.Agent)
	}
	return chain, nil
}

// weigh checks a bundle of notes exactly as an arbiter will, with this agent's trusted keys,
// and returns the verdict; a note that fails makes the whole invalid.
func (a *Agent) weigh(l evidence.Label, notes []*evidence.Note, msg []byte) *evidence.Verdict {
	b := &evidence.Bundle{Label: l, Notes: notes}
	for _, n := range notes {
		if n.Record.Type == evidence.KEY {
			b.AddKey(n.Record.Key)
		}
	}
	if msg != nil {
		b.SetItem(evidence.ItemMessage, msg)
	}
	return protocol.Judge(b.Check(a.trustedKeys()))
}

func firstFailure(v *evidence.Verdict) string {
	if len(v.Problems) == 0 {
		return "the evidence does not hold"
	}
	p := v.Problems[0]
	return fmt.Sprintf("%s check failed: %s", p.Check, p.Reason)
}

// takeRelay: seed 001 §4.3 steps 3–4 at P(i+1). The item arrives with P1's COP, the ACKs of the
// hops so far, and M; the agent checks them as an arbiter would, takes the item with its own
// ACK, and relays it onward or notifies the recipient.
func (a *Agent) takeRelay(ctx context.Context, m *relay.Mail) error {
	if err := a.takingNew(); err != nil {
		return err
	}
	e, now := m.Envelope, evidence.CanonicalTime(a.now())
	copN := m.Notes[0]
	cop := copN.Record
	if cop.Type != evidence.COP {
		return refused("a relay must begin with the certificate of posting, not a %s", cop.Type)
	}
	var acks []*evidence.Record
	for _, n := range m.Notes[1:] {
		if n.Record.Type != evidence.ACK {
			return refused("a relay carries the COP and ACKs only, not a %s", n.Record.Type)
		}
		acks = append(acks, n.Record)
	}
	switch {
	case cop.Label != e.Label:
		return refused("the COP is for label %s, the envelope for %s", cop.Label, e.Label)
	case evidence.Sum(m.Message) != cop.Content:
		return refused("the message hashes to %s, but the COP certifies %s", evidence.Sum(m.Message), cop.Content)
	case !cop.Protocol.IsCEM():
		return refused("mode %s is not relayed", cop.Protocol)
	}
	if v := a.weigh(cop.Label, m.Notes, m.Message); !v.Valid {
		return refused("the COP and ACKs do not hold: %s", firstFailure(v))
	}
	chain, err := chainOf(cop, acks)
	if err != nil {
		return refused("%v", err)
	}
	if last := chain[len(chain)-1]; last != e.From {
		return refused("the item was last taken by %s, but %s relays it", last, e.From)
	}
	if slices.Contains(chain, a.Name()) {
		return refused("this agent (%s) is in the chain already: a loop", a.Name())
	}

	// A relay seen before: the same one again (the sender missed our 250) is done already;
	// anything else under a known label is a replay.
	var known bool
	err = a.st.View(ctx, func(tx store.Tx) error {
		cur, err := tx.Item(cop.Label)
		if errors.Is(err, store.ErrNotFound) {
			return nil
		}
		if err != nil {
			return err
		}
		evs, err := tx.Evidence(cop.Label)
		if err != nil {
			return err
		}
		if cur.Prev == e.From && len(evs) > 0 && bytes.Equal(evs[0].Note, copN.Bytes()) {
			known = true
			return nil
		}
		return refused("label %s was seen before: a relay cannot reuse it", cop.Label)
	})
	if err != nil || known {
		return err
	}
	it := store.Item{Label: cop.Label, Protocol: cop.Protocol, Sender: cop.Sender, Recipient: cop.Recipient,
		Content: cop.Content, Commitment: evidence.Commitment(cop.Label, m.Message), Size: int64(len(m.Message)),
		Deadline: cop.Deadline, Receipt: "full", Submission: cop.Label.String(), State: store.StatePosted,
		Submitted: cop.Time, Updated: now, Prev: e.From}
	if m.Pickup != nil {
		// The sender's message password protects the pickup here too.
		it.PasswordHash, it.PasswordHint = m.Pickup.PasswordHash, m.Pickup.Hint
	}
	next, routed := a.settings.Peers.route(cop.Recipient)
	switch {
	case routed && next != a.Name():
		if slices.Contains(chain, next) {
			return refused("the route to %s leads back to %s: a loop", cop.Recipient, next)
		}
		it.Next = next
	case !a.serves(cop.Recipient):
		return refused("this agent does not serve the domain of %s and knows no peer that does", cop.Recipient)
	}
	if !now.Before(acceptBy(it)) {
		return refused("the item's deadline %s leaves no time to deliver it", evidence.FormatTime(cop.Deadline))
	}

	var tok string
	if it.Next == "" {
		var th evidence.Hash
		if tok, th, err = a.newToken(now); err != nil {
			return err
		}
		it.TokenHash = th
	}
	return a.update(ctx, func(tx store.Tx) error {
		if err := tx.PutMessage(cop.Content, it.Submitted, m.Message); err != nil {
			return err
		}
		if err := tx.InsertItem(it); err != nil {
			if errors.Is(err, store.ErrDuplicate) {
				return refused("label %s was seen before: a relay cannot reuse it", cop.Label)
			}
			return err
		}
		for _, n := range m.Notes {
			if _, err := tx.AddEvidence(it.Label, n); err != nil {
				return err
			}
		}
		ack, err := a.sign(tx, &evidence.Record{Type: evidence.ACK, Label: it.Label, Protocol: it.Protocol, Agent: a.Name(),
			From: e.From, Recipient: it.Recipient, Content: it.Content, Time: now})
		if err != nil {
			return err
		}
		if err := a.peerMail(tx, it.Label, relay.StepAck, e.From, []*evidence.Note{ack}, nil, now); err != nil {
			return err
		}
		if it.Next != "" {
			onward := append(slices.Clone(m.Notes), ack)
			if err := a.relayOnward(tx, it, onward, m.Message, now); err != nil {
				return err
			}
			return tx.SetTimer(store.Timer{Label: it.Label, Kind: timerRelay, Due: relayBy(now, it.Deadline)})
		}
		// Pn: notify the recipient exactly as on one agent (seed 001 §4.5 step 5).
		notice := Notice{From: a.settings.Bounce, To: it.Recipient, Sender: it.Sender, Label: it.Label, Protocol: it.Protocol,
			Commitment: it.Commitment, Deadline: acceptBy(it), PickupURL: a.PickupURL(tok), NeedPassword: it.PasswordHash != "", Hint: it.PasswordHint}
		if it.Protocol == evidence.CEM {
			notice.Message = m.Message
		}
		data, err := a.mails.Notification(notice)
		if err != nil {
			return fmt.Errorf("agent: compose notification: %w", err)
		}
		if err := a.enqueue(tx, it.Label, kindNotification, it.Recipient, data, now); err != nil {
			return err
		}
		return tx.SetTimer(store.Timer{Label: it.Label, Kind: timerDeadline, Due: acceptBy(it)})
	})
}

// serves reports whether the agent delivers to rcpt's domain itself.
func (a *Agent) serves(rcpt string) bool {
	_, domain, _ := strings.Cut(rcpt, "@")
	return slices.ContainsFunc(a.settings.Domains, func(d string) bool { return strings.EqualFold(d, domain) })
}

// storedNotes returns the notes stored for a label.
func storedNotes(tx store.Tx, l evidence.Label) ([]*evidence.Note, error) {
	evs, err := tx.Evidence(l)
	if err != nil {
		return nil, err
	}
	out := make([]*evidence.Note, 0, len(evs))
	for _, e := range evs {
		n, err := evidence.ParseNote(e.Note)
		if err != nil {
			return nil, fmt.Errorf("agent: stored note %d: %w", e.Seq, err)
		}
		out = append(out, n)
	}
	return out, nil
}

// addNew stores the notes tx does not hold yet.
func addNew(tx store.Tx, l evidence.Label, notes []*evidence.Note) error {
	for _, n := range notes {
		if _, err := tx.AddEvidence(l, n); err != nil && !errors.Is(err, store.ErrDuplicate) {
			return err
		}
	}
	return nil
}

// merged is stored followed by the notes of add it lacks.
func merged(stored, add []*evidence.Note) []*evidence.Note {
	out := slices.Clone(stored)
	for _, n := range add {
		if !slices.ContainsFunc(out, func(s *evidence.Note) bool { return bytes.Equal(s.Bytes(), n.Bytes()) }) {
			out = append(out, n)
		}
	}
	return out
}

// itemFrom loads the item a mail from agent from concerns, as the neighbour role says: "next"
// for ACKs and reports, "prev" for decisions.
func itemFrom(tx store.Tx, l evidence.Label, from, role string) (store.Item, error) {
	it, err := tx.Item(l)
	if errors.Is(err, store.ErrNotFound) {
		return it, refused("no item with label %s was relayed between this agent and %s", l, from)
	}
	if err != nil {
		return it, err
	}
	if role == "next" && it.Next != from || role == "prev" && it.Prev != from {
		return it, refused("item %s was not relayed between this agent and %s", l, from)
	}
	return it, nil
}

// messageOf reads the message of the item a mail from agent from concerns (role as for itemFrom)
// before the step's transaction, so that the writer, which commits concurrent steps together,
// does not read it; an item's content never changes.
func (a *Agent) messageOf(ctx context.Context, l evidence.Label, from, role string) (body, error) {
	var it store.Item
	if err := a.st.View(ctx, func(tx store.Tx) (err error) { it, err = itemFrom(tx, l, from, role); return err }); err != nil {
		return body{}, err
	}
	b, err := a.body(ctx, it)
	if err != nil {
		return body{}, fmt.Errorf("agent: message of %s: %w", l, err)
	}
	return b, nil
}

// takeAck: seed 001 §4.3 step 4 at P_i: the next agent's ACK_i.
func (a *Agent) takeAck(ctx context.Context, m *relay.Mail) error {
	e, now := m.Envelope, evidence.CanonicalTime(a.now())
	if len(m.Notes) != 1 {
		return refused("an ack carries one ACK, not %d notes", len(m.Notes))
	}
	ack, r := m.Notes[0], m.Notes[0].Record
	return a.update(ctx, func(tx store.Tx) error {
		it, err := itemFrom(tx, e.Label, e.From, "next")
		if err != nil {
			return err
		}
		keys, _ := evidence.NewKeys(a.settings.Peers.Keys[e.From])
		switch {
		case r.Type != evidence.ACK:
			return refused("an ack must carry an ACK, not a %s", r.Type)
		case r.Agent != e.From:
			return refused("the ACK is signed as %s, but %s sent it and took the item", r.Agent, e.From)
		case r.From != a.Name():
			return refused("the ACK acknowledges an item from %s, not from this agent", r.From)
		case r.Label != it.Label || r.Recipient != it.Recipient || r.Content != it.Content || r.Protocol != it.Protocol:
			return refused("the ACK names another label, recipient, content or mode than item %s", it.Label)
		case ack.Verify(keys) != nil:
			return refused("the ACK is not signed by %s's key", e.From)
		}
		if _, err := tx.AddEvidence(it.Label, ack); errors.Is(err, store.ErrDuplicate) {
			return nil // the same ACK again
		} else if err != nil {
			return err
		}
		if err := tx.DeleteTimer(it.Label, timerRelay); err != nil && !errors.Is(err, store.ErrNotFound) {
			return err
		}
		if it.State == store.StatePosted {
			it.State, it.Updated = store.StateRelayed, now
			return tx.UpdateItem(it)
		}
		return nil
	})
}

// takeReport: seed 001 §4.3 step 8, an outcome coming back from the next agent: ROD with the
// recipient's COD or the agent's DLV (and its NTF and KEY), or an NDN or REJ.
func (a *Agent) takeReport(ctx context.Context, m *relay.Mail) error {
	e, now := m.Envelope, evidence.CanonicalTime(a.now())
	first := m.Notes[0]
	for _, n := range m.Notes {
		if !n.Record.Label.IsZero() && n.Record.Label != e.Label {
			return refused("the %s is for label %s, the envelope for %s", n.Record.Type, n.Record.Label, e.Label)
		}
	}
	var support []evidence.Type
	switch first.Record.Type {
	case evidence.ROD:
		support = []evidence.Type{evidence.ACK, evidence.NTF, evidence.KEY, evidence.DLV, evidence.CODBasic, evidence.CODNSR, evidence.CODIP}
	case evidence.NDN, evidence.REJ:
		support = []evidence.Type{evidence.ACK}
	default:
		return refused("a report begins with ROD, NDN or REJ, not %s", first.Record.Type)
	}
	for _, n := range m.Notes[1:] {
		if !slices.Contains(support, n.Record.Type) {
			return refused("a report of %s cannot carry a %s", first.Record.Type, n.Record.Type)
		}
	}
	msg, err := a.messageOf(ctx, e.Label, e.From, "next")
	if err != nil {
		return err
	}
	return a.update(ctx, func(tx store.Tx) error {
		it, err := itemFrom(tx, e.Label, e.From, "next")
		if err != nil {
			return err
		}
		stored, err := storedNotes(tx, it.Label)
		if err != nil {
			return err
		}
		rest := m.Notes[1:]
		if first.Record.Type != evidence.ROD {
			rest = m.Notes
		}
		all := merged(stored, rest)
		v := a.weigh(it.Label, all, msg.m)
		if !v.Valid {
			return refused("the report does not hold with the evidence of item %s: %s", it.Label, firstFailure(v))
		}
		copN := all[0]
		var acks []*evidence.Record
		for _, n := range all {
			if n.Record.Type == evidence.ACK {
				acks = append(acks, n.Record)
			}
		}
		chain, err := chainOf(copN.Record, acks)
		if err != nil {
			return refused("%v", err)
		}
		pn := chain[len(chain)-1]
		var rod *evidence.Note
		if first.Record.Type == evidence.ROD {
			r := first.Record
			keys, _ := evidence.NewKeys(a.settings.Peers.Keys[pn])
			switch {
			case r.Label != it.Label:
				return refused("the ROD is for label %s, not %s", r.Label, it.Label)
			case r.Agent != pn:
				return refused("the ROD is signed as %s, but the recipient's agent is %s", r.Agent, pn)
			case r.Origin != copN.Record.Agent || r.Recipient != it.Recipient || r.Content != it.Content || r.Protocol != it.Protocol:
				return refused("the ROD names another sender's agent, recipient, content or mode than item %s", it.Label)
			case !signedBy(first, keys):
				return refused("the ROD is not signed by %s's key", pn)
			}
			rod = first
		}
		if it.Prev != "" {
			return a.passReport(tx, it, m.Notes, rod, now)
		}
		return a.decide(tx, it, m.Notes, rod, all, msg, now)
	})
}

// signedBy reports whether n carries a valid signature by one of keys (a ROD that P1 has not
// countersigned yet verifies under Pn's key alone).
func signedBy(n *evidence.Note, keys *evidence.Keys) bool {
	_, err := note.Open(n.Bytes(), keys)
	return err == nil
}

// passReport: an intermediate agent keeps what the report proves and passes it on to the agent
// before it, unchanged.
func (a *Agent) passReport(tx store.Tx, it store.Item, notes []*evidence.Note, rod *evidence.Note, now time.Time) error {
	keep := notes
	if rod != nil {
		if it.State == store.StateAccepted {
			return nil // passed on already
		}
		keep = notes[1:] // stored once P1 countersigns it (takeDecision)
	} else {
		// The NDN or REJ is stored: a second copy of the same report is done already.
		if _, err := tx.AddEvidence(it.Label, notes[0]); errors.Is(err, store.ErrDuplicate) {
			return nil
		} else if err != nil {
			return err
		}
		keep = notes[1:]
	}
	if err := addNew(tx, it.Label, keep); err != nil {
		return err
	}
	if err := tx.DeleteTimer(it.Label, timerRelay); err != nil && !errors.Is(err, store.ErrNotFound) {
		return err
	}
	if !it.State.Final() {
		it.State, it.Updated = stateOf(notes[0].Record.Type), now
		if err := tx.UpdateItem(it); err != nil {
			return err
		}
	}
	return a.peerMail(tx, it.Label, relay.StepReport, it.Prev, notes, nil, now)
}

func stateOf(t evidence.Type) store.State {
	switch t {
	case evidence.ROD:
		return store.StateAccepted
	case evidence.REJ:
		return store.StateRefused
	}
	return store.StateExpired
}

// decide is P1's decision on a report (seed 001 §4.3 steps 8–9): the first outcome to reach it
// stands. A report of delivery is countersigned only while the item is open, before the
// deadline; the sender gets the receipt and the chain the countersigned ROD, after which Pn
// releases M. A report that comes too late is answered with the outcome that stands.
func (a *Agent) decide(tx store.Tx, it store.Item, notes []*evidence.Note, rod *evidence.Note, all []*evidence.Note, msg body, now time.Time) error {
	if !it.State.Final() && !now.Before(closing(it.Submitted, it.Deadline)) {
		// The deadline timer is due and has not run yet: it decides first.
		if err := a.notDelivered(tx, it, "deadline", now); err != nil {
			return err
		}
		it.State = store.StateExpired
	}
	if it.State.Final() {
		return a.answerLate(tx, it, rod, now)
	}
	first := notes[0]
	if first.Record.Type == evidence.ROD {
		crod, err := evidence.Countersign(rod, a.id.Signer)
		if err != nil {
			return fmt.Errorf("agent: countersign ROD: %w", err)
		}
		full := append(slices.Clone(all), crod)
		if v := a.weigh(it.Label, full, msg.m); !v.Valid || v.Outcome != evidence.OutcomeDelivered {
			return refused("the countersigned report would not show delivery: %s", firstFailure(v))
		}
		if err := addNew(tx, it.Label, notes[1:]); err != nil {
			return err
		}
		if _, err := tx.AddEvidence(it.Label, crod); err != nil {
			return err
		}
		if err := a.settle(tx, &it, store.StateDelivered, now); err != nil {
			return err
		}
		if err := a.receipt(tx, it, ReceiptDelivery, crod, "", now, msg); err != nil {
			return err
		}
		return a.peerMail(tx, it.Label, relay.StepDecision, it.Next, []*evidence.Note{crod}, nil, now)
	}
	// NDN or REJ: P1 passes the chain's outcome to the sender.
	state, kind := store.StateExpired, ReceiptNonDelivery
	if first.Record.Type == evidence.REJ {
		state, kind = store.StateRefused, ReceiptRefusal
	}
	if err := addNew(tx, it.Label, notes); err != nil {
		return err
	}
	if err := a.settle(tx, &it, state, now); err != nil {
		return err
	}
	return a.receipt(tx, it, kind, first, first.Record.Reason, now, body{})
}

// answerLate answers a report that reached P1 after it had decided: a report of delivery gets the
// notice that stands instead, so that Pn does not release M; anything else is on record already.
func (a *Agent) answerLate(tx store.Tx, it store.Item, rod *evidence.Note, now time.Time) error {
	if rod == nil || it.State == store.StateDelivered {
		return nil
	}
	stored, err := storedNotes(tx, it.Label)
	if err != nil {
		return err
	}
	for _, n := range slices.Backward(stored) {
		if t := n.Record.Type; t == evidence.NDN || t == evidence.RTR {
			return a.peerMail(tx, it.Label, relay.StepDecision, it.Next, []*evidence.Note{n}, nil, now)
		}
	}
	return nil
}

// takeDecision: P1's decision, going forward to Pn: the countersigned ROD (Pn may release M), or
// the NDN or RTR that stands instead (it may not).
func (a *Agent) takeDecision(ctx context.Context, m *relay.Mail) error {
	e, now := m.Envelope, evidence.CanonicalTime(a.now())
	if len(m.Notes) != 1 {
		return refused("a decision carries one note, not %d", len(m.Notes))
	}
	n, r := m.Notes[0], m.Notes[0].Record
	if r.Label != e.Label {
		return refused("the %s is for label %s, the envelope for %s", r.Type, r.Label, e.Label)
	}
	msg, err := a.messageOf(ctx, e.Label, e.From, "prev")
	if err != nil {
		return err
	}
	return a.update(ctx, func(tx store.Tx) error {
		it, err := itemFrom(tx, e.Label, e.From, "prev")
		if err != nil {
			return err
		}
		stored, err := storedNotes(tx, it.Label)
		if err != nil {
			return err
		}
		if slices.ContainsFunc(stored, func(s *evidence.Note) bool { return bytes.Equal(s.Bytes(), n.Bytes()) }) {
			return nil // the same decision again
		}
		var state store.State
		switch r.Type {
		case evidence.ROD:
			// The ROD this chain reported, now with P1's signature: the whole must hold.
			p1 := stored[0].Record.Agent
			switch {
			case r.Origin != p1 || r.Recipient != it.Recipient || r.Content != it.Content || r.Protocol != it.Protocol:
				return refused("the countersigned ROD names another sender's agent, recipient, content or mode than item %s", it.Label)
			case it.Next == "" && r.Agent != a.Name():
				return refused("the countersigned ROD is %s's, not this agent's", r.Agent)
			}
			if v := a.weigh(it.Label, append(stored, n), msg.m); !v.Valid || v.Outcome != evidence.OutcomeDelivered {
				return refused("the countersigned ROD does not hold: %s", firstFailure(v))
			}
			state = store.StateDelivered
		case evidence.NDN, evidence.RTR:
			v := a.weigh(it.Label, append(stored, n), msg.m)
			if !v.Valid {
				return refused("the %s does not hold: %s", r.Type, firstFailure(v))
			}
			state = store.StateExpired
			if r.Type == evidence.RTR {
				state = store.StateRetracted
			}
		default:
			return refused("a decision is a ROD, NDN or RTR, not a %s", r.Type)
		}
		if _, err := tx.AddEvidence(it.Label, n); err != nil {
			return err
		}
		if state == store.StateDelivered || !it.State.Final() || it.State == store.StateAccepted {
			it.State, it.Updated = state, now
			if err := tx.UpdateItem(it); err != nil {
				return err
			}
		}
		if err := a.stopTimers(tx, it.Label); err != nil {
			return err
		}
		if it.Next != "" {
			return a.peerMail(tx, it.Label, relay.StepDecision, it.Next, []*evidence.Note{n}, nil, now)
		}
		return nil
	})
}

// reportBack sends the outcome Pn or an intermediate agent reached towards P1: the first note
// and what supports it, with the chain of ACKs stored for the item.
func (a *Agent) reportBack(tx store.Tx, it store.Item, first *evidence.Note, support []*evidence.Note, now time.Time) error {
	stored, err := storedNotes(tx, it.Label)
	if err != nil {
		return err
	}
	notes := append([]*evidence.Note{first}, support...)
	for _, n := range stored {
		if n.Record.Type == evidence.ACK {
			notes = append(notes, n)
		}
	}
	return a.peerMail(tx, it.Label, relay.StepReport, it.Prev, notes, nil, now)
}

// acceptedInChain is the recipient's acceptance at Pn of a chain: Pn signs the report of delivery
// for P1 to countersign (seed 001 §4.3 step 8) and sends it back with the COD or DLV, the NTF and
// the KEY record that support it. The item waits, accepted, for P1's decision before M is
// released. The ROD is kept in the queued report, not as evidence: until P1 countersigns it,
// it is no evidence an arbiter accepts.
func (a *Agent) acceptedInChain(tx store.Tx, it store.Item, cod, dlv *evidence.Note, now time.Time) error {
	stored, err := storedNotes(tx, it.Label)
	if err != nil {
		return err
	}
	p1 := stored[0].Record.Agent
	for _, n := range stored {
		now = later(now, n.Record.Time) // never before the item's evidence, whatever the clock
	}
	rod, err := evidence.Sign(&evidence.Record{Type: evidence.ROD, Label: it.Label, Protocol: it.Protocol, Agent: a.Name(),
		Origin: p1, Recipient: it.Recipient, Content: it.Content, Time: now}, a.id.Signer)
	if err != nil {
		return fmt.Errorf("agent: sign ROD: %w", err)
	}
	var support []*evidence.Note
	if cod != nil {
		b := &evidence.Bundle{}
		if err := addKeyRecord(tx, b, it.Recipient); err != nil {
			return err
		}
		support = append(support, b.Notes...)
		support = append(support, cod)
	}
	support = append(support, dlv)
	for _, n := range stored {
		if n.Record.Type == evidence.NTF {
			support = append(support, n)
		}
	}
	if err := a.settle(tx, &it, store.StateAccepted, now); err != nil {
		return err
	}
	return a.reportBack(tx, it, rod, support, now)
}

func later(a, b time.Time) time.Time {
	if b.After(a) {
		return b
	}
	return a
}
