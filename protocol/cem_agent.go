package protocol

import (
	"bytes"
	"fmt"
	"io"
	"slices"
	"strings"
	"time"

	"certmail/evidence"
)

// CEMAgentConfig is what a delivery agent knows before a run: its key, the agents it trusts,
// its users, and where to relay mail for other domains.
type CEMAgentConfig struct {
	Identity *Identity
	Trust    []string              // verifier keys of the peer agents it accepts (its own is added)
	Accounts map[string]CEMAccount // its users: senders, and the recipients it delivers to
	Routes   map[string]string     // recipient domain -> next agent; with no route, the agent is Pn
	Rand     io.Reader             // for labels (crypto/rand.Reader in production)
	Seen     *CEMSeen              // its memory of labels and submissions, across exchanges
	Timing   CEMTiming
}

// CEMAgent is a delivery agent of the CEM family in every position of the chain P1..Pn: it
// takes submissions as P1, relays as Pi, delivers as Pn, and serves any number of exchanges,
// one per label. Everything it keeps is what its durable store would hold; a crash loses only
// the messages in flight, which the parties resend.
//
// certmail adds one thing to the seed for fairness at the deadline: P1 is the single point that
// decides an exchange's outcome. Pn sends its report of delivery to P1 and releases M to B only
// when P1 has countersigned it (before T), so a report that reaches P1 after its deadline notice
// can never leave B with M and A with a notice.
type CEMAgent struct {
	cfg      CEMAgentConfig
	me       string
	trust    *trust
	hops     map[evidence.Label]*cemHop
	order    []evidence.Label
	keyNotes map[string]*evidence.Note // KEY records issued for local recipients
	nonces   map[string]evidence.Label // submissions taken, by nonce
	out      cemOutbox
}

// cemHop is an agent's state for one label.
type cemHop struct {
	label       evidence.Label
	p           evidence.Protocol
	cop         *evidence.Note
	msg         []byte
	first, last bool   // P1, Pn
	prev, next  string // neighbouring agents ("" at the ends)
	chain       []*evidence.Note
	relayBy     time.Time
	ackNext     *evidence.Note
	relayNDN    *evidence.Note

	// As Pn.
	ntf, key *evidence.Note
	cutoff   time.Time
	answer   string         // digest of B's acceptance or refusal, once taken
	accepted *evidence.Note // COD or DLV
	acceptAt time.Time
	client   string
	rod      *evidence.Note // as Pn signed it
	local    *evidence.Note // REJ or NDN (not-accepted) Pn issued instead of a ROD
	decision *evidence.Note // what P1 decided: countersigned ROD, NDN or RTR
	ret      *evidence.Note

	// As P_i, i < n.
	reports map[string]bool // digests of reports taken from the next agent

	// As P1.
	warnAt  time.Time
	warned  bool
	outcome []*evidence.Note // what P1 committed to; the first note is ROD, NDN, REJ or RTR
	settled time.Time        // when P1 committed

	expire time.Time // T plus the grace period: the agent stops trying
	closed bool
}

func (h *cemHop) deadline() time.Time { return h.cop.Record.Deadline }
func (h *cemHop) span() time.Duration { return h.deadline().Sub(h.cop.Record.Time) }

// NewCEMAgent checks the configuration.
func NewCEMAgent(cfg CEMAgentConfig) (*CEMAgent, error) {
	if cfg.Identity == nil || strings.Contains(cfg.Identity.Name, "@") {
		return nil, fmt.Errorf("protocol: cem agent: needs an agent identity")
	}
	if cfg.Rand == nil {
		return nil, fmt.Errorf("protocol: cem agent %s: no randomness", cfg.Identity.Name)
	}
	trust, err := newTrust(append(slices.Clone(cfg.Trust), cfg.Identity.Verifier))
	if err != nil {
		return nil, fmt.Errorf("protocol: cem agent %s: %w", cfg.Identity.Name, err)
	}
	for addr, acct := range cfg.Accounts {
		if _, err := evidence.KeyName(addr); err != nil {
			return nil, fmt.Errorf("protocol: cem agent %s: %w", cfg.Identity.Name, err)
		}
		if acct.Key != "" {
			k, err := evidence.NewKeys(acct.Key)
			if err != nil || !k.Has(mustCEMKeyName(addr)) {
				return nil, fmt.Errorf("protocol: cem agent %s: the key of %s is not a key named for that address", cfg.Identity.Name, addr)
			}
		}
	}
	if cfg.Seen == nil {
		cfg.Seen = NewCEMSeen()
	}
	cfg.Timing = cfg.Timing.orDefault()
	return &CEMAgent{cfg: cfg, me: cfg.Identity.Name, trust: trust, hops: map[evidence.Label]*cemHop{},
		keyNotes: map[string]*evidence.Note{}, nonces: map[string]evidence.Label{}}, nil
}

