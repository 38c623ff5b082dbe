package relay

import (
	"bytes"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"mime"
	"mime/multipart"
	"net/mail"
	"net/textproto"
	"strings"
	"time"

	"golang.org/x/mod/sumdb/note"

	"certmail/evidence"
)

// Media types of the parts of a relay mail. Every part but the first is base64, so that no
// transport can touch the signed bytes (notes use LF line ends, SMTP CRLF).
const (
	TypeEnvelope = "application/vnd.certmail.envelope"
	TypeNote     = "application/vnd.certmail.note"
	TypeMessage  = "application/vnd.certmail.message"
	TypePickup   = "application/vnd.certmail.pickup"
)

// Limits of what ParseMail takes.
const (
	MaxNotes = 32 // a chain of agents with every note of a report fits many times over
)

// Mail is one relay mail: the signed envelope and what it carries.
type Mail struct {
	Envelope *Envelope
	Signed   []byte           // the envelope as signed
	Notes    []*evidence.Note // the evidence carried, in order
	Message  []byte           // M, on a relay only
	// Pickup, on a relay only, is how the sender protected the pickup: the recipient's agent
	// asks for the same message password.
	Pickup *Pickup
}

// Pickup is the protection of an item's pickup that a relay carries to the recipient's agent:
// the argon2id hash of the message password (never the password) and its hint.
type Pickup struct {
	PasswordHash string `json:"password_hash"`
	Hint         string `json:"hint,omitempty"`
}

func (p *Pickup) encode() []byte {
	b, _ := json.Marshal(p)
	return b
}

func parsePickup(b []byte) (*Pickup, error) {
	d := json.NewDecoder(bytes.NewReader(b))
	d.DisallowUnknownFields()
	var p Pickup
	if err := d.Decode(&p); err != nil || d.More() {
		return nil, errors.New("not a pickup document")
	}
	if !strings.HasPrefix(p.PasswordHash, "$argon2id$") || len(p.PasswordHash) > 200 || len(p.Hint) > 200 {
		return nil, errors.New("the pickup document holds no argon2id hash, or too long a hint")
	}
	if !bytes.Equal(p.encode(), b) {
		return nil, errors.New("the pickup document is not in canonical form")
	}
	return &p, nil
}

// NewMail signs the envelope of a mail carrying notes (and, on a relay, msg) for step from the
// signer's agent to agent to.
func NewMail(step Step, l evidence.Label, to string, notes []*evidence.Note, msg []byte, now time.Time, signer note.Signer) (*Mail, error) {
	return NewRelayMail(step, l, to, notes, msg, nil, now, signer)
}

// NewRelayMail is NewMail with the pickup's protection, for a relay.
func NewRelayMail(step Step, l evidence.Label, to string, notes []*evidence.Note, msg []byte, pickup *Pickup, now time.Time, signer note.Signer) (*Mail, error) {
	e := &Envelope{Step: step, Label: l, From: signer.Name(), To: to, Notes: NotesHash(notes), Time: evidence.CanonicalTime(now)}
	if msg != nil {
		e.Message = evidence.Sum(msg)
	}
	if pickup != nil {
		e.Pickup = evidence.Sum(pickup.encode())
	}
	signed, err := SignEnvelope(e, signer)
	if err != nil {
		return nil, err
	}
	return &Mail{Envelope: e, Signed: signed, Notes: notes, Message: msg, Pickup: pickup}, nil
}

// Address is the mailbox an agent takes relay mail at: postmaster's sibling on the agent's own
// host name, which the peer's relay endpoint serves.
func Address(agent string) string { return "certmail-relay@" + agent }

// Encode writes the mail (RFC 5322, CRLF) with a readable first part for anyone who opens it.
// id is the Message-ID's left part, unique per mail.
func (m *Mail) Encode(id string) ([]byte, error) {
	e := m.Envelope
	var body bytes.Buffer
	w := multipart.NewWriter(&body)
	part := func(ctype string, data []byte, b64 bool) error {
		h := textproto.MIMEHeader{}
		h.Set("Content-Type", ctype)
		if b64 {
			h.Set("Content-Transfer-Encoding", "base64")
		}
		p, err := w.CreatePart(h)
		if err != nil {
			return err
		}
		if !b64 {
			_, err = p.Write(data)
			return err
		}
		enc := base64.StdEncoding.EncodeToString(data)
		for len(enc) > 76 {
			if _, err := io.WriteString(p, enc[:76]+"\r\n"); err != nil {
				return err
			}
			enc = enc[76:]
		}
		_, err = io.WriteString(p, enc+"\r\n")
		return err
	}
	text := fmt.Sprintf("This mail is a step of certified mail between delivery agents: %s of item %s,\r\nfrom %s to %s, carrying %d evidence notes. It is read by the receiving agent, not by a person.\r\n",
		e.Step, e.Label, e.From, e.To, len(m.Notes))
	if err := part("text/plain; charset=utf-8", []byte(text), false); err != nil {
		return nil, err
	}
	if err := part(TypeEnvelope, m.Signed, true); err != nil {
		return nil, err
	}
	for _, n := range m.Notes {
		if err := part(TypeNote, n.Bytes(), true); err != nil {
			return nil, err
		}
	}
	if m.Message != nil {
		if err := part(TypeMessage, m.Message, true); err != nil {
			return nil, err
		}
	}
	if m.Pickup != nil {
		if err := part(TypePickup, m.Pickup.encode(), true); err != nil {
			return nil, err
		}
	}
	if err := w.Close(); err != nil {
		return nil, err
	}
	var out bytes.Buffer
	hdr := func(k, v string) { fmt.Fprintf(&out, "%s: %s\r\n", k, v) }
	hdr("From", Address(e.From))
	hdr("To", Address(e.To))
	hdr("Subject", fmt.Sprintf("certmail %s %s", e.Step, e.Label))
	hdr("Date", e.Time.Format(time.RFC1123Z))
	hdr("Message-ID", "<"+id+"@"+e.From+">")
	hdr("MIME-Version", "1.0")
	hdr("Certmail-Relay-Step", string(e.Step))
	hdr("Content-Type", mime.FormatMediaType("multipart/mixed", map[string]string{"boundary": w.Boundary()}))
	out.WriteString("\r\n")
	out.Write(body.Bytes())
	return out.Bytes(), nil
}

