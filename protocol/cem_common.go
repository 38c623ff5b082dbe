package protocol

import (
	"crypto/hmac"
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"fmt"
	"maps"
	"slices"
	"strings"
	"time"

	"golang.org/x/mod/sumdb/note"

	"certmail/evidence"
)

// CEMTiming is the clockwork the CEM parties share. Deadlines inside an exchange derive from the
// span between posting and the deadline T, so they scale with whatever T the sender chose:
// P1 warns at half the span (WRN, as PEC warns at 12 of 24 h), Pn stops accepting at three
// quarters (so that its report can still reach P1 before T), and an agent waits a quarter of the
// span for the next agent's ACK.
type CEMTiming struct {
	Retry    time.Duration // first resend of an unacknowledged message
	RetryMax time.Duration // cap of the exponential backoff
	Grace    time.Duration // how long after T parties keep trying before they give up for good
}

// DefaultCEMTiming is the timing the agent runs with unless configured otherwise.
func DefaultCEMTiming() CEMTiming {
	return CEMTiming{Retry: time.Second, RetryMax: 8 * time.Second, Grace: 2 * time.Minute}
}

func (t CEMTiming) orDefault() CEMTiming {
	d := DefaultCEMTiming()
	if t.Retry <= 0 {
		t.Retry = d.Retry
	}
	if t.RetryMax < t.Retry {
		t.RetryMax = max(d.RetryMax, t.Retry)
	}
	if t.Grace <= 0 {
		t.Grace = d.Grace
	}
	return t
}

// CEMSeen is a party's durable memory of the labels (and, at P1, the submissions) it has taken
// part in, shared by all its exchanges: a label seen in one exchange is refused in any other
// (PROTOCOLS.md common rules; seed 001 §4.5, B rejects a second notification for a label).
type CEMSeen struct{ m map[string]bool }

// NewCEMSeen returns an empty memory.
func NewCEMSeen() *CEMSeen { return &CEMSeen{m: map[string]bool{}} }

// HasLabel reports whether the label was seen.
func (s *CEMSeen) HasLabel(l evidence.Label) bool { return s.m["label "+l.String()] }

func (s *CEMSeen) addLabel(l evidence.Label) { s.m["label "+l.String()] = true }
func (s *CEMSeen) has(key string) bool       { return s.m[key] }
func (s *CEMSeen) add(key string)            { s.m[key] = true }

// CEMAccount is a user's account at an agent. Secret stands for what authenticates the user
// to the agent in the running system (SMTP AUTH for submission, the pickup password): the
// machines model it as an HMAC key, so the network can neither forge nor alter a submission,
// an acceptance or a refusal. Key is the user's verifier key, when the user enrolled one.
type CEMAccount struct {
	Secret []byte
	Key    string
}

// Steps of the CEM family. The numbered ones are the seed's (seed 001 §4.3); the named ones
// are what certmail adds so that every step survives loss, duplication and a crash.
const (
	cemSubmit   = "1"        // A -> P1: B, M, T
	cemPosted   = "2"        // P1 -> A: L, COP
	cemRelay    = "3"        // Pi -> Pi+1: COP, ACK chain, M
	cemTaken    = "4"        // Pi+1 -> Pi: ACK_i
	cemNotify   = "5"        // Pn -> B: NTF (and M under cem)
	cemAccept   = "6"        // B -> Pn: COD (and the pickup login)
	cemRelease  = "7"        // Pn -> B: RET, M (cem-nsr, cem-ip)
	cemReport   = "8"        // P(i+1) -> Pi: ROD (+ COD or DLV, KEY, NTF, ACKs), or NDN/REJ
	cemReceipt  = "9"        // P1 -> A: the outcome (or a WRN)
	cemDecision = "decision" // P1 -> Pn: countersigned ROD, or the NDN/RTR that stands instead
	cemRefuse   = "refuse"   // B -> Pn: B refuses the item
	cemRetract  = "retract"  // A -> P1: A withdraws the item before pickup
	cemNotice   = "notice"   // Pn -> B: the item will not be released (NDN, RTR)
	cemFetch    = "fetch"    // B -> Pn: send the item again (cem-ip, after a mismatch)
	cemAckStep  = "ack"      // any -> any: the message with this digest was stored
)

