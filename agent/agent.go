// Package agent is the delivery agent: it turns each step of a certified exchange — posting,
// notification, acceptance or refusal, retrieval, retraction, warning and deadline — into one
// durable transition that stores the item's new state, signs and stores the step's evidence,
// moves its timers and queues the mails it owes, all at once or not at all (DESIGN.md §2, §6).
//
// This file and its siblings hold the agent as one party, P1 = Pn, of the CEM family
// (PROTOCOLS.md §1, n = 1). The agent never acknowledges a step before Store.Update has returned;
// when it has an evidence log, the step's notes are appended to it shortly after, and at the next
// start if a crash came first (log.go). It never sends mail itself: it queues it, and package
// mailout delivers the queue.
package agent

import (
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"sync/atomic"
	"time"

	"certmail/evidence"
	"certmail/protocol"
	"certmail/store"
)

// Settings are the parts of the configuration the agent's decisions depend on.
type Settings struct {
	PublicURL       string        // base of pickup links, e.g. https://certmail.example
	DefaultDeadline time.Duration // when a submission names none
	MinDeadline     time.Duration
	MaxDeadline     time.Duration
	WarnAt          float64 // fraction of the time to the deadline at which the sender is warned (PEC: 12 of 24 h)
	// Bounce is the envelope sender of the agent's own mail, e.g. certmail@host.
	Bounce string
	// Queued, when set, is called after a step that queued mail has committed, so the outbound
	// queue can send at once rather than at its next poll.
	Queued func()
	// Outbox, when set, takes a submission's mails as soon as its step has committed
	// (mailout.Queue): the step stores them claimed by the outbox (Claim) and hands them over
	// (Hand), so that the queue need not claim them from the store first. Without it they wait,
	// due at once, for the queue's next run.
	Outbox Outbox
	// Log, when set, is the public evidence log: the notes a step stored are appended to it
	// within 50 ms of its commit, and bundles carry inclusion proofs (log.go).
	Log Log
	// Logger gets what the agent cannot report to a caller; nil discards.
	Logger *slog.Logger
	// Peers are the trusted agents (the trust store): an item for a domain a peer serves is
	// relayed to it, and relay mails are taken from them only (federation.go).
	Peers Peers
	// Domains are the mail domains whose recipients the agent delivers to when a peer relays
	// an item to it.
	Domains []string
}

// Outbox is the outbound queue as the agent hands mail to it.
type Outbox interface {
	// Claim returns m, about to be enqueued, claimed by the outbox from birth.
	Claim(m store.Outbound) store.Outbound
	// Hand gives the outbox mails enqueued claimed by a step that has committed. It never
	// blocks.
	Hand(ms ...store.Outbound)
}

// Agent is one delivery agent. It is safe for concurrent use: all state is in the store.
type Agent struct {
	id       *protocol.Identity
	st       store.Store
	blobs    store.Blobs
	mails    Mails
	settings Settings
	now      func() time.Time
	rand     io.Reader
	tries    *tries
	book     *logbook
	pub      *publisher
	appended atomic.Uint64 // notes appended to the evidence log by this process
	// submitting counts the Submits under way, for the store's commit delay
	submitting atomic.Int64
}

// New returns an agent signing with id. now and random may be nil for the wall clock and
// crypto/rand.
func New(id *protocol.Identity, st store.Store, blobs store.Blobs, mails Mails, s Settings, now func() time.Time, random io.Reader) *Agent {
	if now == nil {
		now = time.Now
	}
	if random == nil {
		random = rand.Reader
	}
	if s.WarnAt <= 0 || s.WarnAt >= 1 {
		s.WarnAt = 0.5
	}
	a := &Agent{id: id, st: st, blobs: blobs, mails: mails, settings: s, now: now, rand: random,
		tries: &tries{fail: map[evidence.Label][]time.Time{}}}
	a.book = newLogbook(st, a.logger())
	a.pub = newPublisher(a)
	return a
}

// message returns the stored message of item it: from the store, or, for an item a data
// directory of an earlier version holds, from its blob files.
func (a *Agent) message(ctx context.Context, it store.Item) ([]byte, error) {
	b, err := a.body(ctx, it)
	return b.m, err
}

// body is a stored message M, and whether the store holds it (Tx.PutMessage) rather than the
// blob files of an earlier version: a mail that carries a message the store holds is stored
// without it (store.Outbound.Message).
type body struct {
	m      []byte
	stored bool
}

// body reads the stored message of item it, as message does.
func (a *Agent) body(ctx context.Context, it store.Item) (body, error) {
	var m []byte
	err := a.st.View(ctx, func(tx store.Tx) (err error) { m, err = tx.Message(it.Content, it.Submitted); return err })
	if errors.Is(err, store.ErrNotFound) && a.blobs != nil {
		m, err = a.blobs.Get(ctx, it.Content)
		return body{m: m}, err
	}
	return body{m: m, stored: err == nil}, err
}

// queued tells the outbound queue that a committed step queued mail.
func (a *Agent) queued() {
	if a.settings.Queued != nil {
		a.settings.Queued()
	}
}

// Name is the agent's host name, the name its evidence is signed under.
func (a *Agent) Name() string { return a.id.Name }

// VerifierKey is the agent's signed-note verifier key.
func (a *Agent) VerifierKey() string { return a.id.Verifier }

// Error is a refusal a person can act on; Kind says which, for the HTTP and SMTP faces.
type Error struct {
	Kind    ErrorKind
	Message string
	// Reason is the NAC reason code of a refused submission; NAC is the label of the NAC that
	// records the refusal, zero when none was made.
	Reason string
	NAC    evidence.Label
}

func (e *Error) Error() string { return "agent: " + e.Message }

