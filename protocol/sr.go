package protocol

import (
	"bytes"
	"crypto/hmac"
	"crypto/sha256"
	"errors"
	"fmt"
	"io"
	"slices"
	"strings"
	"time"

	"certmail/evidence"
)

// Schneier–Riordan certified e-mail (PROTOCOLS.md §3; B. Schneier, J. Riordan, "A Certified
// E-mail Protocol", ACSAC 1998, as summarised in seed 003):
//
//	(a) A -> B : L, C = E_K(M), the locations where A will publish
//	(b) B -> A : REQ = S_B(SR-REQ: L, A, B, H(C), T, X [, expectation])  "publish the key by T at X"
//	(c) A -> X : publish (H(C), K) on or before T; X signs PUB(L, X, H(C), K, time) into its log
//	(d) B <- X : PUB, then M = D_K(C)
//
// Optimistic variant, between (b) and (c) ("if Alice has a reliable connection to the public
// channel"): A -> B : K, and B -> A : S_B(SR-KEYRCPT: L, A, B, H(C), H(K)). If the key receipt
// comes, (c) is not needed; if it has not come by T − Margin, A publishes.
//
// X is an agent's evidence log: A publishes by asking the agent to sign a PUB record. The agent
// authenticates A as its user (the machines model the account login as an HMAC under the
// account's secret over the label, K and B's request, so that the network can neither forge nor
// alter a publication: X cannot check K against C, which it never sees), checks that B's signed
// request names A and the agent, and publishes one key per label: a replayed or second
// publication for a label is refused.
//
// Caveat of the seed, which stands: K becomes public at X, and anyone holding C and K reads M.
// C must therefore travel confidentially, from A to B only (TLS, S/MIME encryption to B, or the
// agent's pickup page), never where the public could keep a copy.
//
// The judge accepts PUB by its signed time, not after T; when the bundle proves the PUB in X's
// log under a checkpoint X cosigned with a log time not after T, the verdict says the log shows
// the publication by T, and otherwise that the PUB's time is X's word. If A shows neither a PUB by T
// nor B's key receipt, B wins: that is what "the arbiter has no choice but to believe Bob" means.

// SR steps.
const (
	srOffer     = "sr/a"         // A -> B: L, C, locations
	srRequest   = "sr/b"         // B -> A: SR-REQ, B's KEY
	srReqAck    = "sr/b-ack"     // A -> B: the request with this digest is taken
	srReqNo     = "sr/b-refused" // A -> B: the request with this digest is not for A's C, X or window
	srKey       = "sr/k"         // A -> B: K (optimistic)
	srKeyRcpt   = "sr/k-rcpt"    // B -> A: SR-KEYRCPT
	srPublish   = "sr/c"         // A -> X: L, K, SR-REQ, B's KEY
	srPublished = "sr/c-pub"     // X -> A: PUB
	srLookup    = "sr/d"         // B -> X: L
	srFound     = "sr/d-pub"     // X -> B: PUB
)

// SRSenderConfig configures A.
type SRSenderConfig struct {
	Sender     string   // A's address (A signs nothing in SR; its agent authenticates it to X)
	Account    []byte   // the secret of A's account at the agents where it publishes
	Recipient  string   // B's address
	Message    []byte   // M
	Locations  []string // agents at which A is willing to publish, in A's order of preference
	Trust      []string // verifier keys of the agents A trusts: the locations, and those binding B's key
	Optimistic bool     // send K to B directly and publish only if B's key receipt does not come
	// MinWindow and MaxWindow bound T − now when B's request arrives: a request that leaves A
	// too little time, or binds A for too long, is refused (seed: "an unreasonable date").
	MinWindow, MaxWindow time.Duration
	Margin               time.Duration // optimistic: publish at T − Margin without a key receipt
	RequestWait          time.Duration // give up when B has not asked within this time
	Rand                 io.Reader     // the label, K and the nonce (crypto/rand when nil)
	Timing               TTPTiming
}

func (c *SRSenderConfig) defaults() error {
	c.Timing = c.Timing.orDefault()
	if c.MinWindow <= 0 {
		c.MinWindow = time.Hour
	}
	if c.MaxWindow <= 0 {
		c.MaxWindow = 30 * 24 * time.Hour
	}
	if c.Margin <= 0 {
		c.Margin = c.MinWindow / 2
	}
	if c.RequestWait <= 0 {
		c.RequestWait = 7 * 24 * time.Hour
	}
	if c.Margin >= c.MinWindow || c.MinWindow > c.MaxWindow {
		return errors.New("protocol: sr sender: want 0 < Margin < MinWindow <= MaxWindow")
	}
	if len(c.Locations) == 0 {
		return errors.New("protocol: sr sender: no location to publish at")
	}
	for _, x := range c.Locations {
		if strings.ContainsAny(x, " @") {
			return fmt.Errorf("protocol: sr sender: location %q is not an agent host name", x)
		}
	}
	return nil
}

