// Package sim runs the parties of a protocol over a simulated network that drops, delays,
// duplicates, reorders, tampers with and replays messages, and stops or crashes parties, all
// from one seed: the same seed gives the same schedule, so a failing run can be replayed.
//
// Time is virtual. The network is hostile until Faults.Until; after that it delivers every
// message once, in order of delay, so "can still obtain" in an invariant becomes "holds at the
// end of the run".
package sim

import (
	"cmp"
	"fmt"
	"maps"
	"math/rand/v2"
	"slices"
	"strings"
	"time"

	"certmail/protocol"
)

// Faults is what the network and the parties may do wrong during a run.
type Faults struct {
	Until     time.Duration // faults happen only in [start, start+Until)
	MaxDelay  time.Duration // each delivery takes a uniform delay in [0, MaxDelay]
	Drop      float64       // probability that a message is lost for good
	Duplicate float64       // probability that a message is delivered twice
	Tamper    float64       // probability that one byte of a message is changed
	Replay    float64       // probability, per message sent, of injecting an old message
	// Stops maps a party to the number of messages it handles before it stops for good (a
	// party that walks away). A negative count means it never starts.
	Stops map[string]int
	// Crashes maps a party to a crash window: after handling After messages it is down (loses
	// what arrives, runs no timers) for Down, then resumes from its durable state.
	Crashes map[string]Crash
}

// Crash is one crash-and-restart of a party.
type Crash struct {
	After int
	Down  time.Duration
}

// Event is one line of a run's trace.
type Event struct {
	At   time.Time
	What string // "send", "deliver", "drop", "tamper", "duplicate", "replay", "tick", "stop", "crash", "restart", "lost"
	Msg  protocol.Msg
	Note string
}

// Trace is the record of one run.
type Trace struct {
	Seed   uint64
	Start  time.Time
	End    time.Time
	Events []Event
	Sent   []protocol.Msg // every message any party sent, for replay in later runs
}

// String renders the trace for a failure message.
func (t *Trace) String() string {
	var b strings.Builder
	fmt.Fprintf(&b, "seed %d:\n", t.Seed)
	for _, e := range t.Events {
		fmt.Fprintf(&b, "  +%-8s %-9s %s→%s %s %s\n", e.At.Sub(t.Start).Round(time.Millisecond), e.What, e.Msg.From, e.Msg.To, e.Msg.Step, e.Note)
	}
	return b.String()
}

// Config is one run.
type Config struct {
	Seed    uint64
	Start   time.Time
	Horizon time.Duration // the run ends at Start+Horizon even if parties still wait
	Parties []protocol.Party
	Faults  Faults
	// ReplayPool holds messages captured from earlier runs among the same parties; with
	// probability Faults.Replay per send, one of them is delivered again.
	ReplayPool []protocol.Msg
	// MaxEvents bounds the run against parties that loop (a bug the run reports).
	MaxEvents int
}

type pending struct {
	at  time.Time
	seq int
	msg protocol.Msg
}

type runner struct {
	cfg      Config
	rng      *rand.Rand
	now      time.Time
	queue    []pending
	seq      int
	parties  map[string]protocol.Party
	handled  map[string]int
	stopped  map[string]bool
	downTill map[string]time.Time
	crashed  map[string]bool
	trace    *Trace
}