// ErrorKind classifies refusals.
type ErrorKind int

const (
	KindInvalid     ErrorKind = iota // bad input: 400 / 5.x.x
	KindForbidden                    // not allowed for this user: 403 / 5.7.1
	KindNotFound                     // unknown label or token: 404
	KindGone                         // retracted, expired, refused, already decided: 410 / 409
	KindUnavailable                  // try again later: 503 / 4.x.x
)

func refuse(kind ErrorKind, format string, args ...any) error {
	return &Error{Kind: kind, Message: fmt.Sprintf(format, args...)}
}

// KindOf returns the kind of an agent error, or KindUnavailable for any other error (a store or
// disk failure: the client should retry, and nothing was acknowledged).
func KindOf(err error) ErrorKind {
	var e *Error
	if errors.As(err, &e) {
		return e.Kind
	}
	return KindUnavailable
}

// newToken returns a fresh pickup token (256 bits, URL-safe) and the hash the store keeps.
func (a *Agent) newToken(now time.Time) (string, evidence.Hash, error) {
	b := make([]byte, tokenBytes)
	ms := uint64(now.UnixMilli())
	for i := range tokenTimeBytes {
		b[i] = byte(ms >> (8 * (tokenTimeBytes - 1 - i)))
	}
	if _, err := io.ReadFull(a.rand, b[tokenTimeBytes:]); err != nil {
		return "", evidence.Hash{}, fmt.Errorf("agent: token: %w", err)
	}
	tok := base64.RawURLEncoding.EncodeToString(b)
	return tok, TokenHash(tok), nil
}

// A pickup token is 32 bytes in URL-safe base64 (43 characters): the time it was made, in Unix
// milliseconds, and 26 random bytes.
const (
	tokenTimeBytes = 6
	tokenBytes     = 32
)

// TokenHash is what the store keeps of a pickup token, and finds its item by: the token itself
// never touches disk. The token's time stays in front of its hash, so that the store's index of
// tokens grows at one end, as its labels do, instead of taking a page write at a random place
// for each item (BENCHMARKS.md); the other 26 bytes are SHA-256's, which cannot be turned back
// into the token. An item of an earlier version, whose token was all random, is kept under the
// whole hash (legacyTokenHash).
func TokenHash(tok string) evidence.Hash {
	h := legacyTokenHash(tok)
	b, err := base64.RawURLEncoding.DecodeString(tok)
	if err != nil || len(b) != tokenBytes {
		return h
	}
	var k evidence.Hash
	copy(k[:tokenTimeBytes], b)
	copy(k[tokenTimeBytes:], h[:])
	return k
}

// legacyTokenHash is what versions before TokenHash kept of a token.
func legacyTokenHash(tok string) evidence.Hash {
	return sha256.Sum256([]byte("certmail pickup token\n" + tok))
}

// PickupURL is the link a recipient follows.
func (a *Agent) PickupURL(tok string) string { return a.settings.PublicURL + "/pickup/" + tok }

// sign signs r with the agent's key and stores it in tx. A note of an item is never dated before
// the item's latest note: a clock stepped back must not make a delivery precede its posting.
func (a *Agent) sign(tx store.Tx, r *evidence.Record) (*evidence.Note, error) {
	if !r.Label.IsZero() {
		latest, err := latestTime(tx, r.Label)
		if err != nil {
			return nil, err
		}
		if r.Time.Before(latest) {
			r.Time = latest
		}
	}
	n, err := evidence.Sign(r, a.id.Signer)
	if err != nil {
		return nil, fmt.Errorf("agent: sign %s: %w", r.Type, err)
	}
	if _, err := tx.AddEvidence(r.Label, n); err != nil {
		return nil, err
	}
	return n, nil
}

// Bundle gathers the evidence of a label into a bundle an arbiter can verify, with the KEY record
// of the recipient's key when the recipient signed, and the evidence log's latest checkpoint with
// the inclusion proof of each note it covers; with message, the stored M is carried too.
func (a *Agent) Bundle(ctx context.Context, l evidence.Label, message bool) (*evidence.Bundle, error) {
	var it store.Item
	var b *evidence.Bundle
	err := a.st.View(ctx, func(tx store.Tx) error {
		var err error
		it, err = tx.Item(l)
		if errors.Is(err, store.ErrNotFound) && !l.IsZero() {
			// A refused submission has no item, only its NAC (NotAccept).
			b, err = a.bundleIn(tx, store.Item{Label: l})
			if err == nil && len(b.Notes) == 0 {
				err = store.ErrNotFound
			}
			return err
		}
		if err != nil {
			return err
		}
		b, err = a.bundleIn(tx, it)
		return err
	})
	if errors.Is(err, store.ErrNotFound) {
		return nil, refuse(KindNotFound, "no item with label %s", l)
	}
	if err != nil {
		return nil, err
	}
	if err := a.Prove(ctx, b); err != nil {
		return nil, err
	}
	if message && !it.Label.IsZero() {
		m, err := a.message(ctx, it)
		if err != nil {
			return nil, fmt.Errorf("agent: message of %s: %w", l, err)
		}
		b.SetItem(evidence.ItemMessage, m)
	}
	return b, nil
}

// latestTime is the time of the latest note stored for a label (zero when none): the store
// keeps each note's record time as its Stored time, so the notes need not be parsed again.
func latestTime(tx store.Tx, l evidence.Label) (time.Time, error) {
	evs, err := tx.Evidence(l)
	if err != nil {
		return time.Time{}, err
	}
	var latest time.Time
	for _, e := range evs {
		if e.Stored.After(latest) {
			latest = e.Stored
		}
	}
	return latest, nil
}
