package agent

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"time"

	"golang.org/x/mod/sumdb/note"

	"certmail/evidence"
	"certmail/relay"
	"certmail/store"
)

// Retract withdraws an item before the recipient decided (RTR; CertifiedMail.com's retraction):
// only its sender may, and the pickup page then says so.
func (a *Agent) Retract(ctx context.Context, sender string, l evidence.Label) error {
	now := evidence.CanonicalTime(a.now())
	defer a.queued()
	return a.update(ctx, func(tx store.Tx) error {
		it, err := tx.Item(l)
		if errors.Is(err, store.ErrNotFound) || err == nil && it.Sender != sender {
			return refuse(KindNotFound, "no item %s of yours", l)
		}
		if err != nil {
			return err
		}
		if it.State.Final() || it.Prev != "" {
			return refuse(KindGone, "the item is %s already and can no longer be retracted", it.State)
		}
		rtr, err := a.sign(tx, &evidence.Record{Type: evidence.RTR, Label: l, Protocol: it.Protocol, Agent: a.Name(),
			Sender: it.Sender, Recipient: it.Recipient, Content: it.Content, Time: now})
		if err != nil {
			return err
		}
		if err := a.settle(tx, &it, store.StateRetracted, now); err != nil {
			return err
		}
		if it.Next != "" {
			if err := a.peerMail(tx, l, relay.StepDecision, it.Next, []*evidence.Note{rtr}, nil, now); err != nil {
				return err
			}
		}
		return a.receipt(tx, it, ReceiptRetraction, rtr, "", now, body{})
	})
}

// RunTimers fires every timer due now: at the warning point the sender gets WRN, at the
// deadline NDN (PROTOCOLS.md §1, timeouts). Each timer fires in its own transaction, and a timer
// is deleted in the transaction that acts on it, so after a crash it fires again, once. Timers
// fire timerWorkers at a time, so that their transactions share commits, and in batches until
// none is due: a backlog (after downtime, or under load) is worked off at once, not a batch a
// tick. It returns how many fired, and the first error, after which the rest wait for the next
// call.
func (a *Agent) RunTimers(ctx context.Context) (int, error) {
	now := evidence.CanonicalTime(a.now())
	fired := 0
	for {
		var due []store.Timer
		if err := a.st.View(ctx, func(tx store.Tx) (err error) { due, err = tx.DueTimers(now, timerBatch); return err }); err != nil {
			return fired, err
		}
		if len(due) == 0 {
			return fired, nil
		}
		var (
			wg    sync.WaitGroup
			mu    sync.Mutex
			first error
			sem   = make(chan struct{}, timerWorkers)
		)
		for _, t := range due {
			sem <- struct{}{}
			wg.Go(func() {
				defer func() { <-sem }()
				err := a.update(ctx, func(tx store.Tx) error { return a.fire(tx, t, now) })
				mu.Lock()
				defer mu.Unlock()
				if err == nil {
					fired++
				} else if first == nil {
					first = fmt.Errorf("agent: timer %s of %s: %w", t.Kind, t.Label, err)
				}
			})
		}
		wg.Wait()
		a.queued()
		if first != nil || len(due) < timerBatch {
			return fired, first
		}
	}
}

// timerBatch is how many due timers RunTimers reads at once, and timerWorkers how many it fires
// at once.
const (
	timerBatch   = 256
	timerWorkers = 32
)

func (a *Agent) fire(tx store.Tx, t store.Timer, now time.Time) error {
	if err := tx.DeleteTimer(t.Label, t.Kind); errors.Is(err, store.ErrNotFound) {
		return nil // fired by another node meanwhile
	} else if err != nil {
		return err
	}
	it, err := tx.Item(t.Label)
	if err != nil {
		return err
	}
	if it.State.Final() {
		return nil
	}
	switch t.Kind {
	case timerWarn:
		if !now.Before(closing(it.Submitted, it.Deadline)) {
			return nil // too late to warn: the notice of non-delivery is due (after downtime, a clock jump)
		}
		wrn, err := a.sign(tx, &evidence.Record{Type: evidence.WRN, Label: it.Label, Protocol: it.Protocol, Agent: a.Name(),
			Sender: it.Sender, Recipient: it.Recipient, Deadline: it.Deadline, Time: now})
		if err != nil {
			return err
		}
		return a.receipt(tx, it, ReceiptWarning, wrn, "", now, body{})
	case timerDeadline:
		if it.Prev != "" {
			// Pn: the recipient did not accept in time; P1 is told (seed 001 §4.3 step 6:
			// "If Pn does not receive COD within its timeout period, it will inform A").
			return a.localNDN(tx, it, "not-accepted", now)
		}
		return a.notDelivered(tx, it, "deadline", now)
	case timerRelay:
		if it.State != store.StatePosted {
			return nil // acknowledged, or decided
		}
		// seed 001 §4.3 step 4: no ACK from the next agent in time.
		if it.Prev != "" {
			return a.localNDN(tx, it, "relay", now)
		}
		return a.notDelivered(tx, it, "relay", now)
	}
	return fmt.Errorf("unknown timer kind %q", t.Kind)
}

