package protocol

import (
	"encoding/hex"
	"fmt"
	"io"
	"slices"
	"time"

	"certmail/evidence"
)

// CEMSenderConfig is what the sender A knows before it posts.
type CEMSenderConfig struct {
	Protocol  evidence.Protocol
	Address   string    // A
	Agent     string    // P1, A's agent
	Secret    []byte    // A's account secret at P1
	Trust     []string  // verifier keys of the agents A trusts (the trust store)
	Recipient string    // B
	Message   []byte    // M, the exact bytes
	Deadline  time.Time // T
	RetractAt time.Time // when A withdraws the item if it has no outcome yet; zero: never
	Rand      io.Reader // for the submission nonce (crypto/rand.Reader in production)
	Timing    CEMTiming
}

// CEMSender is A in the CEM family: it posts M with P1, keeps the certificate of posting, and
// collects the outcome — a report of delivery with B's certificate or the agent's attestation,
// a notice of non-delivery, a refusal or a retraction — into a bundle an arbiter can weigh.
type CEMSender struct {
	cfg    CEMSenderConfig
	trust  *trust
	hash   evidence.Hash
	nonce  string
	submit Msg

	label   evidence.Label
	notes   []*evidence.Note // COP first, then everything accepted
	outcome evidence.Outcome
	taken   map[string]bool // digests of pushes already taken, acknowledged again on repeat

	retry   time.Time // next resend of the submission or retraction
	wait    time.Duration
	done    bool
	gaveUp  bool
	doneAt  time.Time
	started bool
}

// NewCEMSender checks the configuration and draws the submission nonce.
func NewCEMSender(cfg CEMSenderConfig) (*CEMSender, error) {
	if !cfg.Protocol.IsCEM() {
		return nil, fmt.Errorf("protocol: cem sender: %q is not a protocol of the CEM family", cfg.Protocol)
	}
	if _, err := evidence.KeyName(cfg.Address); err != nil {
		return nil, fmt.Errorf("protocol: cem sender: %w", err)
	}
	if _, err := evidence.KeyName(cfg.Recipient); err != nil {
		return nil, fmt.Errorf("protocol: cem sender: %w", err)
	}
	trust, err := newTrust(cfg.Trust)
	if err != nil {
		return nil, fmt.Errorf("protocol: cem sender: %w", err)
	}
	var nonce [16]byte
	if cfg.Rand == nil {
		return nil, fmt.Errorf("protocol: cem sender: no randomness")
	}
	if _, err := io.ReadFull(cfg.Rand, nonce[:]); err != nil {
		return nil, fmt.Errorf("protocol: cem sender: nonce: %w", err)
	}
	cfg.Deadline = evidence.CanonicalTime(cfg.Deadline)
	cfg.Timing = cfg.Timing.orDefault()
	cfg.Message = slices.Clone(cfg.Message)
	s := &CEMSender{cfg: cfg, trust: trust, hash: evidence.Sum(cfg.Message), nonce: hex.EncodeToString(nonce[:]),
		outcome: evidence.OutcomeInvalid, taken: map[string]bool{}}
	deadline := evidence.FormatTime(cfg.Deadline)
	// seed 001 §4.3 step 1: A -> P1: B, M, T (authenticated by A's account, as SMTP AUTH does).
	s.submit = Msg{From: cfg.Address, To: cfg.Agent, Step: cemStep(cfg.Protocol, cemSubmit), Data: map[string][]byte{
		"sender":    []byte(cfg.Address),
		"recipient": []byte(cfg.Recipient),
		"deadline":  []byte(deadline),
		"message":   cfg.Message,
		"nonce":     []byte(s.nonce),
		"auth":      cemAuth(cfg.Secret, "submit", string(cfg.Protocol), cfg.Address, cfg.Recipient, deadline, s.hash.String(), s.nonce),
	}}
	return s, nil
}

func (s *CEMSender) Name() string { return s.cfg.Address }

// Start posts the message (seed 001 §4.3 step 1). "A could resend this message until it has
// retrieved the certificate of posting", and does.
func (s *CEMSender) Start(now time.Time) []Msg {
	if s.started {
		return nil
	}
	s.started = true
	if !now.Before(s.cfg.Deadline) {
		s.finish(now, true)
		return nil
	}
	s.wait = s.cfg.Timing.Retry
	s.retry = now.Add(s.wait)
	return []Msg{s.submit.Clone()}
}

func (s *CEMSender) Receive(now time.Time, m Msg) []Msg {
	p, step, ok := cemSplitStep(m.Step)
	if !ok || p != s.cfg.Protocol || !s.started {
		return nil
	}
	switch step {
	case cemPosted:
		s.takeCOP(m)
	case cemReceipt:
		return s.takeReceipt(now, m)
	}
	return nil
}

// takeCOP: seed 001 §4.3 step 2, A <-> P1: B, L, COP. "A can fetch COP to check whether P1
// received the mail unchanged": A checks every field against what it submitted.
func (s *CEMSender) takeCOP(m Msg) {
	if s.notes != nil || len(m.Notes) != 1 {
		return
	}
	notes, err := cemNotes(m)
	if err != nil {
		return
	}
	n, r := notes[0], notes[0].Record
	if r.Type != evidence.COP || n.Verify(s.trust.keys) != nil || r.Agent != s.cfg.Agent ||
		r.Protocol != s.cfg.Protocol || r.Sender != s.cfg.Address || r.Recipient != s.cfg.Recipient ||
		r.Content != s.hash || !r.Deadline.Equal(s.cfg.Deadline) {
		return
	}
	s.label, s.notes = r.Label, []*evidence.Note{n}
	s.outcome = evidence.OutcomePosted
	s.wait = s.cfg.Timing.Retry
	s.retry = time.Time{}
}