func mustCEMKeyName(addr string) string {
	n, _ := evidence.KeyName(addr)
	return n
}

func (a *CEMAgent) Name() string              { return a.me }
func (a *CEMAgent) Start(now time.Time) []Msg { return nil }

func (a *CEMAgent) Receive(now time.Time, m Msg) []Msg {
	p, step, ok := cemSplitStep(m.Step)
	if !ok {
		return nil
	}
	switch step {
	case cemSubmit:
		return a.submitted(now, p, m)
	case cemRelay:
		return a.relayed(now, p, m)
	case cemTaken:
		a.taken(p, m)
	case cemAccept:
		return a.accepted(now, p, m)
	case cemRefuse:
		return a.refused(now, p, m)
	case cemReport:
		return a.reported(now, p, m)
	case cemDecision:
		return a.decided(now, p, m)
	case cemRetract:
		return a.retracted(now, p, m)
	case cemFetch:
		if l, ok := cemLabel(m); ok {
			if h := a.hops[l]; h != nil && h.p == p && h.ret != nil {
				a.out.kick("release "+l.String(), now)
			}
		}
	case cemAckStep:
		a.out.ack(cemField(m, "ack"))
	}
	return nil
}

// route says whether the agent delivers to rcpt itself (it is Pn) or relays to the next agent.
func (a *CEMAgent) route(rcpt string) (local bool, next string, ok bool) {
	_, domain, _ := strings.Cut(rcpt, "@")
	if n, routed := a.cfg.Routes[domain]; routed && n != a.me {
		return false, n, true
	}
	if _, user := a.cfg.Accounts[rcpt]; user {
		return true, "", true
	}
	return false, "", false
}

func (a *CEMAgent) sign(r *evidence.Record) *evidence.Note {
	n, err := cemSign(a.cfg.Identity, r)
	if err != nil {
		return nil
	}
	return n
}

// submitted: seed 001 §4.3 steps 1-2. "If P1 agrees with the delivery deadline, P1 issues the
// certificate of posting with a unique label L."
func (a *CEMAgent) submitted(now time.Time, p evidence.Protocol, m Msg) []Msg {
	sender, rcpt, dl, nonce := cemField(m, "sender"), cemField(m, "recipient"), cemField(m, "deadline"), cemField(m, "nonce")
	msg := m.Data["message"]
	acct, ok := a.cfg.Accounts[sender]
	if !ok || nonce == "" || !cemAuthOK(acct.Secret, m.Data["auth"], "submit", string(p), sender, rcpt, dl, evidence.Sum(msg).String(), nonce) {
		return nil
	}
	if l, ok := a.nonces[nonce]; ok {
		// A resent its submission: the same COP again.
		if h := a.hops[l]; h.p == p && h.cop.Record.Content == evidence.Sum(msg) {
			return []Msg{a.postedMsg(h)}
		}
		return nil
	}
	if a.cfg.Seen.has("nonce " + nonce) {
		return nil // a submission replayed from another exchange
	}
	t, err := evidence.ParseTime(dl)
	if err != nil || !t.After(now) {
		return nil
	}
	if _, err := evidence.KeyName(rcpt); err != nil {
		return nil
	}
	local, next, ok := a.route(rcpt)
	if !ok {
		return nil
	}
	var l evidence.Label
	for {
		if l, err = evidence.NewLabel(a.cfg.Rand); err != nil {
			return nil
		}
		if !a.cfg.Seen.HasLabel(l) {
			break
		}
	}
	cop := a.sign(&evidence.Record{Type: evidence.COP, Label: l, Protocol: p, Agent: a.me, Sender: sender,
		Recipient: rcpt, Content: evidence.Sum(msg), Deadline: t, Time: now})
	if cop == nil {
		return nil
	}
	h := &cemHop{label: l, p: p, cop: cop, msg: bytes.Clone(msg), first: true, last: local, next: next,
		reports: map[string]bool{}, expire: t.Add(a.cfg.Timing.Grace)}
	h.warnAt = cop.Record.Time.Add(h.span() / 2)
	a.add(h)
	a.cfg.Seen.add("nonce " + nonce)
	a.nonces[nonce] = l
	return append([]Msg{a.postedMsg(h)}, a.forward(now, h)...)
}

