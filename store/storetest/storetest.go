// Package storetest is the behaviour every store.Store and store.Blobs backend must show, as tests
// any backend's own test calls (DESIGN.md §6: the same suite runs against SQLite and PostgreSQL):
//
//	func TestStore(t *testing.T) {
//		storetest.Run(t, func(t *testing.T) store.Store { return openEmpty(t) })
//	}
//
// Besides what the store package documents, the suite pins down what its doc comments leave open,
// so that every backend answers the same:
//
//   - Times come back in UTC, truncated to the millisecond; the zero time comes back zero.
//   - A Tx method that fails with ErrDuplicate or ErrNotFound leaves the transaction usable: fn
//     may handle the error and go on, and what else it wrote commits (a retried agent step adds
//     the same evidence again and ignores the ErrDuplicate). PostgreSQL needs a savepoint for that.
//   - If fn returns an error, panics, or ctx ends before the commit, nothing fn wrote is kept.
//   - A View neither waits for nor sees an Update that has not committed; writing in a View fails.
//   - UpdateItem changes only State, Updated, Retrievals, TokenHash, PasswordHash and
//     PasswordHint; UpdateOutbound only State, Attempts, NextAttempt, LastError and Updated. Both
//     return ErrNotFound for a row that does not exist; so does DeleteTimer.
//   - A zero TokenHash is no token: any number of items may have none, and ItemByToken never
//     finds them.
//   - AddEvidence refuses a note whose record names another label than l; the evidence's Stored
//     time is the record's time, or the current time for a record without one (CMP-NRO).
//     Evidence of a label with no item is allowed (a NAC or VIR has no item).
//   - limit <= 0 means no limit; lists are empty, not ErrNotFound, when nothing matches.
//   - A note is stored unlogged (Logged false) and keeps the first log index recorded for it;
//     Evidence, EvidenceByLeaf and UnloggedEvidence return it with its index once recorded.
//   - Users lists by address; Timers(l) by due time; ItemsBySender newest Submitted first, the
//     later insert first on a tie; OutboundFor(l) in the order enqueued; DueOutbound only mail
//     in state queued.
//   - Enqueue stores State "" as queued; a zero NextAttempt is due at once.
//   - The zero label selects what was stored without one: Evidence(evidence.Label{}) lists the
//     KEY records, OutboundFor(evidence.Label{}) the mail about no item. Timers always have a
//     label: SetTimer refuses the zero label, and Timers of it is empty.
package storetest

import (
	"bytes"
	"context"
	"errors"
	"reflect"
	"slices"
	"sync"
	"testing"
	"time"

	"certmail/evidence"
	"certmail/store"
)

// Run runs the behaviour tests of a store.Store. open returns a new, empty store each time it is
// called; Run closes it when the test ends. The subtests run in parallel.
func Run(t *testing.T, open func(t *testing.T) store.Store) {
	f, err := NewFixture()
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name string
		fn   func(t *testing.T, s store.Store, f *Fixture)
	}{
		{"Users", testUsers},
		{"Items", testItems},
		{"UpdateItem", testUpdateItem},
		{"ItemsBySender", testItemsBySender},
		{"ItemsBySubmission", testItemsBySubmission},
		{"DuplicateRefusedAndRolledBack", testDuplicates},
		{"DuplicateHandledInsideUpdate", testDuplicateHandled},
		{"ErrorRollsBack", testErrorRollsBack},
		{"PanicRollsBack", testPanicRollsBack},
		{"Messages", testMessages},
		{"OutboundCarryingAMessage", testOutboundCarryingAMessage},
		{"Evidence", testEvidence},
		{"EvidenceLog", testEvidenceLog},
		{"Published", testPublished},
		{"Timers", testTimers},
		{"Outbound", testOutbound},
		{"ViewDoesNotSeeOpenUpdate", testViewIsolation},
		{"ViewIsReadOnly", testViewReadOnly},
		{"ConcurrentUpdates", testConcurrentUpdates},
		{"Context", testContext},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			s := open(t)
			t.Cleanup(func() {
				if err := s.Close(); err != nil {
					t.Errorf("Close: %v", err)
				}
			})
			tc.fn(t, s, f)
		})
	}
}

var errBoom = errors.New("storetest: boom")

func update(t *testing.T, s store.Store, fn func(store.Tx) error) {
	t.Helper()
	if err := s.Update(t.Context(), fn); err != nil {
		t.Fatalf("Update: %v", err)
	}
}

func view(t *testing.T, s store.Store, fn func(store.Tx) error) {
	t.Helper()
	if err := s.View(t.Context(), fn); err != nil {
		t.Fatalf("View: %v", err)
	}
}

func same[T any](t *testing.T, what string, got, want T) {
	t.Helper()
	if !reflect.DeepEqual(got, want) {
		t.Errorf("%s:\n got %+v\nwant %+v", what, got, want)
	}
}

func wantErr(t *testing.T, what string, err, target error) {
	t.Helper()
	if !errors.Is(err, target) {
		t.Errorf("%s: got error %v, want %v", what, err, target)
	}
}

func newLabel(t *testing.T, f *Fixture) evidence.Label {
	t.Helper()
	l, err := f.NewLabel()
	if err != nil {
		t.Fatal(err)
	}
	return l
}

func newNote(t *testing.T, f *Fixture, l evidence.Label, typ evidence.Type, at time.Time) *evidence.Note {
	t.Helper()
	n, err := f.Note(l, typ, at)
	if err != nil {
		t.Fatal(err)
	}
	return n
}

// canon is what a store gives back for t.
func canon(t time.Time) time.Time { return evidence.CanonicalTime(t) }

func canonUser(u store.User) store.User {
	u.Created, u.Updated = canon(u.Created), canon(u.Updated)
	return u
}

func canonItem(it store.Item) store.Item {
	it.Deadline, it.Submitted, it.Updated = canon(it.Deadline), canon(it.Submitted), canon(it.Updated)
	return it
}

func canonOutbound(m store.Outbound) store.Outbound {
	m.NextAttempt, m.Created, m.Updated = canon(m.NextAttempt), canon(m.Created), canon(m.Updated)
	return m
}

func labels(items []store.Item) []evidence.Label {
	var out []evidence.Label
	for _, it := range items {
		out = append(out, it.Label)
	}
	return out
}

