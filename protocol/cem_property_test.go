package protocol_test

import (
	"bytes"
	"fmt"
	"math/rand/v2"
	"os"
	"slices"
	"strings"
	"testing"
	"time"

	"golang.org/x/mod/sumdb/note"

	"certmail/evidence"
	"certmail/protocol"
	"certmail/protocol/sim"
)

// cemSeeds is how many random schedules each variant runs.
const cemSeeds = 1000

// cemFaultWindow is how long the network misbehaves at the start of each run.
const cemFaultWindow = 20 * time.Second

// cemPropTiming keeps the grace period short, so runs end soon after the deadline.
var cemPropTiming = protocol.CEMTiming{Retry: time.Second, RetryMax: 8 * time.Second, Grace: time.Minute}

// TestCEMProperties runs each variant over thousands of random schedules — loss, delay,
// duplication, reordering, tampering, replay of an earlier exchange among the same parties,
// senders and recipients that walk away, agents that crash and restart — and checks the
// invariants of PROTOCOLS.md §6 after each. Replay a failure with
// CERTMAIL_SEED=N go test ./protocol -run 'TestCEMProperties/VARIANT$'.
func TestCEMProperties(t *testing.T) {
	w := newCEMWorld(t)
	for i, p := range cemVariants {
		t.Run(string(p), func(t *testing.T) {
			t.Parallel()
			stats := map[string]int{}
			for _, seed := range sim.Seeds(os.Getenv("CERTMAIL_SEED"), uint64(i+1)*1_000_000, cemSeeds) {
				cemProperty(t, w, p, seed, stats)
			}
			t.Logf("%s: %v", p, stats)
		})
	}
}

