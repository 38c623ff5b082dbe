package protocol_test

import (
	"bytes"
	"encoding/binary"
	"encoding/hex"
	"fmt"
	"math/rand/v2"
	"os"
	"slices"
	"strings"
	"testing"
	"time"

	"certmail/evidence"
	"certmail/protocol"
	"certmail/protocol/sim"
)

// The fixture of the on-line TTP protocol tests (CMP, SR, AGHP): agents a.example (Alice's),
// b.example (Bob's) and ttp.example (the TTP, and the public location X of SR), an agent
// evil.example that is trusted as an agent but is nobody's TTP, and users alice, bob and
// mallory with keys bound by their agents. Everything derives from one seed.

var ttpT0 = time.Date(2026, 1, 5, 9, 0, 0, 0, time.UTC)

const (
	ttpAlice   = "alice@a.example"
	ttpBob     = "bob+certified@b.example" // the '+' exercises the key-name escaping
	ttpMallory = "mallory@a.example"
	ttpHost    = "ttp.example"
	ttpEvil    = "evil.example"
)

// ttpSeeded is a reproducible randomness source for keys and labels.
func ttpSeeded(seed uint64) *rand.ChaCha8 {
	var s [32]byte
	binary.LittleEndian.PutUint64(s[:], seed)
	copy(s[8:], "certmail ttp tests")
	return rand.NewChaCha8(s)
}

type ttpWorld struct {
	agentA, agentB, ttp, evil *protocol.Identity
	alice, bob, mallory       protocol.BoundKey
	forgedBob                 *protocol.Identity // a key under Bob's name that no agent bound
	forgedTTP                 *protocol.Identity // a key under the TTP's name that nobody trusts
	box                       *protocol.BoxKey
	trust                     []string // a.example, b.example, ttp.example, evil.example
	msg                       []byte
	rpwd                      []byte // Bob's AGHP password
	account                   []byte // Alice's account secret at ttp.example (SR publication)
}

func newTTPWorld(t testing.TB) *ttpWorld {
	t.Helper()
	r := ttpSeeded(7)
	id := func(name string) *protocol.Identity {
		i, err := protocol.NewIdentity(name, r)
		if err != nil {
			t.Fatal(err)
		}
		return i
	}
	w := &ttpWorld{agentA: id("a.example"), agentB: id("b.example"), ttp: id(ttpHost), evil: id(ttpEvil)}
	bind := func(agent *protocol.Identity, user string) protocol.BoundKey {
		k, err := protocol.BindKey(agent, id(user), ttpT0.Add(-24*time.Hour))
		if err != nil {
			t.Fatal(err)
		}
		return k
	}
	w.alice, w.bob, w.mallory = bind(w.agentA, ttpAlice), bind(w.agentB, ttpBob), bind(w.agentA, ttpMallory)
	w.forgedBob, w.forgedTTP = id(ttpBob), id(ttpHost)
	var err error
	if w.box, err = protocol.NewBoxKey(r); err != nil {
		t.Fatal(err)
	}
	for _, a := range []*protocol.Identity{w.agentA, w.agentB, w.ttp, w.evil} {
		w.trust = append(w.trust, a.Verifier)
	}
	w.msg = []byte("From: alice@a.example\r\nTo: bob+certified@b.example\r\nSubject: contract\r\n" +
		"Message-ID: <contract-1@a.example>\r\n\r\nThe signed contract, as agreed. Please countersign by Friday.\r\n")
	w.rpwd = []byte("correct horse battery staple")
	w.account = []byte("alice's account secret at ttp.example")
	return w
}

func (w *ttpWorld) pinned(t testing.TB) *evidence.Keys {
	k, err := evidence.NewKeys(w.trust...)
	if err != nil {
		t.Fatal(err)
	}
	return k
}

// ttpVerdict judges b with no pinned keys (as the vectors are judged) and with the world's agent
// keys pinned (as an arbiter who knows the agents judges), and returns the pinned verdict after
// checking that both agree on validity and outcome.
func ttpVerdict(t testing.TB, w *ttpWorld, b *evidence.Bundle) *evidence.Verdict {
	t.Helper()
	free := protocol.Judge(b.Check(nil))
	pinned := protocol.Judge(b.Check(w.pinned(t)))
	if free.Valid != pinned.Valid || free.Outcome != pinned.Outcome {
		t.Fatalf("verdicts differ with and without pinned keys:\nfree:\n%s\npinned:\n%s", free.Text(), pinned.Text())
	}
	return pinned
}

