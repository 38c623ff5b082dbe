package protocol

import (
	"bytes"
	"crypto/subtle"
	"errors"
	"fmt"
	"io"
	"slices"
	"strings"
	"time"

	"certmail/evidence"
)

// The light on-line TTP of Abadi, Glew, Horne and Pinkas, "Certified Email with a Light On-line
// Trusted Third Party: Design and Implementation" (WWW 2002), PROTOCOLS.md §4. It realises seed
// 000's recommendation: the TTP handles only a key and a receipt, never sees the message, and
// needs no public key of the recipient.
//
//	S picks k and q; em = E_k(m); r = H(S, RPwd, q) in the modes where S authenticates R, else empty
//	hS    = AGHPExchangeHash(cleartext, q, r, em)
//	S2TTP = PKE_TTP(L, S, mode, "give", k, R, hS)
//	1. S -> R   : L, TTP, em, mode, cleartext, q, S2TTP                 ordinary e-mail
//	2. R -> TTP : L, S2TTP, hR = AGHPExchangeHash(cleartext, q, r, em) [, RPwd]   over TLS
//	   TTP: opens S2TTP; requires hS = hR; in the modes with TTP authentication requires RPwd
//	   to be R's password and the peer to be R
//	3. TTP -> R : L, k, hR                                              together with 4, durable first
//	4. TTP -> S : S_TTP(AGHP-RECEIPT: L, TTP, S, R, mode, hS, H(k), time)
//
// S2TTP is SealBox to the TTP's box key with the info "certmail aghp s2ttp", over
// packFields(L, S, mode, "give", k, R, hS) with L as text and hS as its 32 bytes.
//
// The receipt names hS and H(k) in clear rather than re-deriving S2TTP, so the judge needs no
// re-encryption: it checks the TTP's signature, recomputes hS from the items (cleartext, q, r,
// em), checks H(k) and decrypts em. Only receipts from modes in which the TTP authenticated R
// prove receipt: in the others whoever held the e-mail could have fetched k. L is inside S2TTP,
// so the label of the receipt is the one S chose; the TTP serves a label once. As in CMP, steps
// 3 and 4 are one transition of the TTP's durable state, resent until acknowledged, and every
// message is acknowledged by its digest.
//
// R gets no proof of origin from this protocol: S adds one (a signed NRO inside m) when asked.

// AGHP modes (the paper's NoAuth, SAuth, TTPAuth and BothAuth).
const (
	AGHPNoAuth     = "no-auth"     // nobody authenticates R
	AGHPSenderAuth = "sender-auth" // R shows knowledge of RPwd through r; the TTP does not authenticate R
	AGHPTTPAuth    = "tls-auth"    // the TTP authenticates R by RPwd over TLS
	AGHPBothAuth   = "both-auth"   // both
)

// AGHPModes lists the modes.
func AGHPModes() []string { return []string{AGHPNoAuth, AGHPSenderAuth, AGHPTTPAuth, AGHPBothAuth} }

// aghpTTPAuth reports whether the TTP authenticates R in mode: only then does a receipt prove
// receipt.
func aghpTTPAuth(mode string) bool { return mode == AGHPTTPAuth || mode == AGHPBothAuth }

func aghpSenderAuth(mode string) bool { return mode == AGHPSenderAuth || mode == AGHPBothAuth }

// AGHPExchangeHash is hS (and hR): SHA-256 over the tag "certmail aghp exchange" and the
// cleartext, the challenge q, the response r (empty in modes without sender authentication) and
// the ciphertext em, each as a 4-byte big-endian length and the bytes.
func AGHPExchangeHash(cleartext, q, r, em []byte) evidence.Hash {
	return tupleHash("certmail aghp exchange", cleartext, q, r, em)
}

// AGHPResponse is r = H(S, RPwd, q): SHA-256 over the tag "certmail aghp response", the sender's
// address, the password and the challenge, packed like AGHPExchangeHash.
func AGHPResponse(sender string, password, q []byte) []byte {
	h := tupleHash("certmail aghp response", []byte(sender), password, q)
	return h[:]
}

