package relay_test

import (
	"bytes"
	"crypto/rand"
	"errors"
	"strings"
	"testing"
	"time"

	"golang.org/x/mod/sumdb/note"

	"certmail/evidence"
	"certmail/relay"
)

type agentKey struct {
	signer note.Signer
	vkey   string
}

func newKey(t testing.TB, name string) agentKey {
	skey, vkey, err := note.GenerateKey(rand.Reader, name)
	if err != nil {
		t.Fatal(err)
	}
	s, err := note.NewSigner(skey)
	if err != nil {
		t.Fatal(err)
	}
	return agentKey{s, vkey}
}

func trusted(keys ...agentKey) func(string) (string, bool) {
	return func(name string) (string, bool) {
		for _, k := range keys {
			if k.signer.Name() == name {
				return k.vkey, true
			}
		}
		return "", false
	}
}

type fixture struct {
	a1, a2, a3 agentKey
	label      evidence.Label
	cop        *evidence.Note
	msg        []byte
	now        time.Time
}

func newFixture(t testing.TB) *fixture {
	f := &fixture{a1: newKey(t, "agent1.example"), a2: newKey(t, "agent2.example"), a3: newKey(t, "agent3.example"),
		msg: []byte("From: alice@a.example\r\nTo: bob@b.example\r\nSubject: contract\r\n\r\nSigned copy attached.\r\n"),
		now: time.Date(2026, 11, 23, 18, 0, 0, 0, time.UTC)}
	var err error
	if f.label, err = evidence.NewLabel(rand.Reader); err != nil {
		t.Fatal(err)
	}
	f.cop, err = evidence.Sign(&evidence.Record{Type: evidence.COP, Label: f.label, Protocol: evidence.CEMIP, Agent: "agent1.example",
		Sender: "alice@a.example", Recipient: "bob@b.example", Content: evidence.Sum(f.msg), Deadline: f.now.Add(time.Hour), Time: f.now}, f.a1.signer)
	if err != nil {
		t.Fatal(err)
	}
	return f
}

func (f *fixture) relayMail(t testing.TB) []byte {
	m, err := relay.NewMail(relay.StepRelay, f.label, "agent2.example", []*evidence.Note{f.cop}, f.msg, f.now, f.a1.signer)
	if err != nil {
		t.Fatal(err)
	}
	data, err := m.Encode("test-1")
	if err != nil {
		t.Fatal(err)
	}
	return data
}

func TestMailRoundTrip(t *testing.T) {
	f := newFixture(t)
	data := f.relayMail(t)
	if !bytes.Contains(data, []byte("Certmail-Relay-Step: relay\r\n")) || !bytes.Contains(data, []byte("To: certmail-relay@agent2.example\r\n")) {
		t.Errorf("headers missing:\n%s", data)
	}
	m, err := relay.ParseMail(data, 1<<20, trusted(f.a1, f.a2))
	if err != nil {
		t.Fatal(err)
	}
	e := m.Envelope
	if e.Step != relay.StepRelay || e.Label != f.label || e.From != "agent1.example" || e.To != "agent2.example" || !e.Time.Equal(f.now) {
		t.Errorf("envelope = %+v", e)
	}
	if len(m.Notes) != 1 || !bytes.Equal(m.Notes[0].Bytes(), f.cop.Bytes()) || !bytes.Equal(m.Message, f.msg) {
		t.Errorf("carried: %d notes, message %q", len(m.Notes), m.Message)
	}
}

// Each forgery of a relay mail is refused with its reason.
func TestMailRefusals(t *testing.T) {
	f := newFixture(t)
	good := f.relayMail(t)
	stranger := newKey(t, "agent1.example") // same name, another key: not the trusted one
	otherMsg := []byte("From: alice@a.example\r\n\r\nAnother text.\r\n")
	ackOther, err := evidence.Sign(&evidence.Record{Type: evidence.ACK, Label: evidence.Label{1}, Protocol: evidence.CEMIP, Agent: "agent2.example",
		From: "agent1.example", Recipient: "bob@b.example", Content: evidence.Sum(f.msg), Time: f.now}, f.a2.signer)
	if err != nil {
		t.Fatal(err)
	}
	encode := func(m *relay.Mail) []byte {
		data, err := m.Encode("x")
		if err != nil {
			t.Fatal(err)
		}
		return data
	}
	cases := []struct {
		name, want string
		data       []byte
		keys       func(string) (string, bool)
	}{
		{"sender not trusted", "agent1.example is not in the trust store", good, trusted(f.a2)},
		{"signed by another key", "not signed by agent1.example's key", func() []byte {
			m, _ := relay.NewMail(relay.StepRelay, f.label, "agent2.example", []*evidence.Note{f.cop}, f.msg, f.now, stranger.signer)
			return encode(m)
		}(), trusted(f.a1)},
		{"message swapped", "the message carried hashes to", func() []byte {
			m, _ := relay.NewMail(relay.StepRelay, f.label, "agent2.example", []*evidence.Note{f.cop}, f.msg, f.now, f.a1.signer)
			m.Message = otherMsg
			return encode(m)
		}(), trusted(f.a1)},
		{"note dropped", "do not match the envelope's hash", func() []byte {
			m, _ := relay.NewMail(relay.StepRelay, f.label, "agent2.example", []*evidence.Note{f.cop}, f.msg, f.now, f.a1.signer)
			m.Notes = nil
			return encode(m)
		}(), trusted(f.a1)},
		{"note of another label", "is for label", func() []byte {
			m, _ := relay.NewMail(relay.StepAck, f.label, "agent1.example", []*evidence.Note{ackOther}, nil, f.now, f.a2.signer)
			return encode(m)
		}(), trusted(f.a2)},
		{"envelope edited", "not signed by agent1.example's key", bytes.Replace(good, []byte("Certmail-Relay-Step"), []byte("Certmail-Relay-Step"), 1), nil},
		{"not a relay mail", "not a relay mail", []byte("From: a@b\r\nSubject: hi\r\n\r\nhello\r\n"), trusted(f.a1)},
	}
	// An envelope edited in transit: flip one byte inside its base64 part.
	{
		m, _ := relay.NewMail(relay.StepRelay, f.label, "agent2.example", []*evidence.Note{f.cop}, f.msg, f.now, f.a1.signer)
		m.Signed = bytes.Replace(m.Signed, []byte("to agent2.example"), []byte("to agent9.example"), 1)
		cases[5].data, cases[5].keys = encode(m), trusted(f.a1)
	}
	for _, c := range cases {
		_, err := relay.ParseMail(c.data, 1<<20, c.keys)
		var re *relay.RefusedError
		if !errors.As(err, &re) || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%s: err = %v, want a refusal saying %q", c.name, err, c.want)
		}
	}
}