func (a *CEMAgent) add(h *cemHop) {
	a.hops[h.label] = h
	a.order = append(a.order, h.label)
	a.cfg.Seen.addLabel(h.label)
}

func (a *CEMAgent) postedMsg(h *cemHop) Msg {
	return Msg{From: a.me, To: h.cop.Record.Sender, Step: cemStep(h.p, cemPosted), Notes: cemRaw(h.cop)}
}

// forward starts the next phase: relay (seed 001 §4.3 step 3) or delivery (step 5).
func (a *CEMAgent) forward(now time.Time, h *cemHop) []Msg {
	if h.last {
		return a.notify(now, h)
	}
	// seed 001 §4.3 step 3, Pi -> Pi+1: B, L, M, T — the COP carries B, L, H(M) and T under
	// P1's signature, the ACK chain shows how the item came here. "Pi could resend this message
	// until it has received an acknowledgement from Pi+1."
	h.relayBy = now.Add(h.span() / 4)
	if h.relayBy.After(h.deadline()) {
		h.relayBy = h.deadline()
	}
	m := Msg{From: a.me, To: h.next, Step: cemStep(h.p, cemRelay), Notes: cemRaw(append([]*evidence.Note{h.cop}, h.chain...)...),
		Data: map[string][]byte{"message": bytes.Clone(h.msg)}}
	return a.out.send(now, a.cfg.Timing, "relay "+h.label.String(), m, h.relayBy)
}

// relayed: seed 001 §4.3 steps 3-4 at P(i+1).
func (a *CEMAgent) relayed(now time.Time, p evidence.Protocol, m Msg) []Msg {
	notes, err := cemNotes(m)
	if err != nil || len(notes) == 0 {
		return nil
	}
	cop := notes[0]
	l := cop.Record.Label
	if cop.Record.Type != evidence.COP || cop.Record.Protocol != p {
		return nil
	}
	for _, n := range notes[1:] {
		if n.Record.Type != evidence.ACK {
			return nil
		}
	}
	if h := a.hops[l]; h != nil {
		// The previous agent missed our ACK: the same one again.
		if !h.first && bytes.Equal(h.cop.Bytes(), cop.Bytes()) && h.prev == m.From {
			return []Msg{a.takenMsg(h)}
		}
		return nil
	}
	if a.cfg.Seen.HasLabel(l) || cop.Record.Agent == a.me {
		return nil // a label of another exchange
	}
	msg := m.Data["message"]
	v, cs := cemAssess(cemBundle(l, a.trust, notes, msg), a.trust, p)
	if !v.Valid || cs == nil || len(cs.acks) != len(notes)-1 || cs.pn() != m.From || slices.Contains(cs.chain, a.me) {
		return nil
	}
	local, next, ok := a.route(cop.Record.Recipient)
	if !ok || slices.Contains(cs.chain, next) {
		return nil
	}
	ack := a.sign(&evidence.Record{Type: evidence.ACK, Label: l, Protocol: p, Agent: a.me, From: m.From,
		Recipient: cop.Record.Recipient, Content: cop.Record.Content, Time: now})
	if ack == nil {
		return nil
	}
	h := &cemHop{label: l, p: p, cop: cop, msg: bytes.Clone(msg), last: local, prev: m.From, next: next,
		chain: append(slices.Clone(notes[1:]), ack), reports: map[string]bool{},
		expire: cop.Record.Deadline.Add(a.cfg.Timing.Grace)}
	a.add(h)
	return append([]Msg{a.takenMsg(h)}, a.forward(now, h)...)
}

// takenMsg: seed 001 §4.3 step 4, Pi+1 -> Pi: L, ACK_i.
func (a *CEMAgent) takenMsg(h *cemHop) Msg {
	return Msg{From: a.me, To: h.prev, Step: cemStep(h.p, cemTaken), Notes: cemRaw(h.chain[len(h.chain)-1])}
}

func (a *CEMAgent) taken(p evidence.Protocol, m Msg) {
	notes, err := cemNotes(m)
	if err != nil || len(notes) != 1 {
		return
	}
	n, r := notes[0], notes[0].Record
	h := a.hops[r.Label]
	if h == nil || h.last || h.ackNext != nil || r.Type != evidence.ACK || r.Protocol != p || h.p != p ||
		r.Agent != h.next || r.From != a.me || r.Recipient != h.cop.Record.Recipient ||
		r.Content != h.cop.Record.Content || n.Verify(a.trust.keys) != nil {
		return
	}
	h.ackNext = n
	a.out.drop("relay " + h.label.String())
}

