package agent

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"time"

	"certmail/evidence"
	"certmail/password"
	"certmail/protocol"
	"certmail/store"
)

// PickupView is what the pickup page shows a recipient before it decides: who sent what under
// which label and commitment, by when, and whether a password is needed. Never the content.
type PickupView struct {
	Label        evidence.Label
	Protocol     evidence.Protocol
	Sender       string
	Recipient    string
	Commitment   evidence.Hash
	Content      evidence.Hash
	Deadline     time.Time // when acceptance closes: a little before the T of the COP (closing)
	State        store.State
	NeedPassword bool
	Hint         string
	Size         int64
	// Why is set when the item can no longer be accepted: retracted, expired, refused…
	Why string
}

// Acceptance is a recipient's "accept and sign the receipt".
type Acceptance struct {
	Password string
	Client   string // the recipient's client address, recorded in DLV
	// COD is the recipient's own signed certificate of delivery (COD, COD-NSR or COD-IP as the
	// mode requires), made with the key registered for its address; nil for agent attestation.
	COD []byte
}

// passwordLimit bounds wrong message passwords per item: after maxPasswordTries within
// passwordWindow the pickup refuses further tries until the window has passed.
const (
	maxPasswordTries = 5
	passwordWindow   = 15 * time.Minute
)

// tries counts wrong passwords per item, in memory: a restart forgives, which costs an
// attacker a restart it cannot cause.
type tries struct {
	mu   sync.Mutex
	fail map[evidence.Label][]time.Time
}

func (t *tries) blocked(l evidence.Label, now time.Time) bool {
	t.mu.Lock()
	defer t.mu.Unlock()
	recent := t.fail[l][:0]
	for _, at := range t.fail[l] {
		if now.Sub(at) < passwordWindow {
			recent = append(recent, at)
		}
	}
	t.fail[l] = recent
	return len(recent) >= maxPasswordTries
}

func (t *tries) failed(l evidence.Label, now time.Time) {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.fail[l] = append(t.fail[l], now)
}

// itemByToken finds the item a pickup token names.
func (a *Agent) itemByToken(ctx context.Context, tok string) (store.Item, error) {
	var it store.Item
	err := a.st.View(ctx, func(tx store.Tx) (err error) {
		it, err = tx.ItemByToken(TokenHash(tok))
		if errors.Is(err, store.ErrNotFound) {
			it, err = tx.ItemByToken(legacyTokenHash(tok)) // an item of an earlier version
		}
		return err
	})
	if errors.Is(err, store.ErrNotFound) {
		return it, refuse(KindNotFound, "this pickup link is not valid")
	}
	return it, err
}

func viewOf(it store.Item, now time.Time) PickupView {
	v := PickupView{Label: it.Label, Protocol: it.Protocol, Sender: it.Sender, Recipient: it.Recipient,
		Commitment: it.Commitment, Content: it.Content, Deadline: acceptBy(it), State: it.State,
		NeedPassword: it.PasswordHash != "", Hint: it.PasswordHint, Size: it.Size}
	switch {
	case it.State == store.StateRetracted:
		v.Why = "the sender retracted this message before it was picked up"
	case it.State == store.StateRefused:
		v.Why = "you refused this message"
	case it.State == store.StateDelivered:
		v.Why = "you accepted this message"
	case it.State == store.StateAccepted:
		v.Why = "you accepted this message; the content is released once the sender's agent confirms it"
	case it.State.Final() || !now.Before(v.Deadline):
		v.Why = "the deadline for picking up this message has passed"
	}
	return v
}

// Pickup returns what the recipient sees before deciding.
func (a *Agent) Pickup(ctx context.Context, tok string) (PickupView, error) {
	it, err := a.itemByToken(ctx, tok)
	if err != nil {
		return PickupView{}, err
	}
	return viewOf(it, a.now()), nil
}

// decidable loads the item for a decision and checks that it can still be decided, with the
// message password when one is set.
func (a *Agent) decidable(ctx context.Context, tok, pw string, now time.Time) (store.Item, error) {
	it, err := a.itemByToken(ctx, tok)
	if err != nil {
		return it, err
	}
	if v := viewOf(it, now); v.Why != "" {
		return it, refuse(KindGone, "%s", v.Why)
	}
	if it.PasswordHash != "" {
		if a.tries.blocked(it.Label, now) {
			return it, refuse(KindUnavailable, "too many wrong passwords for this message; try again in %s", passwordWindow)
		}
		if err := password.Check(it.PasswordHash, pw); err != nil {
			a.tries.failed(it.Label, now)
			return it, refuse(KindForbidden, "wrong message password")
		}
	}
	return it, nil
}