// testMessages: a body is stored with its items' step, read back whole by its hash and time,
// stored once however often it is put, found corrupt under a name it does not hash to, and
// rolled back with its step.
func testMessages(t *testing.T, s store.Store, f *Fixture) {
	big := make([]byte, 1<<20+17)
	for i := range big {
		big[i] = byte(i * 7)
	}
	bodies := [][]byte{[]byte("From: a@a.example\r\n\r\nhello\r\n"), {}, big}
	update(t, s, func(tx store.Tx) error {
		for _, m := range bodies {
			for range 2 {
				if err := tx.PutMessage(evidence.Sum(m), f.T0, m); err != nil {
					return err
				}
			}
		}
		return nil
	})
	view(t, s, func(tx store.Tx) error {
		for _, m := range bodies {
			got, err := tx.Message(evidence.Sum(m), f.T0)
			if err != nil {
				return err
			}
			if !bytes.Equal(got, m) {
				t.Errorf("Message of %d bytes: got %d bytes back", len(m), len(got))
			}
		}
		_, err := tx.Message(evidence.Sum([]byte("never put")), f.T0)
		wantErr(t, "Message never put", err, store.ErrNotFound)
		_, err = tx.Message(evidence.Sum(bodies[0]), f.T0.Add(time.Millisecond))
		wantErr(t, "Message at another time", err, store.ErrNotFound)
		return nil
	})
	misnamed := evidence.Sum([]byte("the name of other bytes"))
	update(t, s, func(tx store.Tx) error { return tx.PutMessage(misnamed, f.T0, []byte("another body")) })
	view(t, s, func(tx store.Tx) error {
		_, err := tx.Message(misnamed, f.T0)
		wantErr(t, "Message stored under the hash of other bytes", err, store.ErrCorrupt)
		return nil
	})
	rolled := []byte("stored by a step that failed")
	err := s.Update(t.Context(), func(tx store.Tx) error {
		if err := tx.PutMessage(evidence.Sum(rolled), f.T0, rolled); err != nil {
			return err
		}
		return errBoom
	})
	wantErr(t, "Update that fails after PutMessage", err, errBoom)
	view(t, s, func(tx store.Tx) error {
		_, err := tx.Message(evidence.Sum(rolled), f.T0)
		wantErr(t, "Message of a failed step", err, store.ErrNotFound)
		return nil
	})
}

// testOutboundCarryingAMessage: a mail that carries a stored body verbatim (a full receipt) is
// read back byte for byte, by DueOutbound and OutboundFor, whatever its place in the mail; one
// whose body is not stored, or lies outside the mail, is refused.
func testOutboundCarryingAMessage(t *testing.T, s store.Store, f *Fixture) {
	body := []byte("From: a@a.example\r\nSubject: the lease\r\n\r\nSigned copy attached.\r\n")
	h := evidence.Sum(body)
	var wants [][]byte
	var ls []evidence.Label
	for i, at := range []int{0, 7, -1} { // the body first, inside, last
		head, tail := []byte("Subject: your receipt\r\n\r\n--b\r\n"), []byte("\r\n--b--\r\n")
		switch at {
		case 0:
			head = nil
		case -1:
			tail, at = nil, len(head)
		default:
			at = len(head)
		}
		data := append(append(append([]byte{}, head...), body...), tail...)
		wants = append(wants, data)
		it := f.Item(newLabel(t, f), f.T0)
		ls = append(ls, it.Label)
		update(t, s, func(tx store.Tx) error {
			if err := tx.PutMessage(h, f.T0, body); err != nil {
				return err
			}
			if err := tx.InsertItem(it); err != nil {
				return err
			}
			_, err := tx.Enqueue(store.Outbound{Label: it.Label, Kind: "posting-receipt", From: "certmail@p.example",
				To: Sender, Data: data, Message: h, MessageTime: f.T0, MessageAt: at, NextAttempt: f.T0.Add(time.Duration(i) * time.Second), Created: f.T0, Updated: f.T0})
			return err
		})
	}
	view(t, s, func(tx store.Tx) error {
		due, err := tx.DueOutbound(f.T0.Add(time.Hour), 0)
		if err != nil {
			return err
		}
		if len(due) != len(wants) {
			t.Fatalf("%d due, want %d", len(due), len(wants))
		}
		for i, m := range due {
			if !bytes.Equal(m.Data, wants[i]) {
				t.Errorf("DueOutbound mail %d:\n%q\nwant\n%q", i, m.Data, wants[i])
			}
			if m.Message != h || !m.MessageTime.Equal(f.T0) {
				t.Errorf("DueOutbound mail %d carries %s at %v, want %s at %v", i, m.Message, m.MessageTime, h, f.T0)
			}
			got, err := tx.OutboundFor(ls[i])
			if err != nil {
				return err
			}
			if len(got) != 1 || !bytes.Equal(got[0].Data, wants[i]) {
				t.Errorf("OutboundFor mail %d: %d mails", i, len(got))
			}
		}
		return nil
	})
	never := evidence.Sum([]byte("never stored"))
	for _, m := range []store.Outbound{
		{Kind: "posting-receipt", To: Sender, Data: wants[0], Message: never, MessageTime: f.T0},
		{Kind: "posting-receipt", To: Sender, Data: wants[0], Message: h, MessageTime: f.T0.Add(time.Second)},
		{Kind: "posting-receipt", To: Sender, Data: wants[0], Message: h, MessageTime: f.T0, MessageAt: len(wants[0]) - 3},
	} {
		err := s.Update(t.Context(), func(tx store.Tx) error { _, err := tx.Enqueue(m); return err })
		if err == nil {
			t.Errorf("Enqueue of a mail carrying %s at %d: no error", m.Message, m.MessageAt)
		}
	}
}

func testUsers(t *testing.T, s store.Store, f *Fixture) {
	cet := time.FixedZone("CET", 3600)
	alice := store.User{Address: Sender, PasswordHash: "$argon2id$v=19$m=65536,t=3,p=4$YWxpY2U$YWxpY2VoYXNo",
		Admin: true, VerifierKey: f.senderKey,
		Created: time.Date(2026, 3, 1, 10, 0, 0, 123456789, cet), Updated: time.Date(2026, 3, 1, 10, 0, 0, 999999999, cet)}
	carol := store.User{Address: "carol@a.example", PasswordHash: "$argon2id$carol", Created: f.T0, Updated: f.T0}
	bob := store.User{Address: Recipient, Disabled: true, Created: f.T0, Updated: f.T0}
	update(t, s, func(tx store.Tx) error {
		for _, u := range []store.User{alice, carol, bob} {
			if err := tx.PutUser(u); err != nil {
				return err
			}
		}
		return nil
	})
	view(t, s, func(tx store.Tx) error {
		got, err := tx.User(Sender)
		if err != nil {
			return err
		}
		same(t, "User", got, canonUser(alice))
		all, err := tx.Users()
		if err != nil {
			return err
		}
		same(t, "Users (by address)", all, []store.User{canonUser(alice), canonUser(bob), canonUser(carol)})
		_, err = tx.User("nobody@a.example")
		wantErr(t, "User of an unknown address", err, store.ErrNotFound)
		return nil
	})

	alice.Admin, alice.Disabled, alice.VerifierKey, alice.PasswordHash = false, true, "", "$argon2id$new"
	alice.Updated = f.T0.Add(time.Hour)
	update(t, s, func(tx store.Tx) error { return tx.PutUser(alice) })
	view(t, s, func(tx store.Tx) error {
		got, err := tx.User(Sender)
		if err != nil {
			return err
		}
		same(t, "User after PutUser replaced it", got, canonUser(alice))
		all, err := tx.Users()
		if err != nil {
			return err
		}
		if len(all) != 3 {
			t.Errorf("Users after a replace: %d users, want 3", len(all))
		}
		return nil
	})
}

