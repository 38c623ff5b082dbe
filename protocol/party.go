// Package protocol holds each certified-mail protocol of PROTOCOLS.md as pure state machines, one
// per role, driven by messages and an injected clock, and each protocol's judge, which weighs a
// bundle of evidence and returns a verdict.
//
// Nothing here does I/O or reads the wall clock: the running agent (package agent) and the
// adversarial simulator (package protocol/sim) feed the same machines.
package protocol

import (
	"maps"
	"slices"
	"time"
)

// Msg is one protocol message between two parties. Notes carries signed evidence notes; Data
// carries the other fields by name (label, message, ciphertext, key, sealed boxes…). Both are
// opaque bytes to the network, so a simulator can drop, copy, replay or tamper with them, and a
// party must parse and check everything it receives.
type Msg struct {
	From, To string
	Step     string // protocol step, e.g. "cem-ip/5"
	Notes    [][]byte
	Data     map[string][]byte
}

// Clone returns a deep copy, so one party's view can never alias another's.
func (m Msg) Clone() Msg {
	c := Msg{From: m.From, To: m.To, Step: m.Step, Data: map[string][]byte{}}
	for _, n := range m.Notes {
		c.Notes = append(c.Notes, slices.Clone(n))
	}
	for _, k := range slices.Sorted(maps.Keys(m.Data)) {
		c.Data[k] = slices.Clone(m.Data[k])
	}
	return c
}

// Party is one role in one protocol run. Its state is what a durable store would hold: a party
// that crashes and restarts continues from it.
type Party interface {
	// Name is the party's address on the (simulated or real) network.
	Name() string
	// Start returns what the party sends when the run begins (most parties send nothing).
	Start(now time.Time) []Msg
	// Receive handles one message and returns what the party sends in answer. Messages that do
	// not check out are ignored (and may be recorded as refusals); they never change state.
	Receive(now time.Time, m Msg) []Msg
	// Wake returns when the party next wants Tick called (a deadline, a retry), if ever.
	Wake() (time.Time, bool)
	// Tick runs the party's timers due at now.
	Tick(now time.Time) []Msg
	// Done reports whether the party reached a final state.
	Done() bool
}
