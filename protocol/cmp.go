package protocol

import (
	"bytes"
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"maps"
	"slices"
	"strings"
	"time"

	"certmail/evidence"
)

// CMP1 and CMP2 (PROTOCOLS.md §2; Deng, Gong, Lazar, Wang, "Practical protocols for certified
// electronic mail", seed 002). The seed gives only the abstract: two protocols with an on-line
// TTP that provide non-repudiation of origin, non-repudiation of delivery and fairness, CMP1
// without and CMP2 with confidentiality of the content. certmail reconstructs them as follows,
// with T the agent acting as TTP and L a fresh label chosen by A:
//
//	CMP1 (T sees m):
//	  NRO = S_A(CMP-NRO: L, A, B, H(m))
//	  1. A -> B : L, T, NRO, PKE_T(L, A, B, m, NRO)
//	  2. B -> T : L, REQ = S_B(CMP-REQ: L, T, A, B, H(m)), PKE_T(…)      B commits before seeing m
//	  3. T -> B : m, NRO, NRD                                             after checking NRO, H(m)
//	  4. T -> A : NRD = S_T(CMP-NRD: L, T, A, B, H(m), H(REQ), time), REQ
//
//	CMP2 (T never sees m nor c):
//	  c = E_K(m);  NRO = S_A(CMP2-NRO: L, A, B, H(m), H(c))
//	  1. A -> B : L, T, c, NRO, PKE_T(L, A, B, K, H(c), NRO)
//	  2. B -> T : L, REQ = S_B(CMP2-REQ: L, T, A, B, H(c)), PKE_T(…)
//	  3. T -> B : K, NRO, NRD                                             after checking H(c), NRO
//	  4. T -> A : NRD = S_T(CMP2-NRD: L, T, A, B, H(c), H(K), H(REQ), time), REQ
//
// PKE_T is SealBox to T's box key with the info "certmail cmp1 box" or "certmail cmp2 box", over
// packFields(L, A, B, X, NRO) where X is m (CMP1) or packFields(K, H(c)) with H(c) as its 32
// bytes (CMP2), L is the label's text and NRO the note's bytes.
//
// Steps 3 and 4 happen together or not at all: T's acceptance of a request is one transition of
// its durable state that records the release and the NRD at once, and both messages are derived
// from that record and resent until acknowledged, so a crash between them loses nothing. T serves
// a label once: a replayed or second request for it is refused, so T never releases twice nor
// signs a second NRD.
//
// Three additions to the abstract, each so that an honest run survives a hostile network:
// step 1 carries the NRO in clear as well as inside the box, so that B can check what it commits
// to (the NRO names only hashes, which step 1 shows anyway); T adds its NRD to step 3, so that B
// can tell a key A chose badly (it matches the H(K) that T signed) from one changed in transit;
// and every step is acknowledged by the digest of the message it answers. In CMP2, A may choose
// key=linked (PROTOCOLS.md "Common rules"): then A's bundle needs only M, and the judge
// recomputes K and c from M and L.
//
// The seed claims no deadline and none is implemented: A's run ends when the NRD arrives, and an
// exchange B never asks for stays open (A holds its NRO and knows B never received m).

// TTPTiming is the clockwork of the on-line TTP protocols (CMP, SR, AGHP): how unacknowledged
// messages are resent.
type TTPTiming struct {
	Retry    time.Duration // first resend of an unacknowledged message
	RetryMax time.Duration // cap of the exponential backoff
}

// DefaultTTPTiming is the timing the agent runs with unless configured otherwise.
func DefaultTTPTiming() TTPTiming { return TTPTiming{Retry: time.Second, RetryMax: time.Minute} }

func (t TTPTiming) orDefault() TTPTiming {
	d := DefaultTTPTiming()
	if t.Retry <= 0 {
		t.Retry = d.Retry
	}
	if t.RetryMax < t.Retry {
		t.RetryMax = max(d.RetryMax, t.Retry)
	}
	return t
}

// BoundKey is a user's signing key together with the KEY record in which an agent bound it to
// the user's address. Parties hand the binding on with the tokens the key signs, so that every
// bundle carries what an arbiter needs to trust the user's signature.
type BoundKey struct {
	ID      *Identity      // ID.Name is the user's address
	Binding *evidence.Note // KEY record signed by an agent
}

// BindKey has agent sign a KEY record binding user's key to user's address from at on.
func BindKey(agent, user *Identity, at time.Time) (BoundKey, error) {
	n, err := evidence.Sign(&evidence.Record{Type: evidence.KEY, Agent: agent.Name, Subject: user.Name,
		Key: user.Verifier, Time: evidence.CanonicalTime(at)}, agent.Signer)
	if err != nil {
		return BoundKey{}, fmt.Errorf("protocol: bind key of %s: %w", user.Name, err)
	}
	return BoundKey{ID: user, Binding: n}, nil
}

func (k BoundKey) check() error {
	if k.ID == nil || k.Binding == nil {
		return errors.New("protocol: user key: missing identity or KEY record")
	}
	r := k.Binding.Record
	if r.Type != evidence.KEY || r.Subject != k.ID.Name || r.Key != k.ID.Verifier {
		return fmt.Errorf("protocol: user key: the KEY record does not bind %s to %s", evidence.KeyID(k.ID.Verifier), k.ID.Name)
	}
	return nil
}

func (t *trust) hasAgent(name string) bool { _, ok := t.byName[name]; return ok }

// userNote checks that n is signed by the key that binding, a KEY record signed by a trusted
// agent, binds to addr, and that the binding was in force when n was made.
func (t *trust) userNote(n, binding *evidence.Note, addr string) error {
	if binding == nil || binding.Record.Type != evidence.KEY || binding.Record.Subject != addr {
		return fmt.Errorf("no KEY record for %s", addr)
	}
	if err := binding.Verify(t.keys); err != nil {
		return err
	}
	if !n.Record.Time.IsZero() && binding.Record.Time.After(n.Record.Time) {
		return fmt.Errorf("the key of %s was bound after %s signed", addr, n.Record.Type)
	}
	uk, err := evidence.NewKeys(binding.Record.Key)
	if err != nil {
		return err
	}
	if name, err := evidence.KeyName(addr); err != nil || !slices.Equal(n.Record.SignerNames(), []string{name}) {
		return fmt.Errorf("%s is not signed by %s", n.Record.Type, addr)
	}
	return n.Verify(uk)
}