// Run plays one schedule to its end and returns its trace. It returns an error when a party
// loops past MaxEvents; the protocol outcome is for the caller's invariants to judge.
func Run(cfg Config) (*Trace, error) {
	if cfg.MaxEvents == 0 {
		cfg.MaxEvents = 100_000
	}
	r := &runner{
		cfg:      cfg,
		rng:      rand.New(rand.NewPCG(cfg.Seed, cfg.Seed^0x9e3779b97f4a7c15)),
		now:      cfg.Start,
		parties:  map[string]protocol.Party{},
		handled:  map[string]int{},
		stopped:  map[string]bool{},
		downTill: map[string]time.Time{},
		crashed:  map[string]bool{},
		trace:    &Trace{Seed: cfg.Seed, Start: cfg.Start},
	}
	for _, p := range cfg.Parties {
		r.parties[p.Name()] = p
		if n, ok := cfg.Faults.Stops[p.Name()]; ok && n < 0 {
			r.stopped[p.Name()] = true
			r.log("stop", protocol.Msg{From: p.Name()}, "never starts")
		}
	}
	for _, p := range cfg.Parties {
		if !r.stopped[p.Name()] {
			r.send(p.Start(r.now))
		}
	}
	end := cfg.Start.Add(cfg.Horizon)
	for steps := 0; ; steps++ {
		if steps > cfg.MaxEvents {
			r.trace.End = r.now
			return r.trace, fmt.Errorf("sim: seed %d: more than %d events (a party loops)", cfg.Seed, cfg.MaxEvents)
		}
		next, isMsg, who := r.next()
		if next.IsZero() || next.After(end) {
			break
		}
		r.now = next
		if isMsg {
			p := r.queue[0]
			r.queue = r.queue[1:]
			r.deliver(p.msg)
			continue
		}
		r.log("tick", protocol.Msg{From: who, To: who}, "")
		r.send(r.parties[who].Tick(r.now))
	}
	r.trace.End = r.now
	return r.trace, nil
}

// next finds the earliest event: a queued message or a party's timer.
func (r *runner) next() (at time.Time, isMsg bool, who string) {
	if len(r.queue) > 0 {
		at, isMsg = r.queue[0].at, true
	}
	for _, p := range r.cfg.Parties {
		name := p.Name()
		if r.stopped[name] {
			continue
		}
		w, ok := p.Wake()
		if !ok {
			continue
		}
		if t, down := r.downTill[name]; down && w.Before(t) {
			w = t // a crashed party's timers run when it is back
		}
		if w.Before(r.now) {
			w = r.now
		}
		if at.IsZero() || w.Before(at) {
			at, isMsg, who = w, false, name
		}
	}
	return at, isMsg, who
}

func (r *runner) faulty() bool { return r.now.Before(r.cfg.Start.Add(r.cfg.Faults.Until)) }

func (r *runner) log(what string, m protocol.Msg, note string) {
	r.trace.Events = append(r.trace.Events, Event{At: r.now, What: what, Msg: m, Note: note})
}

func (r *runner) enqueue(m protocol.Msg, delay time.Duration) {
	r.seq++
	p := pending{at: r.now.Add(delay), seq: r.seq, msg: m}
	i, _ := slices.BinarySearchFunc(r.queue, p, func(a, b pending) int {
		if c := a.at.Compare(b.at); c != 0 {
			return c
		}
		return cmp.Compare(a.seq, b.seq)
	})
	r.queue = slices.Insert(r.queue, i, p)
}

func (r *runner) delay() time.Duration {
	if r.cfg.Faults.MaxDelay <= 0 {
		return time.Millisecond
	}
	return time.Millisecond + time.Duration(r.rng.Int64N(int64(r.cfg.Faults.MaxDelay)))
}

func (r *runner) send(msgs []protocol.Msg) {
	for _, m := range msgs {
		m = m.Clone()
		r.trace.Sent = append(r.trace.Sent, m.Clone()) // as sent: tampering below must not reach the replay pool
		r.log("send", m, "")
		f := r.cfg.Faults
		if r.faulty() {
			if r.rng.Float64() < f.Drop {
				r.log("drop", m, "")
				continue
			}
			if r.rng.Float64() < f.Tamper {
				m = r.tamper(m)
			}
			if r.rng.Float64() < f.Duplicate {
				r.log("duplicate", m, "")
				r.enqueue(m.Clone(), r.delay())
			}
			if len(r.cfg.ReplayPool) > 0 && r.rng.Float64() < f.Replay {
				old := r.cfg.ReplayPool[r.rng.IntN(len(r.cfg.ReplayPool))].Clone()
				if _, ok := r.parties[old.To]; ok {
					r.log("replay", old, "from an earlier run")
					r.enqueue(old, r.delay())
				}
			}
			r.enqueue(m, r.delay())
			continue
		}
		r.enqueue(m, r.delay()/4+time.Millisecond)
	}
}