func testItems(t *testing.T, s store.Store, f *Fixture) {
	l := newLabel(t, f)
	it := f.Item(l, time.Date(2026, 3, 2, 10, 30, 0, 123456789, time.FixedZone("EST", -5*3600)))
	it.Retrievals = 2
	bare := f.Item(newLabel(t, f), f.T0) // no deadline, no token, no commitment, no subject
	bare.Deadline, bare.TokenHash, bare.Commitment, bare.Subject, bare.PasswordHash, bare.PasswordHint = time.Time{}, evidence.Hash{}, evidence.Hash{}, "", "", ""
	bare2 := f.Item(newLabel(t, f), f.T0)
	bare2.TokenHash = evidence.Hash{}
	update(t, s, func(tx store.Tx) error {
		for _, x := range []store.Item{it, bare, bare2} {
			if err := tx.InsertItem(x); err != nil {
				return err
			}
		}
		return nil
	})
	view(t, s, func(tx store.Tx) error {
		got, err := tx.Item(l)
		if err != nil {
			return err
		}
		same(t, "Item", got, canonItem(it))
		got, err = tx.ItemByToken(it.TokenHash)
		if err != nil {
			return err
		}
		same(t, "ItemByToken", got, canonItem(it))
		got, err = tx.Item(bare.Label)
		if err != nil {
			return err
		}
		same(t, "Item with zero deadline, token and commitment", got, canonItem(bare))
		if !got.Deadline.IsZero() || !got.TokenHash.IsZero() {
			t.Errorf("zero fields came back set: deadline %v, token %v", got.Deadline, got.TokenHash)
		}
		_, err = tx.Item(newLabel(t, f))
		wantErr(t, "Item of an unknown label", err, store.ErrNotFound)
		_, err = tx.ItemByToken(evidence.Sum([]byte("no such token")))
		wantErr(t, "ItemByToken of an unknown token", err, store.ErrNotFound)
		_, err = tx.ItemByToken(evidence.Hash{})
		wantErr(t, "ItemByToken of the zero hash", err, store.ErrNotFound)
		return nil
	})
	err := s.Update(t.Context(), func(tx store.Tx) error { return tx.InsertItem(f.Item(evidence.Label{}, f.T0)) })
	if err == nil {
		t.Error("InsertItem with a zero label: no error")
	}
}

func testUpdateItem(t *testing.T, s store.Store, f *Fixture) {
	a, b := f.Item(newLabel(t, f), f.T0), f.Item(newLabel(t, f), f.T0.Add(time.Minute))
	a.Prev, a.Next = "agent1.example", "agent3.example" // an item relayed on by an intermediate agent
	update(t, s, func(tx store.Tx) error {
		if err := tx.InsertItem(a); err != nil {
			return err
		}
		return tx.InsertItem(b)
	})

	// Every field changes; only the mutable ones may stick.
	changed := store.Item{Label: a.Label, Submission: "other", Protocol: evidence.CEM, Sender: "mallory@m.example",
		Recipient: "eve@e.example", Subject: "changed", Content: evidence.Sum([]byte("x")), Commitment: evidence.Sum([]byte("y")),
		Size: 1, Deadline: f.T0.Add(time.Hour), Receipt: "short", Notify: "none",
		PasswordHash: "$argon2id$reset", PasswordHint: "new hint", TokenHash: evidence.Sum([]byte("new token")),
		State: store.StateDelivered, Submitted: f.T0.Add(-time.Hour), Updated: f.T0.Add(90 * time.Minute), Retrievals: 3,
		Prev: "other.example", Next: ""}
	update(t, s, func(tx store.Tx) error { return tx.UpdateItem(changed) })
	want := a
	want.State, want.Updated, want.Retrievals = changed.State, changed.Updated, changed.Retrievals
	want.TokenHash, want.PasswordHash, want.PasswordHint = changed.TokenHash, changed.PasswordHash, changed.PasswordHint
	view(t, s, func(tx store.Tx) error {
		got, err := tx.Item(a.Label)
		if err != nil {
			return err
		}
		same(t, "Item after UpdateItem (immutable fields kept, mutable ones replaced)", got, canonItem(want))
		_, err = tx.ItemByToken(a.TokenHash)
		wantErr(t, "ItemByToken of the replaced token", err, store.ErrNotFound)
		got, err = tx.ItemByToken(changed.TokenHash)
		if err != nil {
			return err
		}
		if got.Label != a.Label {
			t.Errorf("ItemByToken of the new token: label %v, want %v", got.Label, a.Label)
		}
		return nil
	})

	err := s.Update(t.Context(), func(tx store.Tx) error {
		stolen := b
		stolen.TokenHash = changed.TokenHash
		return tx.UpdateItem(stolen)
	})
	wantErr(t, "UpdateItem to another item's token", err, store.ErrDuplicate)
	err = s.Update(t.Context(), func(tx store.Tx) error { return tx.UpdateItem(f.Item(newLabel(t, f), f.T0)) })
	wantErr(t, "UpdateItem of an unknown label", err, store.ErrNotFound)

	// Clearing the token of a picked-up item: two items may both have none.
	update(t, s, func(tx store.Tx) error {
		for _, x := range []store.Item{want, b} {
			x.TokenHash = evidence.Hash{}
			if err := tx.UpdateItem(x); err != nil {
				return err
			}
		}
		return nil
	})
	view(t, s, func(tx store.Tx) error {
		got, err := tx.Item(b.Label)
		if err != nil {
			return err
		}
		if !got.TokenHash.IsZero() {
			t.Errorf("token after clearing it: %v", got.TokenHash)
		}
		return nil
	})
}

func testItemsBySender(t *testing.T, s store.Store, f *Fixture) {
	// Inserted out of order; two share a submission time (the later insert lists first).
	offsets := []int{3, 0, 5, 1, 4, 2, 2}
	var mine []store.Item
	update(t, s, func(tx store.Tx) error {
		for _, m := range offsets {
			it := f.Item(newLabel(t, f), f.T0.Add(time.Duration(m)*time.Minute))
			if err := tx.InsertItem(it); err != nil {
				return err
			}
			mine = append(mine, it)
			other := f.Item(newLabel(t, f), f.T0.Add(time.Duration(m)*time.Minute+time.Second))
			other.Sender = "carol@a.example"
			if err := tx.InsertItem(other); err != nil {
				return err
			}
		}
		return nil
	})
	// Newest first: 5, 4, 3, then the two at 2 (later insert first), 1, 0.
	order := []int{2, 4, 0, 6, 5, 3, 1}
	var want []evidence.Label
	for _, i := range order {
		want = append(want, mine[i].Label)
	}
	view(t, s, func(tx store.Tx) error {
		all, err := tx.ItemsBySender(Sender, 0, 0)
		if err != nil {
			return err
		}
		same(t, "ItemsBySender, no limit", labels(all), want)
		if len(all) > 0 {
			same(t, "ItemsBySender, first item", all[0], canonItem(mine[2]))
		}
		for _, page := range []struct{ limit, offset, from, to int }{{3, 0, 0, 3}, {3, 3, 3, 6}, {3, 6, 6, 7}, {3, 7, 7, 7}, {2, 10, 7, 7}} {
			got, err := tx.ItemsBySender(Sender, page.limit, page.offset)
			if err != nil {
				return err
			}
			if len(got) == 0 && page.from == page.to {
				continue
			}
			same(t, "ItemsBySender page", labels(got), want[page.from:page.to])
		}
		none, err := tx.ItemsBySender("nobody@a.example", 10, 0)
		if err != nil {
			return err
		}
		if len(none) != 0 {
			t.Errorf("ItemsBySender of an unknown sender: %d items", len(none))
		}
		return nil
	})
}