const aghpBoxInfo = "certmail aghp s2ttp"

// AGHP steps.
const (
	aghpOffer    = "aghp/1"
	aghpOfferAck = "aghp/1-ack"
	aghpAsk      = "aghp/2"
	aghpRelease  = "aghp/3"
	aghpRelAck   = "aghp/3-ack"
	aghpReceipt  = "aghp/4"
	aghpRcptAck  = "aghp/4-ack"
	aghpRefused  = "aghp/refused"
)

// AGHPSenderConfig configures S.
type AGHPSenderConfig struct {
	Sender    string    // S's address
	Recipient string    // R's address
	TTP       string    // the TTP's host name
	TTPBox    []byte    // the TTP's encryption key (BoxKey.Public)
	Trust     []string  // verifier keys of the agents S trusts, the TTP's among them
	Mode      string    // one of AGHPModes
	Cleartext []byte    // what R reads before asking for the key (who sends, what the TTP will do)
	Message   []byte    // m
	Password  []byte    // RPwd, shared with R, for the modes where S authenticates R
	Rand      io.Reader // the label, k, q and the nonce (crypto/rand when nil)
	Timing    TTPTiming
}

// AGHPSender is S.
type AGHPSender struct {
	cfg        AGHPSenderConfig
	trust      *trust
	label      evidence.Label
	key, em    []byte
	q, r       []byte
	hs         evidence.Hash
	offer      Msg
	out        ttpOutbox
	receipt    *evidence.Note
	receiptMsg Msg
	doneAt     time.Time
}

// NewAGHPSender chooses the label, k and q, encrypts m and seals S2TTP.
func NewAGHPSender(cfg AGHPSenderConfig) (*AGHPSender, error) {
	cfg.Timing = cfg.Timing.orDefault()
	if !slices.Contains(AGHPModes(), cfg.Mode) {
		return nil, fmt.Errorf("protocol: aghp sender: unknown mode %q", cfg.Mode)
	}
	if aghpSenderAuth(cfg.Mode) && len(cfg.Password) == 0 {
		return nil, fmt.Errorf("protocol: aghp sender: mode %s needs the password S shares with R", cfg.Mode)
	}
	trust, err := newTrust(cfg.Trust)
	if err != nil {
		return nil, err
	}
	if !trust.hasAgent(cfg.TTP) {
		return nil, fmt.Errorf("protocol: aghp sender: TTP %s is not a trusted agent", cfg.TTP)
	}
	s := &AGHPSender{cfg: cfg, trust: trust, q: make([]byte, 16)}
	if s.label, err = evidence.NewLabel(cfg.Rand); err != nil {
		return nil, err
	}
	if s.key, err = NewMessageKey(cfg.Rand); err != nil {
		return nil, err
	}
	if _, err := io.ReadFull(randOr(cfg.Rand), s.q); err != nil {
		return nil, fmt.Errorf("protocol: aghp sender: challenge: %w", err)
	}
	if s.em, err = Encrypt(s.key, cfg.Message, cfg.Rand); err != nil {
		return nil, err
	}
	if aghpSenderAuth(cfg.Mode) {
		s.r = AGHPResponse(cfg.Sender, cfg.Password, s.q)
	}
	s.hs = AGHPExchangeHash(cfg.Cleartext, s.q, s.r, s.em)
	box, err := SealBox(cfg.TTPBox, aghpBoxInfo, packFields([]byte(s.label.String()), []byte(cfg.Sender),
		[]byte(cfg.Mode), []byte("give"), s.key, []byte(cfg.Recipient), s.hs[:]))
	if err != nil {
		return nil, err
	}
	s.offer = Msg{From: cfg.Sender, To: cfg.Recipient, Step: aghpOffer, Data: map[string][]byte{
		"label": []byte(s.label.String()), "ttp": []byte(cfg.TTP), "em": s.em, "mode": []byte(cfg.Mode),
		"cleartext": bytes.Clone(cfg.Cleartext), "q": s.q, "s2ttp": box}}
	return s, nil
}