// SRSender is A in Schneier–Riordan.
type SRSender struct {
	cfg        SRSenderConfig
	trust      *trust
	label      evidence.Label
	key, ciph  []byte
	offer      Msg
	out        ttpOutbox
	giveUpAt   time.Time
	req, bKey  *evidence.Note // B's request, once taken
	publishAt  time.Time      // optimistic: when to publish without a key receipt
	publishing bool
	pub, rcpt  *evidence.Note
	done       bool
	doneAt     time.Time
	late       bool // X published after T
}

// NewSRSender chooses the label and K and encrypts M.
func NewSRSender(cfg SRSenderConfig) (*SRSender, error) {
	if err := cfg.defaults(); err != nil {
		return nil, err
	}
	trust, err := newTrust(cfg.Trust)
	if err != nil {
		return nil, err
	}
	s := &SRSender{cfg: cfg, trust: trust}
	if s.label, err = evidence.NewLabel(cfg.Rand); err != nil {
		return nil, err
	}
	if s.key, err = NewMessageKey(cfg.Rand); err != nil {
		return nil, err
	}
	if s.ciph, err = Encrypt(s.key, cfg.Message, cfg.Rand); err != nil {
		return nil, err
	}
	s.offer = Msg{From: cfg.Sender, To: cfg.Recipient, Step: srOffer, Data: map[string][]byte{
		"label": []byte(s.label.String()), "ciphertext": s.ciph, "locations": []byte(strings.Join(cfg.Locations, " "))}}
	return s, nil
}

// Name is A's address.
func (s *SRSender) Name() string { return s.cfg.Sender }

// Label is the label A chose.
func (s *SRSender) Label() evidence.Label { return s.label }

// Key is K (for tests that watch where it travels).
func (s *SRSender) Key() []byte { return s.key }

// Start sends step (a).
func (s *SRSender) Start(now time.Time) []Msg {
	s.giveUpAt = now.Add(s.cfg.RequestWait)
	return s.out.put(now, s.cfg.Timing, srOffer, s.offer)
}

// Receive takes B's request and key receipt and X's PUB.
func (s *SRSender) Receive(now time.Time, m Msg) []Msg {
	if l, ok := ttpLabel(m); !ok || l != s.label {
		return nil
	}
	switch m.Step {
	case srRequest:
		return s.takeRequest(now, m)
	case srKeyRcpt:
		s.takeKeyReceipt(now, m)
	case srPublished:
		s.takePUB(now, m)
	}
	return nil
}

// takeRequest checks B's request: A's label, A's C, a location A publishes at, a deadline that
// leaves time and binds A not too long.
func (s *SRSender) takeRequest(now time.Time, m Msg) []Msg {
	notes, ok := ttpNotes(m)
	if !ok {
		return nil
	}
	req := ttpNote(notes, evidence.SRREQ, "")
	if req == nil {
		return nil
	}
	r := req.Record
	bKey := ttpNote(notes, evidence.KEY, r.Recipient)
	if r.Label != s.label || r.Sender != s.Name() || r.Recipient != s.cfg.Recipient ||
		s.trust.userNote(req, bKey, r.Recipient) != nil {
		return nil
	}
	if s.req != nil {
		if bytes.Equal(req.Bytes(), s.req.Bytes()) {
			return []Msg{ttpAnswer(s.Name(), srReqAck, s.label, m)}
		}
		return []Msg{ttpAnswer(s.Name(), srReqNo, s.label, m, "reason", "label-taken")}
	}
	window := r.Deadline.Sub(now)
	switch {
	case r.Ciphertext != evidence.Sum(s.ciph):
		return []Msg{ttpAnswer(s.Name(), srReqNo, s.label, m, "reason", "ciphertext")}
	case !slices.Contains(s.cfg.Locations, r.Location) || !s.trust.hasAgent(r.Location):
		return []Msg{ttpAnswer(s.Name(), srReqNo, s.label, m, "reason", "location")}
	case window < s.cfg.MinWindow || window > s.cfg.MaxWindow:
		return []Msg{ttpAnswer(s.Name(), srReqNo, s.label, m, "reason", "deadline")}
	}
	s.req, s.bKey = req, bKey
	s.out.done(srOffer)
	out := []Msg{ttpAnswer(s.Name(), srReqAck, s.label, m)}
	if s.cfg.Optimistic {
		s.publishAt = r.Deadline.Add(-s.cfg.Margin)
		k := Msg{From: s.Name(), To: s.cfg.Recipient, Step: srKey,
			Data: map[string][]byte{"label": []byte(s.label.String()), "key": s.key}}
		return append(out, s.out.put(now, s.cfg.Timing, srKey, k)...)
	}
	return append(out, s.publish(now)...)
}