// absent checks that nothing of label l was kept.
func absent(t *testing.T, s store.Store, l evidence.Label, leaf evidence.Hash) {
	t.Helper()
	view(t, s, func(tx store.Tx) error {
		if _, err := tx.Item(l); !errors.Is(err, store.ErrNotFound) {
			t.Errorf("item %v of a failed Update: %v, want ErrNotFound", l, err)
		}
		if ev, err := tx.Evidence(l); err != nil || len(ev) != 0 {
			t.Errorf("evidence of a failed Update: %d notes, error %v", len(ev), err)
		}
		if _, err := tx.EvidenceByLeaf(l, leaf); !errors.Is(err, store.ErrNotFound) {
			t.Errorf("EvidenceByLeaf of a failed Update: %v, want ErrNotFound", err)
		}
		if tm, err := tx.Timers(l); err != nil || len(tm) != 0 {
			t.Errorf("timers of a failed Update: %v, error %v", tm, err)
		}
		if out, err := tx.OutboundFor(l); err != nil || len(out) != 0 {
			t.Errorf("outbound of a failed Update: %d mails, error %v", len(out), err)
		}
		return nil
	})
}

// writeStep does what an agent step does for a new item: item, evidence, timer, mail.
func writeStep(tx store.Tx, f *Fixture, it store.Item, n *evidence.Note) error {
	if err := tx.InsertItem(it); err != nil {
		return err
	}
	if _, err := tx.AddEvidence(it.Label, n); err != nil {
		return err
	}
	if err := tx.SetTimer(store.Timer{Label: it.Label, Kind: "deadline", Due: it.Deadline}); err != nil {
		return err
	}
	_, err := tx.Enqueue(store.Outbound{Label: it.Label, Kind: "notification", From: Sender, To: Recipient,
		Data: f.Message, State: store.OutQueued, NextAttempt: it.Submitted, Created: it.Submitted, Updated: it.Submitted})
	return err
}

func testDuplicates(t *testing.T, s store.Store, f *Fixture) {
	first := f.Item(newLabel(t, f), f.T0)
	update(t, s, func(tx store.Tx) error { return tx.InsertItem(first) })

	sameLabel := f.Item(first.Label, f.T0)
	sameLabel.TokenHash = evidence.Sum([]byte("another token"))
	sameToken := f.Item(newLabel(t, f), f.T0)
	sameToken.TokenHash = first.TokenHash
	for _, c := range []struct {
		name string
		dup  store.Item
	}{{"same label", sameLabel}, {"same token", sameToken}} {
		// The step writes other things first; the duplicate item must take them all down.
		other := f.Item(newLabel(t, f), f.T0)
		n := newNote(t, f, other.Label, evidence.COP, f.T0)
		err := s.Update(t.Context(), func(tx store.Tx) error {
			if err := writeStep(tx, f, other, n); err != nil {
				return err
			}
			return tx.InsertItem(c.dup)
		})
		wantErr(t, "InsertItem with the "+c.name, err, store.ErrDuplicate)
		absent(t, s, other.Label, n.Leaf())
	}
	view(t, s, func(tx store.Tx) error {
		got, err := tx.Item(first.Label)
		if err != nil {
			return err
		}
		same(t, "first item after refused duplicates", got, canonItem(first))
		_, err = tx.Item(sameToken.Label)
		wantErr(t, "item refused for its token", err, store.ErrNotFound)
		return nil
	})
}

func testDuplicateHandled(t *testing.T, s store.Store, f *Fixture) {
	it := f.Item(newLabel(t, f), f.T0)
	cop := newNote(t, f, it.Label, evidence.COP, f.T0)
	key := newNote(t, f, evidence.Label{}, evidence.KEY, f.T0)
	update(t, s, func(tx store.Tx) error {
		if _, err := tx.AddEvidence(evidence.Label{}, key); err != nil {
			return err
		}
		return writeStep(tx, f, it, cop)
	})

	// A retried step: the same item and note again, each refused, each error handled, and the
	// step's new writes kept.
	ntf := newNote(t, f, it.Label, evidence.NTF, f.T0.Add(time.Minute))
	other := newLabel(t, f)
	update(t, s, func(tx store.Tx) error {
		if _, err := tx.AddEvidence(it.Label, cop); !errors.Is(err, store.ErrDuplicate) {
			t.Errorf("AddEvidence of a stored note: %v, want ErrDuplicate", err)
		}
		if _, err := tx.AddEvidence(other, key); !errors.Is(err, store.ErrDuplicate) {
			t.Errorf("AddEvidence of a stored note under another label: %v, want ErrDuplicate", err)
		}
		if err := tx.InsertItem(it); !errors.Is(err, store.ErrDuplicate) {
			t.Errorf("InsertItem of a stored item: %v, want ErrDuplicate", err)
		}
		if err := tx.DeleteTimer(it.Label, "no-such-kind"); !errors.Is(err, store.ErrNotFound) {
			t.Errorf("DeleteTimer of an unknown timer: %v, want ErrNotFound", err)
		}
		if _, err := tx.AddEvidence(it.Label, ntf); err != nil {
			return err
		}
		return tx.SetTimer(store.Timer{Label: it.Label, Kind: "warn", Due: f.T0.Add(time.Hour)})
	})
	view(t, s, func(tx store.Tx) error {
		ev, err := tx.Evidence(it.Label)
		if err != nil {
			return err
		}
		var leaves []evidence.Hash
		for _, e := range ev {
			leaves = append(leaves, e.Leaf)
		}
		same(t, "evidence after a retried step", leaves, []evidence.Hash{cop.Leaf(), ntf.Leaf()})
		tm, err := tx.Timers(it.Label)
		if err != nil {
			return err
		}
		if len(tm) != 2 {
			t.Errorf("timers after a retried step: %v, want deadline and warn", tm)
		}
		if ev, _ := tx.Evidence(other); len(ev) != 0 {
			t.Errorf("refused note stored under the other label")
		}
		return nil
	})
}

func testErrorRollsBack(t *testing.T, s store.Store, f *Fixture) {
	it := f.Item(newLabel(t, f), f.T0)
	n := newNote(t, f, it.Label, evidence.COP, f.T0)
	user := store.User{Address: "dave@a.example", Created: f.T0, Updated: f.T0}
	err := s.Update(t.Context(), func(tx store.Tx) error {
		if err := writeStep(tx, f, it, n); err != nil {
			return err
		}
		if err := tx.PutUser(user); err != nil {
			return err
		}
		return errBoom
	})
	if err != errBoom {
		t.Errorf("Update whose fn failed returned %v, want fn's error itself", err)
	}
	absent(t, s, it.Label, n.Leaf())
	view(t, s, func(tx store.Tx) error {
		_, err := tx.User(user.Address)
		wantErr(t, "user of a failed Update", err, store.ErrNotFound)
		due, err := tx.DueOutbound(f.T0.Add(time.Hour), 0)
		if err != nil || len(due) != 0 {
			t.Errorf("outbound of a failed Update: %d due, error %v", len(due), err)
		}
		return nil
	})
}