// Name is S's address.
func (s *AGHPSender) Name() string { return s.cfg.Sender }

// Label is the label S chose.
func (s *AGHPSender) Label() evidence.Label { return s.label }

// Key is k (for tests that watch where it travels).
func (s *AGHPSender) Key() []byte { return s.key }

// Start sends step 1.
func (s *AGHPSender) Start(now time.Time) []Msg {
	return s.out.put(now, s.cfg.Timing, aghpOffer, s.offer)
}

// Receive takes R's acknowledgement and the TTP's receipt.
func (s *AGHPSender) Receive(now time.Time, m Msg) []Msg {
	if l, ok := ttpLabel(m); !ok || l != s.label {
		return nil
	}
	switch m.Step {
	case aghpOfferAck:
		s.out.doneIf(aghpOffer, string(m.Data["digest"]))
	case aghpReceipt:
		return s.takeReceipt(now, m)
	}
	return nil
}

// takeReceipt is step 4: the TTP's receipt for this exchange, whatever the mode (the judge
// decides what it proves).
func (s *AGHPSender) takeReceipt(now time.Time, m Msg) []Msg {
	ack := []Msg{ttpAnswer(s.Name(), aghpRcptAck, s.label, m)}
	if s.receipt != nil {
		if ttpDigest(m) == ttpDigest(s.receiptMsg) {
			return ack
		}
		return nil
	}
	notes, ok := ttpNotes(m)
	if !ok {
		return nil
	}
	rc := ttpNote(notes, evidence.AGHPRECEIPT, "")
	if rc == nil || rc.Verify(s.trust.keys) != nil {
		return nil
	}
	r := rc.Record
	if r.Label != s.label || r.Agent != s.cfg.TTP || r.Sender != s.Name() || r.Recipient != s.cfg.Recipient ||
		r.Mode != s.cfg.Mode || r.Exchange != s.hs || r.KeyHash != evidence.Sum(s.key) {
		return nil
	}
	s.receipt, s.receiptMsg, s.doneAt = rc, m.Clone(), now
	s.out.done(aghpOffer)
	return ack
}

// Wake returns when step 1 is next resent.
func (s *AGHPSender) Wake() (time.Time, bool) { return s.out.wake() }

// Tick resends step 1 while R has not acknowledged it.
func (s *AGHPSender) Tick(now time.Time) []Msg { return s.out.due(now, s.cfg.Timing) }

// Done reports whether S holds the TTP's receipt.
func (s *AGHPSender) Done() bool { return s.receipt != nil }

// DoneAt is when S obtained the receipt.
func (s *AGHPSender) DoneAt() time.Time { return s.doneAt }

// Bundle returns S's evidence (the receipt, and the cleartext, q, r, em, k and m it covers), or
// nil before the receipt. It proves receipt only in a mode where the TTP authenticated R.
func (s *AGHPSender) Bundle() *evidence.Bundle {
	if s.receipt == nil {
		return nil
	}
	return ttpBundle(s.label, s.trust, []*evidence.Note{s.receipt}, map[string][]byte{
		evidence.ItemCleartext: s.cfg.Cleartext, evidence.ItemChallenge: s.q, evidence.ItemResponse: s.r,
		evidence.ItemCiphertext: s.em, evidence.ItemSecret: s.key, evidence.ItemMessage: s.cfg.Message})
}

// AGHPRecipientConfig configures R.
type AGHPRecipientConfig struct {
	Recipient string   // R's address
	Password  []byte   // RPwd: known to the TTP (TTP authentication) and to senders (sender authentication)
	TTPs      []string // the TTPs R is willing to ask
	Timing    TTPTiming
}

// aghpAttempt is one version of step 1 R was given under a label, and R's request for it.
type aghpAttempt struct {
	em, box []byte
	hr      evidence.Hash
}

type aghpExchange struct {
	sender   string
	attempts []*aghpAttempt
	key, msg []byte
	release  Msg
	refused  []string
	doneAt   time.Time
}

// AGHPRecipient is R.
type AGHPRecipient struct {
	cfg AGHPRecipientConfig
	ex  map[evidence.Label]*aghpExchange
	out ttpOutbox
}