// ttpDigest identifies a message for acknowledgement and refusal: SHA-256 over its step, notes
// and data, each length-prefixed. A message changed in transit has another digest, so an answer
// to it never settles the original.
func ttpDigest(m Msg) string {
	h := sha256.New()
	put := func(b []byte) {
		h.Write(binary.BigEndian.AppendUint64(nil, uint64(len(b))))
		h.Write(b)
	}
	put([]byte(m.Step))
	put(binary.BigEndian.AppendUint64(nil, uint64(len(m.Notes))))
	for _, n := range m.Notes {
		put(n)
	}
	for _, k := range slices.Sorted(maps.Keys(m.Data)) {
		put([]byte(k))
		put(m.Data[k])
	}
	return hex.EncodeToString(h.Sum(nil))
}

// ttpAnswer is a message that answers m (an ack or a refusal) by m's digest, under label l.
func ttpAnswer(me, step string, l evidence.Label, m Msg, extra ...string) Msg {
	a := Msg{From: me, To: m.From, Step: step,
		Data: map[string][]byte{"label": []byte(l.String()), "digest": []byte(ttpDigest(m))}}
	for i := 0; i+1 < len(extra); i += 2 {
		a.Data[extra[i]] = []byte(extra[i+1])
	}
	return a
}

func ttpLabel(m Msg) (evidence.Label, bool) {
	l, err := evidence.ParseLabel(string(m.Data["label"]))
	return l, err == nil
}

// ttpNotes parses a message's notes; one malformed note spoils the message.
func ttpNotes(m Msg) ([]*evidence.Note, bool) {
	out := make([]*evidence.Note, 0, len(m.Notes))
	for _, raw := range m.Notes {
		n, err := evidence.ParseNote(raw)
		if err != nil {
			return nil, false
		}
		out = append(out, n)
	}
	return out, true
}

// ttpNote returns the first note of type t (with subject when t is KEY and subject is given).
func ttpNote(notes []*evidence.Note, t evidence.Type, subject string) *evidence.Note {
	for _, n := range notes {
		if n.Record.Type == t && (subject == "" || n.Record.Subject == subject) {
			return n
		}
	}
	return nil
}

func ttpRaw(notes ...*evidence.Note) [][]byte {
	var out [][]byte
	for _, n := range notes {
		if n != nil {
			out = append(out, n.Bytes())
		}
	}
	return out
}

// ttpOutbox holds what a party resends, with exponential backoff, until it is acknowledged. It
// is part of the party's durable state: after a crash the resending goes on.
type ttpOutbox struct{ list []*ttpPending }

type ttpPending struct {
	key  string
	msg  Msg
	next time.Time
	wait time.Duration
}

// put queues m under key (unless something is queued under it already) and returns m to send
// now.
func (o *ttpOutbox) put(now time.Time, t TTPTiming, key string, m Msg) []Msg {
	if o.has(key) {
		return nil
	}
	o.list = append(o.list, &ttpPending{key: key, msg: m.Clone(), next: now.Add(t.Retry), wait: t.Retry})
	return []Msg{m}
}

func (o *ttpOutbox) has(key string) bool {
	return slices.ContainsFunc(o.list, func(p *ttpPending) bool { return p.key == key })
}

func (o *ttpOutbox) done(key string) {
	o.list = slices.DeleteFunc(o.list, func(p *ttpPending) bool { return p.key == key })
}

// doneIf settles the entry under key if digest names the message queued there.
func (o *ttpOutbox) doneIf(key, digest string) bool {
	for _, p := range o.list {
		if p.key == key && ttpDigest(p.msg) == digest {
			o.done(key)
			return true
		}
	}
	return false
}

// kick makes the entry under key due now (the peer asked again).
func (o *ttpOutbox) kick(key string, now time.Time) {
	for _, p := range o.list {
		if p.key == key {
			p.next = now
		}
	}
}

func (o *ttpOutbox) due(now time.Time, t TTPTiming) []Msg {
	var out []Msg
	for _, p := range o.list {
		if now.Before(p.next) {
			continue
		}
		out = append(out, p.msg.Clone())
		p.wait = min(2*p.wait, t.RetryMax)
		p.next = now.Add(p.wait)
	}
	return out
}

func (o *ttpOutbox) wake() (time.Time, bool) {
	var at time.Time
	for _, p := range o.list {
		at = ttpEarliest(at, p.next)
	}
	return at, !at.IsZero()
}

func (o *ttpOutbox) clone() ttpOutbox {
	c := ttpOutbox{}
	for _, p := range o.list {
		q := *p
		q.msg = p.msg.Clone()
		c.list = append(c.list, &q)
	}
	return c
}

// ttpEarliest returns the earlier of two times, a zero time meaning "none".
func ttpEarliest(a, b time.Time) time.Time {
	if a.IsZero() || !b.IsZero() && b.Before(a) {
		return b
	}
	return a
}

// ttpRank orders a bundle's notes the way a reader follows the exchange.
func ttpRank(t evidence.Type) int {
	order := []evidence.Type{evidence.KEY, evidence.CMPNRO, evidence.CMP2NRO, evidence.CMPREQ, evidence.CMP2REQ,
		evidence.CMPNRD, evidence.CMP2NRD, evidence.SRREQ, evidence.SRKEYRCPT, evidence.PUB, evidence.AGHPRECEIPT}
	if i := slices.Index(order, t); i >= 0 {
		return i
	}
	return len(order)
}

// ttpBundle assembles the bundle of label l: the notes (each once, in reading order), the
// verifier keys of every agent that signed one and of every user a KEY record binds, and the
// items.
func ttpBundle(l evidence.Label, trust *trust, notes []*evidence.Note, items map[string][]byte) *evidence.Bundle {
	b := trust.bundle(l, notes, ttpRank)
	for _, name := range slices.Sorted(maps.Keys(items)) {
		b.SetItem(name, items[name])
	}
	return b
}

// ttpAssess judges a bundle as an arbiter will, with the party's trusted agent keys pinned. A
// party takes new evidence only when the bundle holding it proves what it should.
func ttpAssess(b *evidence.Bundle, trust *trust) *evidence.Verdict {
	return Judge(b.Check(trust.keys))
}

// ttpWeigher is the bookkeeping the CMP, SR and AGHP judges share. A failed check either breaks
// the evidence (a token for another label, party, hash or protocol, a bad signature, an item
// that does not hash to what a token signs) or leaves it short of proving receipt (no receipt,
// a late publication, a mode without authentication of R). Judge reports any failed check as
// outcome invalid; the distinction decides what the summary says the valid notes show (e.g.
// "so B wins" only when the evidence is not broken).
type ttpWeigher struct {
	c         *evidence.Checked
	v         *evidence.Verdict
	broken    bool   // a check failed: the evidence is invalid
	shortfall bool   // genuine evidence that does not prove receipt
	why       string // the first reason it does not
}