// notify: seed 001 §4.3-4.5 step 5 at Pn. Pn binds B's key first (KEY), so that B's COD, made
// after this, verifies under a binding in force.
func (a *CEMAgent) notify(now time.Time, h *cemHop) []Msg {
	c := h.cop.Record
	if acct := a.cfg.Accounts[c.Recipient]; acct.Key != "" {
		if a.keyNotes[c.Recipient] == nil {
			a.keyNotes[c.Recipient] = a.sign(&evidence.Record{Type: evidence.KEY, Agent: a.me, Subject: c.Recipient, Key: acct.Key, Time: now})
		}
		h.key = a.keyNotes[c.Recipient]
	}
	h.ntf = a.sign(&evidence.Record{Type: evidence.NTF, Label: h.label, Protocol: h.p, Agent: a.me, Recipient: c.Recipient,
		Content: c.Content, Commitment: evidence.Commitment(h.label, h.msg), Deadline: c.Deadline, Time: now})
	// "If Pn does not receive COD within its timeout period, it will inform A": Pn's period ends
	// a quarter of the span before T, so that its report still reaches P1 in time.
	h.cutoff = h.deadline().Add(-h.span() / 4)
	if h.ntf == nil || !now.Before(h.cutoff) {
		return nil
	}
	m := Msg{From: a.me, To: c.Recipient, Step: cemStep(h.p, cemNotify), Notes: cemRaw(h.ntf)}
	if h.p == evidence.CEM {
		m.Data = map[string][]byte{"message": bytes.Clone(h.msg)} // cem: 5. Pn -> B: L, M
	}
	return a.out.send(now, a.cfg.Timing, "notify "+h.label.String(), m, h.cutoff)
}

// accepted: seed 001 §4.3-4.5 step 6, B -> Pn: L, COD — or, for a recipient without a key, its
// authenticated acceptance, which Pn attests with DLV.
func (a *CEMAgent) accepted(now time.Time, p evidence.Protocol, m Msg) []Msg {
	l, ok := cemLabel(m)
	h := a.hops[l]
	if !ok || h == nil || !h.last || h.p != p || h.ntf == nil {
		return nil
	}
	c := h.cop.Record
	acct := a.cfg.Accounts[c.Recipient]
	client := cemField(m, "client")
	if !cemAuthOK(acct.Secret, m.Data["auth"], "accept", string(p), c.Recipient, l.String(), client) {
		return nil
	}
	var acc *evidence.Note
	if acct.Key != "" {
		notes, err := cemNotes(m)
		if err != nil || len(notes) != 1 {
			return nil
		}
		cod, r := notes[0], notes[0].Record
		keys, _ := evidence.NewKeys(acct.Key)
		if r.Type != CODType(p) || r.Label != l || r.Agent != a.me || r.Recipient != c.Recipient ||
			p == evidence.CEM && r.Content != c.Content || p == evidence.CEMIP && r.Commitment != h.ntf.Record.Commitment ||
			r.Time.After(now) || h.key == nil || r.Time.Before(h.key.Record.Time) || cod.Verify(keys) != nil {
			return nil
		}
		acc = cod
	} else if len(m.Notes) != 0 {
		return nil
	}
	return a.answered(now, h, m, acc, client)
}

// refused: B refuses the item; Pn attests it with REJ.
func (a *CEMAgent) refused(now time.Time, p evidence.Protocol, m Msg) []Msg {
	l, ok := cemLabel(m)
	h := a.hops[l]
	if !ok || h == nil || !h.last || h.p != p || h.ntf == nil {
		return nil
	}
	rcpt := h.cop.Record.Recipient
	if !cemAuthOK(a.cfg.Accounts[rcpt].Secret, m.Data["auth"], "refuse", string(p), rcpt, l.String()) {
		return nil
	}
	return a.answered(now, h, m, nil, "")
}