// A relay carries the pickup's protection under the envelope's signature: the hash, never
// the password; a pickup part changed in transit is refused.
func TestMailCarriesPickup(t *testing.T) {
	f := newFixture(t)
	pk := &relay.Pickup{PasswordHash: "$argon2id$v=19$m=65536,t=1,p=2$c2FsdA$aGFzaA", Hint: "the bird"}
	m, err := relay.NewRelayMail(relay.StepRelay, f.label, "agent2.example", []*evidence.Note{f.cop}, f.msg, pk, f.now, f.a1.signer)
	if err != nil {
		t.Fatal(err)
	}
	data, err := m.Encode("p")
	if err != nil {
		t.Fatal(err)
	}
	got, err := relay.ParseMail(data, 1<<20, trusted(f.a1))
	if err != nil || got.Pickup == nil || *got.Pickup != *pk {
		t.Fatalf("pickup: %+v, %v", got, err)
	}
	m.Pickup = &relay.Pickup{PasswordHash: "$argon2id$v=19$m=65536,t=1,p=2$c2FsdA$b3RoZXI"}
	data, _ = m.Encode("p")
	if _, err := relay.ParseMail(data, 1<<20, trusted(f.a1)); err == nil || !strings.Contains(err.Error(), "pickup part does not match") {
		t.Errorf("a swapped pickup part: %v", err)
	}
}

func TestEnvelopeCanonical(t *testing.T) {
	f := newFixture(t)
	e := &relay.Envelope{Step: relay.StepAck, Label: f.label, From: "agent2.example", To: "agent1.example",
		Notes: evidence.Sum([]byte("n")), Time: f.now}
	text, err := e.Encode()
	if err != nil {
		t.Fatal(err)
	}
	back, err := relay.ParseEnvelope(text)
	if err != nil || *back != *e {
		t.Fatalf("ParseEnvelope = %+v, %v", back, err)
	}
	for _, bad := range []string{
		strings.Replace(string(text), "step ack", "step gossip", 1),
		strings.Replace(string(text), "message none", "message sha256:00", 1),
		strings.Replace(string(text), "time 2026-11-23T18:00:00Z", "time 2026-11-23T18:00:00.000Z", 1),
		strings.Replace(string(text), "to agent1.example", "to agent1.example ", 1),
		string(text) + "extra line\n",
	} {
		if _, err := relay.ParseEnvelope([]byte(bad)); err == nil {
			t.Errorf("ParseEnvelope accepted:\n%s", bad)
		}
	}
}

func FuzzParseMail(f *testing.F) {
	fx := newFixture(f)
	f.Add(fx.relayMail(f))
	f.Add([]byte("From: a@b\r\nContent-Type: multipart/mixed; boundary=x\r\n\r\n--x\r\nContent-Type: text/plain\r\n\r\nhi\r\n--x--\r\n"))
	keys := trusted(fx.a1, fx.a2)
	f.Fuzz(func(t *testing.T, data []byte) {
		m, err := relay.ParseMail(data, 1<<16, keys)
		if err != nil {
			return
		}
		// What parses re-encodes to a mail that parses to the same content.
		again, err := m.Encode("fuzz")
		if err != nil {
			t.Fatalf("Encode of a parsed mail: %v", err)
		}
		m2, err := relay.ParseMail(again, 1<<16, keys)
		if err != nil || !bytes.Equal(m2.Signed, m.Signed) || !bytes.Equal(m2.Message, m.Message) || len(m2.Notes) != len(m.Notes) {
			t.Fatalf("round trip: %v", err)
		}
	})
}

func FuzzParseEnvelope(f *testing.F) {
	fx := newFixture(f)
	e := &relay.Envelope{Step: relay.StepRelay, Label: fx.label, From: "agent1.example", To: "agent2.example",
		Notes: evidence.Sum([]byte("n")), Message: evidence.Sum(fx.msg), Time: fx.now}
	text, _ := e.Encode()
	f.Add(text)
	f.Fuzz(func(t *testing.T, data []byte) {
		e, err := relay.ParseEnvelope(data)
		if err != nil {
			return
		}
		enc, err := e.Encode()
		if err != nil || !bytes.Equal(enc, data) {
			t.Fatalf("parsed but re-encodes differently: %v", err)
		}
	})
}