func newTTPWeigher(c *evidence.Checked) *ttpWeigher {
	return &ttpWeigher{c: c, v: c.Verdict, broken: len(c.Verdict.Problems) > 0}
}

// bad records a check that breaks the evidence.
func (w *ttpWeigher) bad(g good, check, format string, args ...any) {
	w.broken = true
	w.v.Fail(g.pos, ttpTypeOf(g), check, format, args...)
}

// short records why genuine evidence falls short of proving receipt (a key published late, a
// receipt from a mode without authentication, a missing piece). It is not a failed check: the
// verdict stays valid and its outcome says receipt-not-proven, with this reason among the notices.
func (w *ttpWeigher) short(g good, check, format string, args ...any) {
	where := "the bundle"
	if g.pos > 0 {
		where = fmt.Sprintf("note %d %s", g.pos, ttpTypeOf(g))
	}
	reason := fmt.Sprintf(format, args...)
	w.v.Notices = append(w.v.Notices, fmt.Sprintf("%s: %s: %s", where, check, reason))
	if !w.shortfall {
		w.shortfall, w.why = true, reason
	}
}

func ttpTypeOf(g good) evidence.Type {
	if g.rec == nil {
		return ""
	}
	return g.rec.Type
}

// same checks that a token field equals what the evidence it must agree with says.
func (w *ttpWeigher) same(g good, field, got, want, of string) bool {
	if got == want {
		return true
	}
	w.bad(g, field, "%s is %s here but %s in %s", field, got, want, of)
	return false
}

// one returns the single valid note of type t; several different ones break the evidence.
func (w *ttpWeigher) one(t evidence.Type) (good, bool) {
	gs := goodOf(w.c, t)
	switch len(gs) {
	case 0:
		return good{}, false
	case 1:
		return gs[0], true
	}
	w.bad(gs[1], "unique", "the bundle holds %d different %s for one label; an exchange has one", len(gs), t)
	return gs[0], true
}

// leaf returns H(note) of a valid note.
func (w *ttpWeigher) leaf(g good) evidence.Hash { return w.c.Bundle.Notes[g.pos-1].Leaf() }

// finish sets the outcome: receipt proven only when every check passed.
func (w *ttpWeigher) finish(proven bool, summary string) {
	switch {
	case proven && w.v.Valid && !w.shortfall:
		w.v.Outcome = evidence.OutcomeReceiptProven
	case w.broken:
		w.v.Outcome = evidence.OutcomeInvalid
	default:
		w.v.Outcome = evidence.OutcomeReceiptUnproven
		if proven {
			// Every signature and hash stands, yet the evidence falls short: say why first.
			summary = "receipt not proven: " + w.why
		}
	}
	w.v.Summary = summary
}

func ttpShort(h evidence.Hash) string { return h.String()[:len("sha256:")+12] + "…" }

// CMP steps; each message's Step is "cmp1/…" or "cmp2/…".
const (
	cmpOffer    = "1"       // A -> B
	cmpOfferAck = "1-ack"   // B -> A
	cmpRequest  = "2"       // B -> T
	cmpRelease  = "3"       // T -> B
	cmpRelAck   = "3-ack"   // B -> T
	cmpReceipt  = "4"       // T -> A
	cmpRcptAck  = "4-ack"   // A -> T
	cmpRefused  = "refused" // T -> B: the request with this digest is refused
)

func cmpStep(p evidence.Protocol, s string) string { return string(p) + "/" + s }

func cmpSplitStep(step string) (evidence.Protocol, string, bool) {
	ps, s, ok := strings.Cut(step, "/")
	if !ok || ps != string(evidence.CMP1) && ps != string(evidence.CMP2) {
		return "", "", false
	}
	return evidence.Protocol(ps), s, true
}

func cmpBoxInfo(p evidence.Protocol) string { return "certmail " + string(p) + " box" }

func cmpTypes(p evidence.Protocol) (nro, req, nrd evidence.Type) {
	if p == evidence.CMP2 {
		return evidence.CMP2NRO, evidence.CMP2REQ, evidence.CMP2NRD
	}
	return evidence.CMPNRO, evidence.CMPREQ, evidence.CMPNRD
}

// CMPSenderConfig configures A.
type CMPSenderConfig struct {
	Protocol  evidence.Protocol // evidence.CMP1 or evidence.CMP2
	Sender    BoundKey          // A's key; Sender.ID.Name is A's address
	Recipient string            // B's address
	TTP       string            // host name of the agent acting as T
	TTPBox    []byte            // T's encryption key (BoxKey.Public)
	Trust     []string          // verifier keys of the agents A trusts, T's among them
	Message   []byte            // m, the exact bytes
	Linked    bool              // CMP2: K = the linked key of m (key=linked) rather than random
	Rand      io.Reader         // the label, a random K and the nonce (crypto/rand when nil)
	Timing    TTPTiming
}

// CMPSender is A in CMP1 or CMP2.
type CMPSender struct {
	cfg        CMPSenderConfig
	trust      *trust
	label      evidence.Label
	key        []byte // K (CMP2)
	ciphertext []byte // c (CMP2)
	nro        *evidence.Note
	offer      Msg
	out        ttpOutbox
	receipt    Msg              // step 4 as accepted
	bundle     *evidence.Bundle // A's proof of receipt, once the NRD came
	doneAt     time.Time
}