// cemProperty plays one schedule and checks the invariants.
func cemProperty(t *testing.T, w *cemWorld, p evidence.Protocol, seed uint64, stats map[string]int) {
	rng := rand.New(rand.NewPCG(seed, 0xce3))
	s := cemSetup{p: p, n: 1 + rng.IntN(3), keyed: rng.IntN(2) == 0, rand: seed, timing: cemPropTiming,
		span:    []time.Duration{10 * time.Second, 40 * time.Second, 3 * time.Minute}[rng.IntN(3)],
		message: fmt.Appendf(nil, "From: alice@a.example\r\nTo: bob@b.example\r\nSubject: run %d\r\n\r\nmessage of seed %d\r\n", seed, seed),
		seen:    newCEMSeens()}
	switch rng.IntN(10) {
	case 0:
		s.behavior = protocol.CEMRefuseAll
	case 1:
		s.behavior = protocol.CEMNeverSign
	}
	if rng.IntN(10) == 0 {
		s.retractAt = time.Duration(rng.Int64N(int64(s.span)))
	}
	run := w.setup(t, s)
	a, b, agents := run.names()
	faults := sim.Random(rng, cemFaultWindow, []string{a, b}, agents)

	// An earlier exchange among the same parties, whose messages the network replays.
	var pool []protocol.Msg
	var earlier *evidence.Bundle
	if faults.Replay > 0 {
		pre := s
		pre.behavior, pre.retractAt, pre.rand = protocol.CEMAcceptAll, 0, seed+1<<40
		pre.message = fmt.Appendf(nil, "From: alice@a.example\r\nTo: bob@b.example\r\nSubject: earlier\r\n\r\nearlier message %d\r\n", seed)
		prev := w.setup(t, pre)
		tr, err := sim.Run(sim.Config{Seed: seed, Start: cemStart, Horizon: prev.horizon(), Parties: prev.parties()})
		if err != nil {
			t.Fatalf("seed %d: earlier exchange: %v", seed, err)
		}
		pool, earlier = tr.Sent, prev.A.Bundle()
	}

	tr, err := sim.Run(sim.Config{Seed: seed, Start: cemStart, Horizon: run.horizon(), Parties: run.parties(), Faults: faults, ReplayPool: pool})
	fail := func(format string, args ...any) {
		t.Helper()
		t.Fatalf("seed %d (%s, n=%d, keyed=%v, behavior=%d, span=%s, retract=%s, faults %+v): %s\n"+
			"replay: CERTMAIL_SEED=%d go test ./protocol -run 'TestCEMProperties/%s$'\n%s",
			seed, p, s.n, s.keyed, s.behavior, s.span, s.retractAt, faults, fmt.Sprintf(format, args...), seed, p, tr)
	}
	if err != nil {
		fail("%v", err)
	}
	stopped := map[string]bool{}
	for _, e := range tr.Events {
		if e.What == "stop" {
			stopped[e.Msg.From] = true
		}
	}
	honestA := !stopped[a]
	honestB := !stopped[b] && s.behavior != protocol.CEMNeverSign

	// The exchange is the one P1 opened for A's submission (at most one).
	var l evidence.Label
	var opened int
	for _, x := range run.P[0].Labels() {
		if v, _ := run.P[0].View(x); v.First {
			l = x
			opened++
		}
	}
	if opened > 1 {
		fail("P1 opened %d exchanges for one submission", opened)
	}
	for _, party := range run.parties() {
		if !stopped[party.Name()] && !party.Done() {
			fail("%s is not done at the end of the run (T+grace+1m)", party.Name())
		}
	}
	stats["runs"]++
	if len(pool) > 0 {
		stats["replaying"]++
	}
	if len(faults.Crashes) > 0 {
		stats["crashing"]++
	}
	if len(stopped) > 0 {
		stats["stopping"]++
	}
	if opened == 0 {
		stats["never-posted"]++
		if _, ok := run.A.Label(); ok {
			fail("A holds a COP that P1 did not issue")
		}
		return
	}
	p1, _ := run.P[0].View(l)
	pn, _ := run.P[s.n-1].View(l)
	if len(p1.Outcome) == 0 {
		fail("P1 never decided the exchange")
	}
	decided := p1.Outcome[0].Record.Type
	// Timeliness: P1 decides by T, or as soon as it is back if it was down at T.
	if p1.DecidedAt.After(run.T.Add(cemFaultWindow)) {
		fail("P1 decided only at %s, past T+%s", p1.DecidedAt, cemFaultWindow)
	}
	stats["decided-"+string(decided)+"-"+p1.Outcome[0].Record.Reason]++

	// A's evidence: whatever it holds is whole and agrees with P1's decision.
	bundle := run.A.Bundle()
	var verdict *evidence.Verdict
	if bundle != nil {
		verdict = protocol.Judge(bundle.Check(nil))
		if !verdict.Valid {
			fail("A's bundle is not valid:\n%s", verdict.Text())
		}
	}
	if honestA {
		// Timeliness: an honest A ends with an outcome, by T plus the grace period.
		at, gaveUp := run.A.Finished()
		if bundle == nil || gaveUp || !run.A.Done() || at.After(run.T.Add(cemPropTiming.Grace)) {
			fail("honest A has no outcome by T+grace (bundle=%v gave-up=%v at %s)", bundle != nil, gaveUp, at)
		}
		want := map[evidence.Type]evidence.Outcome{evidence.ROD: evidence.OutcomeDelivered, evidence.REJ: evidence.OutcomeRefused,
			evidence.RTR: evidence.OutcomeRetracted}[decided]
		if decided == evidence.NDN {
			want = evidence.OutcomeNotDelivered
			if p1.Outcome[0].Record.Time.After(run.T) {
				want = evidence.OutcomeCompensation
			}
		}
		if verdict.Outcome != want {
			fail("A's verdict is %s, but P1 decided %s:\n%s", verdict.Outcome, decided, verdict.Text())
		}
	}

	// Fairness (PROTOCOLS.md §6). B's message is the M of this run only.
	msgB, gotAt, bHolds := run.B.Message(l)
	if bHolds {
		stats["b-holds-m"]++
	}
	if bHolds && !bytes.Equal(msgB, run.message) {
		fail("B holds a message other than M")
	}
	aDelivered := decided == evidence.ROD
	if aDelivered {
		// A holds, or can still obtain from P1, the receipt: then B holds M or can still fetch it.
		if honestB && !bHolds {
			fail("P1 reported delivery, but honest B does not hold M (state %q)", run.B.State(l))
		}
		if p != evidence.CEM && !pn.Released {
			fail("P1 reported delivery, but Pn has not released M")
		}
	}
	if p != evidence.CEM {
		if bHolds && !aDelivered {
			fail("B holds M, but P1 decided %s: A has no receipt", decided)
		}
		// No selective receipt: B gets nothing of M before its acceptance was recorded.
		if bHolds && (pn.Accepted == nil || gotAt.Before(pn.AcceptedAt)) {
			fail("B held M at %s, before Pn recorded its acceptance", gotAt)
		}
		for _, e := range tr.Events {
			if e.What != "deliver" || e.Msg.To != b || pn.Accepted != nil && !e.At.Before(pn.AcceptedAt) {
				continue
			}
			if cemCarries(e.Msg, run.message) {
				fail("B was sent M at %s (%s), before it committed", e.At, e.Msg.Step)
			}
		}
	}
	if honestB && s.behavior == protocol.CEMAcceptAll {
		if st := run.B.State(l); st == "gave-up" || st == "waiting" {
			fail("honest B ended in state %q", st)
		}
	}

	// The judge never accepts a token for another label, party, hash or protocol.
	if bundle != nil {
		kinds := cemMutations(bundle, earlier)
		k := kinds[rng.IntN(len(kinds))]
		mutated := cemMutate(t, w, bundle, earlier, k)
		if v := protocol.Judge(mutated.Check(nil)); v.Valid {
			fail("the judge accepted A's bundle mutated by %q:\n%s", k, v.Text())
		}
	}
}

