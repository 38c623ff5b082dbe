package protocol

import (
	"bytes"
	"fmt"
	"slices"
	"time"

	"certmail/evidence"
)

// CEMBehavior is how a recipient answers a notification.
type CEMBehavior int

const (
	// CEMAcceptAll accepts every notification and collects the message: an honest recipient.
	CEMAcceptAll CEMBehavior = iota
	// CEMRefuseAll refuses every item (the agent attests it with REJ).
	CEMRefuseAll
	// CEMNeverSign reads what it is given and never signs nor accepts: the selective receipt of
	// seed 001 §4.3, which under cem gets it the message for nothing.
	CEMNeverSign
)

// CEMRecipientConfig is what the recipient B knows.
type CEMRecipientConfig struct {
	Address  string
	Identity *Identity // B's signing key for the COD; nil for a recipient without a key (DLV)
	Secret   []byte    // B's pickup secret at its agent
	Client   string    // how B's client appears to the agent (DLV and RET record it)
	Trust    []string  // verifier keys of the agents that may notify B
	Seen     *CEMSeen  // B's memory of labels, across all its exchanges
	Behavior CEMBehavior
	Timing   CEMTiming
}

// CEMRecipient is B in the CEM family. It serves any number of exchanges (one per label), as a
// mailbox does, and refuses a notification for a label it saw in another one.
type CEMRecipient struct {
	cfg    CEMRecipientConfig
	trust  *trust
	ex     map[evidence.Label]*cemInbox
	order  []evidence.Label
	alarms []string
}

// cemInbox is B's state for one label.
type cemInbox struct {
	p       evidence.Protocol
	ntf     *evidence.Note
	agent   string
	msg     []byte    // M, once B holds it
	gotAt   time.Time // when B first held M
	answer  *Msg      // B's acceptance or refusal, resent until acknowledged
	next    time.Time
	wait    time.Duration
	stored  bool   // the agent acknowledged the answer
	state   string // "", "delivered", "accepted", "refused", "not-delivered", "retracted", "gave-up"
	expire  time.Time
	acked   map[string]bool
	misses  int
	fetchAt time.Time
}

// NewCEMRecipient checks the configuration.
func NewCEMRecipient(cfg CEMRecipientConfig) (*CEMRecipient, error) {
	if _, err := evidence.KeyName(cfg.Address); err != nil {
		return nil, fmt.Errorf("protocol: cem recipient: %w", err)
	}
	if cfg.Identity != nil && cfg.Identity.Name != cfg.Address {
		return nil, fmt.Errorf("protocol: cem recipient: key of %s, not of %s", cfg.Identity.Name, cfg.Address)
	}
	if cfg.Client == "" {
		return nil, fmt.Errorf("protocol: cem recipient: no client description")
	}
	trust, err := newTrust(cfg.Trust)
	if err != nil {
		return nil, fmt.Errorf("protocol: cem recipient: %w", err)
	}
	if cfg.Seen == nil {
		cfg.Seen = NewCEMSeen()
	}
	cfg.Timing = cfg.Timing.orDefault()
	return &CEMRecipient{cfg: cfg, trust: trust, ex: map[evidence.Label]*cemInbox{}}, nil
}

func (b *CEMRecipient) Name() string              { return b.cfg.Address }
func (b *CEMRecipient) Start(now time.Time) []Msg { return nil }

func (b *CEMRecipient) Receive(now time.Time, m Msg) []Msg {
	p, step, ok := cemSplitStep(m.Step)
	if !ok {
		return nil
	}
	switch step {
	case cemNotify:
		return b.notified(now, p, m)
	case cemAckStep:
		l, ok := cemLabel(m)
		if x := b.ex[l]; ok && x != nil && x.p == p && x.answer != nil && cemField(m, "ack") == cemDigest(*x.answer) {
			x.stored = true
			switch {
			case x.state != "":
			case b.cfg.Behavior == CEMRefuseAll:
				x.state = "refused"
			case p == evidence.CEM:
				// seed 001 §4.3: under cem B holds M since step 5; its COD is now with Pn.
				x.state = "accepted"
			}
		}
	case cemRelease:
		return b.released(now, p, m)
	case cemNotice:
		return b.noticed(p, m)
	}
	return nil
}