// publish starts step (c): A asks X to sign the PUB record, and asks again until it has it.
func (s *SRSender) publish(now time.Time) []Msg {
	s.publishing = true
	m := Msg{From: s.Name(), To: s.req.Record.Location, Step: srPublish, Notes: ttpRaw(s.req, s.bKey),
		Data: map[string][]byte{"label": []byte(s.label.String()), "key": s.key,
			"auth": srPublishAuth(s.cfg.Account, s.label, s.key, s.req)}}
	return s.out.put(now, s.cfg.Timing, srPublish, m)
}

func (s *SRSender) items() map[string][]byte {
	return map[string][]byte{evidence.ItemMessage: s.cfg.Message, evidence.ItemCiphertext: s.ciph, evidence.ItemSecret: s.key}
}

func (s *SRSender) takeKeyReceipt(now time.Time, m Msg) {
	notes, ok := ttpNotes(m)
	if s.req == nil || s.rcpt != nil || !ok {
		return
	}
	rc := ttpNote(notes, evidence.SRKEYRCPT, "")
	if rc == nil {
		return
	}
	b := ttpBundle(s.label, s.trust, []*evidence.Note{s.req, s.bKey, rc}, s.items())
	if ttpAssess(b, s.trust).Outcome != evidence.OutcomeReceiptProven {
		return
	}
	s.rcpt = rc
	s.finish(now) // B's own receipt: a publication under way is no longer needed
}

func (s *SRSender) takePUB(now time.Time, m Msg) {
	notes, ok := ttpNotes(m)
	if s.req == nil || s.pub != nil || !ok || !s.publishing {
		return
	}
	pub := ttpNote(notes, evidence.PUB, "")
	if pub == nil || pub.Verify(s.trust.keys) != nil {
		return
	}
	p := pub.Record
	if p.Label != s.label || p.Agent != s.req.Record.Location || p.Ciphertext != evidence.Sum(s.ciph) ||
		!bytes.Equal(p.Secret, s.key) {
		return
	}
	s.pub = pub
	s.late = p.Time.After(s.req.Record.Deadline)
	s.finish(now)
}

func (s *SRSender) finish(now time.Time) {
	s.done, s.doneAt = true, now
	s.out = ttpOutbox{}
}

// Wake returns when A next resends, publishes (optimistic) or gives up waiting for B.
func (s *SRSender) Wake() (time.Time, bool) {
	if s.done {
		return time.Time{}, false
	}
	at, _ := s.out.wake()
	if s.req == nil {
		at = ttpEarliest(at, s.giveUpAt)
	} else if s.cfg.Optimistic && !s.publishing && s.rcpt == nil {
		at = ttpEarliest(at, s.publishAt)
	}
	return at, !at.IsZero()
}

// Tick resends, publishes when the key receipt did not come in time, and gives up when B never
// asked.
func (s *SRSender) Tick(now time.Time) []Msg {
	if s.done {
		return nil
	}
	if s.req == nil && !now.Before(s.giveUpAt) {
		s.finish(now)
		return nil
	}
	var out []Msg
	if s.req != nil && s.cfg.Optimistic && !s.publishing && s.rcpt == nil && !now.Before(s.publishAt) {
		s.out.done(srKey)
		out = s.publish(now)
	}
	return append(out, s.out.due(now, s.cfg.Timing)...)
}

// Done reports whether A reached a final state: its proof of receipt, a publication that came
// too late, or no request from B in time.
func (s *SRSender) Done() bool { return s.done }

// DoneAt is when A reached its final state.
func (s *SRSender) DoneAt() time.Time { return s.doneAt }

// Requested reports whether A took B's request.
func (s *SRSender) Requested() bool { return s.req != nil }

// Proven reports whether A holds a proof of receipt: B's request and either B's key receipt or a
// PUB not after T.
func (s *SRSender) Proven() bool { return s.req != nil && (s.rcpt != nil || s.pub != nil && !s.late) }