// NewAGHPRecipient returns R.
func NewAGHPRecipient(cfg AGHPRecipientConfig) (*AGHPRecipient, error) {
	cfg.Timing = cfg.Timing.orDefault()
	if cfg.Recipient == "" || len(cfg.TTPs) == 0 {
		return nil, errors.New("protocol: aghp recipient: needs an address and a TTP")
	}
	return &AGHPRecipient{cfg: cfg, ex: map[evidence.Label]*aghpExchange{}}, nil
}

// Name is R's address.
func (r *AGHPRecipient) Name() string { return r.cfg.Recipient }

// Start sends nothing: R waits for mail.
func (r *AGHPRecipient) Start(time.Time) []Msg { return nil }

func (r *AGHPRecipient) askKey(l evidence.Label, i int) string {
	return fmt.Sprintf("%s %s %d", aghpAsk, l, i)
}

// Receive takes S's e-mail and the TTP's release and refusals.
func (r *AGHPRecipient) Receive(now time.Time, m Msg) []Msg {
	l, ok := ttpLabel(m)
	if !ok {
		return nil
	}
	switch m.Step {
	case aghpOffer:
		return r.takeOffer(now, l, m)
	case aghpRelease:
		return r.takeRelease(now, l, m)
	case aghpRefused:
		if e := r.ex[l]; e != nil {
			for i := range e.attempts {
				if r.out.doneIf(r.askKey(l, i), string(m.Data["digest"])) {
					e.refused[i] = string(m.Data["reason"])
				}
			}
		}
	}
	return nil
}

// takeOffer is step 2: R asks the TTP for k, which commits R (the TTP's receipt says so).
func (r *AGHPRecipient) takeOffer(now time.Time, l evidence.Label, m Msg) []Msg {
	ttp, mode, em, box := string(m.Data["ttp"]), string(m.Data["mode"]), m.Data["em"], m.Data["s2ttp"]
	if !slices.Contains(r.cfg.TTPs, ttp) || !slices.Contains(AGHPModes(), mode) || len(em) == 0 || len(box) == 0 {
		return nil
	}
	var resp []byte
	if aghpSenderAuth(mode) {
		resp = AGHPResponse(m.From, r.cfg.Password, m.Data["q"])
	}
	hr := AGHPExchangeHash(m.Data["cleartext"], m.Data["q"], resp, em)
	e := r.ex[l]
	if e == nil {
		e = &aghpExchange{sender: m.From}
		r.ex[l] = e
	}
	if e.sender != m.From {
		return nil
	}
	out := []Msg{ttpAnswer(r.Name(), aghpOfferAck, l, m)}
	if e.msg != nil || slices.ContainsFunc(e.attempts, func(a *aghpAttempt) bool {
		return a.hr == hr && bytes.Equal(a.em, em) && bytes.Equal(a.box, box)
	}) {
		return out
	}
	if ttpLive(e.refused) >= ttpMaxLive || len(e.attempts) >= ttpMaxTries {
		return nil
	}
	e.attempts = append(e.attempts, &aghpAttempt{em: bytes.Clone(em), box: bytes.Clone(box), hr: hr})
	e.refused = append(e.refused, "")
	ask := Msg{From: r.Name(), To: ttp, Step: aghpAsk,
		Data: map[string][]byte{"label": []byte(l.String()), "s2ttp": bytes.Clone(box), "hr": hr[:]}}
	if aghpTTPAuth(mode) {
		ask.Data["password"] = bytes.Clone(r.cfg.Password) // over TLS to the TTP in the agent
	}
	return append(out, r.out.put(now, r.cfg.Timing, r.askKey(l, len(e.attempts)-1), ask)...)
}