// ttpRoundTrip encodes and parses a bundle, as it travels to an arbiter.
func ttpRoundTrip(t testing.TB, b *evidence.Bundle) *evidence.Bundle {
	t.Helper()
	enc, err := b.Encode()
	if err != nil {
		t.Fatalf("encode bundle: %v", err)
	}
	out, err := evidence.ParseBundle(enc)
	if err != nil {
		t.Fatalf("parse bundle: %v", err)
	}
	return out
}

func ttpWantProven(t testing.TB, w *ttpWorld, b *evidence.Bundle) *evidence.Verdict {
	t.Helper()
	if b == nil {
		t.Fatal("no bundle")
	}
	v := ttpVerdict(t, w, ttpRoundTrip(t, b))
	if !v.Valid || v.Outcome != evidence.OutcomeReceiptProven {
		t.Fatalf("want a valid proof of receipt, got:\n%s", v.Text())
	}
	return v
}

// ttpWantRefused checks that the judge does not accept b as proof of receipt, and that it says
// why: a failed check named check, or — for genuine evidence that merely falls short — a notice
// naming it (any check when check is "").
func ttpWantRefused(t testing.TB, w *ttpWorld, b *evidence.Bundle, check string) *evidence.Verdict {
	t.Helper()
	v := protocol.Judge(b.Check(w.pinned(t)))
	if v.Outcome == evidence.OutcomeReceiptProven {
		t.Fatalf("the judge accepted a bundle it must refuse:\n%s", v.Text())
	}
	failed := slices.ContainsFunc(v.Problems, func(p evidence.Problem) bool { return p.Check == check })
	noted := slices.ContainsFunc(v.Notices, func(n string) bool { return strings.Contains(n, ": "+check+": ") })
	if check != "" && !failed && !noted {
		t.Fatalf("want a failed %q check, got:\n%s", check, v.Text())
	}
	return v
}

// ttpResign re-signs a note with its record changed, as the one who signs it would.
func ttpResign(t testing.TB, n *evidence.Note, change func(*evidence.Record), signer *protocol.Identity) *evidence.Note {
	t.Helper()
	r := *n.Record
	r.Secret = bytes.Clone(r.Secret)
	change(&r)
	out, err := evidence.Sign(&r, signer.Signer)
	if err != nil {
		t.Fatalf("re-sign %s: %v", r.Type, err)
	}
	return out
}

// ttpWithNote returns a copy of b with the note of type typ replaced by n (and n's signer's key
// added when given).
func ttpWithNote(b *evidence.Bundle, typ evidence.Type, n *evidence.Note, addKey string) *evidence.Bundle {
	c := *b
	c.Notes = slices.Clone(b.Notes)
	c.Keys = slices.Clone(b.Keys)
	c.Items = slices.Clone(b.Items)
	for i, old := range c.Notes {
		if old.Record.Type == typ {
			c.Notes[i] = n
			break
		}
	}
	if addKey != "" {
		c.AddKey(addKey)
	}
	return &c
}

func ttpWithItem(b *evidence.Bundle, name string, data []byte) *evidence.Bundle {
	c := *b
	c.Notes = slices.Clone(b.Notes)
	c.Keys = slices.Clone(b.Keys)
	c.Items = slices.Clone(b.Items)
	c.SetItem(name, data)
	return &c
}

func ttpWithout(b *evidence.Bundle, typ evidence.Type, subject string) *evidence.Bundle {
	c := *b
	c.Keys = slices.Clone(b.Keys)
	c.Items = slices.Clone(b.Items)
	c.Notes = slices.DeleteFunc(slices.Clone(b.Notes), func(n *evidence.Note) bool {
		return n.Record.Type == typ && (subject == "" || n.Record.Subject == subject)
	})
	return &c
}

func ttpNoteOf(b *evidence.Bundle, typ evidence.Type) *evidence.Note {
	for _, n := range b.Notes {
		if n.Record.Type == typ {
			return n
		}
	}
	return nil
}