// Bundle returns what A holds to prove receipt (B's request and KEY record, B's key receipt or
// X's PUB, and M, C, K), or nil before B's request. It proves receipt only when Proven.
func (s *SRSender) Bundle() *evidence.Bundle {
	if s.req == nil {
		return nil
	}
	notes := []*evidence.Note{s.req, s.bKey}
	if s.rcpt != nil {
		notes = append(notes, s.rcpt) // B's own receipt needs no look at X's log
	} else if s.pub != nil {
		notes = append(notes, s.pub)
	}
	return ttpBundle(s.label, s.trust, notes, s.items())
}

// SRRecipientConfig configures B.
type SRRecipientConfig struct {
	Recipient   BoundKey      // B's key; Recipient.ID.Name is B's address
	Locations   []string      // agents B accepts as the public location X, in B's order of preference
	Trust       []string      // verifier keys of the agents B trusts, the locations among them
	Window      time.Duration // T = the time of A's first offer + Window
	Grace       time.Duration // B looks for the PUB until T + Grace, then A did not publish
	Expectation string        // optional: what B expects M to be (seed: "reduces Alice's ability to deliver bogus information")
	Timing      TTPTiming
}

// srAttempt is one ciphertext B was offered under a label, and B's request for it.
type srAttempt struct {
	ciph    []byte
	req     *evidence.Note
	refused string // A's reason when A refused the request
}

// srExchange is B's durable record of one label.
type srExchange struct {
	label    evidence.Label
	sender   string
	location string
	deadline time.Time
	attempts []*srAttempt
	key, msg []byte
	opened   evidence.Hash  // H(C) of the attempt K opened
	rcpt     *evidence.Note // B's key receipt (optimistic)
	pub      *evidence.Note // X's PUB
	late     bool           // the PUB was signed after T
	closed   bool           // final: M obtained, or T + Grace passed without a publication
	closedAt time.Time
}

// SRRecipient is B in Schneier–Riordan.
type SRRecipient struct {
	cfg   SRRecipientConfig
	trust *trust
	ex    map[evidence.Label]*srExchange
	out   ttpOutbox
}

// NewSRRecipient returns B.
func NewSRRecipient(cfg SRRecipientConfig) (*SRRecipient, error) {
	cfg.Timing = cfg.Timing.orDefault()
	if err := cfg.Recipient.check(); err != nil {
		return nil, err
	}
	if cfg.Window <= 0 {
		cfg.Window = 24 * time.Hour
	}
	if cfg.Grace <= 0 {
		cfg.Grace = 10 * time.Minute
	}
	trust, err := newTrust(cfg.Trust)
	if err != nil {
		return nil, err
	}
	return &SRRecipient{cfg: cfg, trust: trust, ex: map[evidence.Label]*srExchange{}}, nil
}

// Name is B's address.
func (r *SRRecipient) Name() string { return r.cfg.Recipient.ID.Name }

// Start sends nothing: B waits for mail.
func (r *SRRecipient) Start(time.Time) []Msg { return nil }

// Receive takes A's offer, acknowledgements and key, and X's PUB.
func (r *SRRecipient) Receive(now time.Time, m Msg) []Msg {
	l, ok := ttpLabel(m)
	if !ok {
		return nil
	}
	if m.Step == srOffer {
		return r.takeOffer(now, l, m)
	}
	e := r.ex[l]
	if e == nil {
		return nil
	}
	switch m.Step {
	case srReqAck, srReqNo:
		for i, a := range e.attempts {
			if r.out.doneIf(r.reqKey(l, i), string(m.Data["digest"])) && m.Step == srReqNo {
				a.refused = string(m.Data["reason"])
			}
		}
	case srKey:
		return r.takeKey(now, e, m)
	case srFound:
		r.takePUB(now, e, m)
	}
	return nil
}

func (r *SRRecipient) reqKey(l evidence.Label, i int) string {
	return fmt.Sprintf("%s %s %d", srRequest, l, i)
}
func (r *SRRecipient) lookKey(l evidence.Label) string { return srLookup + " " + l.String() }