// takeRelease is step 3: k for one of R's requests, which must open its em.
func (r *AGHPRecipient) takeRelease(now time.Time, l evidence.Label, m Msg) []Msg {
	e := r.ex[l]
	if e == nil {
		return nil
	}
	ack := []Msg{ttpAnswer(r.Name(), aghpRelAck, l, m)}
	if e.msg != nil {
		if ttpDigest(m) == ttpDigest(e.release) {
			return ack
		}
		return nil
	}
	k := m.Data["key"]
	for _, a := range e.attempts {
		if !bytes.Equal(a.hr[:], m.Data["hr"]) {
			continue
		}
		if msg, err := Decrypt(k, a.em); err == nil {
			e.key, e.msg, e.release, e.doneAt = bytes.Clone(k), msg, m.Clone(), now
			for i := range e.attempts {
				r.out.done(r.askKey(l, i))
			}
			return ack
		}
	}
	return nil
}

// Wake returns when a request is next resent.
func (r *AGHPRecipient) Wake() (time.Time, bool) { return r.out.wake() }

// Tick resends requests the TTP has neither answered nor refused.
func (r *AGHPRecipient) Tick(now time.Time) []Msg { return r.out.due(now, r.cfg.Timing) }

// Done reports whether no request of R waits for the TTP.
func (r *AGHPRecipient) Done() bool { return len(r.out.list) == 0 }

// Asked reports whether R asked the TTP for the key of label l.
func (r *AGHPRecipient) Asked(l evidence.Label) bool {
	e := r.ex[l]
	return e != nil && len(e.attempts) > 0
}

// Message returns m once R holds k.
func (r *AGHPRecipient) Message(l evidence.Label) ([]byte, bool) {
	if e := r.ex[l]; e != nil && e.msg != nil {
		return e.msg, true
	}
	return nil, false
}

// DoneAt is when R obtained m.
func (r *AGHPRecipient) DoneAt(l evidence.Label) time.Time {
	if e := r.ex[l]; e != nil {
		return e.doneAt
	}
	return time.Time{}
}

// Refused returns the TTP's reasons when it refused every request R made for l.
func (r *AGHPRecipient) Refused(l evidence.Label) []string {
	e := r.ex[l]
	if e == nil || e.msg != nil || len(e.refused) == 0 || slices.Contains(e.refused, "") {
		return nil
	}
	return slices.Clone(e.refused)
}

// AGHPTTPConfig configures the TTP.
type AGHPTTPConfig struct {
	ID        *Identity         // the TTP's signing key; ID.Name is its host name
	Box       *BoxKey           // the TTP's decryption key for S2TTP
	Passwords map[string][]byte // RPwd of each recipient, for the modes where the TTP authenticates R
	Timing    TTPTiming
}

type aghpServed struct {
	reqDigest string
	receipt   *evidence.Note
	peer      string // to whom k went: R when authenticated, whoever asked otherwise
}

// AGHPTTP is the light on-line TTP: it serves a label once.
type AGHPTTP struct {
	cfg     AGHPTTPConfig
	served  map[evidence.Label]*aghpServed
	out     ttpOutbox
	refusal int
}

// NewAGHPTTP returns the TTP.
func NewAGHPTTP(cfg AGHPTTPConfig) (*AGHPTTP, error) {
	cfg.Timing = cfg.Timing.orDefault()
	if cfg.ID == nil || cfg.Box == nil || strings.Contains(cfg.ID.Name, "@") {
		return nil, errors.New("protocol: aghp TTP: needs an agent identity and a box key")
	}
	return &AGHPTTP{cfg: cfg, served: map[evidence.Label]*aghpServed{}}, nil
}

// Clone returns a copy of the TTP's durable state.
func (t *AGHPTTP) Clone() *AGHPTTP {
	c := &AGHPTTP{cfg: t.cfg, served: map[evidence.Label]*aghpServed{}, out: t.out.clone(), refusal: t.refusal}
	for l, s := range t.served {
		cp := *s
		c.served[l] = &cp
	}
	return c
}

// Name is the TTP's host name.
func (t *AGHPTTP) Name() string { return t.cfg.ID.Name }

// Start sends nothing.
func (t *AGHPTTP) Start(time.Time) []Msg { return nil }