func cemStep(p evidence.Protocol, s string) string { return string(p) + "/" + s }

// cemSplitStep parses "protocol/step" for a protocol of the CEM family.
func cemSplitStep(step string) (evidence.Protocol, string, bool) {
	ps, s, ok := strings.Cut(step, "/")
	if !ok {
		return "", "", false
	}
	p, err := evidence.ParseProtocol(ps)
	if err != nil || !p.IsCEM() {
		return "", "", false
	}
	return p, s, true
}

// cemDigest identifies a message for acknowledgement: SHA-256 over its step, notes and data,
// each length-prefixed. A message changed in transit has another digest, so its ack never
// stops the resending of the original.
func cemDigest(m Msg) string {
	h := sha256.New()
	put := func(b []byte) {
		var n [8]byte
		binary.BigEndian.PutUint64(n[:], uint64(len(b)))
		h.Write(n[:])
		h.Write(b)
	}
	put([]byte(m.Step))
	put([]byte{byte(len(m.Notes))})
	for _, n := range m.Notes {
		put(n)
	}
	for _, k := range slices.Sorted(maps.Keys(m.Data)) {
		put([]byte(k))
		put(m.Data[k])
	}
	return hex.EncodeToString(h.Sum(nil))
}

// cemAckFor answers m: its digest, under the label it concerns.
func cemAckFor(me string, p evidence.Protocol, l evidence.Label, m Msg) Msg {
	return Msg{From: me, To: m.From, Step: cemStep(p, cemAckStep),
		Data: map[string][]byte{"label": []byte(l.String()), "ack": []byte(cemDigest(m))}}
}

// cemAuth is the MAC under a user's account secret over the fields of one request.
func cemAuth(secret []byte, parts ...string) []byte {
	mac := hmac.New(sha256.New, secret)
	mac.Write([]byte("certmail cem account\n"))
	for _, p := range parts {
		var n [8]byte
		binary.BigEndian.PutUint64(n[:], uint64(len(p)))
		mac.Write(n[:])
		mac.Write([]byte(p))
	}
	return mac.Sum(nil)
}

func cemAuthOK(secret, got []byte, parts ...string) bool {
	return len(secret) > 0 && hmac.Equal(got, cemAuth(secret, parts...))
}

// cemField returns a data field as a string ("" when absent).
func cemField(m Msg, k string) string { return string(m.Data[k]) }

// cemLabel parses the "label" data field.
func cemLabel(m Msg) (evidence.Label, bool) {
	l, err := evidence.ParseLabel(cemField(m, "label"))
	return l, err == nil
}

// cemNotes parses every note of a message; one malformed note spoils the message.
func cemNotes(m Msg) ([]*evidence.Note, error) {
	out := make([]*evidence.Note, 0, len(m.Notes))
	for i, raw := range m.Notes {
		n, err := evidence.ParseNote(raw)
		if err != nil {
			return nil, fmt.Errorf("note %d: %w", i+1, err)
		}
		out = append(out, n)
	}
	return out, nil
}

func cemRaw(notes ...*evidence.Note) [][]byte {
	out := make([][]byte, 0, len(notes))
	for _, n := range notes {
		if n != nil {
			out = append(out, n.Bytes())
		}
	}
	return out
}

func (t *trust) signedBy(n *evidence.Note, name string) bool {
	known, err := note.Open(n.Bytes(), t.keys)
	if err != nil {
		return false
	}
	return slices.ContainsFunc(known.Sigs, func(s note.Signature) bool { return s.Name == name })
}

// cemRank orders a bundle's notes the way a reader follows the exchange.
func cemRank(t evidence.Type) int {
	order := []evidence.Type{evidence.COP, evidence.ACK, evidence.WRN, evidence.NTF, evidence.KEY,
		evidence.CODBasic, evidence.CODNSR, evidence.CODIP, evidence.DLV, evidence.REJ,
		evidence.ROD, evidence.RET, evidence.NDN, evidence.RTR}
	if i := slices.Index(order, t); i >= 0 {
		return i
	}
	return len(order)
}