// Accept records the recipient's acceptance: its own COD when it signs with a registered key,
// and the agent's DLV (seed 001 §4.4 step 6), then the ROD and the delivery receipt to the
// sender (step 8–9), in one transaction. Only after it returns may the content be released.
func (a *Agent) Accept(ctx context.Context, tok string, acc Acceptance) (PickupView, error) {
	now := evidence.CanonicalTime(a.now())
	it, err := a.decidable(ctx, tok, acc.Password, now)
	if err != nil {
		return PickupView{}, err
	}
	var cod *evidence.Note
	if acc.COD != nil {
		if cod, err = a.checkCOD(ctx, it, acc.COD, now); err != nil {
			return PickupView{}, err
		}
	}
	var m body
	if it.Prev == "" { // in a chain, the first agent sends the delivery receipt
		if m, err = a.receiptBody(ctx, it); err != nil {
			return PickupView{}, err
		}
	}
	err = a.update(ctx, func(tx store.Tx) error {
		cur, err := tx.Item(it.Label)
		if err != nil {
			return err
		}
		if v := viewOf(cur, now); v.Why != "" {
			return refuse(KindGone, "%s", v.Why) // decided meanwhile
		}
		if err := a.notifiedBeforeDecision(tx, &cur, now); err != nil {
			return err
		}
		// DESIGN.md §2: the recipient's COD when it signs, and the agent's DLV (how, when, from
		// where it authenticated) always.
		if cod != nil {
			if _, err := tx.AddEvidence(it.Label, cod); err != nil {
				return err
			}
		}
		method := "link"
		if it.PasswordHash != "" {
			method = "password"
		}
		client := acc.Client
		if client == "" {
			client = "unknown"
		}
		dlv, err := a.sign(tx, &evidence.Record{Type: evidence.DLV, Label: it.Label, Protocol: it.Protocol, Agent: a.Name(),
			Recipient: it.Recipient, Content: it.Content, Method: method, Client: client, Time: now})
		if err != nil {
			return err
		}
		if cur.Prev != "" {
			it = cur
			return a.acceptedInChain(tx, cur, cod, dlv, now)
		}
		rod, err := a.sign(tx, &evidence.Record{Type: evidence.ROD, Label: it.Label, Protocol: it.Protocol, Agent: a.Name(),
			Origin: a.Name(), Recipient: it.Recipient, Content: it.Content, Time: now})
		if err != nil {
			return err
		}
		if err := a.settle(tx, &cur, store.StateDelivered, now); err != nil {
			return err
		}
		it = cur
		return a.receipt(tx, cur, ReceiptDelivery, rod, "", now, m)
	})
	if err != nil {
		return PickupView{}, err
	}
	a.queued()
	return viewOf(it, now), nil
}

// checkCOD checks a recipient's own certificate of delivery: the type the mode requires, this
// label, this agent and recipient, the content or commitment, signed by the key registered for
// the recipient's address.
func (a *Agent) checkCOD(ctx context.Context, it store.Item, raw []byte, now time.Time) (*evidence.Note, error) {
	n, err := evidence.ParseNote(raw)
	if err != nil {
		return nil, refuse(KindInvalid, "certificate of delivery: %v", err)
	}
	r := n.Record
	want := protocol.CODType(it.Protocol)
	switch {
	case r.Type != want:
		return nil, refuse(KindInvalid, "certificate of delivery: a %s, but mode %s needs a %s", r.Type, it.Protocol, want)
	case r.Label != it.Label || r.Agent != a.Name() || r.Recipient != it.Recipient:
		return nil, refuse(KindInvalid, "certificate of delivery: it names another label, agent or recipient")
	case want == evidence.CODBasic && r.Content != it.Content, want == evidence.CODIP && r.Commitment != it.Commitment:
		return nil, refuse(KindInvalid, "certificate of delivery: it names another content")
	case r.Time.After(now):
		// The ROD signed now must not predate the acceptance it reports; CODText gives the
		// agent's own time to sign.
		return nil, refuse(KindInvalid, "certificate of delivery: dated %s, after the agent's clock (%s): sign the text the agent gives", evidence.FormatTime(r.Time), evidence.FormatTime(now))
	}
	var u store.User
	err = a.st.View(ctx, func(tx store.Tx) (err error) { u, err = tx.User(it.Recipient); return err })
	if err != nil && !errors.Is(err, store.ErrNotFound) {
		return nil, err
	}
	if u.VerifierKey == "" {
		return nil, refuse(KindForbidden, "certificate of delivery: %s has no registered key", it.Recipient)
	}
	keys, err := evidence.NewKeys(u.VerifierKey)
	if err != nil {
		return nil, fmt.Errorf("agent: registered key of %s: %w", it.Recipient, err)
	}
	if err := n.Verify(keys); err != nil {
		return nil, refuse(KindForbidden, "certificate of delivery: %v", err)
	}
	// An arbiter accepts the signature only under a KEY record dated at or before it.
	var bound bool
	err = a.st.View(ctx, func(tx store.Tx) (err error) {
		bound, err = keyBoundBy(tx, it.Recipient, u.VerifierKey, r.Time)
		return err
	})
	if err != nil {
		return nil, err
	}
	if !bound {
		return nil, refuse(KindInvalid, "certificate of delivery: dated %s, before the key that signed it was registered: fetch the text to sign again", evidence.FormatTime(r.Time))
	}
	return n, nil
}