// Receive takes requests and acknowledgements.
func (t *AGHPTTP) Receive(now time.Time, m Msg) []Msg {
	l, ok := ttpLabel(m)
	if !ok {
		return nil
	}
	switch m.Step {
	case aghpAsk:
		return t.takeAsk(now, l, m)
	case aghpRelAck:
		t.out.doneIf(aghpRelease+" "+l.String(), string(m.Data["digest"]))
	case aghpRcptAck:
		t.out.doneIf(aghpReceipt+" "+l.String(), string(m.Data["digest"]))
	}
	return nil
}

func (t *AGHPTTP) refuse(l evidence.Label, m Msg, reason string) []Msg {
	t.refusal++
	return []Msg{ttpAnswer(t.Name(), aghpRefused, l, m, "reason", reason)}
}

// takeAsk checks R's request and, in one transition, records the release of k and the receipt.
func (t *AGHPTTP) takeAsk(now time.Time, l evidence.Label, m Msg) []Msg {
	if s := t.served[l]; s != nil {
		rel, rcpt := aghpRelease+" "+l.String(), aghpReceipt+" "+l.String()
		if ttpDigest(m) == s.reqDigest && (t.out.has(rel) || t.out.has(rcpt)) {
			t.out.kick(rel, now)
			t.out.kick(rcpt, now)
			return t.out.due(now, t.cfg.Timing)
		}
		return t.refuse(l, m, "label-served")
	}
	pt, err := t.cfg.Box.Open(aghpBoxInfo, m.Data["s2ttp"])
	if err != nil {
		return t.refuse(l, m, "box")
	}
	f, err := unpackFields(pt, 7)
	if err != nil || string(f[0]) != l.String() || string(f[3]) != "give" || len(f[4]) != MessageKeySize || len(f[6]) != 32 {
		return t.refuse(l, m, "box-mismatch")
	}
	sender, mode, k, recipient := string(f[1]), string(f[2]), f[4], string(f[5])
	hs := evidence.Hash(f[6])
	if !slices.Contains(AGHPModes(), mode) {
		return t.refuse(l, m, "mode")
	}
	if !bytes.Equal(m.Data["hr"], hs[:]) {
		return t.refuse(l, m, "exchange-hash")
	}
	if aghpTTPAuth(mode) {
		want, ok := t.cfg.Passwords[recipient]
		if !ok || m.From != recipient || subtle.ConstantTimeCompare(want, m.Data["password"]) != 1 {
			return t.refuse(l, m, "authentication")
		}
	}
	rc, err := evidence.Sign(&evidence.Record{Type: evidence.AGHPRECEIPT, Label: l, Agent: t.Name(), Sender: sender,
		Recipient: recipient, Mode: mode, Exchange: hs, KeyHash: evidence.Sum(k), Time: evidence.CanonicalTime(now)},
		t.cfg.ID.Signer)
	if err != nil {
		return t.refuse(l, m, "receipt")
	}
	toR := Msg{From: t.Name(), To: m.From, Step: aghpRelease,
		Data: map[string][]byte{"label": []byte(l.String()), "key": bytes.Clone(k), "hr": hs[:]}}
	toS := Msg{From: t.Name(), To: sender, Step: aghpReceipt, Notes: ttpRaw(rc),
		Data: map[string][]byte{"label": []byte(l.String())}}
	// The transition: release and receipt are recorded together, then both are sent.
	t.served[l] = &aghpServed{reqDigest: ttpDigest(m), receipt: rc, peer: m.From}
	out := t.out.put(now, t.cfg.Timing, aghpRelease+" "+l.String(), toR)
	return append(out, t.out.put(now, t.cfg.Timing, aghpReceipt+" "+l.String(), toS)...)
}

// Wake returns when a release or receipt is next resent.
func (t *AGHPTTP) Wake() (time.Time, bool) { return t.out.wake() }

// Tick resends releases and receipts not yet acknowledged.
func (t *AGHPTTP) Tick(now time.Time) []Msg { return t.out.due(now, t.cfg.Timing) }

// Done reports whether every release and receipt was acknowledged.
func (t *AGHPTTP) Done() bool { return len(t.out.list) == 0 }