// notified: seed 001 §4.3-4.5 step 5, Pn -> B: L, M (cem) / L (cem-nsr) / L, H(L,M) (cem-ip),
// carried by Pn's signed NTF.
func (b *CEMRecipient) notified(now time.Time, p evidence.Protocol, m Msg) []Msg {
	notes, err := cemNotes(m)
	if err != nil || len(notes) != 1 {
		return nil
	}
	n, r := notes[0], notes[0].Record
	if r.Type != evidence.NTF || r.Protocol != p || r.Recipient != b.cfg.Address || n.Verify(b.trust.keys) != nil {
		return nil
	}
	var msg []byte
	if p == evidence.CEM {
		msg = m.Data["message"]
		if evidence.Sum(msg) != r.Content || evidence.Commitment(r.Label, msg) != r.Commitment {
			return nil
		}
	}
	if x := b.ex[r.Label]; x != nil {
		if bytes.Equal(x.ntf.Bytes(), n.Bytes()) {
			return []Msg{cemAckFor(b.Name(), p, r.Label, m)}
		}
		// seed 001 §4.5: "Whenever B is notified about a mail with label L, B will reject any
		// further notifications with the same label" — a bogus agent's, most likely.
		b.alarm(fmt.Sprintf("label %s: a second, different notification from %s was rejected", r.Label, r.Agent))
		return nil
	}
	if b.cfg.Seen.HasLabel(r.Label) {
		b.alarm(fmt.Sprintf("label %s: a notification from %s reuses a label of another exchange and was rejected", r.Label, r.Agent))
		return nil
	}
	b.cfg.Seen.addLabel(r.Label)
	x := &cemInbox{p: p, ntf: n, agent: r.Agent, expire: r.Deadline.Add(b.cfg.Timing.Grace), acked: map[string]bool{}}
	b.ex[r.Label] = x
	b.order = append(b.order, r.Label)
	if msg != nil {
		x.msg, x.gotAt = slices.Clone(msg), now
	}
	out := []Msg{cemAckFor(b.Name(), p, r.Label, m)}
	switch b.cfg.Behavior {
	case CEMAcceptAll:
		// seed 001 §4.3-4.5 step 6, B -> Pn: L, COD — or, without a key, B's login and
		// acceptance, which Pn attests with DLV.
		a, err := b.acceptance(now, p, r)
		if err != nil {
			return out
		}
		x.answer = a
	case CEMRefuseAll:
		x.answer = &Msg{From: b.Name(), To: r.Agent, Step: cemStep(p, cemRefuse), Data: map[string][]byte{
			"label": []byte(r.Label.String()),
			"auth":  cemAuth(b.cfg.Secret, "refuse", string(p), b.Name(), r.Label.String()),
		}}
	case CEMNeverSign:
		x.state = "silent"
		return out
	}
	x.wait = b.cfg.Timing.Retry
	x.next = now.Add(x.wait)
	return append(out, x.answer.Clone())
}

func (b *CEMRecipient) acceptance(now time.Time, p evidence.Protocol, ntf *evidence.Record) (*Msg, error) {
	m := &Msg{From: b.Name(), To: ntf.Agent, Step: cemStep(p, cemAccept), Data: map[string][]byte{
		"label":  []byte(ntf.Label.String()),
		"client": []byte(b.cfg.Client),
		"auth":   cemAuth(b.cfg.Secret, "accept", string(p), b.Name(), ntf.Label.String(), b.cfg.Client),
	}}
	if b.cfg.Identity == nil {
		return m, nil
	}
	r := &evidence.Record{Type: CODType(p), Label: ntf.Label, Agent: ntf.Agent, Recipient: b.Name(), Time: now}
	switch p {
	case evidence.CEM:
		r.Content = ntf.Content // COD = S_B(Pn, L, M), seed 001 §4.1
	case evidence.CEMIP:
		r.Commitment = ntf.Commitment // COD = S_B(Pn, L, H(L,M)), seed 001 §4.5
	} // cem-nsr: COD = S_B(Pn, L), seed 001 §4.4
	cod, err := cemSign(b.cfg.Identity, r)
	if err != nil {
		return nil, err
	}
	m.Notes = [][]byte{cod.Bytes()}
	return m, nil
}