func testPanicRollsBack(t *testing.T, s store.Store, f *Fixture) {
	it := f.Item(newLabel(t, f), f.T0)
	n := newNote(t, f, it.Label, evidence.COP, f.T0)
	func() {
		defer func() {
			if r := recover(); r != errBoom {
				t.Errorf("recovered %v, want the panic of fn", r)
			}
		}()
		s.Update(t.Context(), func(tx store.Tx) error {
			if err := writeStep(tx, f, it, n); err != nil {
				return err
			}
			panic(errBoom)
		})
	}()
	absent(t, s, it.Label, n.Leaf())
	// The store still takes writes: a panic must not leave a transaction (or a lock) open.
	ctx, cancel := context.WithTimeout(t.Context(), 10*time.Second)
	defer cancel()
	if err := s.Update(ctx, func(tx store.Tx) error { return writeStep(tx, f, it, n) }); err != nil {
		t.Fatalf("Update after a panicking one: %v", err)
	}
}

func testEvidence(t *testing.T, s store.Store, f *Fixture) {
	l1, l2 := newLabel(t, f), newLabel(t, f)
	cop1 := newNote(t, f, l1, evidence.COP, f.T0)
	cop2 := newNote(t, f, l2, evidence.COP, f.T0)
	ntf1 := newNote(t, f, l1, evidence.NTF, f.T0.Add(time.Minute))
	// Made before the NTF but stored after it: storage order is what counts.
	dlv1 := newNote(t, f, l1, evidence.DLV, f.T0.Add(30*time.Second+123*time.Millisecond))
	key := newNote(t, f, evidence.Label{}, evidence.KEY, f.T0)
	nro := newNote(t, f, l2, evidence.CMPNRO, time.Time{})

	var added []store.Evidence
	add := func(tx store.Tx, l evidence.Label, n *evidence.Note) error {
		e, err := tx.AddEvidence(l, n)
		added = append(added, e)
		return err
	}
	update(t, s, func(tx store.Tx) error {
		if err := add(tx, l1, cop1); err != nil {
			return err
		}
		return add(tx, l2, cop2)
	})
	before := time.Now()
	update(t, s, func(tx store.Tx) error {
		for _, x := range []struct {
			l evidence.Label
			n *evidence.Note
		}{{l1, ntf1}, {l1, dlv1}, {evidence.Label{}, key}, {l2, nro}} {
			if err := add(tx, x.l, x.n); err != nil {
				return err
			}
		}
		return nil
	})
	after := time.Now()

	notes := []*evidence.Note{cop1, cop2, ntf1, dlv1, key, nro}
	labelsOf := []evidence.Label{l1, l2, l1, l1, {}, l2}
	for i, e := range added {
		n := notes[i]
		want := store.Evidence{Seq: e.Seq, Label: labelsOf[i], Type: n.Record.Type, Leaf: n.Leaf(), Note: n.Bytes(), Stored: canon(n.Record.Time)}
		if n.Record.Time.IsZero() {
			// No time in the record: stored "now".
			if e.Stored.Before(canon(before)) || e.Stored.After(after) {
				t.Errorf("Stored of a record without time: %v, want between %v and %v", e.Stored, before, after)
			}
			want.Stored = e.Stored
		}
		same(t, "AddEvidence result "+string(n.Record.Type), e, want)
		if i > 0 && e.Seq <= added[i-1].Seq {
			t.Errorf("Seq %d after %d: want increasing in storage order", e.Seq, added[i-1].Seq)
		}
	}

	view(t, s, func(tx store.Tx) error {
		ev, err := tx.Evidence(l1)
		if err != nil {
			return err
		}
		same(t, "Evidence(l1) in storage order", ev, []store.Evidence{added[0], added[2], added[3]})
		ev, err = tx.Evidence(l2)
		if err != nil {
			return err
		}
		same(t, "Evidence(l2)", ev, []store.Evidence{added[1], added[5]})
		for i, n := range notes {
			e, err := tx.EvidenceByLeaf(n.Record.Label, n.Leaf())
			if err != nil {
				return err
			}
			same(t, "EvidenceByLeaf "+string(n.Record.Type), e, added[i])
			if _, err := evidence.ParseNote(e.Note); err != nil {
				t.Errorf("stored note does not parse: %v", err)
			}
		}
		_, err = tx.EvidenceByLeaf(l1, evidence.Sum([]byte("no such note")))
		wantErr(t, "EvidenceByLeaf of an unknown leaf", err, store.ErrNotFound)
		_, err = tx.EvidenceByLeaf(evidence.Label{}, evidence.Sum([]byte("no such key")))
		wantErr(t, "EvidenceByLeaf of an unknown KEY record", err, store.ErrNotFound)
		wrong := map[evidence.Label]evidence.Label{l1: l2, l2: l1}
		for _, n := range notes {
			if w, ok := wrong[n.Record.Label]; ok {
				_, err = tx.EvidenceByLeaf(w, n.Leaf())
				wantErr(t, "EvidenceByLeaf under another label", err, store.ErrNotFound)
			}
		}
		ev, err = tx.Evidence(newLabel(t, f))
		if err != nil || len(ev) != 0 {
			t.Errorf("Evidence of an unknown label: %d notes, error %v; want none and no error", len(ev), err)
		}
		ev, err = tx.Evidence(evidence.Label{})
		if err != nil {
			return err
		}
		same(t, "Evidence of the zero label (the notes stored without one)", ev, []store.Evidence{added[4]})
		return nil
	})

	// A note filed under another label than its record's, or no note at all, is refused.
	stray := newNote(t, f, l1, evidence.COP, f.T0.Add(time.Hour))
	err := s.Update(t.Context(), func(tx store.Tx) error {
		_, err := tx.AddEvidence(l2, stray)
		return err
	})
	if err == nil || errors.Is(err, store.ErrDuplicate) {
		t.Errorf("AddEvidence of a note for another label: %v, want a refusal", err)
	}
	err = s.Update(t.Context(), func(tx store.Tx) error {
		_, err := tx.AddEvidence(l1, nil)
		return err
	})
	if err == nil {
		t.Errorf("AddEvidence of a nil note: no error")
	}
	err = s.Update(t.Context(), func(tx store.Tx) error {
		_, err := tx.AddEvidence(l1, &evidence.Note{})
		return err
	})
	if err == nil {
		t.Errorf("AddEvidence of an empty note: no error")
	}
	view(t, s, func(tx store.Tx) error {
		_, err := tx.EvidenceByLeaf(stray.Record.Label, stray.Leaf())
		wantErr(t, "EvidenceByLeaf of a refused note", err, store.ErrNotFound)
		return nil
	})
}