// answered takes B's checked acceptance (acc, or a DLV to make when acc is nil and client set)
// or refusal (client empty), once.
func (a *CEMAgent) answered(now time.Time, h *cemHop, m Msg, acc *evidence.Note, client string) []Msg {
	c := h.cop.Record
	d := cemDigest(m)
	if h.answer != "" {
		if h.answer == d {
			return []Msg{cemAckFor(a.me, h.p, h.label, m)}
		}
		return nil
	}
	refusal := acc == nil && client == ""
	if h.local != nil || !now.Before(h.cutoff) {
		// Too late: Pn refuses an acceptance at or after its cut-off (and so at or after T),
		// and tells B the item will not be released.
		var out []Msg
		if h.local == nil {
			out = a.expireAt(now, h)
		}
		return append(out, a.noticeB(now, h, h.local)...)
	}
	var first *evidence.Note
	switch {
	case refusal:
		first = a.sign(&evidence.Record{Type: evidence.REJ, Label: h.label, Protocol: h.p, Agent: a.me,
			Recipient: c.Recipient, Reason: "refused", Time: now})
	case acc == nil:
		acc = a.sign(&evidence.Record{Type: evidence.DLV, Label: h.label, Protocol: h.p, Agent: a.me,
			Recipient: c.Recipient, Content: c.Content, Method: "password", Client: client, Time: now})
		if acc == nil {
			return nil // not a client description a record can hold
		}
	}
	if !refusal {
		// seed 001 §4.3 step 8: ROD_n = S_Pn(Pn, L), to be countersigned by P1.
		first = a.sign(&evidence.Record{Type: evidence.ROD, Label: h.label, Protocol: h.p, Agent: a.me,
			Origin: c.Agent, Recipient: c.Recipient, Content: c.Content, Time: now})
	}
	if first == nil {
		return nil
	}
	h.answer = d
	a.out.drop("notify " + h.label.String())
	out := []Msg{cemAckFor(a.me, h.p, h.label, m)}
	var report []*evidence.Note
	if refusal {
		h.local = first
		report = append([]*evidence.Note{first}, h.chain...)
	} else {
		h.accepted, h.acceptAt, h.client, h.rod = acc, now, client, first
		report = append([]*evidence.Note{first, acc, h.key, h.ntf}, h.chain...)
	}
	return append(out, a.report(now, h, slices.DeleteFunc(report, func(n *evidence.Note) bool { return n == nil }))...)
}

// expireAt: Pn's timeout for B's answer passed; it informs P1 (NDN, reason not-accepted).
func (a *CEMAgent) expireAt(now time.Time, h *cemHop) []Msg {
	ndn := a.ndn(now, h, "not-accepted")
	if ndn == nil {
		return nil
	}
	h.local = ndn
	a.out.drop("notify " + h.label.String())
	return a.report(now, h, append([]*evidence.Note{ndn}, h.chain...))
}

func (a *CEMAgent) ndn(now time.Time, h *cemHop, reason string) *evidence.Note {
	c := h.cop.Record
	return a.sign(&evidence.Record{Type: evidence.NDN, Label: h.label, Protocol: h.p, Agent: a.me, Sender: c.Sender,
		Recipient: c.Recipient, Content: c.Content, Deadline: c.Deadline, Reason: reason, Time: now})
}

// report sends an outcome towards P1, hop by hop (seed 001 §4.3 step 8), or, at P1, commits it.
func (a *CEMAgent) report(now time.Time, h *cemHop, notes []*evidence.Note) []Msg {
	if h.first {
		return a.commit(now, h, notes)
	}
	m := Msg{From: a.me, To: h.prev, Step: cemStep(h.p, cemReport), Notes: cemRaw(notes...)}
	return a.out.send(now, a.cfg.Timing, "report "+h.label.String(), m, h.expire)
}

// reported: a report from the next agent. Each agent checks it as P1 and A will before it
// acknowledges it, so it never holds a report it cannot pass on.
func (a *CEMAgent) reported(now time.Time, p evidence.Protocol, m Msg) []Msg {
	notes, err := cemNotes(m)
	if err != nil || len(notes) == 0 {
		return nil
	}
	r := notes[0].Record
	h := a.hops[r.Label]
	if h == nil || h.last || h.p != p || r.Label != h.label {
		return nil
	}
	d := cemDigest(m)
	if h.reports[d] {
		return []Msg{cemAckFor(a.me, p, h.label, m)}
	}
	var support []evidence.Type
	switch r.Type {
	case evidence.ROD:
		support = []evidence.Type{evidence.ACK, evidence.NTF, evidence.KEY, CODType(p), evidence.DLV}
	case evidence.NDN, evidence.REJ:
		support = []evidence.Type{evidence.ACK}
	default:
		return nil
	}
	for _, n := range notes[1:] {
		if !slices.Contains(support, n.Record.Type) {
			return nil
		}
	}
	rest := append([]*evidence.Note{h.cop}, notes[1:]...)
	if r.Type != evidence.ROD {
		rest = append(rest, notes[0])
	}
	v, cs := cemAssess(cemBundle(h.label, a.trust, rest, h.msg), a.trust, p)
	if !v.Valid || cs == nil {
		return nil
	}
	if i := slices.Index(cs.chain, a.me); i < 0 || i+1 >= len(cs.chain) || cs.chain[i+1] != h.next {
		return nil
	}
	switch r.Type {
	case evidence.ROD:
		acc := cs.accepted()
		if acc == nil || r.Protocol != p || r.Agent != cs.pn() || r.Origin != h.cop.Record.Agent ||
			r.Recipient != h.cop.Record.Recipient || r.Content != h.cop.Record.Content || acc.Time.After(r.Time) ||
			!a.trust.signedBy(notes[0], r.Agent) {
			return nil
		}
	case evidence.NDN:
		if cs.ndn != r {
			return nil
		}
	case evidence.REJ:
		if cs.rej != r {
			return nil
		}
	}
	h.reports[d] = true
	out := []Msg{cemAckFor(a.me, p, h.label, m)}
	if h.first {
		return append(out, a.commit(now, h, notes)...)
	}
	return append(out, a.report(now, h, notes)...)
}

