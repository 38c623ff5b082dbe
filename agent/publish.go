package agent

import (
	"bytes"
	"context"
	"errors"
	"fmt"

	"certmail/evidence"
	"certmail/protocol"
	"certmail/store"
)

// Publish is step (c) of Schneier–Riordan (PROTOCOLS.md §3) with this agent as the public
// location X: the sender, authenticated as one of the agent's users, publishes the key K of a
// ciphertext C its recipient asked for. The agent checks that the recipient's signed request
// (SR-REQ) names this sender and this agent, signs PUB(L, X, H(C), K, time) and appends it to the
// public evidence log before it returns; anyone holding C then finds K with Published.
//
// The recipient's signature is checked with the key bound to its address at this agent (a KEY
// record the agent signed), or with the KEY record keyNote the sender passes on, when this agent
// signed it. One key per label and per ciphertext: the same publication again returns the same
// PUB, anything else is refused.
func (a *Agent) Publish(ctx context.Context, sender string, request, keyNote []byte, key []byte) (*evidence.Note, error) {
	now := evidence.CanonicalTime(a.now())
	req, err := evidence.ParseNote(request)
	if err != nil {
		return nil, refuse(KindInvalid, "request: %v", err)
	}
	r := req.Record
	switch {
	case r.Type != evidence.SRREQ:
		return nil, refuse(KindInvalid, "request: a %s, want the recipient's %s", r.Type, evidence.SRREQ)
	case r.Sender != sender:
		return nil, refuse(KindForbidden, "request: it asks %s, not you, to publish", r.Sender)
	case r.Location != a.Name():
		return nil, refuse(KindInvalid, "request: it names %s as the public location, not this agent (%s)", r.Location, a.Name())
	case len(key) != protocol.MessageKeySize:
		return nil, refuse(KindInvalid, "key: want %d bytes, got %d", protocol.MessageKeySize, len(key))
	}
	vkey, err := a.recipientKey(ctx, r.Recipient, keyNote)
	if err != nil {
		return nil, err
	}
	keys, err := evidence.NewKeys(vkey)
	if err != nil {
		return nil, fmt.Errorf("agent: key of %s: %w", r.Recipient, err)
	}
	if err := req.Verify(keys); err != nil {
		return nil, refuse(KindForbidden, "request: not signed by %s's registered key: %v", r.Recipient, err)
	}

	var pub *evidence.Note
	err = a.update(ctx, func(tx store.Tx) error {
		if e, err := tx.Published(r.Ciphertext); err == nil {
			old, err := evidence.ParseNote(e.Note)
			if err != nil {
				return fmt.Errorf("agent: stored PUB %d: %w", e.Seq, err)
			}
			if old.Record.Label == r.Label && bytes.Equal(old.Record.Secret, key) {
				pub = old // the same publication again
				return nil
			}
			return refuse(KindGone, "a key for ciphertext %s is published already, under label %s", r.Ciphertext, old.Record.Label)
		} else if !errors.Is(err, store.ErrNotFound) {
			return err
		}
		if _, err := tx.Item(r.Label); err == nil {
			return refuse(KindInvalid, "label %s belongs to another exchange at this agent", r.Label)
		}
		if evs, err := tx.Evidence(r.Label); err != nil {
			return err
		} else if len(evs) > 0 {
			return refuse(KindGone, "label %s has a published key or other evidence already", r.Label)
		}
		n, err := a.sign(tx, &evidence.Record{Type: evidence.PUB, Label: r.Label, Protocol: evidence.SR, Agent: a.Name(),
			Ciphertext: r.Ciphertext, Secret: bytes.Clone(key), Time: now})
		if err != nil {
			return err
		}
		stored, err := tx.EvidenceByLeaf(r.Label, n.Leaf())
		if err != nil {
			return err
		}
		pub = n
		return tx.SetPublished(r.Ciphertext, stored.Seq)
	})
	if err != nil {
		return nil, err
	}
	return pub, nil
}

// recipientKey is the verifier key bound to a recipient's address: the one registered at this
// agent, else the one a KEY record signed by this agent carries.
func (a *Agent) recipientKey(ctx context.Context, recipient string, keyNote []byte) (string, error) {
	var u store.User
	err := a.st.View(ctx, func(tx store.Tx) (err error) { u, err = tx.User(recipient); return err })
	if err != nil && !errors.Is(err, store.ErrNotFound) {
		return "", err
	}
	if u.VerifierKey != "" {
		return u.VerifierKey, nil
	}
	if keyNote == nil {
		return "", refuse(KindForbidden, "%s has no key registered here: send the KEY record that binds it", recipient)
	}
	n, err := evidence.ParseNote(keyNote)
	if err != nil {
		return "", refuse(KindInvalid, "KEY record: %v", err)
	}
	own, err := evidence.NewKeys(a.id.Verifier)
	if err != nil {
		return "", err
	}
	if n.Record.Type != evidence.KEY || n.Record.Subject != recipient || n.Verify(own) != nil {
		return "", refuse(KindForbidden, "KEY record: not a binding of %s's key signed by this agent", recipient)
	}
	return n.Record.Key, nil
}

// Published returns the PUB record that publishes a key for the ciphertext hash h, in a bundle
// with its log checkpoint and inclusion proof once the log covers it.
func (a *Agent) Published(ctx context.Context, h evidence.Hash) (*evidence.Bundle, error) {
	var e store.Evidence
	err := a.st.View(ctx, func(tx store.Tx) (err error) { e, err = tx.Published(h); return err })
	if errors.Is(err, store.ErrNotFound) {
		return nil, refuse(KindNotFound, "no key is published for ciphertext %s", h)
	}
	if err != nil {
		return nil, err
	}
	// The PUB is the only note of its label (Publish sees to that): the label's bundle is the
	// PUB's, with its proof once the log covers it.
	return a.Bundle(ctx, e.Label, false)
}
