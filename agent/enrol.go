package agent

import (
	"context"
	"crypto/ed25519"
	"errors"
	"fmt"
	"time"

	"golang.org/x/mod/sumdb/note"

	"certmail/evidence"
	"certmail/protocol"
	"certmail/store"
)

// A recipient's own signature on the certificate of delivery (DESIGN.md §5; PROTOCOLS.md §1
// step 6) needs a key the agent knows to be the recipient's. A recipient with no account at this
// agent enrols one through its pickup link: the link was mailed to the recipient's address and
// is good for this one item, so holding it shows control of that mailbox — the same ground on
// which the agent's DLV attests that the recipient accepted. Enrolment therefore asks for no
// more than acceptance does (the message password when one is set, while the item can still be
// decided), and the KEY record it signs binds the key to the address from that moment on, for
// this and later items. A key enrolled this way proves no more about the person than the DLV
// does; what it adds is that the certificate of delivery is signed by a key the recipient holds
// and the agent does not.

// Enrolment is what EnrolKey did.
type Enrolment struct {
	Address string // the recipient's address
	Key     string // the verifier key now registered for it
	// New is false when Key was registered already: nothing was signed.
	New bool
	// Record is the KEY record signed now; nil when New is false.
	Record *evidence.Note
}

// EnrolKey registers vkey, a signed-note verifier key named after the recipient's address
// (evidence.KeyName), for the recipient of the item tok names. It is allowed only while the item
// can be decided and, when the item has a message password, only with it; a wrong password counts
// against the item's limit as at acceptance. Enrolling the key already registered is a no-op.
func (a *Agent) EnrolKey(ctx context.Context, tok, pw, vkey string) (Enrolment, error) {
	now := evidence.CanonicalTime(a.now())
	it, err := a.decidable(ctx, tok, pw, now)
	if err != nil {
		return Enrolment{}, err
	}
	e := Enrolment{Address: it.Recipient, Key: vkey}
	var u store.User
	err = a.st.View(ctx, func(tx store.Tx) (err error) { u, err = tx.User(it.Recipient); return err })
	switch {
	case err != nil && !errors.Is(err, store.ErrNotFound):
		return Enrolment{}, err
	case u.Disabled:
		return Enrolment{}, refuse(KindForbidden, "the account %s is disabled; ask the agent's administrator", it.Recipient)
	case u.VerifierKey == vkey:
		return e, nil
	}
	n, err := a.RegisterKey(ctx, it.Recipient, vkey)
	if err != nil {
		return Enrolment{}, err
	}
	e.New, e.Record = true, n
	return e, nil
}

// VerifierKeyFor returns the signed-note verifier key of an Ed25519 public key (32 bytes, as
// WebCrypto exports it raw) under the key name of address.
func VerifierKeyFor(address string, pub []byte) (string, error) {
	if len(pub) != ed25519.PublicKeySize {
		return "", refuse(KindInvalid, "an Ed25519 public key is %d bytes, not %d", ed25519.PublicKeySize, len(pub))
	}
	name, err := evidence.KeyName(address)
	if err != nil {
		return "", refuse(KindInvalid, "%v", err)
	}
	vkey, err := note.NewEd25519VerifierKey(name, ed25519.PublicKey(pub))
	if err != nil {
		return "", refuse(KindInvalid, "%v", err)
	}
	return vkey, nil
}

// CODText returns the body of the certificate of delivery the recipient of tok's item signs to
// accept it: the canonical record (COD, COD-NSR or COD-IP as the mode requires) naming this agent,
// the label, the recipient and the content or commitment, timed now. A client signs exactly
// these bytes — they are the note's text — and Accept checks exactly them. It reveals nothing
// the pickup page does not show, so it asks for no password.
func (a *Agent) CODText(ctx context.Context, tok string) ([]byte, error) {
	now := evidence.CanonicalTime(a.now())
	it, err := a.itemByToken(ctx, tok)
	if err != nil {
		return nil, err
	}
	if v := viewOf(it, now); v.Why != "" {
		return nil, refuse(KindGone, "%s", v.Why)
	}
	r := &evidence.Record{Type: protocol.CODType(it.Protocol), Label: it.Label, Agent: a.Name(), Recipient: it.Recipient, Time: now}
	switch r.Type {
	case evidence.CODBasic:
		r.Content = it.Content
	case evidence.CODIP:
		r.Commitment = it.Commitment
	case "":
		return nil, refuse(KindInvalid, "mode %s has no certificate of delivery", it.Protocol)
	}
	body, err := r.Encode()
	if err != nil {
		return nil, fmt.Errorf("agent: certificate of delivery for %s: %w", it.Label, err)
	}
	return body, nil
}

// CODNote makes the signed note of a certificate of delivery from its text (as CODText gave it)
// and the recipient's raw Ed25519 signature of that text, under the key registered for the
// recipient of tok's item. WebCrypto signs bytes and knows nothing of signed notes; the note's
// signature line is written here by x/mod's note package, so there is one encoder of notes.
// The result is checked only by Accept.
func (a *Agent) CODNote(ctx context.Context, tok string, text, sig []byte) ([]byte, error) {
	it, err := a.itemByToken(ctx, tok)
	if err != nil {
		return nil, err
	}
	if len(sig) != ed25519.SignatureSize {
		return nil, refuse(KindInvalid, "an Ed25519 signature is %d bytes, not %d", ed25519.SignatureSize, len(sig))
	}
	var u store.User
	err = a.st.View(ctx, func(tx store.Tx) (err error) { u, err = tx.User(it.Recipient); return err })
	if err != nil && !errors.Is(err, store.ErrNotFound) {
		return nil, err
	}
	if u.VerifierKey == "" {
		return nil, refuse(KindForbidden, "certificate of delivery: %s has no registered key; enrol one first", it.Recipient)
	}
	v, err := note.NewVerifier(u.VerifierKey)
	if err != nil {
		return nil, fmt.Errorf("agent: registered key of %s: %w", it.Recipient, err)
	}
	msg, err := note.Sign(&note.Note{Text: string(text)}, presigned{name: v.Name(), hash: v.KeyHash(), sig: sig})
	if err != nil {
		return nil, refuse(KindInvalid, "certificate of delivery: %v", err)
	}
	return msg, nil
}

// presigned is a note.Signer whose signature was made elsewhere (in the recipient's browser).
type presigned struct {
	name string
	hash uint32
	sig  []byte
}

func (p presigned) Name() string                { return p.name }
func (p presigned) KeyHash() uint32             { return p.hash }
func (p presigned) Sign([]byte) ([]byte, error) { return p.sig, nil }

// keyBoundBy reports whether a KEY record binds vkey to address from a time not after at: what
// an arbiter requires of a user key that signed at that time (evidence.Bundle.Check).
func keyBoundBy(tx store.Tx, address, vkey string, at time.Time) (bool, error) {
	recs, err := tx.Evidence(evidence.Label{})
	if err != nil {
		return false, err
	}
	for _, e := range recs {
		n, err := evidence.ParseNote(e.Note)
		if err != nil {
			return false, fmt.Errorf("agent: stored key record %d: %w", e.Seq, err)
		}
		r := n.Record
		if r.Type == evidence.KEY && r.Subject == address && r.Key == vkey && !r.Time.After(at) {
			return true, nil
		}
	}
	return false, nil
}