// NewCMPSender chooses the label, encrypts (CMP2), signs the NRO and seals the box for T.
func NewCMPSender(cfg CMPSenderConfig) (*CMPSender, error) {
	cfg.Timing = cfg.Timing.orDefault()
	if cfg.Protocol != evidence.CMP1 && cfg.Protocol != evidence.CMP2 {
		return nil, fmt.Errorf("protocol: cmp sender: protocol %q is not cmp1 or cmp2", cfg.Protocol)
	}
	if cfg.Linked && cfg.Protocol != evidence.CMP2 {
		return nil, errors.New("protocol: cmp sender: key=linked needs cmp2")
	}
	if err := cfg.Sender.check(); err != nil {
		return nil, err
	}
	trust, err := newTrust(cfg.Trust)
	if err != nil {
		return nil, err
	}
	if !trust.hasAgent(cfg.TTP) {
		return nil, fmt.Errorf("protocol: cmp sender: TTP %s is not a trusted agent", cfg.TTP)
	}
	s := &CMPSender{cfg: cfg, trust: trust}
	if s.label, err = evidence.NewLabel(cfg.Rand); err != nil {
		return nil, err
	}
	a := cfg.Sender.ID.Name
	nroType, _, _ := cmpTypes(cfg.Protocol)
	rec := &evidence.Record{Type: nroType, Label: s.label, Sender: a, Recipient: cfg.Recipient, Content: evidence.Sum(cfg.Message)}
	var secret []byte // what the box gives T beyond the names: m (CMP1) or K and H(c) (CMP2)
	if cfg.Protocol == evidence.CMP2 {
		if cfg.Linked {
			s.key, s.ciphertext, err = EncryptLinked(s.label, cfg.Message)
		} else if s.key, err = NewMessageKey(cfg.Rand); err == nil {
			s.ciphertext, err = Encrypt(s.key, cfg.Message, cfg.Rand)
		}
		if err != nil {
			return nil, fmt.Errorf("protocol: cmp sender: %w", err)
		}
		rec.Ciphertext = evidence.Sum(s.ciphertext)
	}
	if s.nro, err = evidence.Sign(rec, cfg.Sender.ID.Signer); err != nil {
		return nil, err
	}
	if cfg.Protocol == evidence.CMP2 {
		hc := evidence.Sum(s.ciphertext)
		secret = packFields(s.key, hc[:])
	} else {
		secret = cfg.Message
	}
	box, err := SealBox(cfg.TTPBox, cmpBoxInfo(cfg.Protocol),
		packFields([]byte(s.label.String()), []byte(a), []byte(cfg.Recipient), secret, s.nro.Bytes()))
	if err != nil {
		return nil, err
	}
	s.offer = Msg{From: a, To: cfg.Recipient, Step: cmpStep(cfg.Protocol, cmpOffer),
		Notes: ttpRaw(s.nro, cfg.Sender.Binding),
		Data:  map[string][]byte{"label": []byte(s.label.String()), "ttp": []byte(cfg.TTP), "box": box}}
	if cfg.Protocol == evidence.CMP2 {
		s.offer.Data["ciphertext"] = s.ciphertext
	}
	return s, nil
}

// Name is A's address.
func (s *CMPSender) Name() string { return s.cfg.Sender.ID.Name }

// Label is the label A chose.
func (s *CMPSender) Label() evidence.Label { return s.label }

// Key is K in CMP2 (for tests that watch where it travels), nil in CMP1.
func (s *CMPSender) Key() []byte { return s.key }

// Start sends step 1.
func (s *CMPSender) Start(now time.Time) []Msg {
	return s.out.put(now, s.cfg.Timing, cmpOffer, s.offer)
}

// Receive takes B's acknowledgement of step 1 and T's step 4.
func (s *CMPSender) Receive(now time.Time, m Msg) []Msg {
	p, step, ok := cmpSplitStep(m.Step)
	if l, lok := ttpLabel(m); !ok || !lok || p != s.cfg.Protocol || l != s.label {
		return nil
	}
	switch step {
	case cmpOfferAck:
		s.out.doneIf(cmpOffer, string(m.Data["digest"]))
	case cmpReceipt:
		return s.takeReceipt(now, m)
	}
	return nil
}

// takeReceipt accepts step 4 when the bundle it completes proves receipt to an arbiter.
func (s *CMPSender) takeReceipt(now time.Time, m Msg) []Msg {
	ack := []Msg{ttpAnswer(s.Name(), cmpStep(s.cfg.Protocol, cmpRcptAck), s.label, m)}
	if s.bundle != nil {
		if ttpDigest(m) == ttpDigest(s.receipt) {
			return ack
		}
		return nil
	}
	notes, ok := ttpNotes(m)
	if !ok {
		return nil
	}
	_, reqType, nrdType := cmpTypes(s.cfg.Protocol)
	nrd, req := ttpNote(notes, nrdType, ""), ttpNote(notes, reqType, "")
	if nrd == nil || req == nil || m.From != s.cfg.TTP || nrd.Record.Agent != s.cfg.TTP {
		return nil
	}
	items := map[string][]byte{evidence.ItemMessage: s.cfg.Message}
	if s.cfg.Protocol == evidence.CMP2 && !s.cfg.Linked {
		items[evidence.ItemCiphertext], items[evidence.ItemSecret] = s.ciphertext, s.key
	}
	b := ttpBundle(s.label, s.trust, []*evidence.Note{nrd, req, ttpNote(notes, evidence.KEY, s.cfg.Recipient)}, items)
	if v := ttpAssess(b, s.trust); v.Outcome != evidence.OutcomeReceiptProven ||
		nrd.Record.Sender != s.Name() || nrd.Record.Recipient != s.cfg.Recipient {
		return nil
	}
	s.bundle, s.receipt, s.doneAt = b, m.Clone(), now
	s.out.done(cmpOffer)
	return ack
}

// Wake returns when step 1 is next resent.
func (s *CMPSender) Wake() (time.Time, bool) { return s.out.wake() }

// Tick resends step 1 while B has not acknowledged it.
func (s *CMPSender) Tick(now time.Time) []Msg { return s.out.due(now, s.cfg.Timing) }

// Done reports whether A holds its proof of receipt.
func (s *CMPSender) Done() bool { return s.bundle != nil }

// DoneAt is when A obtained its proof of receipt.
func (s *CMPSender) DoneAt() time.Time { return s.doneAt }

// Bundle returns A's proof of receipt (NRD, B's request, B's KEY record, m, and for CMP2 with a
// random key c and K), or nil while A has none.
func (s *CMPSender) Bundle() *evidence.Bundle { return s.bundle }

// CMPRecipientConfig configures B.
type CMPRecipientConfig struct {
	Recipient BoundKey // B's key; Recipient.ID.Name is B's address
	Trust     []string // verifier keys of the agents B trusts: those binding senders' keys, and TTPs
	Timing    TTPTiming
}

// A recipient of CMP, SR or AGHP tries each distinct version of an offer it gets under one label
// (copies changed in transit are refused by whoever checks them: T, A or the TTP). ttpMaxLive
// bounds the versions waiting for an answer at once, ttpMaxTries all versions of one label. An
// offer B cannot take now is not acknowledged, so the sender sends it again.
const (
	ttpMaxLive  = 4
	ttpMaxTries = 16
)

// ttpLive counts the tries not refused yet.
func ttpLive(refused []string) int {
	n := 0
	for _, r := range refused {
		if r == "" {
			n++
		}
	}
	return n
}