// commit is P1's decision (seed 001 §4.3 steps 8-9): the first outcome to reach it stands. A
// report of delivery is countersigned only before T; P1 then gives A the receipt and tells Pn to
// release M. A report that comes too late, or after another outcome, is answered with that one.
func (a *CEMAgent) commit(now time.Time, h *cemHop, notes []*evidence.Note) []Msg {
	first := notes[0]
	isROD := first.Record.Type == evidence.ROD
	if len(h.outcome) > 0 {
		if isROD && h.outcome[0].Record.Type != evidence.ROD {
			return a.tellPn(now, h, first.Record.Agent, h.outcome[0])
		}
		return nil
	}
	if !isROD {
		return a.settle(now, h, notes)
	}
	if !now.Before(h.deadline()) {
		ndn := a.ndn(now, h, "deadline")
		if ndn == nil {
			return nil
		}
		out := a.settle(now, h, a.withOwnChain(h, ndn))
		return append(out, a.tellPn(now, h, first.Record.Agent, ndn)...)
	}
	rod := first
	if first.Record.Agent != a.me {
		var err error
		if rod, err = evidence.Countersign(first, a.cfg.Identity.Signer); err != nil {
			return nil
		}
	}
	full := append([]*evidence.Note{rod}, notes[1:]...)
	v, _ := cemAssess(cemBundle(h.label, a.trust, append([]*evidence.Note{h.cop}, full...), h.msg), a.trust, h.p)
	if !v.Valid || v.Outcome != evidence.OutcomeDelivered {
		return nil
	}
	out := a.settle(now, h, full)
	return append(out, a.tellPn(now, h, rod.Record.Agent, rod)...)
}

func (a *CEMAgent) withOwnChain(h *cemHop, n *evidence.Note) []*evidence.Note {
	if h.ackNext != nil {
		return []*evidence.Note{n, h.ackNext}
	}
	return []*evidence.Note{n}
}

// settle records P1's outcome and gives it to A (seed 001 §4.3 step 9).
func (a *CEMAgent) settle(now time.Time, h *cemHop, notes []*evidence.Note) []Msg {
	h.outcome, h.settled = slices.Clone(notes), now
	a.out.drop("warn " + h.label.String())
	m := Msg{From: a.me, To: h.cop.Record.Sender, Step: cemStep(h.p, cemReceipt), Notes: cemRaw(notes...)}
	return a.out.send(now, a.cfg.Timing, "receipt "+h.label.String(), m, h.expire)
}

// tellPn gives Pn P1's decision on its report: the countersigned ROD, or what stands instead.
func (a *CEMAgent) tellPn(now time.Time, h *cemHop, pn string, n *evidence.Note) []Msg {
	if pn == a.me {
		if h.decision != nil || h.rod == nil {
			return nil
		}
		h.decision = n
		if n.Record.Type == evidence.ROD {
			return a.release(now, h)
		}
		return a.noticeB(now, h, n)
	}
	m := Msg{From: a.me, To: pn, Step: cemStep(h.p, cemDecision), Notes: cemRaw(n)}
	return a.out.send(now, a.cfg.Timing, "decision "+h.label.String(), m, h.expire)
}