// ParseMail reads a relay mail and opens its envelope with the trusted keys (key finds an
// agent's verifier key by name). It checks that the envelope's hashes match what the mail
// carries; what the notes say is for the receiving agent to weigh. A mail that is not a relay
// mail at all, or whose envelope does not open or match, is a *RefusedError.
func ParseMail(data []byte, maxBytes int64, key func(agent string) (string, bool)) (*Mail, error) {
	refuse := func(format string, args ...any) (*Mail, error) {
		return nil, &RefusedError{Reason: fmt.Sprintf(format, args...)}
	}
	msg, err := mail.ReadMessage(bytes.NewReader(data))
	if err != nil {
		return refuse("not a mail: %v", err)
	}
	mt, params, err := mime.ParseMediaType(msg.Header.Get("Content-Type"))
	if err != nil || mt != "multipart/mixed" || params["boundary"] == "" {
		return refuse("not a relay mail: want multipart/mixed, got %q", msg.Header.Get("Content-Type"))
	}
	r := multipart.NewReader(msg.Body, params["boundary"])
	m := &Mail{}
	var signed, pickupRaw []byte
	for i := 0; ; i++ {
		p, err := r.NextRawPart()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			return refuse("part %d: %v", i+1, err)
		}
		ct := p.Header.Get("Content-Type")
		if i == 0 {
			if !strings.HasPrefix(ct, "text/plain") {
				return refuse("the first part is %q, want text/plain", ct)
			}
			continue
		}
		if p.Header.Get("Content-Transfer-Encoding") != "base64" {
			return refuse("part %d is not base64", i+1)
		}
		raw, err := io.ReadAll(io.LimitReader(base64.NewDecoder(base64.StdEncoding, p), maxBytes+1))
		if err != nil {
			return refuse("part %d: %v", i+1, err)
		}
		if int64(len(raw)) > maxBytes {
			return refuse("part %d is larger than %d bytes", i+1, maxBytes)
		}
		switch {
		case ct == TypeEnvelope && i == 1:
			signed = raw
		case ct == TypeNote && i >= 2 && m.Message == nil:
			if len(m.Notes) == MaxNotes {
				return refuse("more than %d notes", MaxNotes)
			}
			n, err := evidence.ParseNote(raw)
			if err != nil {
				return refuse("note %d: %v", len(m.Notes)+1, err)
			}
			m.Notes = append(m.Notes, n)
		case ct == TypeMessage && i >= 2 && m.Message == nil:
			m.Message = raw
		case ct == TypePickup && m.Message != nil && pickupRaw == nil:
			pickupRaw = raw
		default:
			return refuse("unexpected part %d of type %q", i+1, ct)
		}
	}
	if signed == nil {
		return refuse("no envelope")
	}
	if m.Envelope, err = OpenEnvelope(signed, key); err != nil {
		var re *RefusedError
		if errors.As(err, &re) {
			return nil, err
		}
		return refuse("%v", err)
	}
	m.Signed = signed
	e := m.Envelope
	if NotesHash(m.Notes) != e.Notes {
		return refuse("the notes carried do not match the envelope's hash")
	}
	switch {
	case e.Step == StepRelay && m.Message == nil:
		return refuse("a relay without the message")
	case e.Step != StepRelay && m.Message != nil:
		return refuse("a %s carrying a message", e.Step)
	case m.Message != nil && evidence.Sum(m.Message) != e.Message:
		return refuse("the message carried hashes to %s, the envelope says %s", evidence.Sum(m.Message), e.Message)
	case (pickupRaw == nil) != e.Pickup.IsZero() || pickupRaw != nil && evidence.Sum(pickupRaw) != e.Pickup:
		return refuse("the pickup part does not match the envelope's hash")
	}
	if pickupRaw != nil {
		if m.Pickup, err = parsePickup(pickupRaw); err != nil {
			return refuse("pickup part: %v", err)
		}
	}
	for i, n := range m.Notes {
		if l := n.Record.Label; !l.IsZero() && l != e.Label {
			return refuse("note %d (%s) is for label %s, the envelope for %s", i+1, n.Record.Type, l, e.Label)
		}
	}
	return m, nil
}