// cemBundle assembles the bundle of label l: the notes (each once, in reading order), the
// verifier keys of every signer the trust store knows and every key a KEY record binds, and
// the message when given.
func cemBundle(l evidence.Label, trust *trust, notes []*evidence.Note, msg []byte) *evidence.Bundle {
	b := trust.bundle(l, notes, cemRank)
	if msg != nil {
		b.SetItem(evidence.ItemMessage, msg)
	}
	return b
}

// cemAssess weighs a tentative bundle exactly as an arbiter will, with the party's trusted agent
// keys pinned. A party takes new evidence only when the bundle that holds it stays valid.
func cemAssess(b *evidence.Bundle, trust *trust, p evidence.Protocol) (*evidence.Verdict, *cemCase) {
	c := b.Check(trust.keys)
	if got, err := protocolOf(b); err != nil || got != p {
		c.Verdict.Fail(0, "", "protocol", "the notes are not all of %s", p)
		return c.Verdict, nil
	}
	c.Verdict.Protocol = p
	cs := weighCEM(c, p, time.Time{})
	return c.Verdict, cs
}

// cemSign signs a record with the party's own key.
func cemSign(id *Identity, r *evidence.Record) (*evidence.Note, error) {
	r.Time = evidence.CanonicalTime(r.Time)
	r.Deadline = evidence.CanonicalTime(r.Deadline)
	return evidence.Sign(r, id.Signer)
}

// cemOut is one message a party keeps resending until it is acknowledged (DESIGN.md §7: a durable
// outbound queue with retries and backoff).
type cemOut struct {
	id    string
	kind  string
	msg   Msg
	next  time.Time
	wait  time.Duration
	until time.Time // give up at this time
}

type cemOutbox struct{ list []*cemOut }

// send queues m for resending until acknowledged or until, and returns it for sending now.
func (o *cemOutbox) send(now time.Time, t CEMTiming, kind string, m Msg, until time.Time) []Msg {
	id := cemDigest(m)
	for _, e := range o.list {
		if e.id == id {
			return nil
		}
	}
	o.list = append(o.list, &cemOut{id: id, kind: kind, msg: m.Clone(), next: now.Add(t.Retry), wait: t.Retry, until: until})
	return []Msg{m}
}

// ack removes the entry the digest names and reports whether there was one.
func (o *cemOutbox) ack(id string) bool {
	n := len(o.list)
	o.list = slices.DeleteFunc(o.list, func(e *cemOut) bool { return e.id == id })
	return len(o.list) < n
}

func (o *cemOutbox) drop(kind string) {
	o.list = slices.DeleteFunc(o.list, func(e *cemOut) bool { return e.kind == kind })
}

// kick makes the entries of a kind due now (the peer asked again).
func (o *cemOutbox) kick(kind string, now time.Time) {
	for _, e := range o.list {
		if e.kind == kind {
			e.next = now
		}
	}
}

// due resends what is due at now, with exponential backoff, and forgets what expired.
func (o *cemOutbox) due(now time.Time, t CEMTiming) []Msg {
	var out []Msg
	o.list = slices.DeleteFunc(o.list, func(e *cemOut) bool { return !now.Before(e.until) })
	for _, e := range o.list {
		if now.Before(e.next) {
			continue
		}
		out = append(out, e.msg.Clone())
		e.wait = min(2*e.wait, t.RetryMax)
		e.next = now.Add(e.wait)
	}
	return out
}

func (o *cemOutbox) wake() (time.Time, bool) {
	var at time.Time
	for _, e := range o.list {
		at = cemEarliest(at, e.next)
		at = cemEarliest(at, e.until)
	}
	return at, !at.IsZero()
}

// cemEarliest returns the earlier of two times, a zero time meaning "none".
func cemEarliest(a, b time.Time) time.Time {
	if a.IsZero() || !b.IsZero() && b.Before(a) {
		return b
	}
	return a
}
