// Package relay is what agents send each other when an item travels a chain P1..Pn (PROTOCOLS.md
// §1, steps 3, 4 and 8; DESIGN.md §1 shape 2): the relay of an item with its certificate of
// posting and the message (step 3), the next agent's acknowledgement ACK_i (step 4), the report
// of delivery or non-delivery going back towards P1 (step 8), and P1's decision on it going
// forward to Pn. Each travels as an ordinary mail over SMTP between the agents, so that it uses
// the same durable outbound queue, with its retries and backoff, as every other mail.
//
// Every such mail carries a transport envelope signed by the sending agent with its evidence
// key: which step, which label, from which agent to which, and the hashes of the notes and of the
// message it carries. The receiving agent opens it with the key its trust store holds for the
// sender, so a mail that another agent wrote, that was altered, or that was meant for another
// agent or another label is refused whatever the transport did. The evidence inside is then
// weighed as an arbiter would.
//
// This package is the pure part: the envelope's canonical text, and the mail that carries it.
package relay

import (
	"bytes"
	"crypto/sha256"
	"encoding/binary"
	"errors"
	"fmt"
	"strings"
	"time"

	"golang.org/x/mod/sumdb/note"

	"certmail/evidence"
)

// Step names what a relay mail does.
type Step string

const (
	StepRelay    Step = "relay"    // Pi -> Pi+1: the COP, the ACKs so far and M (step 3)
	StepAck      Step = "ack"      // Pi+1 -> Pi: ACK_i (step 4)
	StepReport   Step = "report"   // Pi+1 -> Pi: ROD with COD/DLV, NTF, KEY; or NDN or REJ (step 8)
	StepDecision Step = "decision" // Pi -> Pi+1: P1's countersigned ROD, or the NDN or RTR that stands instead
)

func (s Step) valid() bool {
	return s == StepRelay || s == StepAck || s == StepReport || s == StepDecision
}

const envelopeHeader = "certmail-relay/1"

// Envelope is the signed transport envelope of one relay mail. Its text is canonical:
//
//	certmail-relay/1
//	step relay
//	label 0123...
//	from agent1.example
//	to agent2.example
//	notes sha256:HEX
//	message sha256:HEX        or "message none"
//	pickup sha256:HEX         or "pickup none"
//	time 2026-11-23T18:00:00.123Z
type Envelope struct {
	Step    Step
	Label   evidence.Label
	From    string        // the sending agent: the name of its evidence key
	To      string        // the agent it is for
	Notes   evidence.Hash // NotesHash of the notes carried
	Message evidence.Hash // H(M) of the message carried; zero when none
	Pickup  evidence.Hash // SHA-256 of the pickup part carried; zero when none
	Time    time.Time
}

// Encode gives the envelope's canonical text.
func (e *Envelope) Encode() ([]byte, error) {
	if err := e.check(); err != nil {
		return nil, err
	}
	orNone := func(h evidence.Hash) string {
		if h.IsZero() {
			return "none"
		}
		return h.String()
	}
	return fmt.Appendf(nil, "%s\nstep %s\nlabel %s\nfrom %s\nto %s\nnotes %s\nmessage %s\npickup %s\ntime %s\n",
		envelopeHeader, e.Step, e.Label, e.From, e.To, e.Notes, orNone(e.Message), orNone(e.Pickup), evidence.FormatTime(e.Time)), nil
}

func (e *Envelope) check() error {
	switch {
	case !e.Step.valid():
		return fmt.Errorf("relay: envelope: unknown step %q", e.Step)
	case e.Label.IsZero():
		return errors.New("relay: envelope: no label")
	case !agentName(e.From) || !agentName(e.To):
		return fmt.Errorf("relay: envelope: bad agent name in %q -> %q", e.From, e.To)
	case e.Notes.IsZero():
		return errors.New("relay: envelope: no notes hash")
	case (e.Step == StepRelay) == e.Message.IsZero():
		return errors.New("relay: envelope: a relay carries the message, and only a relay does")
	case e.Step != StepRelay && !e.Pickup.IsZero():
		return errors.New("relay: envelope: only a relay carries the pickup's protection")
	case e.Time.IsZero():
		return errors.New("relay: envelope: no time")
	}
	return nil
}

// agentName accepts a host name as an agent's key is named: letters, digits, dots and hyphens.
func agentName(s string) bool {
	if s == "" || len(s) > 253 {
		return false
	}
	for _, c := range s {
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '.' || c == '-') {
			return false
		}
	}
	return true
}