// takeOffer is step (b): B commits to a ciphertext by asking for its key by T at X.
func (r *SRRecipient) takeOffer(now time.Time, l evidence.Label, m Msg) []Msg {
	c := m.Data["ciphertext"]
	if len(c) == 0 {
		return nil
	}
	e := r.ex[l]
	if e == nil {
		offered := strings.Fields(string(m.Data["locations"]))
		i := slices.IndexFunc(r.cfg.Locations, func(x string) bool { return slices.Contains(offered, x) && r.trust.hasAgent(x) })
		if i < 0 {
			return nil
		}
		e = &srExchange{label: l, sender: m.From, location: r.cfg.Locations[i], deadline: evidence.CanonicalTime(now.Add(r.cfg.Window))}
		r.ex[l] = e
	}
	refused := make([]string, len(e.attempts))
	for i, a := range e.attempts {
		refused[i] = a.refused
	}
	if e.sender != m.From || e.closed || ttpLive(refused) >= ttpMaxLive || len(e.attempts) >= ttpMaxTries ||
		slices.ContainsFunc(e.attempts, func(a *srAttempt) bool { return bytes.Equal(a.ciph, c) }) {
		return nil
	}
	req, err := evidence.Sign(&evidence.Record{Type: evidence.SRREQ, Label: l, Sender: e.sender, Recipient: r.Name(),
		Ciphertext: evidence.Sum(c), Deadline: e.deadline, Location: e.location, Expectation: r.cfg.Expectation},
		r.cfg.Recipient.ID.Signer)
	if err != nil {
		return nil
	}
	e.attempts = append(e.attempts, &srAttempt{ciph: bytes.Clone(c), req: req})
	msg := Msg{From: r.Name(), To: e.sender, Step: srRequest, Notes: ttpRaw(req, r.cfg.Recipient.Binding),
		Data: map[string][]byte{"label": []byte(l.String())}}
	out := r.out.put(now, r.cfg.Timing, r.reqKey(l, len(e.attempts)-1), msg)
	look := Msg{From: r.Name(), To: e.location, Step: srLookup, Data: map[string][]byte{"label": []byte(l.String())}}
	return append(out, r.out.put(now, r.cfg.Timing, r.lookKey(l), look)...)
}

// open finds the attempt that k opens (with H(C) = hc unless hc is zero) and takes M from it.
func (e *srExchange) open(k []byte, hc evidence.Hash) bool {
	for _, a := range e.attempts {
		if hc.IsZero() || evidence.Sum(a.ciph) == hc {
			if msg, err := Decrypt(k, a.ciph); err == nil {
				e.key, e.msg, e.opened = bytes.Clone(k), msg, evidence.Sum(a.ciph)
				return true
			}
		}
	}
	return false
}

func (r *SRRecipient) close(now time.Time, e *srExchange) {
	e.closed, e.closedAt = true, now
	for i := range e.attempts {
		r.out.done(r.reqKey(e.label, i))
	}
	r.out.done(r.lookKey(e.label))
}

// takeKey is the optimistic step: B checks K against C and signs its key receipt.
func (r *SRRecipient) takeKey(now time.Time, e *srExchange, m Msg) []Msg {
	k := m.Data["key"]
	if m.From != e.sender {
		return nil
	}
	if e.msg == nil {
		if e.closed {
			return nil
		}
		if !e.open(k, evidence.Hash{}) {
			return nil
		}
		r.close(now, e)
	}
	if !bytes.Equal(k, e.key) {
		return nil
	}
	if e.rcpt == nil {
		rc, err := evidence.Sign(&evidence.Record{Type: evidence.SRKEYRCPT, Label: e.label, Sender: e.sender,
			Recipient: r.Name(), Ciphertext: e.opened, KeyHash: evidence.Sum(k)}, r.cfg.Recipient.ID.Signer)
		if err != nil {
			return nil
		}
		e.rcpt = rc
	}
	return []Msg{{From: r.Name(), To: e.sender, Step: srKeyRcpt, Notes: ttpRaw(e.rcpt),
		Data: map[string][]byte{"label": []byte(e.label.String())}}}
}

// takePUB is step (d): K from X's PUB record.
func (r *SRRecipient) takePUB(now time.Time, e *srExchange, m Msg) {
	notes, ok := ttpNotes(m)
	if !ok || e.msg != nil {
		return
	}
	pub := ttpNote(notes, evidence.PUB, "")
	if pub == nil || pub.Verify(r.trust.keys) != nil {
		return
	}
	p := pub.Record
	if p.Label != e.label || p.Agent != e.location || p.Protocol != evidence.SR {
		return
	}
	if !e.open(p.Secret, p.Ciphertext) {
		return
	}
	e.pub, e.late = pub, p.Time.After(e.deadline)
	r.close(now, e)
}

// Wake returns when B next resends or looks at X, or when a deadline T + Grace passes.
func (r *SRRecipient) Wake() (time.Time, bool) {
	at, _ := r.out.wake()
	for _, e := range r.ex {
		if !e.closed {
			at = ttpEarliest(at, e.deadline.Add(r.cfg.Grace))
		}
	}
	return at, !at.IsZero()
}