// Refuse records the recipient's refusal (REJ) and tells the sender.
func (a *Agent) Refuse(ctx context.Context, tok, pw string) error {
	now := evidence.CanonicalTime(a.now())
	it, err := a.decidable(ctx, tok, pw, now)
	if err != nil {
		return err
	}
	defer a.queued()
	return a.update(ctx, func(tx store.Tx) error {
		cur, err := tx.Item(it.Label)
		if err != nil {
			return err
		}
		if v := viewOf(cur, now); v.Why != "" {
			return refuse(KindGone, "%s", v.Why)
		}
		if err := a.notifiedBeforeDecision(tx, &cur, now); err != nil {
			return err
		}
		rej, err := a.sign(tx, &evidence.Record{Type: evidence.REJ, Label: it.Label, Protocol: it.Protocol, Agent: a.Name(),
			Recipient: it.Recipient, Reason: "refused", Time: now})
		if err != nil {
			return err
		}
		if err := a.settle(tx, &cur, store.StateRefused, now); err != nil {
			return err
		}
		if cur.Prev != "" {
			return a.reportBack(tx, cur, rej, nil, now)
		}
		return a.receipt(tx, cur, ReceiptRefusal, rej, "refused", now, body{})
	})
}

// Content releases M to a recipient who accepted, recording each retrieval as RET (seed 001 §4.4
// step 7; CertifiedMail.com's open tracking).
func (a *Agent) Content(ctx context.Context, tok, client string) ([]byte, PickupView, error) {
	now := evidence.CanonicalTime(a.now())
	it, err := a.itemByToken(ctx, tok)
	if err != nil {
		return nil, PickupView{}, err
	}
	if it.State == store.StateAccepted {
		return nil, PickupView{}, refuse(KindUnavailable, "your acceptance is on record; the content is released once the sender's agent confirms it, usually within seconds")
	}
	if it.State != store.StateDelivered {
		return nil, PickupView{}, refuse(KindForbidden, "the content is released only after you accept the message")
	}
	m, err := a.message(ctx, it)
	if err != nil {
		return nil, PickupView{}, fmt.Errorf("agent: content of %s: %w", it.Label, err)
	}
	if client == "" {
		client = "unknown"
	}
	err = a.update(ctx, func(tx store.Tx) error {
		cur, err := tx.Item(it.Label)
		if err != nil {
			return err
		}
		cur.Retrievals++
		_, err = a.sign(tx, &evidence.Record{Type: evidence.RET, Label: it.Label, Agent: a.Name(),
			Recipient: it.Recipient, Content: it.Content, Client: client, Time: now})
		if errors.Is(err, store.ErrDuplicate) {
			err = nil // the same client in the same millisecond: that retrieval is on record
		}
		if err != nil {
			return err
		}
		it = cur
		return tx.UpdateItem(cur)
	})
	if err != nil {
		return nil, PickupView{}, err
	}
	return m, viewOf(it, now), nil
}

func (a *Agent) stopTimers(tx store.Tx, l evidence.Label) error {
	for _, k := range []string{timerWarn, timerDeadline, timerRelay} {
		if err := tx.DeleteTimer(l, k); err != nil && !errors.Is(err, store.ErrNotFound) {
			return err
		}
	}
	return nil
}
