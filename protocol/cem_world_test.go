package protocol_test

import (
	"fmt"
	"math/rand/v2"
	"strings"
	"testing"
	"time"

	"certmail/evidence"
	"certmail/protocol"
	"certmail/protocol/sim"
)

// cemStart is the fixed start of every CEM run, so that vectors are reproducible.
var cemStart = time.Date(2026, 1, 5, 9, 0, 0, 0, time.UTC)

const (
	cemAlice = "alice@a.example"
	cemBob   = "bob@b.example"
	cemBogus = "bogus.example"
)

// cemRand is a reproducible randomness source for keys, labels and nonces.
func cemRand(seed uint64) *rand.ChaCha8 {
	var s [32]byte
	for i := range 8 {
		s[i] = byte(seed >> (8 * i))
	}
	copy(s[8:], "certmail cem test")
	return rand.NewChaCha8(s)
}

// cemWorld is a federation of three agents, a sender and a recipient (with a key, which a run
// may leave unenrolled), and a bogus agent, all with keys drawn from one seed.
type cemWorld struct {
	agents  []*protocol.Identity // p1.example, p2.example, p3.example
	bogus   *protocol.Identity
	alice   *protocol.Identity
	bob     *protocol.Identity
	secretA []byte
	secretB []byte
}

func newCEMWorld(t testing.TB) *cemWorld {
	t.Helper()
	r := cemRand(1)
	w := &cemWorld{secretA: []byte("alice's account secret"), secretB: []byte("bob's pickup secret")}
	id := func(name string) *protocol.Identity {
		i, err := protocol.NewIdentity(name, r)
		if err != nil {
			t.Fatal(err)
		}
		return i
	}
	for i := 1; i <= 3; i++ {
		w.agents = append(w.agents, id(fmt.Sprintf("p%d.example", i)))
	}
	w.bogus = id(cemBogus)
	w.alice = id(cemAlice)
	w.bob = id(cemBob)
	return w
}

// agentKeys are the verifier keys of the federation's genuine agents: everyone's trust store.
func (w *cemWorld) agentKeys() []string {
	var out []string
	for _, a := range w.agents {
		out = append(out, a.Verifier)
	}
	return out
}

// cemSetup describes one exchange.
type cemSetup struct {
	p         evidence.Protocol
	n         int  // agents in the chain, 1..3
	keyed     bool // B has a key (COD) rather than none (DLV)
	behavior  protocol.CEMBehavior
	span      time.Duration // T - start
	retractAt time.Duration // 0: A never retracts
	message   []byte
	rand      uint64 // seed of labels and nonces
	timing    protocol.CEMTiming
	// Memories shared with an earlier exchange among the same parties (nil: fresh).
	seen *cemSeens
}

// cemSeens are the parties' durable memories of labels, which outlive one exchange.
type cemSeens struct {
	agents []*protocol.CEMSeen
	bob    *protocol.CEMSeen
}

func newCEMSeens() *cemSeens {
	return &cemSeens{agents: []*protocol.CEMSeen{protocol.NewCEMSeen(), protocol.NewCEMSeen(), protocol.NewCEMSeen()}, bob: protocol.NewCEMSeen()}
}

// cemRun is one exchange's parties.
type cemRun struct {
	setup   cemSetup
	A       *protocol.CEMSender
	B       *protocol.CEMRecipient
	P       []*protocol.CEMAgent
	T       time.Time
	message []byte
}

func (r *cemRun) parties() []protocol.Party {
	ps := []protocol.Party{r.A}
	for _, p := range r.P {
		ps = append(ps, p)
	}
	return append(ps, r.B)
}

func (r *cemRun) names() (a, b string, agents []string) {
	for _, p := range r.P {
		agents = append(agents, p.Name())
	}
	return r.A.Name(), r.B.Name(), agents
}