// Tick resends, looks at X again, and closes the exchanges whose T + Grace passed: A did not
// publish in time, and B wins any dispute about them.
func (r *SRRecipient) Tick(now time.Time) []Msg {
	for _, e := range r.ex {
		if !e.closed && !now.Before(e.deadline.Add(r.cfg.Grace)) {
			r.close(now, e)
		}
	}
	return r.out.due(now, r.cfg.Timing)
}

// Done reports whether every exchange B committed to is closed.
func (r *SRRecipient) Done() bool {
	for _, e := range r.ex {
		if !e.closed {
			return false
		}
	}
	return true
}

// Committed reports whether B signed a request for label l.
func (r *SRRecipient) Committed(l evidence.Label) bool {
	e := r.ex[l]
	return e != nil && len(e.attempts) > 0
}

// Deadline is the T B asked for under label l.
func (r *SRRecipient) Deadline(l evidence.Label) time.Time {
	if e := r.ex[l]; e != nil {
		return e.deadline
	}
	return time.Time{}
}

// Message returns M once B holds K for it.
func (r *SRRecipient) Message(l evidence.Label) ([]byte, bool) {
	if e := r.ex[l]; e != nil && e.msg != nil {
		return e.msg, true
	}
	return nil, false
}

// Closed reports whether the exchange of l is final, and when it became so.
func (r *SRRecipient) Closed(l evidence.Label) (bool, time.Time) {
	if e := r.ex[l]; e != nil {
		return e.closed, e.closedAt
	}
	return false, time.Time{}
}

// NotPublished reports whether T + Grace passed without K: A did not publish by T, and B wins.
func (r *SRRecipient) NotPublished(l evidence.Label) bool {
	e := r.ex[l]
	return e != nil && e.closed && e.msg == nil
}

// PublishedLate reports whether B found K only in a PUB signed after T.
func (r *SRRecipient) PublishedLate(l evidence.Label) bool { e := r.ex[l]; return e != nil && e.late }

// srPublishAuth is the account login of a publication: HMAC-SHA256 under the account secret over
// the label, K and H(B's request).
func srPublishAuth(secret []byte, l evidence.Label, k []byte, req *evidence.Note) []byte {
	mac := hmac.New(sha256.New, secret)
	h := req.Leaf()
	mac.Write(packFields([]byte("certmail sr publish"), []byte(l.String()), k, h[:]))
	return mac.Sum(nil)
}

// SRPublisherConfig configures X, the agent whose evidence log is the public location.
type SRPublisherConfig struct {
	ID       *Identity         // X's signing key; ID.Name is X's host name
	Accounts map[string][]byte // the account secret of each user who may publish, by address
	Trust    []string          // verifier keys of the agents whose KEY records X accepts
	Timing   TTPTiming
}

// SRPublisher is X: it signs one PUB record per label, for the sender B's request names, and
// shows it to anyone who asks.
type SRPublisher struct {
	cfg     SRPublisherConfig
	trust   *trust
	pubs    map[evidence.Label]*evidence.Note
	refusal int
}

// NewSRPublisher returns X.
func NewSRPublisher(cfg SRPublisherConfig) (*SRPublisher, error) {
	if cfg.ID == nil || strings.Contains(cfg.ID.Name, "@") {
		return nil, errors.New("protocol: sr publisher: needs an agent identity")
	}
	trust, err := newTrust(cfg.Trust)
	if err != nil {
		return nil, err
	}
	return &SRPublisher{cfg: cfg, trust: trust, pubs: map[evidence.Label]*evidence.Note{}}, nil
}

// Clone returns a copy of X's durable state.
func (x *SRPublisher) Clone() *SRPublisher {
	c := *x
	c.pubs = map[evidence.Label]*evidence.Note{}
	for l, n := range x.pubs {
		c.pubs[l] = n
	}
	return &c
}

// Name is X's host name.
func (x *SRPublisher) Name() string { return x.cfg.ID.Name }

// Start sends nothing.
func (x *SRPublisher) Start(time.Time) []Msg { return nil }