// testEvidenceLog: which notes are in the evidence log, at which index, as the agent records it
// after each append and repairs it after a crash.
func testPublished(t *testing.T, s store.Store, f *Fixture) {
	l := newLabel(t, f)
	pub := newNote(t, f, l, evidence.PUB, f.T0)
	hc := pub.Record.Ciphertext
	view(t, s, func(tx store.Tx) error {
		_, err := tx.Published(hc)
		wantErr(t, "Published before any", err, store.ErrNotFound)
		return nil
	})
	update(t, s, func(tx store.Tx) error {
		e, err := tx.AddEvidence(l, pub)
		if err != nil {
			return err
		}
		return tx.SetPublished(hc, e.Seq)
	})
	view(t, s, func(tx store.Tx) error {
		e, err := tx.Published(hc)
		if err != nil {
			return err
		}
		same(t, "published note", string(e.Note), string(pub.Bytes()))
		same(t, "published label", e.Label, l)
		return nil
	})
	// One key per ciphertext: a second index for the same hash is a duplicate and changes nothing.
	other := newNote(t, f, newLabel(t, f), evidence.PUB, f.T0)
	err := s.Update(context.Background(), func(tx store.Tx) error {
		e, err := tx.AddEvidence(other.Record.Label, other)
		if err != nil {
			return err
		}
		return tx.SetPublished(hc, e.Seq)
	})
	wantErr(t, "second SetPublished", err, store.ErrDuplicate)
	view(t, s, func(tx store.Tx) error {
		e, err := tx.Published(hc)
		if err != nil {
			return err
		}
		same(t, "published note after the duplicate", string(e.Note), string(pub.Bytes()))
		_, err = tx.EvidenceByLeaf(other.Record.Label, other.Leaf())
		wantErr(t, "the duplicate's note", err, store.ErrNotFound)
		return nil
	})
}

func testEvidenceLog(t *testing.T, s store.Store, f *Fixture) {
	l := newLabel(t, f)
	notes := []*evidence.Note{
		newNote(t, f, l, evidence.COP, f.T0),
		newNote(t, f, evidence.Label{}, evidence.KEY, f.T0),
		newNote(t, f, l, evidence.NTF, f.T0.Add(time.Minute)),
		newNote(t, f, l, evidence.DLV, f.T0.Add(2*time.Minute)),
	}
	var added []store.Evidence
	for _, n := range notes { // one step each, as the agent stores them
		update(t, s, func(tx store.Tx) error {
			e, err := tx.AddEvidence(n.Record.Label, n)
			added = append(added, e)
			return err
		})
	}
	for _, e := range added {
		if e.Logged {
			t.Errorf("a new note is stored as logged at %d", e.LogIndex)
		}
	}
	view(t, s, func(tx store.Tx) error {
		ev, err := tx.UnloggedEvidence(0)
		same(t, "UnloggedEvidence before any append", ev, added)
		if n, err := tx.CountLogged(0); n != 0 || err != nil {
			t.Errorf("CountLogged(0) = %d, %v; want 0", n, err)
		}
		return err
	})

	const big = uint64(1) << 62
	update(t, s, func(tx store.Tx) error {
		for _, x := range []struct {
			i     int
			index uint64
		}{{0, 0}, {2, 1}, {3, big}} {
			if err := tx.SetLogIndex(added[x.i].Seq, x.index); err != nil {
				return err
			}
			added[x.i].Logged, added[x.i].LogIndex = true, x.index
		}
		return nil
	})
	update(t, s, func(tx store.Tx) error {
		wantErr(t, "SetLogIndex of the same index again", tx.SetLogIndex(added[0].Seq, 0), nil)
		wantErr(t, "SetLogIndex of another index", tx.SetLogIndex(added[0].Seq, 5), store.ErrDuplicate)
		wantErr(t, "SetLogIndex of another note's index", tx.SetLogIndex(added[1].Seq, 1), store.ErrDuplicate)
		wantErr(t, "SetLogIndex of no note", tx.SetLogIndex(added[3].Seq+1000, 7), store.ErrNotFound)
		// The errors were handled: the transaction goes on and commits.
		if err := tx.SetLogIndex(added[1].Seq, 2); err != nil {
			return err
		}
		added[1].Logged, added[1].LogIndex = true, 2
		return nil
	})
	view(t, s, func(tx store.Tx) error {
		ev, err := tx.Evidence(l)
		if err != nil {
			return err
		}
		same(t, "Evidence with log indices", ev, []store.Evidence{added[0], added[2], added[3]})
		for _, e := range added {
			got, err := tx.EvidenceByLeaf(e.Label, e.Leaf)
			if err != nil {
				return err
			}
			same(t, "EvidenceByLeaf with its log index", got, e)
		}
		ev, err = tx.UnloggedEvidence(0)
		if err != nil || len(ev) != 0 {
			t.Errorf("UnloggedEvidence after every note was logged: %d notes, %v", len(ev), err)
		}
		for from, want := range map[uint64]int64{0: 4, 1: 3, 2: 2, 3: 1, big: 1, big + 1: 0, 1 << 63: 0} {
			if n, err := tx.CountLogged(from); n != want || err != nil {
				t.Errorf("CountLogged(%d) = %d, %v; want %d", from, n, err, want)
			}
		}
		return nil
	})

	// Unlogged notes come in storage order, limit at a time.
	l2 := newLabel(t, f)
	more := []*evidence.Note{newNote(t, f, l2, evidence.COP, f.T0), newNote(t, f, l2, evidence.NTF, f.T0.Add(time.Minute))}
	var late []store.Evidence
	update(t, s, func(tx store.Tx) error {
		for _, n := range more {
			e, err := tx.AddEvidence(l2, n)
			if err != nil {
				return err
			}
			late = append(late, e)
		}
		return nil
	})
	view(t, s, func(tx store.Tx) error {
		ev, err := tx.UnloggedEvidence(1)
		same(t, "UnloggedEvidence(1)", ev, late[:1])
		ev, err2 := tx.UnloggedEvidence(10)
		same(t, "UnloggedEvidence(10)", ev, late)
		return errors.Join(err, err2)
	})
}