// Served returns to whom the TTP released the key of l ("" when it did not).
func (t *AGHPTTP) Served(l evidence.Label) string {
	if s := t.served[l]; s != nil {
		return s.peer
	}
	return ""
}

// Pending reports whether the TTP still resends the key of l or its receipt.
func (t *AGHPTTP) Pending(l evidence.Label) (toR, toS bool) {
	return t.out.has(aghpRelease + " " + l.String()), t.out.has(aghpReceipt + " " + l.String())
}

// Refusals counts the requests the TTP refused.
func (t *AGHPTTP) Refusals() int { return t.refusal }

// judgeAGHP is the judge of AGHP (PROTOCOLS.md §4): the receipt must be the TTP's, from a mode in
// which the TTP authenticated R, and the items must hash to hS and H(k) with k opening em to m.
// An absent response item is the empty r of the modes without sender authentication.
func judgeAGHP(c *evidence.Checked) {
	w := newTTPWeigher(c)
	rc, ok := w.one(evidence.AGHPRECEIPT)
	if !ok {
		w.short(good{}, "receipt", "the bundle holds no receipt of the TTP (AGHP-RECEIPT)")
		w.finish(false, "the bundle does not prove receipt: it holds no receipt of the TTP")
		return
	}
	r := rc.rec
	switch {
	case !slices.Contains(AGHPModes(), r.Mode):
		w.bad(rc, "mode", "unknown mode %q", r.Mode)
	case !aghpTTPAuth(r.Mode):
		w.short(rc, "mode", "the receipt was issued in mode %s, in which %s did not authenticate %s: whoever held the e-mail could have fetched the key",
			r.Mode, r.Agent, r.Recipient)
	}
	get := func(name string) []byte { b, _ := c.Bundle.Item(name); return b }
	var missing []string
	for _, name := range []string{evidence.ItemCleartext, evidence.ItemChallenge, evidence.ItemCiphertext, evidence.ItemSecret, evidence.ItemMessage} {
		if _, ok := c.Bundle.Item(name); !ok {
			missing = append(missing, name)
		}
	}
	contentOK := false
	if len(missing) > 0 {
		w.short(rc, "items", "the sender proves receipt with the cleartext, challenge, response, ciphertext, key and message; the bundle lacks %s",
			strings.Join(missing, ", "))
	} else {
		em, k, m := get(evidence.ItemCiphertext), get(evidence.ItemSecret), get(evidence.ItemMessage)
		hs := AGHPExchangeHash(get(evidence.ItemCleartext), get(evidence.ItemChallenge), get(evidence.ItemResponse), em)
		contentOK = true
		if hs != r.Exchange {
			w.bad(rc, "exchange", "the cleartext, challenge, response and ciphertext hash to %s, the receipt names %s", hs, r.Exchange)
			contentOK = false
		}
		if evidence.Sum(k) != r.KeyHash {
			w.bad(rc, "key", "the key hashes to %s, the receipt names %s", evidence.Sum(k), r.KeyHash)
			contentOK = false
		}
		if contentOK {
			if got, err := Decrypt(k, em); err != nil || !bytes.Equal(got, m) {
				w.bad(rc, "decryption", "the key does not decrypt the ciphertext to the message")
				contentOK = false
			}
		}
	}
	if contentOK && w.v.Valid {
		w.finish(true, fmt.Sprintf("%s proves that %s received the message %s: %s authenticated %s (mode %s) and released the key to it at %s",
			r.Sender, r.Recipient, ttpShort(evidence.Sum(get(evidence.ItemMessage))), r.Agent, r.Recipient, r.Mode, evidence.FormatTime(r.Time)))
		return
	}
	if !w.broken && !aghpTTPAuth(r.Mode) {
		w.finish(false, fmt.Sprintf("%s does not prove that %s received the message: in mode %s %s released the key to whoever asked, without authenticating %s",
			r.Sender, r.Recipient, r.Mode, r.Agent, r.Recipient))
		return
	}
	w.finish(false, fmt.Sprintf("%s does not prove that %s received the message", r.Sender, r.Recipient))
}
