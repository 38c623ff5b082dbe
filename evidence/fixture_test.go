package evidence_test

import (
	"math/rand/v2"
	"testing"
	"time"

	"golang.org/x/mod/sumdb/note"

	"certmail/evidence"
)

// seeded is a reproducible randomness source for keys and labels in tests and vectors.
func seeded(seed uint64) *rand.ChaCha8 {
	var s [32]byte
	s[0] = byte(seed)
	s[1] = byte(seed >> 8)
	return rand.NewChaCha8(s)
}

// fixture holds the keys of the parties in the sample records: the agent p1.example, the agent
// p2.example, and the users alice@a.example (sender) and bob+certified@b.example (recipient; the
// '+' exercises the key-name escaping).
type fixture struct {
	signers map[string]note.Signer // by key name
	vkeys   map[string]string      // by key name
	skeys   map[string]string      // the private keys, by key name
	label   evidence.Label
	msg     []byte
	t0      time.Time
}

const (
	bobKey = "bob%2Bcertified@b.example" // evidence.KeyName(bob)
	agent1 = "p1.example"
	agent2 = "p2.example"
	alice  = "alice@a.example"
	bob    = "bob+certified@b.example"
)

func newFixture(t testing.TB) *fixture {
	t.Helper()
	r := seeded(1)
	f := &fixture{signers: map[string]note.Signer{}, vkeys: map[string]string{}, skeys: map[string]string{},
		msg: []byte("From: alice@a.example\r\nTo: bob+certified@b.example\r\nSubject: contract\r\n\r\nSigned copy attached.\r\n"),
		t0:  time.Date(2026, 1, 5, 9, 0, 0, 0, time.UTC)}
	for _, name := range []string{agent1, agent2, mustKeyName(t, alice), mustKeyName(t, bob)} {
		skey, vkey, err := note.GenerateKey(r, name)
		if err != nil {
			t.Fatal(err)
		}
		s, err := note.NewSigner(skey)
		if err != nil {
			t.Fatal(err)
		}
		f.signers[name], f.vkeys[name], f.skeys[name] = s, vkey, skey
	}
	var err error
	if f.label, err = evidence.NewLabel(r); err != nil {
		t.Fatal(err)
	}
	return f
}

func mustKeyName(t testing.TB, addr string) string {
	t.Helper()
	n, err := evidence.KeyName(addr)
	if err != nil {
		t.Fatal(err)
	}
	return n
}

func (f *fixture) at(min int) time.Time { return f.t0.Add(time.Duration(min) * time.Minute) }