func testTimers(t *testing.T, s store.Store, f *Fixture) {
	l1, l2 := newLabel(t, f), newLabel(t, f)
	at := func(d time.Duration) time.Time { return f.T0.Add(d) }
	warn1 := store.Timer{Label: l1, Kind: "warn", Due: at(time.Hour)}
	dl1 := store.Timer{Label: l1, Kind: "deadline", Due: at(2 * time.Hour)}
	dl2 := store.Timer{Label: l2, Kind: "deadline", Due: at(30 * time.Minute)}
	update(t, s, func(tx store.Tx) error {
		for _, tm := range []store.Timer{dl1, warn1, dl2} {
			if err := tx.SetTimer(tm); err != nil {
				return err
			}
		}
		return nil
	})
	due := func(now time.Time, limit int) []store.Timer {
		t.Helper()
		var out []store.Timer
		view(t, s, func(tx store.Tx) (err error) {
			out, err = tx.DueTimers(now, limit)
			return err
		})
		return out
	}
	view(t, s, func(tx store.Tx) error {
		got, err := tx.Timers(l1)
		if err != nil {
			return err
		}
		same(t, "Timers(l1), by due time", got, []store.Timer{warn1, dl1})
		return nil
	})
	same(t, "DueTimers at the warning's due time (inclusive)", due(at(time.Hour), 0), []store.Timer{dl2, warn1})
	same(t, "DueTimers limit 1", due(at(3*time.Hour), 1), []store.Timer{dl2})
	if got := due(at(29*time.Minute), 0); len(got) != 0 {
		t.Errorf("DueTimers before any is due: %v", got)
	}

	// Moving a timer replaces it.
	warn1.Due = at(10*time.Minute + 456*time.Millisecond)
	update(t, s, func(tx store.Tx) error { return tx.SetTimer(warn1) })
	same(t, "DueTimers after moving the warning", due(at(time.Hour), 0), []store.Timer{warn1, dl2})

	update(t, s, func(tx store.Tx) error { return tx.DeleteTimer(l2, "deadline") })
	err := s.Update(t.Context(), func(tx store.Tx) error { return tx.DeleteTimer(l2, "deadline") })
	wantErr(t, "DeleteTimer of a deleted timer", err, store.ErrNotFound)
	same(t, "DueTimers after a delete", due(at(3*time.Hour), 0), []store.Timer{warn1, dl1})

	err = s.Update(t.Context(), func(tx store.Tx) error {
		return tx.SetTimer(store.Timer{Kind: "deadline", Due: f.T0})
	})
	if err == nil {
		t.Error("SetTimer with a zero label: no error")
	}
	view(t, s, func(tx store.Tx) error {
		got, err := tx.Timers(evidence.Label{})
		if err != nil || len(got) != 0 {
			t.Errorf("Timers of the zero label: %v, %v; want none", got, err)
		}
		return nil
	})
}

func testOutbound(t *testing.T, s store.Store, f *Fixture) {
	l1, l2 := newLabel(t, f), newLabel(t, f)
	at := func(d time.Duration) time.Time { return f.T0.Add(d) }
	mail := func(l evidence.Label, kind string, next time.Time) store.Outbound {
		return store.Outbound{Label: l, Kind: kind, From: "certmail@p1.example", To: Recipient,
			Data: append([]byte("Subject: "+kind+"\r\n\r\n"), f.Message...), State: store.OutQueued,
			NextAttempt: next, Created: f.T0, Updated: f.T0}
	}
	in := []store.Outbound{
		mail(l1, "notification", at(0)),
		mail(l1, "posting-receipt", at(time.Minute)),
		mail(evidence.Label{}, "report", at(-time.Minute)),
		mail(l2, "notification", at(time.Hour)),
		mail(l2, "warning", time.Time{}), // due at once
	}
	in[2].State = "" // stored as queued
	var m []store.Outbound
	update(t, s, func(tx store.Tx) error {
		for _, x := range in {
			got, err := tx.Enqueue(x)
			if err != nil {
				return err
			}
			m = append(m, got)
		}
		return nil
	})
	for i, got := range m {
		want := in[i]
		want.ID, want.State = got.ID, store.OutQueued
		same(t, "Enqueue result", got, canonOutbound(want))
		if i > 0 && got.ID <= m[i-1].ID {
			t.Errorf("Enqueue IDs %d then %d: want increasing", m[i-1].ID, got.ID)
		}
	}
	due := func(now time.Time, limit int) []store.Outbound {
		t.Helper()
		var out []store.Outbound
		view(t, s, func(tx store.Tx) (err error) {
			out, err = tx.DueOutbound(now, limit)
			return err
		})
		return out
	}
	same(t, "DueOutbound at T0", due(at(0), 0), []store.Outbound{m[4], m[2], m[0]})
	same(t, "DueOutbound limit 2", due(at(2*time.Hour), 2), []store.Outbound{m[4], m[2]})

	// A failed attempt, a sent mail and a bounce. Only the attempt's fields may change.
	m[0].Attempts, m[0].NextAttempt, m[0].LastError, m[0].Updated = 1, at(5*time.Minute), "451 4.7.1 try again later", at(time.Second)
	m[2].State, m[2].Attempts, m[2].Updated = store.OutSent, 1, at(time.Second)
	m[4].State, m[4].Attempts, m[4].LastError = store.OutBounced, 1, "550 5.1.1 no such user"
	update(t, s, func(tx store.Tx) error {
		for _, i := range []int{0, 2, 4} {
			x := m[i]
			x.Data, x.To, x.Kind, x.Created = []byte("changed"), "eve@e.example", "changed", at(time.Hour)
			if err := tx.UpdateOutbound(x); err != nil {
				return err
			}
		}
		return nil
	})
	same(t, "DueOutbound after the attempts", due(at(2*time.Hour), 0), []store.Outbound{m[1], m[0], m[3]})
	view(t, s, func(tx store.Tx) error {
		got, err := tx.OutboundFor(l1)
		if err != nil {
			return err
		}
		same(t, "OutboundFor(l1)", got, []store.Outbound{canonOutbound(m[0]), m[1]})
		got, err = tx.OutboundFor(l2)
		if err != nil {
			return err
		}
		same(t, "OutboundFor(l2)", got, []store.Outbound{m[3], m[4]})
		got, err = tx.OutboundFor(evidence.Label{})
		if err != nil {
			return err
		}
		same(t, "OutboundFor the zero label (mail about no item)", got, []store.Outbound{canonOutbound(m[2])})
		got, err = tx.OutboundFor(newLabel(t, f))
		if err != nil || len(got) != 0 {
			t.Errorf("OutboundFor an unknown label: %d mails, error %v", len(got), err)
		}
		return nil
	})
	err := s.Update(t.Context(), func(tx store.Tx) error {
		x := m[0]
		x.ID = m[len(m)-1].ID + 1000
		return tx.UpdateOutbound(x)
	})
	wantErr(t, "UpdateOutbound of an unknown ID", err, store.ErrNotFound)
}

func testViewIsolation(t *testing.T, s store.Store, f *Fixture) {
	it := f.Item(newLabel(t, f), f.T0)
	inside, release := make(chan struct{}), make(chan struct{})
	done := make(chan error, 1)
	go func() {
		done <- s.Update(t.Context(), func(tx store.Tx) error {
			if err := tx.InsertItem(it); err != nil {
				return err
			}
			close(inside)
			<-release
			return nil
		})
	}()
	released := false
	defer func() {
		if !released {
			close(release)
		}
	}()
	select {
	case <-inside:
	case err := <-done:
		t.Fatalf("Update: %v", err)
	}

	seen := make(chan error, 1)
	go func() {
		seen <- s.View(t.Context(), func(tx store.Tx) error {
			_, err := tx.Item(it.Label)
			return err
		})
	}()
	select {
	case err := <-seen:
		wantErr(t, "View during an uncommitted Update", err, store.ErrNotFound)
	case <-time.After(10 * time.Second):
		t.Error("View waited for an open Update (10 s)")
	}
	close(release)
	released = true
	if err := <-done; err != nil {
		t.Fatalf("Update: %v", err)
	}
	view(t, s, func(tx store.Tx) error {
		_, err := tx.Item(it.Label)
		return err
	})
}