// ttpMutation is one targeted change of a proof of receipt that the judge must refuse.
type ttpMutation struct {
	name string
	b    *evidence.Bundle
}

// ttpOtherLabel is a label no run uses.
var ttpOtherLabel = evidence.Label{0xde, 0xad, 0xbe, 0xef, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12}

// ttpRelabel moves the whole bundle to another label: every token then names another exchange.
func ttpRelabel(b *evidence.Bundle) *evidence.Bundle {
	c := *b
	c.Label = ttpOtherLabel
	return &c
}

// ttpSimRun is one simulated run of a property test.
type ttpSimRun struct {
	test   string
	seed   uint64
	faults sim.Faults
	trace  *sim.Trace
}

// fail reports a violated invariant with everything needed to replay it.
func (r *ttpSimRun) fail(t *testing.T, format string, args ...any) {
	t.Helper()
	tr := ""
	if r.trace != nil {
		tr = r.trace.String()
	}
	t.Fatalf("seed %d: %s\nfaults: %+v\n%s\nreplay: CERTMAIL_SEED=%d go test ./protocol -run '^%s$' -v",
		r.seed, fmt.Sprintf(format, args...), r.faults, tr, r.seed, r.test)
}

// stopped reports whether the party actually stopped (walked away) during the run.
func (r *ttpSimRun) stopped(name string) bool {
	return slices.ContainsFunc(r.trace.Events, func(e sim.Event) bool { return e.What == "stop" && e.Msg.From == name })
}

// ttpSeeds are the seeds of a property test: CERTMAIL_SEED replays one.
func ttpSeeds(base uint64) []uint64 { return sim.Seeds(os.Getenv("CERTMAIL_SEED"), base, 1000) }

// ttpCarries reports whether a message carries any of the secrets, raw or in hex (a PUB note
// holds K in hex).
func ttpCarries(m protocol.Msg, secrets ...[]byte) bool {
	for _, s := range secrets {
		hx := []byte(hex.EncodeToString(s))
		for _, d := range m.Data {
			if bytes.Contains(d, s) || bytes.Contains(d, hx) {
				return true
			}
		}
		for _, n := range m.Notes {
			if bytes.Contains(n, s) || bytes.Contains(n, hx) {
				return true
			}
		}
	}
	return false
}

// ttpCheckSecretFlow checks "no selective receipt" on a trace: every message that carries a secret
// is sent after B's commitment (the first send that committed returns true for) by an allowed
// sender at an allowed step.
func ttpCheckSecretFlow(run *ttpSimRun, t *testing.T, secrets [][]byte, committed func(protocol.Msg) bool, allowed func(protocol.Msg) bool) {
	t.Helper()
	commit := -1
	for i, e := range run.trace.Events {
		if e.What != "send" {
			continue
		}
		if commit < 0 && committed(e.Msg) {
			commit = i
		}
		if !ttpCarries(e.Msg, secrets...) {
			continue
		}
		if commit < 0 {
			run.fail(t, "event %d: %s sent %s carrying the secret before B committed", i, e.Msg.From, e.Msg.Step)
		}
		if !allowed(e.Msg) {
			run.fail(t, "event %d: %s sent the secret in %s to %s", i, e.Msg.From, e.Msg.Step, e.Msg.To)
		}
	}
}

// ttpDistinctNotes counts, per label, the distinct notes of type typ validly signed under keys
// that were sent during a trace (and in extra messages, e.g. an earlier run's). Copies changed in
// transit do not count: the simulator records a tampered message as it was tampered.
func ttpDistinctNotes(keys *evidence.Keys, typ evidence.Type, msgs ...[]protocol.Msg) map[evidence.Label]int {
	seen := map[evidence.Hash]bool{}
	out := map[evidence.Label]int{}
	for _, list := range msgs {
		for _, m := range list {
			for _, raw := range m.Notes {
				n, err := evidence.ParseNote(raw)
				if err != nil || n.Record.Type != typ || seen[n.Leaf()] || n.Verify(keys) != nil {
					continue
				}
				seen[n.Leaf()] = true
				out[n.Record.Label]++
			}
		}
	}
	return out
}