// cmpExchange is B's durable record of one label.
type cmpExchange struct {
	proto      evidence.Protocol
	label      evidence.Label
	ttp        string
	nro, aKey  *evidence.Note
	ciphertext []byte
	req        *evidence.Note
	boxes      [][]byte
	refused    []string // T's reason per box, "" while not refused
	message    []byte   // m, once released and checked
	key        []byte   // K (CMP2), once released
	badKey     bool     // CMP2: T released the K A gave it, and it does not decrypt c to m
	release    Msg      // step 3 as accepted
	doneAt     time.Time
}

// CMPRecipient is B in CMP1 or CMP2. It takes every certified mail addressed to it: it commits
// (signs the request) for each label once, and keeps the content once T releases it.
type CMPRecipient struct {
	cfg   CMPRecipientConfig
	trust *trust
	ex    map[evidence.Label]*cmpExchange
	out   ttpOutbox
}

// NewCMPRecipient returns B.
func NewCMPRecipient(cfg CMPRecipientConfig) (*CMPRecipient, error) {
	cfg.Timing = cfg.Timing.orDefault()
	if err := cfg.Recipient.check(); err != nil {
		return nil, err
	}
	trust, err := newTrust(cfg.Trust)
	if err != nil {
		return nil, err
	}
	return &CMPRecipient{cfg: cfg, trust: trust, ex: map[evidence.Label]*cmpExchange{}}, nil
}

// Name is B's address.
func (r *CMPRecipient) Name() string { return r.cfg.Recipient.ID.Name }

// Start sends nothing: B waits for mail.
func (r *CMPRecipient) Start(time.Time) []Msg { return nil }

// Receive takes A's step 1, T's step 3 and T's refusals.
func (r *CMPRecipient) Receive(now time.Time, m Msg) []Msg {
	p, step, ok := cmpSplitStep(m.Step)
	l, lok := ttpLabel(m)
	if !ok || !lok {
		return nil
	}
	switch step {
	case cmpOffer:
		return r.takeOffer(now, p, l, m)
	case cmpRelease:
		return r.takeRelease(now, p, l, m)
	case cmpRefused:
		if e := r.ex[l]; e != nil && e.proto == p {
			for i := range e.boxes {
				if r.out.doneIf(r.boxKey(l, i), string(m.Data["digest"])) {
					e.refused[i] = string(m.Data["reason"])
				}
			}
		}
	}
	return nil
}

func (r *CMPRecipient) boxKey(l evidence.Label, i int) string {
	return fmt.Sprintf("%s %s %d", cmpRequest, l, i)
}

// takeOffer checks step 1 and commits: B signs its request before it can see m.
func (r *CMPRecipient) takeOffer(now time.Time, p evidence.Protocol, l evidence.Label, m Msg) []Msg {
	notes, ok := ttpNotes(m)
	if !ok {
		return nil
	}
	nroType, reqType, _ := cmpTypes(p)
	nro := ttpNote(notes, nroType, "")
	if nro == nil {
		return nil
	}
	a, ttp, box := nro.Record.Sender, string(m.Data["ttp"]), m.Data["box"]
	aKey := ttpNote(notes, evidence.KEY, a)
	if nro.Record.Label != l || nro.Record.Recipient != r.Name() || m.From != a || len(box) == 0 ||
		!r.trust.hasAgent(ttp) || r.trust.userNote(nro, aKey, a) != nil {
		return nil
	}
	c := m.Data["ciphertext"]
	if p == evidence.CMP2 && evidence.Sum(c) != nro.Record.Ciphertext {
		return nil
	}
	e := r.ex[l]
	if e == nil {
		rec := &evidence.Record{Type: reqType, Label: l, Agent: ttp, Sender: a, Recipient: r.Name()}
		if p == evidence.CMP2 {
			rec.Ciphertext = nro.Record.Ciphertext
		} else {
			rec.Content = nro.Record.Content
		}
		req, err := evidence.Sign(rec, r.cfg.Recipient.ID.Signer)
		if err != nil {
			return nil
		}
		e = &cmpExchange{proto: p, label: l, ttp: ttp, nro: nro, aKey: aKey, ciphertext: bytes.Clone(c), req: req}
		r.ex[l] = e
	} else if e.proto != p || e.ttp != ttp || !bytes.Equal(e.nro.Bytes(), nro.Bytes()) {
		return nil // one commitment per label
	}
	out := []Msg{ttpAnswer(r.Name(), cmpStep(p, cmpOfferAck), l, m)}
	if e.message != nil || e.badKey || slices.ContainsFunc(e.boxes, func(b []byte) bool { return bytes.Equal(b, box) }) {
		return out
	}
	if ttpLive(e.refused) >= ttpMaxLive || len(e.boxes) >= ttpMaxTries {
		return nil
	}
	// A box changed in transit is refused by T; B tries each distinct box it was offered.
	e.boxes = append(e.boxes, bytes.Clone(box))
	e.refused = append(e.refused, "")
	req := Msg{From: r.Name(), To: ttp, Step: cmpStep(p, cmpRequest),
		Notes: ttpRaw(e.req, r.cfg.Recipient.Binding, aKey),
		Data:  map[string][]byte{"label": []byte(l.String()), "box": bytes.Clone(box)}}
	return append(out, r.out.put(now, r.cfg.Timing, r.boxKey(l, len(e.boxes)-1), req)...)
}

// takeRelease checks step 3 against what B committed to.
func (r *CMPRecipient) takeRelease(now time.Time, p evidence.Protocol, l evidence.Label, m Msg) []Msg {
	e := r.ex[l]
	if e == nil || e.proto != p || m.From != e.ttp {
		return nil
	}
	ack := []Msg{ttpAnswer(r.Name(), cmpStep(p, cmpRelAck), l, m)}
	if e.message != nil || e.badKey {
		if ttpDigest(m) == ttpDigest(e.release) {
			return ack
		}
		return nil
	}
	notes, ok := ttpNotes(m)
	if !ok {
		return nil
	}
	_, _, nrdType := cmpTypes(p)
	nrd := ttpNote(notes, nrdType, "")
	if nrd == nil || nrd.Verify(r.trust.keys) != nil || nrd.Record.Label != l || nrd.Record.Agent != e.ttp ||
		nrd.Record.Request != e.req.Leaf() {
		return nil
	}
	switch p {
	case evidence.CMP1:
		msg := m.Data["message"]
		if evidence.Sum(msg) != e.nro.Record.Content {
			return nil
		}
		e.message = bytes.Clone(msg)
	case evidence.CMP2:
		k := m.Data["key"]
		if evidence.Sum(k) != nrd.Record.KeyHash {
			return nil // changed in transit: T signed another H(K)
		}
		e.key = bytes.Clone(k)
		if msg, err := Decrypt(k, e.ciphertext); err == nil && evidence.Sum(msg) == e.nro.Record.Content {
			e.message = msg
		} else {
			e.badKey = true // A gave T a key that does not open c to m
		}
	}
	e.release, e.doneAt = m.Clone(), now
	for i := range e.boxes {
		r.out.done(r.boxKey(l, i))
	}
	return ack
}