// decided: P1's decision at Pn.
func (a *CEMAgent) decided(now time.Time, p evidence.Protocol, m Msg) []Msg {
	notes, err := cemNotes(m)
	if err != nil || len(notes) != 1 {
		return nil
	}
	n, r := notes[0], notes[0].Record
	h := a.hops[r.Label]
	if h == nil || h.first || !h.last || h.p != p || h.rod == nil {
		return nil
	}
	if h.decision != nil {
		if bytes.Equal(h.decision.Bytes(), n.Bytes()) {
			return []Msg{cemAckFor(a.me, p, h.label, m)}
		}
		return nil
	}
	switch r.Type {
	case evidence.ROD:
		mine, _ := h.rod.Record.Encode()
		theirs, _ := r.Encode()
		if !bytes.Equal(mine, theirs) || n.Verify(a.trust.keys) != nil {
			return nil
		}
		h.decision = n
		return append([]Msg{cemAckFor(a.me, p, h.label, m)}, a.release(now, h)...)
	case evidence.NDN, evidence.RTR:
		v, cs := cemAssess(cemBundle(h.label, a.trust, append([]*evidence.Note{h.cop, n}, h.chain...), h.msg), a.trust, p)
		if !v.Valid || cs == nil || cs.ndn != r && cs.rtr != r {
			return nil
		}
		h.decision = n
		return append([]Msg{cemAckFor(a.me, p, h.label, m)}, a.noticeB(now, h, n)...)
	}
	return nil
}

// release: seed 001 §4.4-4.5 step 7, B <-> Pn: L, M — only now that P1 countersigned the
// report. RET records that Pn released the content. Under cem, B has held M since step 5.
func (a *CEMAgent) release(now time.Time, h *cemHop) []Msg {
	if h.p == evidence.CEM || h.ret != nil {
		return nil
	}
	client := h.client
	if client == "" {
		client = "recipient key"
	}
	c := h.cop.Record
	h.ret = a.sign(&evidence.Record{Type: evidence.RET, Label: h.label, Agent: a.me, Recipient: c.Recipient,
		Content: c.Content, Client: client, Time: now})
	if h.ret == nil {
		return nil
	}
	m := Msg{From: a.me, To: c.Recipient, Step: cemStep(h.p, cemRelease), Notes: cemRaw(h.ret),
		Data: map[string][]byte{"message": bytes.Clone(h.msg)}}
	return a.out.send(now, a.cfg.Timing, "release "+h.label.String(), m, h.expire)
}

// noticeB tells B that the item it answered for will not be released.
func (a *CEMAgent) noticeB(now time.Time, h *cemHop, n *evidence.Note) []Msg {
	if n == nil {
		return nil
	}
	m := Msg{From: a.me, To: h.cop.Record.Recipient, Step: cemStep(h.p, cemNotice), Notes: cemRaw(n)}
	return a.out.send(now, a.cfg.Timing, "notice "+h.label.String(), m, h.expire)
}

// retracted: A withdraws the item (CertifiedMail.com, seed 004). It stands only if P1 has not
// decided yet; otherwise A is sent the outcome again.
func (a *CEMAgent) retracted(now time.Time, p evidence.Protocol, m Msg) []Msg {
	l, ok := cemLabel(m)
	h := a.hops[l]
	if !ok || h == nil || !h.first || h.p != p {
		return nil
	}
	sender := h.cop.Record.Sender
	if cemField(m, "sender") != sender || !cemAuthOK(a.cfg.Accounts[sender].Secret, m.Data["auth"], "retract", string(p), sender, l.String()) {
		return nil
	}
	if len(h.outcome) > 0 {
		a.out.kick("receipt "+l.String(), now)
		return nil
	}
	c := h.cop.Record
	rtr := a.sign(&evidence.Record{Type: evidence.RTR, Label: l, Protocol: p, Agent: a.me, Sender: sender,
		Recipient: c.Recipient, Content: c.Content, Time: now})
	if rtr == nil {
		return nil
	}
	a.out.drop("notify " + l.String())
	return a.settle(now, h, a.withOwnChain(h, rtr))
}