// tamper changes one byte of one note or data field, or the step name when there is none.
// m is already a private copy.
func (r *runner) tamper(m protocol.Msg) protocol.Msg {
	keys := slices.Sorted(maps.Keys(m.Data))
	n := len(m.Notes) + len(keys)
	if n == 0 {
		m.Step += "x"
		r.log("tamper", m, "step name")
		return m
	}
	flip := func(b []byte) []byte {
		if len(b) == 0 {
			return []byte{byte(r.rng.IntN(256))}
		}
		b[r.rng.IntN(len(b))] ^= byte(1 + r.rng.IntN(255))
		return b
	}
	if i := r.rng.IntN(n); i < len(m.Notes) {
		m.Notes[i] = flip(m.Notes[i])
		r.log("tamper", m, fmt.Sprintf("note %d", i))
	} else {
		k := keys[i-len(m.Notes)]
		m.Data[k] = flip(m.Data[k])
		r.log("tamper", m, "field "+k)
	}
	return m
}

func (r *runner) deliver(m protocol.Msg) {
	p, ok := r.parties[m.To]
	if !ok {
		r.log("lost", m, "no such party")
		return
	}
	name := m.To
	if r.stopped[name] {
		r.log("lost", m, "party stopped")
		return
	}
	if t, down := r.downTill[name]; down {
		if r.now.Before(t) {
			r.log("lost", m, "party down")
			return
		}
		delete(r.downTill, name)
		r.log("restart", protocol.Msg{From: name}, "")
	}
	r.log("deliver", m, "")
	out := p.Receive(r.now, m.Clone())
	r.handled[name]++
	r.send(out)
	if n, ok := r.cfg.Faults.Stops[name]; ok && r.handled[name] >= n {
		r.stopped[name] = true
		r.log("stop", protocol.Msg{From: name}, fmt.Sprintf("after %d messages", n))
	}
	if c, ok := r.cfg.Faults.Crashes[name]; ok && !r.crashed[name] && r.handled[name] >= c.After {
		r.crashed[name] = true
		r.downTill[name] = r.now.Add(c.Down)
		r.log("crash", protocol.Msg{From: name}, fmt.Sprintf("down for %s", c.Down))
	}
}

// Random draws a fault schedule from rng for the given parties: the harness's usual mix.
// Stoppable parties may walk away; crashable ones (agents, TTPs with durable state) may crash.
func Random(rng *rand.Rand, until time.Duration, stoppable, crashable []string) Faults {
	f := Faults{
		Until:     until,
		MaxDelay:  time.Duration(1+rng.IntN(2000)) * time.Millisecond,
		Drop:      pick(rng, 0, 0.05, 0.2),
		Duplicate: pick(rng, 0, 0.05, 0.3),
		Tamper:    pick(rng, 0, 0.05, 0.2),
		Replay:    pick(rng, 0, 0.05, 0.3),
		Stops:     map[string]int{},
		Crashes:   map[string]Crash{},
	}
	for _, p := range stoppable {
		if rng.IntN(5) == 0 {
			f.Stops[p] = rng.IntN(6) - 1
		}
	}
	for _, p := range crashable {
		if rng.IntN(4) == 0 {
			f.Crashes[p] = Crash{After: rng.IntN(6), Down: time.Duration(rng.IntN(int(until/time.Millisecond)+1)) * time.Millisecond}
		}
	}
	return f
}

func pick(rng *rand.Rand, xs ...float64) float64 { return xs[rng.IntN(len(xs))] }

// Seeds returns the seeds a property test runs: CERTMAIL_SEED=N (via the env argument) replays
// one; otherwise n seeds from base.
func Seeds(env string, base uint64, n int) []uint64 {
	if env != "" {
		var s uint64
		if _, err := fmt.Sscan(env, &s); err == nil {
			return []uint64{s}
		}
	}
	out := make([]uint64, n)
	for i := range out {
		out[i] = base + uint64(i)
	}
	return out
}