// Receive takes publications and look-ups.
func (x *SRPublisher) Receive(now time.Time, m Msg) []Msg {
	l, ok := ttpLabel(m)
	if !ok {
		return nil
	}
	switch m.Step {
	case srPublish:
		pub := x.publish(now, l, m)
		if pub == nil {
			x.refusal++
			return nil
		}
		return []Msg{{From: x.Name(), To: m.From, Step: srPublished, Notes: ttpRaw(pub),
			Data: map[string][]byte{"label": []byte(l.String())}}}
	case srLookup:
		if pub := x.pubs[l]; pub != nil {
			return []Msg{{From: x.Name(), To: m.From, Step: srFound, Notes: ttpRaw(pub),
				Data: map[string][]byte{"label": []byte(l.String())}}}
		}
	}
	return nil
}

// publish is step (c) at X. The agent authenticates A as its user and publishes only for the
// sender of a request B signed naming this agent.
func (x *SRPublisher) publish(now time.Time, l evidence.Label, m Msg) *evidence.Note {
	notes, ok := ttpNotes(m)
	if !ok {
		return nil
	}
	req := ttpNote(notes, evidence.SRREQ, "")
	k := m.Data["key"]
	if req == nil || len(k) != MessageKeySize {
		return nil
	}
	r := req.Record
	secret, ok := x.cfg.Accounts[r.Sender]
	if !ok || !hmac.Equal(m.Data["auth"], srPublishAuth(secret, l, k, req)) {
		return nil // not A, or not what A asked for
	}
	if r.Label != l || r.Location != x.Name() ||
		x.trust.userNote(req, ttpNote(notes, evidence.KEY, r.Recipient), r.Recipient) != nil {
		return nil
	}
	if pub := x.pubs[l]; pub != nil {
		// One key per label: the same publication again gets the same record, anything else nothing.
		if pub.Record.Ciphertext == r.Ciphertext && bytes.Equal(pub.Record.Secret, k) {
			return pub
		}
		return nil
	}
	pub, err := evidence.Sign(&evidence.Record{Type: evidence.PUB, Label: l, Protocol: evidence.SR, Agent: x.Name(),
		Ciphertext: r.Ciphertext, Secret: bytes.Clone(k), Time: evidence.CanonicalTime(now)}, x.cfg.ID.Signer)
	if err != nil {
		return nil
	}
	x.pubs[l] = pub
	return pub
}

// Wake: X has no timers.
func (x *SRPublisher) Wake() (time.Time, bool) { return time.Time{}, false }

// Tick does nothing.
func (x *SRPublisher) Tick(time.Time) []Msg { return nil }

// Done is always true: X only answers.
func (x *SRPublisher) Done() bool { return true }

// Published returns X's PUB record for label l.
func (x *SRPublisher) Published(l evidence.Label) *evidence.Note { return x.pubs[l] }

// Refusals counts the publications X refused.
func (x *SRPublisher) Refusals() int { return x.refusal }