// Wake returns when a request is next resent.
func (r *CMPRecipient) Wake() (time.Time, bool) { return r.out.wake() }

// Tick resends requests T has neither answered nor refused.
func (r *CMPRecipient) Tick(now time.Time) []Msg { return r.out.due(now, r.cfg.Timing) }

// Done reports whether every exchange B committed to is settled: content released (or a bad key
// shown), or every box refused.
func (r *CMPRecipient) Done() bool {
	for l, e := range r.ex {
		if e.message == nil && !e.badKey && r.waiting(l) {
			return false
		}
	}
	return true
}

func (r *CMPRecipient) waiting(l evidence.Label) bool {
	for i := range r.ex[l].boxes {
		if r.out.has(r.boxKey(l, i)) {
			return true
		}
	}
	return false
}

// Committed reports whether B signed its request for label l.
func (r *CMPRecipient) Committed(l evidence.Label) bool { return r.ex[l] != nil }

// Message returns m once T released it and it checked out.
func (r *CMPRecipient) Message(l evidence.Label) ([]byte, bool) {
	if e := r.ex[l]; e != nil && e.message != nil {
		return e.message, true
	}
	return nil, false
}

// Key returns K (CMP2) once T released it, whether or not it opens c.
func (r *CMPRecipient) Key(l evidence.Label) ([]byte, bool) {
	if e := r.ex[l]; e != nil && e.key != nil {
		return e.key, true
	}
	return nil, false
}

// BadKey reports whether T released, for l, the key A gave it and that key does not open c to
// the m the NRO names: A cheated, and cannot prove receipt of m.
func (r *CMPRecipient) BadKey(l evidence.Label) bool { e := r.ex[l]; return e != nil && e.badKey }

// Refused returns T's reasons when T refused every box B sent for l.
func (r *CMPRecipient) Refused(l evidence.Label) []string {
	e := r.ex[l]
	if e == nil || e.message != nil || slices.Contains(e.refused, "") {
		return nil
	}
	return slices.Clone(e.refused)
}

// DoneAt is when B obtained the content of l.
func (r *CMPRecipient) DoneAt(l evidence.Label) time.Time {
	if e := r.ex[l]; e != nil {
		return e.doneAt
	}
	return time.Time{}
}

// Bundle returns B's proof of origin for l (A's NRO, A's KEY record, m, and for CMP2 c and K),
// or nil while B does not hold m.
func (r *CMPRecipient) Bundle(l evidence.Label) *evidence.Bundle {
	e := r.ex[l]
	if e == nil || e.message == nil {
		return nil
	}
	items := map[string][]byte{evidence.ItemMessage: e.message}
	if e.proto == evidence.CMP2 {
		items[evidence.ItemCiphertext], items[evidence.ItemSecret] = e.ciphertext, e.key
	}
	return ttpBundle(l, r.trust, []*evidence.Note{e.nro, e.aKey}, items)
}

// CMPTTPConfig configures T.
type CMPTTPConfig struct {
	ID     *Identity // T's signing key; ID.Name is T's host name
	Box    *BoxKey   // T's decryption key for PKE_T
	Trust  []string  // verifier keys of the agents whose KEY records T accepts
	Timing TTPTiming
}

// cmpServed is T's durable record of a label it served: the release and the NRD, made in one
// transition, and the messages that carry them until acknowledged.
type cmpServed struct {
	proto     evidence.Protocol
	reqDigest string // digest of the request T accepted
	nrd       *evidence.Note
	toB, toA  Msg
}

// CMPTTP is T in CMP1 and CMP2: an agent that serves many labels.
type CMPTTP struct {
	cfg     CMPTTPConfig
	trust   *trust
	served  map[evidence.Label]*cmpServed
	out     ttpOutbox
	refusal int
}

// NewCMPTTP returns T.
func NewCMPTTP(cfg CMPTTPConfig) (*CMPTTP, error) {
	cfg.Timing = cfg.Timing.orDefault()
	if cfg.ID == nil || cfg.Box == nil || strings.Contains(cfg.ID.Name, "@") {
		return nil, errors.New("protocol: cmp TTP: needs an agent identity and a box key")
	}
	trust, err := newTrust(cfg.Trust)
	if err != nil {
		return nil, err
	}
	return &CMPTTP{cfg: cfg, trust: trust, served: map[evidence.Label]*cmpServed{}}, nil
}

// Clone returns a copy of T's durable state, as a restart from its store would find it.
func (t *CMPTTP) Clone() *CMPTTP {
	c := &CMPTTP{cfg: t.cfg, trust: t.trust, served: map[evidence.Label]*cmpServed{}, out: t.out.clone(), refusal: t.refusal}
	for l, s := range t.served {
		cp := *s
		cp.toA, cp.toB = s.toA.Clone(), s.toB.Clone()
		c.served[l] = &cp
	}
	return c
}

// Name is T's host name.
func (t *CMPTTP) Name() string { return t.cfg.ID.Name }

// Start sends nothing: T waits for requests.
func (t *CMPTTP) Start(time.Time) []Msg { return nil }

// Receive takes B's requests and the acknowledgements of steps 3 and 4.
func (t *CMPTTP) Receive(now time.Time, m Msg) []Msg {
	p, step, ok := cmpSplitStep(m.Step)
	l, lok := ttpLabel(m)
	if !ok || !lok {
		return nil
	}
	switch step {
	case cmpRequest:
		return t.takeRequest(now, p, l, m)
	case cmpRelAck:
		t.out.doneIf(cmpRelease+" "+l.String(), string(m.Data["digest"]))
	case cmpRcptAck:
		t.out.doneIf(cmpReceipt+" "+l.String(), string(m.Data["digest"]))
	}
	return nil
}

func (t *CMPTTP) refuse(p evidence.Protocol, l evidence.Label, m Msg, reason string) []Msg {
	t.refusal++
	return []Msg{ttpAnswer(t.Name(), cmpStep(p, cmpRefused), l, m, "reason", reason)}
}