func (a *CEMAgent) Tick(now time.Time) []Msg {
	var out []Msg
	for _, l := range a.order {
		h := a.hops[l]
		if h.closed {
			continue
		}
		if !now.Before(h.expire) {
			h.closed = true
			continue
		}
		c := h.cop.Record
		if h.first && len(h.outcome) == 0 {
			if !h.warned && !now.Before(h.warnAt) && now.Before(c.Deadline) {
				// P1 may warn before T (PROTOCOLS.md §1; PEC's preavviso at half the time).
				if wrn := a.sign(&evidence.Record{Type: evidence.WRN, Label: l, Protocol: h.p, Agent: a.me,
					Sender: c.Sender, Recipient: c.Recipient, Deadline: c.Deadline, Time: now}); wrn != nil {
					h.warned = true
					m := Msg{From: a.me, To: c.Sender, Step: cemStep(h.p, cemReceipt), Notes: cemRaw(wrn)}
					out = append(out, a.out.send(now, a.cfg.Timing, "warn "+l.String(), m, h.expire)...)
				}
			}
			if !now.Before(c.Deadline) {
				// seed 001 §4.3 step 8: "If P1 does not receive the report of delivery before
				// the deadline T, it will inform A that the mail could not be delivered."
				if ndn := a.ndn(now, h, "deadline"); ndn != nil {
					out = append(out, a.settle(now, h, a.withOwnChain(h, ndn))...)
				}
			}
		}
		if !h.last && h.ackNext == nil && h.relayNDN == nil && !h.relayBy.IsZero() && !now.Before(h.relayBy) &&
			(!h.first || len(h.outcome) == 0) {
			// seed 001 §4.3 step 4: "If Pi does not receive this acknowledgement within its
			// timeout period, it will inform A that the mail could not be delivered."
			if ndn := a.ndn(now, h, "relay"); ndn != nil {
				h.relayNDN = ndn
				a.out.drop("relay " + l.String())
				out = append(out, a.report(now, h, append([]*evidence.Note{ndn}, h.chain...))...)
			}
		}
		if h.last && h.ntf != nil && h.answer == "" && h.local == nil && !now.Before(h.cutoff) {
			out = append(out, a.expireAt(now, h)...)
		}
	}
	return append(out, a.out.due(now, a.cfg.Timing)...)
}

func (a *CEMAgent) Wake() (time.Time, bool) {
	at, _ := a.out.wake()
	for _, l := range a.order {
		h := a.hops[l]
		if h.closed {
			continue
		}
		if h.first && len(h.outcome) == 0 {
			if !h.warned {
				at = cemEarliest(at, h.warnAt)
			}
			at = cemEarliest(at, h.deadline())
		}
		if !h.last && h.ackNext == nil && h.relayNDN == nil && !h.relayBy.IsZero() && (!h.first || len(h.outcome) == 0) {
			at = cemEarliest(at, h.relayBy)
		}
		if h.last && h.ntf != nil && h.answer == "" && h.local == nil {
			at = cemEarliest(at, h.cutoff)
		}
		if !a.settled(h) {
			at = cemEarliest(at, h.expire)
		}
	}
	return at, !at.IsZero()
}

// settled reports whether the agent's part in an exchange is over, but for resending.
func (a *CEMAgent) settled(h *cemHop) bool {
	switch {
	case h.closed:
		return true
	case h.first:
		return len(h.outcome) > 0
	case h.last:
		return h.local != nil || h.decision != nil
	}
	return len(h.reports) > 0 || h.relayNDN != nil
}

// Done reports whether every exchange the agent took part in is settled and acknowledged, or
// given up after T plus the grace period.
func (a *CEMAgent) Done() bool {
	for _, h := range a.hops {
		if !h.closed && (!a.settled(h) || a.pending(h.label)) {
			return false
		}
	}
	return true
}

func (a *CEMAgent) pending(l evidence.Label) bool {
	s := " " + l.String()
	return slices.ContainsFunc(a.out.list, func(e *cemOut) bool { return strings.HasSuffix(e.kind, s) })
}

// Labels lists the labels of the exchanges the agent takes part in, in the order it took them.
func (a *CEMAgent) Labels() []evidence.Label { return slices.Clone(a.order) }

// CEMAgentView is what an agent holds about one exchange, for tests and operators.
type CEMAgentView struct {
	First, Last bool
	Outcome     []*evidence.Note // P1: what it committed to and gave A (first: ROD, NDN, REJ or RTR)
	DecidedAt   time.Time        // P1: when it committed
	Accepted    *evidence.Note   // Pn: B's COD or its own DLV
	AcceptedAt  time.Time
	Decision    *evidence.Note // Pn: P1's decision on its report
	Released    bool           // Pn: M may be released to B (P1 countersigned), or cem (sent at step 5)
	Local       *evidence.Note // Pn: its REJ or not-accepted NDN
}

// View returns the agent's state for label l.
func (a *CEMAgent) View(l evidence.Label) (CEMAgentView, bool) {
	h := a.hops[l]
	if h == nil {
		return CEMAgentView{}, false
	}
	return CEMAgentView{First: h.first, Last: h.last, Outcome: slices.Clone(h.outcome), DecidedAt: h.settled, Accepted: h.accepted,
		AcceptedAt: h.acceptAt, Decision: h.decision, Released: h.ret != nil, Local: h.local}, true
}