// cemCarries reports whether a message carries m in any field or note.
func cemCarries(x protocol.Msg, m []byte) bool {
	for _, v := range x.Data {
		if bytes.Contains(v, m) {
			return true
		}
	}
	for _, n := range x.Notes {
		if bytes.Contains(n, m) {
			return true
		}
	}
	return false
}

// cemMutations lists the mutations that apply to a bundle.
func cemMutations(b *evidence.Bundle, earlier *evidence.Bundle) []string {
	kinds := []string{"label", "recipient", "sender", "content", "protocol", "message", "deadline", "commitment", "agent"}
	chain := false
	if earlier != nil {
		kinds = append(kinds, "replay")
	}
	p1 := b.Notes[0].Record.Agent
	for _, n := range b.Notes {
		if n.Record.Type != evidence.ACK && n.Record.Agent != "" && n.Record.Agent != p1 {
			chain = true // a note of an agent beyond P1 depends on the chain
		}
		switch n.Record.Type {
		case evidence.ROD, evidence.NDN, evidence.REJ, evidence.RTR:
			kinds = append(kinds, "second-outcome")
		}
		switch n.Record.Type {
		case evidence.ROD:
			kinds = append(kinds, "countersignature", "origin")
		case evidence.ACK:
			if n.Record.From != p1 {
				chain = true // a second hop depends on the first ACK
			}
		case evidence.CODBasic, evidence.CODNSR, evidence.CODIP:
			kinds = append(kinds, "cod-variant")
		}
	}
	if chain {
		kinds = append(kinds, "chain")
	}
	return kinds
}

// cemSigners are every key of the world, by key name, to sign mutated records as their
// rightful signers would, so that only the judge's consistency checks can catch them.
func (w *cemWorld) signers() map[string]note.Signer {
	m := map[string]note.Signer{}
	for _, id := range append(slices.Clone(w.agents), w.bogus, w.alice, w.bob) {
		m[id.Signer.Name()] = id.Signer
	}
	return m
}

func (w *cemWorld) resign(t testing.TB, r *evidence.Record) *evidence.Note {
	t.Helper()
	var ss []note.Signer
	for _, name := range r.SignerNames() {
		s, ok := w.signers()[name]
		if !ok {
			t.Fatalf("no key for %s", name)
		}
		ss = append(ss, s)
	}
	n, err := evidence.Sign(r, ss...)
	if err != nil {
		t.Fatalf("sign %s: %v", r.Type, err)
	}
	return n
}

