package storetest

import (
	"fmt"
	"math/rand/v2"
	"time"

	"golang.org/x/mod/sumdb/note"

	"certmail/evidence"
	"certmail/store"
)

// The parties of the sample records.
const (
	Agent     = "p1.example"
	Sender    = "alice@a.example"
	Recipient = "bob@b.example"
)

// Fixture makes realistic rows for store tests: items, and evidence notes really signed by the
// agent key (and the sender's, for the CMP-NRO token, whose record has no time). Its keys come
// from a fixed seed, so two processes (a test and the child it kills) hold the same keys.
// It returns errors rather than taking a testing.TB so that such a child can use it.
type Fixture struct {
	agent, sender       note.Signer
	agentKey, senderKey string // verifier keys
	Message             []byte // the sample message
	T0                  time.Time
}

// NewFixture makes the keys.
func NewFixture() (*Fixture, error) {
	r := rand.NewChaCha8([32]byte{'s', 't', 'o', 'r', 'e'})
	senderName, err := evidence.KeyName(Sender)
	if err != nil {
		return nil, err
	}
	f := &Fixture{
		Message: []byte("From: alice@a.example\r\nTo: bob@b.example\r\nSubject: contract\r\n\r\nSigned copy attached.\r\n"),
		T0:      time.Date(2026, 3, 2, 9, 0, 0, 0, time.UTC),
	}
	for _, k := range []struct {
		name string
		s    *note.Signer
		v    *string
	}{{Agent, &f.agent, &f.agentKey}, {senderName, &f.sender, &f.senderKey}} {
		skey, vkey, err := note.GenerateKey(r, k.name)
		if err != nil {
			return nil, fmt.Errorf("storetest: key %s: %w", k.name, err)
		}
		if *k.s, err = note.NewSigner(skey); err != nil {
			return nil, fmt.Errorf("storetest: key %s: %w", k.name, err)
		}
		*k.v = vkey
	}
	return f, nil
}

// Keys returns the verifier keys of the fixture's signers.
func (f *Fixture) Keys() (*evidence.Keys, error) { return evidence.NewKeys(f.agentKey, f.senderKey) }

// NewLabel draws a fresh label from crypto/rand (safe from any goroutine).
func (f *Fixture) NewLabel() (evidence.Label, error) { return evidence.NewLabel(nil) }

// Item returns a posted item for label l, submitted at the given time, with a pickup token
// hash unique to the label.
func (f *Fixture) Item(l evidence.Label, submitted time.Time) store.Item {
	return store.Item{
		Label:        l,
		Submission:   "sub-" + l.String(),
		Protocol:     evidence.CEMIP,
		Sender:       Sender,
		Recipient:    Recipient,
		Subject:      "contract",
		Content:      evidence.Sum(f.Message),
		Commitment:   evidence.Commitment(l, f.Message),
		Size:         int64(len(f.Message)),
		Deadline:     submitted.Add(48 * time.Hour),
		Receipt:      "full",
		Notify:       "default",
		PasswordHash: "$argon2id$v=19$m=65536,t=3,p=4$c2FsdHNhbHQ$aGFzaGhhc2hoYXNoaGFzaA",
		PasswordHint: "the project's code name",
		TokenHash:    evidence.Sum([]byte("token " + l.String())),
		State:        store.StatePosted,
		Submitted:    submitted,
		Updated:      submitted,
	}
}

// Note signs an evidence record of type typ (COP, NTF, DLV, KEY or CMP-NRO) for label l made at
// time at. KEY ignores l (its record has no label); CMP-NRO ignores at (its record has no time).
func (f *Fixture) Note(l evidence.Label, typ evidence.Type, at time.Time) (*evidence.Note, error) {
	content := evidence.Sum(f.Message)
	r := &evidence.Record{Type: typ, Label: l, Protocol: evidence.CEMIP, Agent: Agent,
		Recipient: Recipient, Content: content, Time: at}
	signer := f.agent
	switch typ {
	case evidence.COP:
		r.Sender, r.Deadline = Sender, at.Add(48*time.Hour)
	case evidence.NTF:
		r.Commitment, r.Deadline = evidence.Commitment(l, f.Message), at.Add(48*time.Hour)
	case evidence.DLV:
		r.Method, r.Client = "password", "192.0.2.7"
	case evidence.KEY:
		*r = evidence.Record{Type: typ, Agent: Agent, Subject: Sender, Key: f.senderKey, Time: at}
	case evidence.CMPNRO:
		*r = evidence.Record{Type: typ, Label: l, Sender: Sender, Recipient: Recipient, Content: content}
		signer = f.sender
	case evidence.PUB:
		// The published key is derived from the label, so two labels publish two keys.
		k := evidence.Sum([]byte("storetest key " + l.String()))
		*r = evidence.Record{Type: typ, Label: l, Protocol: evidence.SR, Agent: Agent, Ciphertext: content, Secret: k[:], Time: at}
	default:
		return nil, fmt.Errorf("storetest: no sample record of type %s", typ)
	}
	n, err := evidence.Sign(r, signer)
	if err != nil {
		return nil, fmt.Errorf("storetest: sign %s: %w", typ, err)
	}
	return n, nil
}