// notDelivered signs NDN with a reason, closes the item and tells the sender.
func (a *Agent) notDelivered(tx store.Tx, it store.Item, reason string, now time.Time) error {
	state := store.StateExpired
	if reason == "bounced" {
		state = store.StateBounced
	}
	ndn, err := a.giveNotice(tx, &it, reason, state, now)
	if err != nil {
		return err
	}
	return a.receipt(tx, it, ReceiptNonDelivery, ndn, reason, now, body{})
}

// localNDN is an NDN an agent after P1 gives: it closes its item and reports the notice back
// towards P1, which decides.
func (a *Agent) localNDN(tx store.Tx, it store.Item, reason string, now time.Time) error {
	ndn, err := a.giveNotice(tx, &it, reason, store.StateExpired, now)
	if err != nil {
		return err
	}
	return a.reportBack(tx, it, ndn, nil, now)
}

// giveNotice signs NDN with a reason and closes the item in state; the agents after this one in
// a chain hear it too, so that none of them releases M.
func (a *Agent) giveNotice(tx store.Tx, it *store.Item, reason string, state store.State, now time.Time) (*evidence.Note, error) {
	ndn, err := a.sign(tx, &evidence.Record{Type: evidence.NDN, Label: it.Label, Protocol: it.Protocol, Agent: a.Name(),
		Sender: it.Sender, Recipient: it.Recipient, Content: it.Content, Deadline: it.Deadline, Reason: reason, Time: now})
	if err != nil {
		return nil, err
	}
	if err := a.settle(tx, it, state, now); err != nil {
		return nil, err
	}
	if it.Next != "" {
		if err := a.peerMail(tx, it.Label, relay.StepDecision, it.Next, []*evidence.Note{ndn}, nil, now); err != nil {
			return nil, err
		}
	}
	return ndn, nil
}

// settle moves the item to state and stops its timers: nothing more is due for it here.
func (a *Agent) settle(tx store.Tx, it *store.Item, state store.State, now time.Time) error {
	it.State, it.Updated = state, now
	if err := tx.UpdateItem(*it); err != nil {
		return err
	}
	return a.stopTimers(tx, it.Label)
}

// sentWithin is how long the record of a delivered mail may wait to share a commit with a
// step somebody waits on, a submission most often (store.UpdateWithin). Nobody waits on the
// record to acknowledge anything: the mail is out, and its NTF is dated when Sent is called.
// Each record in a commit of its own, a certified message with two mails took three commits,
// and at 700 messages a second the committer was busy 72 % of the time (BENCHMARKS.md).
const sentWithin = 5 * time.Millisecond

// Sent records that the outbound queue handed a mail to the next server. For a notification
// that is the moment the recipient is notified: the agent signs NTF (seed 001 §4.4 step 5).
func (a *Agent) Sent(ctx context.Context, m store.Outbound) error {
	now := evidence.CanonicalTime(a.now())
	return a.updateWithin(ctx, sentWithin, func(tx store.Tx) error {
		m.State, m.Updated = store.OutSent, now
		if err := tx.UpdateOutbound(m); err != nil {
			return err
		}
		if m.Kind != kindNotification {
			return nil
		}
		it, err := tx.Item(m.Label)
		if err != nil {
			return err
		}
		if it.State != store.StatePosted {
			return nil // decided or closed before the notification went out (a retry, a retraction)
		}
		if err := a.notified(tx, &it, now); err != nil {
			return err
		}
		return tx.UpdateItem(it)
	})
}

// notified signs the NTF of it, whose notification the recipient's server has taken (seed 001
// §4.3 step 4), and marks it notified; the caller stores it.
func (a *Agent) notified(tx store.Tx, it *store.Item, now time.Time) error {
	if _, err := a.sign(tx, &evidence.Record{Type: evidence.NTF, Label: it.Label, Protocol: it.Protocol, Agent: a.Name(),
		Recipient: it.Recipient, Content: it.Content, Commitment: it.Commitment, Deadline: it.Deadline, Time: now}); err != nil {
		return err
	}
	it.State, it.Updated = store.StateNotified, now
	return nil
}