// judgeSR is the judge of Schneier–Riordan (PROTOCOLS.md §3 "Judge"): A proves receipt with M,
// K, C, B's request, and either X's PUB (at the location and for the ciphertext B named, signed
// not after T) or B's key receipt. Otherwise B wins.
func judgeSR(c *evidence.Checked) {
	w := newTTPWeigher(c)
	m, hasM := c.Bundle.Item(evidence.ItemMessage)
	ct, hasC := c.Bundle.Item(evidence.ItemCiphertext)
	k, hasK := c.Bundle.Item(evidence.ItemSecret)
	reqs := goodOf(c, evidence.SRREQ)
	if len(reqs) == 0 {
		w.short(good{}, "request", "the bundle holds no request signed by the recipient (SR-REQ)")
		w.finish(false, "the bundle does not prove receipt: it holds no request signed by the recipient")
		return
	}
	req := reqs[0]
	for _, g := range reqs {
		if hasC && g.rec.Ciphertext == evidence.Sum(ct) {
			req = g
		}
	}
	r := req.rec
	of := fmt.Sprintf("B's request (note %d)", req.pos)
	contentOK := false
	switch {
	case !hasM || !hasC || !hasK:
		w.short(req, "items", "A proves receipt with M, C and K; the bundle lacks %s", ttpMissing(hasM, hasC, hasK))
	case evidence.Sum(ct) != r.Ciphertext:
		w.bad(req, "ciphertext", "the ciphertext hashes to %s, the request names %s", evidence.Sum(ct), r.Ciphertext)
	default:
		if got, err := Decrypt(k, ct); err != nil || !bytes.Equal(got, m) {
			w.bad(req, "decryption", "the key does not decrypt the ciphertext to the message")
		} else {
			contentOK = true
		}
	}
	how := ""
	for _, g := range goodOf(c, evidence.SRKEYRCPT) {
		rc := g.rec
		ok := w.same(g, "sender", rc.Sender, r.Sender, of) && w.same(g, "recipient", rc.Recipient, r.Recipient, of) &&
			w.same(g, "ciphertext", rc.Ciphertext.String(), r.Ciphertext.String(), of)
		if ok && hasK && rc.KeyHash != evidence.Sum(k) {
			w.bad(g, "key", "the key hashes to %s, the key receipt names %s", evidence.Sum(k), rc.KeyHash)
			ok = false
		}
		if ok && how == "" {
			how = fmt.Sprintf("%s signed a receipt for its key", r.Recipient)
		}
	}
	var late []good
	for _, g := range goodOf(c, evidence.PUB) {
		p := g.rec
		// The key must be published where B asked: a PUB signed by another agent is not X's.
		ok := w.same(g, "location", p.Agent, r.Location, of) &&
			w.same(g, "ciphertext", p.Ciphertext.String(), r.Ciphertext.String(), of)
		if ok && hasK && !bytes.Equal(p.Secret, k) {
			w.bad(g, "secret", "the published key is not the key K of the bundle")
			ok = false
		}
		switch {
		case !ok:
		case p.Time.After(r.Deadline):
			late = append(late, g)
		case how == "":
			how = fmt.Sprintf("%s published its key at %s, before the deadline %s", p.Agent,
				evidence.FormatTime(p.Time), evidence.FormatTime(r.Deadline))
			logged := g.pos-1 < len(c.Logged) && c.Logged[g.pos-1]
			switch {
			case logged && !c.LogTime.IsZero() && !c.LogTime.After(r.Deadline):
				// The log time is the deadline's witness: the checkpoint that holds the PUB was
				// cosigned by then.
				how += fmt.Sprintf(", as %s's evidence log shows (log time %s)", p.Agent, evidence.FormatTime(c.LogTime))
			case logged && !c.LogTime.IsZero():
				w.v.Notices = append(w.v.Notices, fmt.Sprintf("the bundle's log checkpoint (log time %s) shows the PUB record only after the deadline; that it came before rests on the PUB's own time, %s's word: a checkpoint cosigned by the deadline would show it", evidence.FormatTime(c.LogTime), p.Agent))
			default:
				w.v.Notices = append(w.v.Notices, fmt.Sprintf("the PUB record's time is %s's word: the bundle holds no log checkpoint with a log time that shows it published by the deadline", p.Agent))
			}
		}
	}
	for _, g := range late {
		if how == "" {
			w.short(g, "deadline", "%s published the key at %s, after the deadline %s that B's request set",
				g.rec.Agent, evidence.FormatTime(g.rec.Time), evidence.FormatTime(r.Deadline))
		} else {
			w.v.Notices = append(w.v.Notices, fmt.Sprintf("the PUB record of note %d came after the deadline; the receipt rests on the other evidence", g.pos))
		}
	}
	if how == "" && len(late) == 0 && w.v.Valid {
		w.short(req, "publication", "the bundle holds no key receipt from %s and no publication of the key at %s by %s",
			r.Recipient, r.Location, evidence.FormatTime(r.Deadline))
	}
	if how != "" && contentOK && w.v.Valid {
		w.finish(true, fmt.Sprintf("%s proves that %s received the message %s: %s asked for its key by %s at %s, and %s",
			r.Sender, r.Recipient, ttpShort(evidence.Sum(m)), r.Recipient, evidence.FormatTime(r.Deadline), r.Location, how))
		return
	}
	if how == "" && !w.broken {
		what := fmt.Sprintf("the key was not published at %s by %s", r.Location, evidence.FormatTime(r.Deadline))
		if len(late) > 0 {
			what = fmt.Sprintf("the key was published at %s only at %s, after the deadline %s", r.Location,
				evidence.FormatTime(late[0].rec.Time), evidence.FormatTime(r.Deadline))
		}
		w.finish(false, fmt.Sprintf("%s does not prove that %s received the message: %s, and %s signed no key receipt, so %s wins",
			r.Sender, r.Recipient, what, r.Recipient, r.Recipient))
		return
	}
	w.finish(false, fmt.Sprintf("%s does not prove that %s received the message", r.Sender, r.Recipient))
}

func ttpMissing(hasM, hasC, hasK bool) string {
	var miss []string
	for _, x := range []struct {
		has  bool
		name string
	}{{hasM, "the message M"}, {hasC, "the ciphertext C"}, {hasK, "the key K"}} {
		if !x.has {
			miss = append(miss, x.name)
		}
	}
	return strings.Join(miss, " and ")
}