// takeRequest serves a label once: it checks B's signed request and the box, then in one
// transition records the release and the NRD, and sends steps 3 and 4.
func (t *CMPTTP) takeRequest(now time.Time, p evidence.Protocol, l evidence.Label, m Msg) []Msg {
	if s := t.served[l]; s != nil {
		rel, rcpt := cmpRelease+" "+l.String(), cmpReceipt+" "+l.String()
		if s.proto == p && ttpDigest(m) == s.reqDigest && (t.out.has(rel) || t.out.has(rcpt)) {
			// B asks again for what T served: the answers are on their way; hurry them.
			t.out.kick(rel, now)
			t.out.kick(rcpt, now)
			return t.out.due(now, t.cfg.Timing)
		}
		return t.refuse(p, l, m, "label-served")
	}
	notes, ok := ttpNotes(m)
	if !ok {
		return t.refuse(p, l, m, "malformed")
	}
	nroType, reqType, nrdType := cmpTypes(p)
	req := ttpNote(notes, reqType, "")
	if req == nil {
		return t.refuse(p, l, m, "no-request")
	}
	rr := req.Record
	a, b := rr.Sender, rr.Recipient
	aKey, bKey := ttpNote(notes, evidence.KEY, a), ttpNote(notes, evidence.KEY, b)
	if rr.Label != l || rr.Agent != t.Name() {
		return t.refuse(p, l, m, "request-mismatch")
	}
	if err := t.trust.userNote(req, bKey, b); err != nil {
		return t.refuse(p, l, m, "request-signature")
	}
	pt, err := t.cfg.Box.Open(cmpBoxInfo(p), m.Data["box"])
	if err != nil {
		return t.refuse(p, l, m, "box")
	}
	f, err := unpackFields(pt, 5)
	if err != nil || string(f[0]) != l.String() || string(f[1]) != a || string(f[2]) != b {
		return t.refuse(p, l, m, "box-mismatch")
	}
	nro, err := evidence.ParseNote(f[4])
	if err != nil || nro.Record.Type != nroType || nro.Record.Label != l || nro.Record.Sender != a ||
		nro.Record.Recipient != b || t.trust.userNote(nro, aKey, a) != nil {
		return t.refuse(p, l, m, "origin")
	}
	nrdRec := &evidence.Record{Type: nrdType, Label: l, Agent: t.Name(), Sender: a, Recipient: b,
		Request: req.Leaf(), Time: evidence.CanonicalTime(now)}
	toB := Msg{From: t.Name(), To: b, Step: cmpStep(p, cmpRelease), Notes: ttpRaw(nro, aKey),
		Data: map[string][]byte{"label": []byte(l.String())}}
	switch p {
	case evidence.CMP1:
		if evidence.Sum(f[3]) != rr.Content || nro.Record.Content != rr.Content {
			return t.refuse(p, l, m, "content")
		}
		nrdRec.Content = rr.Content
		toB.Data["message"] = f[3]
	case evidence.CMP2:
		kc, err := unpackFields(f[3], 2)
		if err != nil || len(kc[0]) != MessageKeySize || !bytes.Equal(kc[1], rr.Ciphertext[:]) ||
			nro.Record.Ciphertext != rr.Ciphertext {
			return t.refuse(p, l, m, "ciphertext")
		}
		nrdRec.Ciphertext, nrdRec.KeyHash = rr.Ciphertext, evidence.Sum(kc[0])
		toB.Data["key"] = kc[0]
	}
	nrd, err := evidence.Sign(nrdRec, t.cfg.ID.Signer)
	if err != nil {
		return t.refuse(p, l, m, "internal")
	}
	toB.Notes = append(toB.Notes, nrd.Bytes())
	toA := Msg{From: t.Name(), To: a, Step: cmpStep(p, cmpReceipt), Notes: ttpRaw(nrd, req, bKey),
		Data: map[string][]byte{"label": []byte(l.String())}}
	// The transition: release and receipt are recorded together, then both are sent.
	t.served[l] = &cmpServed{proto: p, reqDigest: ttpDigest(m), nrd: nrd, toB: toB, toA: toA}
	out := t.out.put(now, t.cfg.Timing, cmpRelease+" "+l.String(), toB)
	return append(out, t.out.put(now, t.cfg.Timing, cmpReceipt+" "+l.String(), toA)...)
}

// Wake returns when a release or receipt is next resent.
func (t *CMPTTP) Wake() (time.Time, bool) { return t.out.wake() }

// Tick resends releases and receipts not yet acknowledged.
func (t *CMPTTP) Tick(now time.Time) []Msg { return t.out.due(now, t.cfg.Timing) }

// Done reports whether every release and receipt was acknowledged.
func (t *CMPTTP) Done() bool { return len(t.out.list) == 0 }

// Served reports whether T served label l (released it and signed its NRD).
func (t *CMPTTP) Served(l evidence.Label) bool { return t.served[l] != nil }

// Pending reports whether T still resends the release of l to B or its NRD to A: a party that
// went away can still obtain what T holds for it.
func (t *CMPTTP) Pending(l evidence.Label) (toB, toA bool) {
	return t.out.has(cmpRelease + " " + l.String()), t.out.has(cmpReceipt + " " + l.String())
}

// Refusals counts the requests T refused.
func (t *CMPTTP) Refusals() int { return t.refusal }