// cemMutate returns a copy of b changed in one targeted way: a note re-signed by its rightful
// signer but naming another label, party, hash or protocol; a note of an earlier exchange; the
// message item changed; the countersignature or an ACK of the chain removed.
func cemMutate(t testing.TB, w *cemWorld, b, earlier *evidence.Bundle, kind string) *evidence.Bundle {
	t.Helper()
	enc, err := b.Encode()
	if err != nil {
		t.Fatal(err)
	}
	m, err := evidence.ParseBundle(enc)
	if err != nil {
		t.Fatal(err)
	}
	findOpt := func(types ...evidence.Type) (int, *evidence.Record) {
		for i := len(m.Notes) - 1; i >= 0; i-- {
			if slices.Contains(types, m.Notes[i].Record.Type) {
				r := *m.Notes[i].Record
				return i, &r
			}
		}
		return 0, nil
	}
	find := func(types ...evidence.Type) (int, *evidence.Record) {
		i, r := findOpt(types...)
		if r == nil {
			t.Fatalf("mutation %s: no note of types %v in the bundle", kind, types)
		}
		return i, r
	}
	add := func(r *evidence.Record) {
		m.Notes = append(m.Notes, w.resign(t, r))
		m.AddKey(w.bogus.Verifier)
		for _, id := range w.agents {
			m.AddKey(id.Verifier)
		}
	}
	replace := func(i int, r *evidence.Record) { m.Notes[i] = w.resign(t, r) }
	last := func() (int, *evidence.Record) { // the outcome note, or the COP
		return find(evidence.COP, evidence.WRN, evidence.ROD, evidence.NDN, evidence.REJ, evidence.RTR)
	}
	switch kind {
	case "label":
		i, r := last()
		r.Label[0] ^= 0x55
		replace(i, r)
	case "recipient":
		i, r := find(evidence.COP, evidence.ACK, evidence.NTF, evidence.ROD, evidence.NDN, evidence.REJ, evidence.RTR, evidence.WRN, evidence.DLV)
		r.Recipient = "carol@c.example"
		r.Time = r.Time.Add(time.Millisecond)
		if r.Type == evidence.COP {
			add(r)
		} else {
			replace(i, r)
		}
	case "sender":
		// A warning (which any bundle may hold) for another sender, by P1.
		_, r := find(evidence.COP)
		r.Type, r.Content = evidence.WRN, evidence.Hash{}
		r.Sender = "mallory@a.example"
		add(r)
	case "content":
		if i, r := findOpt(evidence.ACK, evidence.NTF, evidence.DLV, evidence.ROD, evidence.NDN, evidence.RTR); r != nil {
			r.Content = evidence.Sum([]byte("another message"))
			replace(i, r)
			break
		}
		// A COP alone: P2's acknowledgement of an item from P1 with other content.
		_, r := find(evidence.COP)
		r.Type, r.From, r.Agent, r.Sender, r.Deadline = evidence.ACK, r.Agent, w.agents[1].Name, "", time.Time{}
		r.Content = evidence.Sum([]byte("another message"))
		add(r)
	case "deadline":
		_, r := find(evidence.COP)
		r.Type, r.Content = evidence.WRN, evidence.Hash{}
		r.Deadline = r.Deadline.Add(time.Hour)
		add(r)
	case "commitment":
		_, r := find(evidence.COP)
		r.Type, r.Sender = evidence.NTF, ""
		r.Agent = cemLastAgent(m)
		r.Commitment = evidence.Sum([]byte("not H(L,M)"))
		add(r)
	case "protocol":
		// A note of the exchange other than the COP, under another protocol. A bundle of a
		// COP alone gets a warning under another protocol (re-signing the COP itself would
		// make a consistent bundle of the other protocol, not a foreign token).
		if i, r := findOpt(evidence.ACK, evidence.NTF, evidence.DLV, evidence.ROD, evidence.NDN, evidence.REJ, evidence.RTR, evidence.WRN); r != nil {
			r.Protocol = cemOther(r.Protocol)
			replace(i, r)
			break
		}
		_, r := find(evidence.COP)
		r.Type, r.Content, r.Protocol = evidence.WRN, evidence.Hash{}, cemOther(r.Protocol)
		add(r)
	case "cod-variant":
		i, r := find(evidence.CODBasic, evidence.CODNSR, evidence.CODIP)
		cop := m.Notes[0].Record
		r.Content, r.Commitment = evidence.Hash{}, evidence.Hash{}
		switch r.Type {
		case evidence.CODIP:
			r.Type, r.Content = evidence.CODBasic, cop.Content
		default:
			r.Type = evidence.CODIP
			msg, _ := m.Item(evidence.ItemMessage)
			r.Commitment = evidence.Commitment(cop.Label, msg)
		}
		replace(i, r)
	case "message":
		msg, _ := m.Item(evidence.ItemMessage)
		m.SetItem(evidence.ItemMessage, append(slices.Clone(msg), " tampered"...))
	case "agent":
		// A warning by an agent outside the chain, with a key the bundle carries.
		_, r := find(evidence.COP)
		r.Type, r.Content, r.Agent = evidence.WRN, evidence.Hash{}, cemBogus
		add(r)
	case "replay":
		m.Notes = append(m.Notes, earlier.Notes[len(earlier.Notes)-1])
		for _, k := range earlier.Keys {
			m.AddKey(k)
		}
	case "countersignature":
		i, r := find(evidence.ROD)
		if r.Origin == r.Agent {
			// n = 1: P1 is Pn; a ROD naming another agent as P1 cannot stand.
			r.Origin = w.agents[1].Name
		}
		var s note.Signer
		for name, sg := range w.signers() {
			if name == r.Agent {
				s = sg
			}
		}
		n, err := evidence.Sign(r, s)
		if err != nil {
			t.Fatal(err)
		}
		m.Notes[i] = n
	case "origin":
		// Countersigned, but by an agent that is not the P1 of the COP (whose key the bundle
		// carries, so that the signatures check).
		i, r := find(evidence.ROD)
		r.Origin = cemBogus
		replace(i, r)
		m.AddKey(w.bogus.Verifier)
	case "second-outcome":
		// P1's notice of non-delivery beside whatever outcome the bundle holds.
		_, r := find(evidence.COP)
		r.Type, r.Reason, r.Time = evidence.NDN, "relay", r.Time.Add(time.Millisecond)
		add(r)
	case "chain":
		// Without P1's next agent's ACK, nothing links P1 to the agents that signed the rest.
		p1 := m.Notes[0].Record.Agent
		i := slices.IndexFunc(m.Notes, func(n *evidence.Note) bool {
			return n.Record.Type == evidence.ACK && n.Record.From == p1
		})
		m.Notes = slices.Delete(m.Notes, i, i+1)
	default:
		t.Fatalf("unknown mutation %q", kind)
	}
	return m
}