// ParseEnvelope parses an envelope's text; only the canonical encoding is accepted.
func ParseEnvelope(text []byte) (*Envelope, error) {
	lines := strings.Split(string(text), "\n")
	if len(lines) != 10 || lines[9] != "" || lines[0] != envelopeHeader {
		return nil, errors.New("relay: envelope: not a certmail-relay/1 envelope of nine lines")
	}
	names := []string{"step", "label", "from", "to", "notes", "message", "pickup", "time"}
	vals := make([]string, len(names))
	for i, name := range names {
		k, v, ok := strings.Cut(lines[i+1], " ")
		if !ok || k != name || v == "" {
			return nil, fmt.Errorf("relay: envelope: line %d: want %q", i+2, name)
		}
		vals[i] = v
	}
	e := &Envelope{Step: Step(vals[0]), From: vals[2], To: vals[3]}
	var err error
	if e.Label, err = evidence.ParseLabel(vals[1]); err != nil {
		return nil, fmt.Errorf("relay: envelope: %w", err)
	}
	if e.Notes, err = evidence.ParseHash(vals[4]); err != nil {
		return nil, fmt.Errorf("relay: envelope: notes: %w", err)
	}
	if vals[5] != "none" {
		if e.Message, err = evidence.ParseHash(vals[5]); err != nil {
			return nil, fmt.Errorf("relay: envelope: message: %w", err)
		}
	}
	if vals[6] != "none" {
		if e.Pickup, err = evidence.ParseHash(vals[6]); err != nil {
			return nil, fmt.Errorf("relay: envelope: pickup: %w", err)
		}
	}
	if e.Time, err = evidence.ParseTime(vals[7]); err != nil {
		return nil, fmt.Errorf("relay: envelope: %w", err)
	}
	if err := e.check(); err != nil {
		return nil, err
	}
	if enc, _ := e.Encode(); !bytes.Equal(enc, text) {
		return nil, errors.New("relay: envelope: not in canonical form")
	}
	return e, nil
}

// NotesHash is SHA-256 over the notes in order, each length-prefixed, so that no note can be
// added, dropped, reordered or changed without changing it.
func NotesHash(notes []*evidence.Note) evidence.Hash {
	h := sha256.New()
	var n [8]byte
	binary.BigEndian.PutUint64(n[:], uint64(len(notes)))
	h.Write(n[:])
	for _, x := range notes {
		binary.BigEndian.PutUint64(n[:], uint64(len(x.Bytes())))
		h.Write(n[:])
		h.Write(x.Bytes())
	}
	var out evidence.Hash
	copy(out[:], h.Sum(nil))
	return out
}

// SignEnvelope signs e with the sending agent's key, which must be named e.From.
func SignEnvelope(e *Envelope, signer note.Signer) ([]byte, error) {
	if signer.Name() != e.From {
		return nil, fmt.Errorf("relay: envelope from %s cannot be signed by %s", e.From, signer.Name())
	}
	text, err := e.Encode()
	if err != nil {
		return nil, err
	}
	return note.Sign(&note.Note{Text: string(text)}, signer)
}

// OpenEnvelope checks a signed envelope with the verifier key of the agent it claims to come
// from, found by name with key (false when the agent is not trusted).
func OpenEnvelope(signed []byte, key func(agent string) (string, bool)) (*Envelope, error) {
	text, _, ok := bytes.Cut(signed, []byte("\n\n"))
	if !ok {
		return nil, errors.New("relay: envelope: not a signed note")
	}
	e, err := ParseEnvelope(append(text, '\n'))
	if err != nil {
		return nil, err
	}
	vkey, ok := key(e.From)
	if !ok {
		return nil, &RefusedError{Reason: fmt.Sprintf("agent %s is not in the trust store", e.From)}
	}
	v, err := note.NewVerifier(vkey)
	if err != nil {
		return nil, fmt.Errorf("relay: trusted key of %s: %w", e.From, err)
	}
	if v.Name() != e.From {
		return nil, fmt.Errorf("relay: trusted key of %s is named %s", e.From, v.Name())
	}
	if _, err := note.Open(signed, note.VerifierList(v)); err != nil {
		return nil, &RefusedError{Reason: fmt.Sprintf("the envelope is not signed by %s's key: %v", e.From, err)}
	}
	return e, nil
}

// RefusedError is a relay mail refused for good, with the reason the refusing agent logs and
// gives the sending agent.
type RefusedError struct{ Reason string }

func (e *RefusedError) Error() string { return "relay: refused: " + e.Reason }