// judgeCMP is the judge of CMP1 and CMP2 (PROTOCOLS.md §2 "Judge"). A bundle with an NRD or a
// request claims receipt: the NRD must be the TTP's that B's request names, for B's signed
// request (by its hash), the same label, parties and hashes, and the items must hash to them
// (for CMP2, K must open c to m). A bundle with only an NRO claims origin: m (and c, K) must
// hash to what the NRO signs.
func judgeCMP(c *evidence.Checked, p evidence.Protocol) {
	w := newTTPWeigher(c)
	nroType, reqType, nrdType := cmpTypes(p)
	nrd, hasNRD := w.one(nrdType)
	reqs := goodOf(c, reqType)
	nro, hasNRO := w.one(nroType)
	m, hasM := c.Bundle.Item(evidence.ItemMessage)

	if !hasNRD && len(reqs) == 0 {
		if !hasNRO {
			w.short(good{}, "origin", "the bundle holds neither a receipt (%s) nor a proof of origin (%s)", nrdType, nroType)
			w.finish(false, "the bundle proves neither receipt nor origin")
			return
		}
		if w.cmpOrigin(p, nro, m, hasM) {
			w.finish(false, fmt.Sprintf("%s is proven the origin of the message %s sent to %s; the bundle claims no receipt",
				nro.rec.Sender, ttpShort(nro.rec.Content), nro.rec.Recipient))
			if w.v.Valid {
				w.v.Outcome = evidence.OutcomeOriginProven
			}
			return
		}
		w.finish(false, "the proof of origin does not stand")
		return
	}
	if !hasNRD {
		w.short(good{}, "receipt", "the bundle holds no %s: the TTP attests no delivery", nrdType)
		w.finish(false, fmt.Sprintf("%s does not prove that %s received the message: there is no receipt from the TTP",
			reqs[0].rec.Sender, reqs[0].rec.Recipient))
		return
	}
	d := nrd.rec
	var req good
	for _, g := range reqs {
		if w.leaf(g) == d.Request {
			req = g
		}
	}
	if req.rec == nil {
		w.bad(nrd, "request", "the receipt names request %s, which the bundle does not hold with a valid signature of %s",
			ttpShort(d.Request), d.Recipient)
		w.finish(false, "the receipt does not stand: B's request is missing")
		return
	}
	r := req.rec
	of := "B's request (note " + fmt.Sprint(req.pos) + ")"
	// B names its TTP in the request: a receipt signed by another agent is not the TTP's.
	w.same(nrd, "agent", d.Agent, r.Agent, of)
	w.same(nrd, "sender", d.Sender, r.Sender, of)
	w.same(nrd, "recipient", d.Recipient, r.Recipient, of)
	if hasNRO {
		w.same(nro, "sender", nro.rec.Sender, r.Sender, of)
		w.same(nro, "recipient", nro.rec.Recipient, r.Recipient, of)
	}
	proven := false
	switch p {
	case evidence.CMP1:
		w.same(nrd, "content", d.Content.String(), r.Content.String(), of)
		if hasNRO {
			w.same(nro, "content", nro.rec.Content.String(), r.Content.String(), of)
		}
		switch {
		case !hasM:
			w.short(nrd, "message", "the bundle does not hold the message M the receipt is for")
		case evidence.Sum(m) != d.Content:
			w.bad(nrd, "message", "the message hashes to %s, the receipt names %s", evidence.Sum(m), d.Content)
		default:
			proven = true
		}
	case evidence.CMP2:
		w.same(nrd, "ciphertext", d.Ciphertext.String(), r.Ciphertext.String(), of)
		if hasNRO {
			w.same(nro, "ciphertext", nro.rec.Ciphertext.String(), r.Ciphertext.String(), of)
		}
		proven = w.cmp2Content(nrd, nro, hasNRO, m, hasM)
	}
	if proven && w.v.Valid {
		w.finish(true, fmt.Sprintf("%s proves that %s received the message %s: %s released it after %s signed a request for it",
			d.Sender, d.Recipient, ttpShort(evidence.Sum(m)), d.Agent, d.Recipient))
		return
	}
	w.finish(proven, fmt.Sprintf("%s does not prove that %s received the message", d.Sender, d.Recipient))
}

// cmpOrigin checks B's proof of origin: m (and for CMP2 c and K) against the NRO.
func (w *ttpWeigher) cmpOrigin(p evidence.Protocol, nro good, m []byte, hasM bool) bool {
	if !hasM {
		w.short(nro, "message", "the bundle does not hold the message M the proof of origin is for")
		return false
	}
	if evidence.Sum(m) != nro.rec.Content {
		w.bad(nro, "message", "the message hashes to %s, the proof of origin names %s", evidence.Sum(m), nro.rec.Content)
		return false
	}
	if p == evidence.CMP2 {
		c, hasC := w.c.Bundle.Item(evidence.ItemCiphertext)
		if hasC && evidence.Sum(c) != nro.rec.Ciphertext {
			w.bad(nro, "ciphertext", "the ciphertext hashes to %s, the proof of origin names %s", evidence.Sum(c), nro.rec.Ciphertext)
			return false
		}
		if k, hasK := w.c.Bundle.Item(evidence.ItemSecret); hasC && hasK {
			if got, err := Decrypt(k, c); err != nil || !bytes.Equal(got, m) {
				w.bad(nro, "decryption", "the key does not decrypt the ciphertext to the message")
				return false
			}
		}
	}
	return w.v.Valid
}

// cmp2Content checks that K opens c to m, with H(c) and H(K) those the NRD names. Without a K
// item the judge tries the key linked to m; without a c item, the linked ciphertext.
func (w *ttpWeigher) cmp2Content(nrd, nro good, hasNRO bool, m []byte, hasM bool) bool {
	d := nrd.rec
	if !hasM {
		w.short(nrd, "message", "the bundle does not hold the message M the receipt is for")
		return false
	}
	if hasNRO && evidence.Sum(m) != nro.rec.Content {
		w.bad(nro, "message", "the message hashes to %s, the proof of origin names %s", evidence.Sum(m), nro.rec.Content)
		return false
	}
	k, hasK := w.c.Bundle.Item(evidence.ItemSecret)
	c, hasC := w.c.Bundle.Item(evidence.ItemCiphertext)
	linkedKey, linkedC, err := EncryptLinked(w.c.Bundle.Label, m)
	linked := err == nil && evidence.Sum(linkedKey) == d.KeyHash
	if !hasK {
		if !linked {
			// Without K the bundle stands on the linked key: a message that does not yield the key the
			// receipt names is not the message of this exchange (or the bundle lacks K).
			w.bad(nrd, "message", "the key linked to this message is not the one the receipt names: it is not the message of this exchange, or the bundle lacks the key K")
			return false
		}
		k = linkedKey
	}
	if !hasC {
		if !linked {
			w.short(nrd, "ciphertext", "the bundle holds no ciphertext c, and M's key is not linked")
			return false
		}
		c = linkedC
	}
	if linked && (!hasK || !hasC) {
		w.v.Notices = append(w.v.Notices, "the key is linked to the message: K and c were recomputed from M and the label")
	}
	ok := true
	if evidence.Sum(k) != d.KeyHash {
		w.bad(nrd, "key", "the key hashes to %s, the receipt names %s", evidence.Sum(k), d.KeyHash)
		ok = false
	}
	if evidence.Sum(c) != d.Ciphertext {
		w.bad(nrd, "ciphertext", "the ciphertext hashes to %s, the receipt names %s", evidence.Sum(c), d.Ciphertext)
		ok = false
	}
	if !ok {
		return false
	}
	got, err := Decrypt(k, c)
	if err != nil || !bytes.Equal(got, m) {
		// T released exactly the K that A put in its box: A chose a key that does not open c to m.
		w.bad(nrd, "decryption", "the key the TTP released does not decrypt the ciphertext to the message")
		return false
	}
	return true
}