// record returns a valid record of type typ.
func (f *fixture) record(typ evidence.Type) *evidence.Record {
	h := evidence.Sum(f.msg)
	c := evidence.Sum([]byte("ciphertext"))
	k := evidence.Sum([]byte("key"))
	r := &evidence.Record{Type: typ, Label: f.label, Time: f.at(1)}
	switch typ {
	case evidence.COP:
		r.Protocol, r.Agent, r.Sender, r.Recipient, r.Content, r.Deadline = evidence.CEMIP, agent1, alice, bob, h, f.at(24*60)
	case evidence.NAC:
		r.Protocol, r.Agent, r.Sender, r.Reason, r.Detail = evidence.CEMIP, agent1, alice, "from-mismatch", "From is not the authenticated user"
	case evidence.ACK:
		r.Protocol, r.Agent, r.From, r.Recipient, r.Content = evidence.CEMIP, agent2, agent1, bob, h
	case evidence.NTF:
		r.Protocol, r.Agent, r.Recipient, r.Content, r.Commitment, r.Deadline = evidence.CEMIP, agent2, bob, h, evidence.Commitment(f.label, f.msg), f.at(24*60)
	case evidence.DLV:
		r.Protocol, r.Agent, r.Recipient, r.Content, r.Method, r.Client = evidence.CEMIP, agent2, bob, h, "password", "203.0.113.7"
	case evidence.REJ:
		r.Protocol, r.Agent, r.Recipient, r.Reason = evidence.CEMIP, agent2, bob, "refused"
	case evidence.RET:
		r.Agent, r.Recipient, r.Content, r.Client = agent2, bob, h, "203.0.113.7"
	case evidence.ROD:
		r.Protocol, r.Agent, r.Origin, r.Recipient, r.Content = evidence.CEMIP, agent2, agent1, bob, h
	case evidence.WRN:
		r.Protocol, r.Agent, r.Sender, r.Recipient, r.Deadline = evidence.CEMIP, agent1, alice, bob, f.at(24*60)
	case evidence.NDN:
		r.Protocol, r.Agent, r.Sender, r.Recipient, r.Content, r.Deadline, r.Reason = evidence.CEMIP, agent1, alice, bob, h, f.at(24*60), "deadline"
	case evidence.RTR:
		r.Protocol, r.Agent, r.Sender, r.Recipient, r.Content = evidence.CEMIP, agent1, alice, bob, h
	case evidence.VIR:
		r.Agent, r.Sender, r.Content, r.Detail = agent1, alice, h, "Eicar-Test-Signature"
	case evidence.PUB:
		r.Protocol, r.Agent, r.Ciphertext, r.Secret = evidence.SR, agent1, c, k[:]
	case evidence.KEY:
		r.Label = evidence.Label{}
		r.Agent, r.Subject, r.Key, r.Time = agent2, bob, f.vkeys[bobKey], f.at(0)
	case evidence.CODBasic:
		r.Agent, r.Recipient, r.Content = agent2, bob, h
	case evidence.CODNSR:
		r.Agent, r.Recipient = agent2, bob
	case evidence.CODIP:
		r.Agent, r.Recipient, r.Commitment = agent2, bob, evidence.Commitment(f.label, f.msg)
	case evidence.CMPNRO:
		r.Time = time.Time{}
		r.Sender, r.Recipient, r.Content = alice, bob, h
	case evidence.CMPREQ:
		r.Time = time.Time{}
		r.Agent, r.Sender, r.Recipient, r.Content = agent1, alice, bob, h
	case evidence.CMPNRD:
		r.Agent, r.Sender, r.Recipient, r.Content, r.Request = agent1, alice, bob, h, evidence.Sum([]byte("request"))
	case evidence.CMP2NRO:
		r.Time = time.Time{}
		r.Sender, r.Recipient, r.Content, r.Ciphertext = alice, bob, h, c
	case evidence.CMP2REQ:
		r.Time = time.Time{}
		r.Agent, r.Sender, r.Recipient, r.Ciphertext = agent1, alice, bob, c
	case evidence.CMP2NRD:
		r.Agent, r.Sender, r.Recipient, r.Ciphertext, r.KeyHash, r.Request = agent1, alice, bob, c, k, evidence.Sum([]byte("request"))
	case evidence.SRREQ:
		r.Time = time.Time{}
		r.Sender, r.Recipient, r.Ciphertext, r.Deadline, r.Location, r.Expectation = alice, bob, c, f.at(60), agent1, "the signed lease, version 3"
	case evidence.SRKEYRCPT:
		r.Time = time.Time{}
		r.Sender, r.Recipient, r.Ciphertext, r.KeyHash = alice, bob, c, k
	case evidence.AGHPRECEIPT:
		r.Agent, r.Sender, r.Recipient, r.Mode, r.Exchange, r.KeyHash = agent1, alice, bob, "tls-auth", evidence.Sum([]byte("hS")), k
	}
	return r
}

// sign signs r with every key it needs.
func (f *fixture) sign(t testing.TB, r *evidence.Record) *evidence.Note {
	t.Helper()
	var signers []note.Signer
	for _, name := range r.SignerNames() {
		s, ok := f.signers[name]
		if !ok {
			t.Fatalf("no key for %s", name)
		}
		signers = append(signers, s)
	}
	n, err := evidence.Sign(r, signers...)
	if err != nil {
		t.Fatalf("sign %s: %v", r.Type, err)
	}
	return n
}

// keys returns every verifier key of the fixture.
func (f *fixture) keys(t testing.TB) *evidence.Keys {
	t.Helper()
	var all []string
	for _, v := range f.vkeys {
		all = append(all, v)
	}
	k, err := evidence.NewKeys(all...)
	if err != nil {
		t.Fatal(err)
	}
	return k
}