// cemLastAgent is Pn of a bundle: the agent of its last ACK, or P1.
func cemLastAgent(b *evidence.Bundle) string {
	pn := b.Notes[0].Record.Agent
	for _, n := range b.Notes {
		if n.Record.Type == evidence.ACK {
			pn = n.Record.Agent
		}
	}
	return pn
}

func cemOther(p evidence.Protocol) evidence.Protocol {
	if p == evidence.CEMIP {
		return evidence.CEMNSR
	}
	return evidence.CEMIP
}

func TestCEMMutationsTarget(t *testing.T) {
	// Guard for the property test: each mutation must leave a bundle that still parses and
	// differs from the original, else "the judge refused it" would prove nothing.
	w := newCEMWorld(t)
	run := w.setup(t, cemSetup{p: evidence.CEMIP, n: 3, keyed: true})
	run.runQuiet(t)
	b, v := run.judged(t)
	cemWant(t, v, true, evidence.OutcomeDelivered)
	pre := w.setup(t, cemSetup{p: evidence.CEMIP, n: 3, keyed: true, rand: 99})
	pre.runQuiet(t)
	orig, _ := b.Encode()
	for _, k := range cemMutations(b, pre.A.Bundle()) {
		m := cemMutate(t, w, b, pre.A.Bundle(), k)
		enc, err := m.Encode()
		if err != nil {
			t.Errorf("%s: mutated bundle does not encode: %v", k, err)
			continue
		}
		if bytes.Equal(enc, orig) {
			t.Errorf("%s: mutation changed nothing", k)
		}
		if v := protocol.Judge(m.Check(nil)); v.Valid {
			t.Errorf("%s: judge accepted the mutated bundle:\n%s", k, v.Text())
		} else if testing.Verbose() {
			t.Logf("%s: %s", k, strings.Split(v.Text(), "\n")[0])
		}
	}
}