func testViewReadOnly(t *testing.T, s store.Store, f *Fixture) {
	it := f.Item(newLabel(t, f), f.T0)
	n := newNote(t, f, it.Label, evidence.COP, f.T0)
	var writeErrs []error
	err := s.View(t.Context(), func(tx store.Tx) error {
		writeErrs = append(writeErrs,
			tx.InsertItem(it),
			tx.PutUser(store.User{Address: Sender}),
			tx.SetTimer(store.Timer{Label: it.Label, Kind: "warn", Due: f.T0}),
		)
		_, err := tx.AddEvidence(it.Label, n)
		writeErrs = append(writeErrs, err)
		_, err = tx.Enqueue(store.Outbound{Label: it.Label, Kind: "notification", Data: f.Message})
		writeErrs = append(writeErrs, err, tx.SetLogIndex(1, 1))
		return nil
	})
	if err != nil {
		t.Fatalf("View: %v", err)
	}
	for i, err := range writeErrs {
		if err == nil {
			t.Errorf("write %d in a View: no error", i)
		}
	}
	absent(t, s, it.Label, n.Leaf())
	err = s.View(t.Context(), func(tx store.Tx) error { return errBoom })
	if err != errBoom {
		t.Errorf("View whose fn failed returned %v, want fn's error itself", err)
	}
}

func testConcurrentUpdates(t *testing.T, s store.Store, f *Fixture) {
	const writers, perWriter, readers = 8, 6, 2
	type job struct {
		it store.Item
		n  *evidence.Note
	}
	jobs := make([][]job, writers)
	for w := range jobs {
		for i := range perWriter {
			it := f.Item(newLabel(t, f), f.T0.Add(time.Duration(w*perWriter+i)*time.Second))
			jobs[w] = append(jobs[w], job{it, newNote(t, f, it.Label, evidence.COP, it.Submitted)})
		}
	}
	var wg, rg sync.WaitGroup
	errs := make(chan error, writers*perWriter+readers)
	stop := make(chan struct{})
	for range readers {
		rg.Go(func() {
			for {
				select {
				case <-stop:
					return
				default:
				}
				if err := s.View(t.Context(), func(tx store.Tx) error {
					_, err := tx.ItemsBySender(Sender, 10, 0)
					return err
				}); err != nil {
					errs <- err
					return
				}
			}
		})
	}
	for w := range writers {
		wg.Go(func() {
			for _, j := range jobs[w] {
				if err := s.Update(t.Context(), func(tx store.Tx) error { return writeStep(tx, f, j.it, j.n) }); err != nil {
					errs <- err
				}
			}
		})
	}
	wg.Wait()
	close(stop)
	rg.Wait()
	close(errs)
	for err := range errs {
		t.Errorf("concurrent Update or View: %v", err)
	}
	view(t, s, func(tx store.Tx) error {
		items, err := tx.ItemsBySender(Sender, 0, 0)
		if err != nil {
			return err
		}
		if len(items) != writers*perWriter {
			t.Errorf("%d items after %d concurrent Updates: lost writes", len(items), writers*perWriter)
		}
		var seqs []int64
		for _, js := range jobs {
			for _, j := range js {
				ev, err := tx.Evidence(j.it.Label)
				if err != nil {
					return err
				}
				if len(ev) != 1 || ev[0].Leaf != j.n.Leaf() {
					t.Errorf("evidence of %v: %d notes, want its COP", j.it.Label, len(ev))
					continue
				}
				seqs = append(seqs, ev[0].Seq)
			}
		}
		slices.Sort(seqs)
		if len(slices.Compact(seqs)) != len(seqs) {
			t.Errorf("evidence sequence numbers repeat: %v", seqs)
		}
		return nil
	})
}

func testContext(t *testing.T, s store.Store, f *Fixture) {
	cancelled, cancel := context.WithCancel(t.Context())
	cancel()
	ran := false
	err := s.Update(cancelled, func(tx store.Tx) error { ran = true; return nil })
	wantErr(t, "Update with a cancelled context", err, context.Canceled)
	if ran {
		t.Error("Update ran fn with a cancelled context")
	}
	err = s.View(cancelled, func(tx store.Tx) error { return nil })
	wantErr(t, "View with a cancelled context", err, context.Canceled)

	// Cancelled while fn runs: nothing is committed, and the caller is told.
	it := f.Item(newLabel(t, f), f.T0)
	n := newNote(t, f, it.Label, evidence.COP, f.T0)
	ctx, cancel := context.WithCancel(t.Context())
	err = s.Update(ctx, func(tx store.Tx) error {
		if err := writeStep(tx, f, it, n); err != nil {
			return err
		}
		cancel()
		return nil
	})
	wantErr(t, "Update whose context ended before the commit", err, context.Canceled)
	absent(t, s, it.Label, n.Leaf())

	// An Update waiting behind a long one gives up when its context ends.
	inside, release := make(chan struct{}), make(chan struct{})
	done := make(chan error, 1)
	go func() {
		done <- s.Update(t.Context(), func(tx store.Tx) error {
			close(inside)
			<-release
			return nil
		})
	}()
	<-inside
	short, cancelShort := context.WithTimeout(t.Context(), 100*time.Millisecond)
	defer cancelShort()
	waited := make(chan error, 1)
	go func() {
		waited <- s.Update(short, func(tx store.Tx) error {
			return tx.SetTimer(store.Timer{Label: it.Label, Kind: "warn", Due: f.T0})
		})
	}()
	select {
	case err := <-waited:
		// A backend that does not serialise writers may commit it; one that does must give up.
		if err != nil {
			wantErr(t, "Update waiting behind another", err, context.DeadlineExceeded)
		}
	case <-time.After(10 * time.Second):
		t.Error("Update waiting behind another ignored its context's deadline (10 s)")
	}
	close(release)
	if err := <-done; err != nil {
		t.Fatal(err)
	}
}

func testItemsBySubmission(t *testing.T, s store.Store, f *Fixture) {
	a, b, c := f.Item(newLabel(t, f), f.T0), f.Item(newLabel(t, f), f.T0), f.Item(newLabel(t, f), f.T0)
	a.Submission, b.Submission, c.Submission = "sub-one", "sub-one", "sub-two"
	update(t, s, func(tx store.Tx) error {
		for _, it := range []store.Item{a, b, c} {
			if err := tx.InsertItem(it); err != nil {
				return err
			}
		}
		return nil
	})
	view(t, s, func(tx store.Tx) error {
		got, err := tx.ItemsBySubmission("sub-one")
		if err != nil {
			return err
		}
		if len(got) != 2 || got[0].Label != a.Label || got[1].Label != b.Label {
			t.Errorf("ItemsBySubmission(sub-one) = %d items, want a then b", len(got))
		}
		none, err := tx.ItemsBySubmission("sub-none")
		if err != nil || len(none) != 0 {
			t.Errorf("ItemsBySubmission of an unknown submission: %d, %v", len(none), err)
		}
		return nil
	})
}