// notifiedBeforeDecision signs the NTF of an item the recipient decides on while it is still
// posted. The recipient came with the token only its notification carries, so the
// notification was delivered; its record was lost when the agent stopped between the delivery
// and the record, and the delivery made again after the restart will find the item decided.
func (a *Agent) notifiedBeforeDecision(tx store.Tx, it *store.Item, now time.Time) error {
	if it.State != store.StatePosted {
		return nil
	}
	return a.notified(tx, it, now)
}

// Bounced records that a queued mail cannot be delivered. When it is a notification, the
// recipient can never be told: the agent gives notice of non-delivery (NDN, reason bounced).
func (a *Agent) Bounced(ctx context.Context, m store.Outbound, why string) error {
	now := evidence.CanonicalTime(a.now())
	defer a.queued()
	return a.update(ctx, func(tx store.Tx) error {
		m.State, m.LastError, m.Updated = store.OutBounced, why, now
		if err := tx.UpdateOutbound(m); err != nil {
			return err
		}
		if m.Kind == peerKind+string(relay.StepRelay) {
			// The next agent refused the relay for good: the item cannot go on.
			it, err := tx.Item(m.Label)
			if err != nil || it.State != store.StatePosted {
				return err
			}
			a.logger().Warn("agent: relay refused by the next agent", "label", it.Label, "next", it.Next, "why", why)
			if it.Prev != "" {
				return a.localNDN(tx, it, "relay", now)
			}
			return a.notDelivered(tx, it, "relay", now)
		}
		if m.Kind != kindNotification {
			return nil
		}
		it, err := tx.Item(m.Label)
		if err != nil {
			return err
		}
		if it.State.Final() {
			return nil
		}
		return a.notDelivered(tx, it, "bounced", now)
	})
}

// RegisterKey binds a user's signed-note key to its address from now on, with a KEY record
// that the agent signs and keeps; certificates of delivery the user signs later verify with it.
func (a *Agent) RegisterKey(ctx context.Context, address, vkey string) (*evidence.Note, error) {
	now := evidence.CanonicalTime(a.now())
	want, err := evidence.KeyName(address)
	if err != nil {
		return nil, refuse(KindInvalid, "%v", err)
	}
	if v, err := note.NewVerifier(vkey); err != nil || v.Name() != want {
		return nil, refuse(KindInvalid, "the key must be a signed-note verifier key named %s", want)
	}
	var n *evidence.Note
	err = a.update(ctx, func(tx store.Tx) error {
		u, err := tx.User(address)
		if errors.Is(err, store.ErrNotFound) {
			u = store.User{Address: address, Created: now}
		} else if err != nil {
			return err
		}
		if n, err = a.sign(tx, &evidence.Record{Type: evidence.KEY, Agent: a.Name(), Subject: address, Key: vkey, Time: now}); err != nil {
			return err
		}
		u.VerifierKey, u.Updated = vkey, now
		return tx.PutUser(u)
	})
	return n, err
}

// Event is one line of an item's timeline.
type Event struct {
	Time time.Time
	What string // COP, NTF, DLV…, or a mail event: "notification sent"
	Says string
}

// Status is an item with its timeline, for the sender's pages and GET /api/v1/messages/{label}.
type Status struct {
	Item   store.Item
	Events []Event
}

// Status returns the item and its timeline, to its sender only.
func (a *Agent) Status(ctx context.Context, sender string, l evidence.Label) (Status, error) {
	var st Status
	err := a.st.View(ctx, func(tx store.Tx) error {
		it, err := tx.Item(l)
		if err != nil {
			return err
		}
		if it.Sender != sender {
			return store.ErrNotFound
		}
		st.Item = it
		evs, err := tx.Evidence(l)
		if err != nil {
			return err
		}
		for _, e := range evs {
			n, err := evidence.ParseNote(e.Note)
			if err != nil {
				return err
			}
			st.Events = append(st.Events, Event{Time: n.Record.Time, What: string(n.Record.Type), Says: n.Record.Describe()})
		}
		return nil
	})
	if errors.Is(err, store.ErrNotFound) {
		return st, refuse(KindNotFound, "no item %s of yours", l)
	}
	return st, err
}