func (w *cemWorld) setup(t testing.TB, s cemSetup) *cemRun {
	t.Helper()
	if s.seen == nil {
		s.seen = newCEMSeens()
	}
	if s.message == nil {
		s.message = []byte("From: alice@a.example\r\nTo: bob@b.example\r\nSubject: offer\r\n\r\nThe signed offer is attached.\r\n")
	}
	if s.span == 0 {
		s.span = time.Hour
	}
	rnd := cemRand(1000 + s.rand)
	T := cemStart.Add(s.span)
	run := &cemRun{setup: s, T: T, message: s.message}
	trust := w.agentKeys()
	bobAcct := protocol.CEMAccount{Secret: w.secretB}
	if s.keyed {
		bobAcct.Key = w.bob.Verifier
	}
	for i := 0; i < s.n; i++ {
		cfg := protocol.CEMAgentConfig{Identity: w.agents[i], Trust: trust, Rand: rnd, Seen: s.seen.agents[i],
			Accounts: map[string]protocol.CEMAccount{}, Routes: map[string]string{}, Timing: s.timing}
		if i == 0 {
			cfg.Accounts[cemAlice] = protocol.CEMAccount{Secret: w.secretA}
		}
		if i+1 < s.n {
			cfg.Routes["b.example"] = w.agents[i+1].Name
		} else {
			cfg.Accounts[cemBob] = bobAcct
		}
		a, err := protocol.NewCEMAgent(cfg)
		if err != nil {
			t.Fatal(err)
		}
		run.P = append(run.P, a)
	}
	var retract time.Time
	if s.retractAt > 0 {
		retract = cemStart.Add(s.retractAt)
	}
	var err error
	run.A, err = protocol.NewCEMSender(protocol.CEMSenderConfig{Protocol: s.p, Address: cemAlice, Agent: w.agents[0].Name,
		Secret: w.secretA, Trust: trust, Recipient: cemBob, Message: s.message, Deadline: T, RetractAt: retract,
		Rand: rnd, Timing: s.timing})
	if err != nil {
		t.Fatal(err)
	}
	bcfg := protocol.CEMRecipientConfig{Address: cemBob, Secret: w.secretB, Client: "198.51.100.7", Trust: trust,
		Seen: s.seen.bob, Behavior: s.behavior, Timing: s.timing}
	if s.keyed {
		bcfg.Identity = w.bob
	}
	if run.B, err = protocol.NewCEMRecipient(bcfg); err != nil {
		t.Fatal(err)
	}
	return run
}

// horizon is how long a run may last: past T and the grace period, when everyone gives up.
func (r *cemRun) horizon() time.Duration {
	g := r.setup.timing.Grace
	if g == 0 {
		g = protocol.DefaultCEMTiming().Grace
	}
	return r.T.Sub(cemStart) + g + time.Minute
}

// runQuiet plays the exchange over a network that makes no mistakes.
func (r *cemRun) runQuiet(t testing.TB, extra ...protocol.Party) *sim.Trace {
	t.Helper()
	tr, err := sim.Run(sim.Config{Seed: 1, Start: cemStart, Horizon: r.horizon(), Parties: append(r.parties(), extra...)})
	if err != nil {
		t.Fatalf("%v\n%s", err, tr)
	}
	return tr
}

// runWith plays the exchange among the given parties (some of them wrapped) over a network that
// makes no mistakes.
func (r *cemRun) runWith(t testing.TB, parties ...protocol.Party) *sim.Trace {
	t.Helper()
	tr, err := sim.Run(sim.Config{Seed: 1, Start: cemStart, Horizon: r.horizon(), Parties: parties})
	if err != nil {
		t.Fatalf("%v\n%s", err, tr)
	}
	return tr
}

// judged checks A's bundle as an arbiter would (no pinned keys) and returns the verdict.
func (r *cemRun) judged(t testing.TB) (*evidence.Bundle, *evidence.Verdict) {
	t.Helper()
	b := r.A.Bundle()
	if b == nil {
		t.Fatalf("A holds no bundle (no COP)")
	}
	enc, err := b.Encode()
	if err != nil {
		t.Fatalf("A's bundle does not encode: %v", err)
	}
	back, err := evidence.ParseBundle(enc)
	if err != nil {
		t.Fatalf("A's bundle does not parse back: %v", err)
	}
	return back, protocol.Judge(back.Check(nil))
}

func (r *cemRun) label(t testing.TB) evidence.Label {
	t.Helper()
	l, ok := r.A.Label()
	if !ok {
		t.Fatal("A has no label")
	}
	return l
}

// cemMuted wraps a party and drops what it would send at the given steps: an agent that
// stops doing part of its job while appearing to work.
type cemMuted struct {
	protocol.Party
	steps []string // step suffixes, e.g. "/8"
}

func (m *cemMuted) filter(out []protocol.Msg) []protocol.Msg {
	var keep []protocol.Msg
	for _, x := range out {
		drop := false
		for _, s := range m.steps {
			if strings.HasSuffix(x.Step, s) {
				drop = true
			}
		}
		if !drop {
			keep = append(keep, x)
		}
	}
	return keep
}

func (m *cemMuted) Start(now time.Time) []protocol.Msg { return m.filter(m.Party.Start(now)) }
func (m *cemMuted) Receive(now time.Time, x protocol.Msg) []protocol.Msg {
	return m.filter(m.Party.Receive(now, x))
}
func (m *cemMuted) Tick(now time.Time) []protocol.Msg { return m.filter(m.Party.Tick(now)) }