// released: seed 001 §4.4-4.5 step 7, B <-> Pn: L, M. Under cem-ip B checks M against the
// H(L,M) it signed for, and on a mismatch asks again and raises the alarm.
func (b *CEMRecipient) released(now time.Time, p evidence.Protocol, m Msg) []Msg {
	notes, err := cemNotes(m)
	if err != nil || len(notes) != 1 {
		return nil
	}
	n, r := notes[0], notes[0].Record
	x := b.ex[r.Label]
	if x == nil || x.p != p || p == evidence.CEM || r.Type != evidence.RET || r.Agent != x.agent ||
		r.Recipient != b.Name() || r.Content != x.ntf.Record.Content || n.Verify(b.trust.keys) != nil {
		return nil
	}
	if x.acked[cemDigest(m)] {
		return []Msg{cemAckFor(b.Name(), p, r.Label, m)}
	}
	if x.msg != nil {
		return nil
	}
	msg := m.Data["message"]
	if evidence.Sum(msg) != r.Content || p == evidence.CEMIP && evidence.Commitment(r.Label, msg) != x.ntf.Record.Commitment {
		x.misses++
		b.alarm(fmt.Sprintf("label %s: the message fetched from %s does not match what was notified (attempt %d)", r.Label, x.agent, x.misses))
		if now.Before(x.fetchAt) {
			return nil
		}
		x.fetchAt = now.Add(b.cfg.Timing.Retry)
		return []Msg{{From: b.Name(), To: x.agent, Step: cemStep(p, cemFetch), Data: map[string][]byte{"label": []byte(r.Label.String())}}}
	}
	x.msg, x.gotAt, x.state = slices.Clone(msg), now, "delivered"
	x.acked[cemDigest(m)] = true
	return []Msg{cemAckFor(b.Name(), p, r.Label, m)}
}

// noticed: Pn tells B that the item it accepted or refused will not be released.
func (b *CEMRecipient) noticed(p evidence.Protocol, m Msg) []Msg {
	notes, err := cemNotes(m)
	if err != nil || len(notes) != 1 {
		return nil
	}
	n, r := notes[0], notes[0].Record
	x := b.ex[r.Label]
	if x == nil || x.p != p || r.Recipient != b.Name() || r.Protocol != p ||
		r.Type != evidence.NDN && r.Type != evidence.RTR && r.Type != evidence.REJ || n.Verify(b.trust.keys) != nil {
		return nil
	}
	if x.msg == nil || p == evidence.CEM {
		switch r.Type {
		case evidence.NDN:
			x.state = "not-delivered"
		case evidence.RTR:
			x.state = "retracted"
		case evidence.REJ:
			x.state = "refused"
		}
	}
	x.answer = nil
	return []Msg{cemAckFor(b.Name(), p, r.Label, m)}
}

func (b *CEMRecipient) alarm(s string) { b.alarms = append(b.alarms, s) }

func (b *CEMRecipient) Wake() (time.Time, bool) {
	var at time.Time
	for _, l := range b.order {
		x := b.ex[l]
		if b.settled(x) {
			continue
		}
		if x.answer != nil && !x.stored {
			at = cemEarliest(at, x.next)
		}
		at = cemEarliest(at, x.expire)
	}
	return at, !at.IsZero()
}

func (b *CEMRecipient) Tick(now time.Time) []Msg {
	var out []Msg
	for _, l := range b.order {
		x := b.ex[l]
		if b.settled(x) {
			continue
		}
		if !now.Before(x.expire) {
			if x.msg == nil && x.stored {
				b.alarm(fmt.Sprintf("label %s: accepted, but %s never released the message", l, x.agent))
			}
			x.state = "gave-up"
			continue
		}
		if x.answer != nil && !x.stored && !now.Before(x.next) {
			x.wait = min(2*x.wait, b.cfg.Timing.RetryMax)
			x.next = now.Add(x.wait)
			out = append(out, x.answer.Clone())
		}
	}
	return out
}

// settled reports whether B is finished with an exchange.
func (b *CEMRecipient) settled(x *cemInbox) bool {
	switch x.state {
	case "", "silent":
		return false
	}
	return true
}

// Done reports whether every exchange B takes part in is settled. A silent recipient
// (CEMNeverSign) is done once the deadline has passed for each.
func (b *CEMRecipient) Done() bool {
	for _, x := range b.ex {
		if !b.settled(x) {
			return false
		}
	}
	return true
}

// Message returns M of the exchange l and when B first held it, if it does.
func (b *CEMRecipient) Message(l evidence.Label) ([]byte, time.Time, bool) {
	x := b.ex[l]
	if x == nil || x.msg == nil {
		return nil, time.Time{}, false
	}
	return slices.Clone(x.msg), x.gotAt, true
}

// State says where B stands in exchange l: "" (unknown label), "waiting", "silent",
// "delivered" (B holds M), "accepted" (cem: COD stored), "refused", "not-delivered",
// "retracted" or "gave-up".
func (b *CEMRecipient) State(l evidence.Label) string {
	x := b.ex[l]
	switch {
	case x == nil:
		return ""
	case x.state == "":
		return "waiting"
	}
	return x.state
}

// Alarms lists what B would report "beyond the protocol" (seed 001 §4.4-4.5): second
// notifications for a label, messages that do not match, items never released.
func (b *CEMRecipient) Alarms() []string { return slices.Clone(b.alarms) }