// takeReceipt: seed 001 §4.3 step 9, A <-> P1: Pn, L, ROD, [COD] — or a notice, a refusal,
// a retraction, a warning. A takes the notes only if its bundle with them stays valid.
func (s *CEMSender) takeReceipt(now time.Time, m Msg) []Msg {
	if s.notes == nil {
		return nil
	}
	d := cemDigest(m)
	if s.taken[d] {
		return []Msg{cemAckFor(s.Name(), s.cfg.Protocol, s.label, m)}
	}
	notes, err := cemNotes(m)
	if err != nil || len(notes) == 0 {
		return nil
	}
	all := append(slices.Clone(s.notes), notes...)
	v, _ := cemAssess(cemBundle(s.label, s.trust, all, s.cfg.Message), s.trust, s.cfg.Protocol)
	if !v.Valid || v.Outcome == evidence.OutcomeInvalid || s.final() && v.Outcome != s.outcome {
		return nil
	}
	s.notes, s.outcome = all, v.Outcome
	s.taken[d] = true
	if s.final() && !s.done {
		s.finish(now, false)
	}
	return []Msg{cemAckFor(s.Name(), s.cfg.Protocol, s.label, m)}
}

// final reports whether A holds an outcome (PROTOCOLS.md §1 "Judge").
func (s *CEMSender) final() bool {
	switch s.outcome {
	case evidence.OutcomeDelivered, evidence.OutcomeNotDelivered, evidence.OutcomeRefused,
		evidence.OutcomeRetracted, evidence.OutcomeCompensation:
		return true
	}
	return false
}

func (s *CEMSender) finish(now time.Time, gaveUp bool) {
	s.done, s.gaveUp, s.doneAt = true, gaveUp, now
	s.retry = time.Time{}
}

func (s *CEMSender) Wake() (time.Time, bool) {
	if s.done || !s.started {
		return time.Time{}, false
	}
	at := cemEarliest(s.retry, s.cfg.Deadline.Add(s.cfg.Timing.Grace))
	if s.notes != nil && !s.cfg.RetractAt.IsZero() && s.retry.IsZero() {
		at = cemEarliest(at, s.cfg.RetractAt)
	}
	return at, !at.IsZero()
}

func (s *CEMSender) Tick(now time.Time) []Msg {
	if s.done || !s.started {
		return nil
	}
	if !now.Before(s.cfg.Deadline.Add(s.cfg.Timing.Grace)) {
		// No outcome by T plus the grace period: A's COP alone carries its compensation claim
		// (seed 001 §4.6); without a COP, A knows its message was never posted.
		s.finish(now, true)
		return nil
	}
	if s.notes == nil {
		// A resends the submission until P1 answers with the COP: P1 gives the same COP for the
		// same submission even after T, so A learns whether it was posted.
		if !now.Before(s.retry) {
			s.backoff(now)
			return []Msg{s.submit.Clone()}
		}
		return nil
	}
	if !s.cfg.RetractAt.IsZero() && !now.Before(s.cfg.RetractAt) && (s.retry.IsZero() || !now.Before(s.retry)) {
		// CertifiedMail.com (seed 004): retraction before pickup. A asks until an outcome comes.
		s.backoff(now)
		return []Msg{s.retractMsg()}
	}
	return nil
}

func (s *CEMSender) backoff(now time.Time) {
	s.retry = now.Add(s.wait)
	s.wait = min(2*s.wait, s.cfg.Timing.RetryMax)
}

func (s *CEMSender) retractMsg() Msg {
	return Msg{From: s.cfg.Address, To: s.cfg.Agent, Step: cemStep(s.cfg.Protocol, cemRetract), Data: map[string][]byte{
		"sender": []byte(s.cfg.Address),
		"label":  []byte(s.label.String()),
		"auth":   cemAuth(s.cfg.Secret, "retract", string(s.cfg.Protocol), s.cfg.Address, s.label.String()),
	}}
}

func (s *CEMSender) Done() bool { return s.done }

// Label is the exchange's label, once P1 issued the COP.
func (s *CEMSender) Label() (evidence.Label, bool) { return s.label, s.notes != nil }

// Outcome is what A's evidence proves so far (OutcomeInvalid before the COP).
func (s *CEMSender) Outcome() evidence.Outcome { return s.outcome }

// Finished reports when A stopped waiting and whether it gave up without an outcome.
func (s *CEMSender) Finished() (at time.Time, gaveUp bool) { return s.doneAt, s.gaveUp }

// Bundle returns A's evidence for an arbiter: every note, the verifier keys of every agent and of
// B (bound by the KEY record it carries), and the message as item "message". Nil before the COP.
func (s *CEMSender) Bundle() *evidence.Bundle {
	if s.notes == nil {
		return nil
	}
	return cemBundle(s.label, s.trust, s.notes, s.cfg.Message)
}
