package sim_test

import (
	"fmt"
	"strings"
	"testing"
	"time"

	"certmail/protocol"
	"certmail/protocol/sim"
)

// pinger sends n numbered pings to its peer at start and counts the pongs; ponger answers each
// ping it receives. got records every step name the party received, to compare schedules.
type pinger struct {
	name, peer string
	n          int
	got        []string
}

func (p *pinger) Name() string { return p.name }
func (p *pinger) Start(time.Time) []protocol.Msg {
	var out []protocol.Msg
	for i := range p.n {
		out = append(out, protocol.Msg{From: p.name, To: p.peer, Step: fmt.Sprintf("ping/%d", i), Data: map[string][]byte{"n": {byte(i)}}})
	}
	return out
}
func (p *pinger) Receive(_ time.Time, m protocol.Msg) []protocol.Msg {
	p.got = append(p.got, m.Step)
	if strings.HasPrefix(m.Step, "ping/") {
		return []protocol.Msg{{From: p.name, To: m.From, Step: "pong" + strings.TrimPrefix(m.Step, "ping"), Data: m.Data}}
	}
	return nil
}
func (p *pinger) Wake() (time.Time, bool)       { return time.Time{}, false }
func (p *pinger) Tick(time.Time) []protocol.Msg { return nil }
func (p *pinger) Done() bool                    { return len(p.got) >= p.n }

var t0 = time.Date(2026, 1, 5, 9, 0, 0, 0, time.UTC)

func run(t *testing.T, seed uint64, f sim.Faults) (*sim.Trace, *pinger, *pinger) {
	t.Helper()
	a := &pinger{name: "a", peer: "b", n: 50}
	b := &pinger{name: "b", peer: "a"}
	tr, err := sim.Run(sim.Config{Seed: seed, Start: t0, Horizon: time.Hour, Parties: []protocol.Party{a, b}, Faults: f})
	if err != nil {
		t.Fatal(err)
	}
	return tr, a, b
}

func TestSameSeedSameSchedule(t *testing.T) {
	f := sim.Faults{Until: time.Hour, MaxDelay: time.Second, Drop: 0.1, Duplicate: 0.1, Tamper: 0.1}
	tr1, a1, _ := run(t, 7, f)
	tr2, a2, _ := run(t, 7, f)
	if tr1.String() != tr2.String() || strings.Join(a1.got, ",") != strings.Join(a2.got, ",") {
		t.Fatal("the same seed gave two schedules")
	}
	tr3, _, _ := run(t, 8, f)
	if tr1.String() == tr3.String() {
		t.Fatal("two seeds gave the same schedule")
	}
}

func count(tr *sim.Trace, what string) int {
	n := 0
	for _, e := range tr.Events {
		if e.What == what {
			n++
		}
	}
	return n
}

func TestFaultsHappenOnlyInTheirWindow(t *testing.T) {
	tr, a, _ := run(t, 1, sim.Faults{Until: time.Hour, MaxDelay: time.Second, Drop: 0.3, Duplicate: 0.3, Tamper: 0.3})
	if count(tr, "drop") == 0 || count(tr, "duplicate") == 0 || count(tr, "tamper") == 0 {
		t.Fatalf("faults did not happen: %d drops, %d duplicates, %d tampers", count(tr, "drop"), count(tr, "duplicate"), count(tr, "tamper"))
	}
	// Delays reorder: pongs do not come back in ping order.
	inOrder := true
	for i := 1; i < len(a.got); i++ {
		if a.got[i] < a.got[i-1] {
			inOrder = false
		}
	}
	if inOrder {
		t.Fatal("no reordering with a one-second delay spread")
	}
	// With the window closed from the start, the network is reliable.
	tr, a, _ = run(t, 1, sim.Faults{Until: 0, Drop: 1, Tamper: 1})
	if count(tr, "drop")+count(tr, "tamper") != 0 || len(a.got) != 50 {
		t.Fatalf("faults outside their window: %d pongs", len(a.got))
	}
}

func TestStopAndCrash(t *testing.T) {
	_, a, b := run(t, 1, sim.Faults{Stops: map[string]int{"b": 10}})
	if len(b.got) != 10 || len(a.got) != 10 {
		t.Fatalf("b stopped after 10: b got %d, a got %d", len(b.got), len(a.got))
	}
	_, a, _ = run(t, 1, sim.Faults{Stops: map[string]int{"b": -1}})
	if len(a.got) != 0 {
		t.Fatal("a party that never starts answered")
	}
	tr, a, b := run(t, 1, sim.Faults{Until: time.Hour, MaxDelay: 10 * time.Millisecond, Crashes: map[string]sim.Crash{"b": {After: 5, Down: time.Minute}}})
	if count(tr, "crash") != 1 || len(b.got) >= 50 || len(a.got) != len(b.got) {
		t.Fatalf("crash: %d crashes, b got %d, a got %d", count(tr, "crash"), len(b.got), len(a.got))
	}
}

func TestReplayInjectsOldMessages(t *testing.T) {
	tr, _, _ := run(t, 1, sim.Faults{})
	a := &pinger{name: "a", peer: "b", n: 50}
	b := &pinger{name: "b", peer: "a"}
	tr2, err := sim.Run(sim.Config{Seed: 2, Start: t0, Horizon: time.Hour, Parties: []protocol.Party{a, b},
		Faults: sim.Faults{Until: time.Hour, Replay: 0.5}, ReplayPool: tr.Sent})
	if err != nil {
		t.Fatal(err)
	}
	if n := count(tr2, "replay"); n == 0 || len(b.got) <= 50 {
		t.Fatalf("%d replays, b got %d messages", n, len(b.got))
	}
}

// looper answers every message with another to itself: the run must stop and say so.
type looper struct{ pinger }

func (l *looper) Receive(_ time.Time, m protocol.Msg) []protocol.Msg {
	return []protocol.Msg{{From: l.name, To: l.name, Step: "again"}}
}
func (l *looper) Start(time.Time) []protocol.Msg {
	return []protocol.Msg{{From: l.name, To: l.name, Step: "again"}}
}

func TestALoopingPartyIsReported(t *testing.T) {
	_, err := sim.Run(sim.Config{Seed: 1, Start: t0, Horizon: time.Hour, MaxEvents: 1000, Parties: []protocol.Party{&looper{pinger{name: "l"}}}})
	if err == nil || !strings.Contains(err.Error(), "loops") {
		t.Fatalf("err = %v", err)
	}
}
