package agent_test

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"os"
	"path/filepath"
	"sync/atomic"
	"testing"
	"time"

	"golang.org/x/mod/sumdb/tlog"
	"k8s.io/klog/v2"

	"certmail/agent"
	"certmail/evidence"
	"certmail/evlog"
	"certmail/protocol"
	"certmail/store"
)

func TestMain(m *testing.M) {
	klog.LogToStderr(false) // tessera's own log, under the evidence log
	klog.SetOutput(io.Discard)
	os.Exit(m.Run())
}

// openLog opens (or reopens) the world's evidence log and gives the agent to it.
func (w *world) openLog(t *testing.T) *evlog.Log {
	t.Helper()
	l, err := evlog.Open(evlog.Config{Dir: filepath.Join(w.dir, "log"), Signer: w.id.Signer, Verifier: w.id.Verifier})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { l.Close(context.Background()) })
	s := settings()
	s.Log = l
	w.a = agent.New(w.id, w.st, w.blobs, w.mails, s, w.clock.now, nil)
	return l
}

// notes lists every note in the store with where the store says it is in the log.
func (w *world) notes(t *testing.T, labels ...evidence.Label) []store.Evidence {
	t.Helper()
	if err := w.a.Flush(t.Context()); err != nil {
		t.Fatal(err)
	}
	var all []store.Evidence
	err := w.st.View(t.Context(), func(tx store.Tx) error {
		ev, err := tx.UnloggedEvidence(0)
		all = append(all, ev...)
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	for _, l := range labels {
		err := w.st.View(t.Context(), func(tx store.Tx) error {
			ev, err := tx.Evidence(l)
			for _, e := range ev {
				if e.Logged {
					all = append(all, e)
				}
			}
			return err
		})
		if err != nil {
			t.Fatal(err)
		}
	}
	return all
}

// sameAsLog checks that the store and the log agree: every note is logged exactly once, at the
// index the store records, and the log holds nothing else.
func sameAsLog(t *testing.T, l *evlog.Log, notes []store.Evidence) {
	t.Helper()
	size, err := l.Size(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	leaves, err := l.Leaves(t.Context(), 0, size)
	if err != nil {
		t.Fatal(err)
	}
	if len(leaves) != len(notes) {
		t.Errorf("the log holds %d entries for %d notes", len(leaves), len(notes))
	}
	for _, e := range notes {
		if !e.Logged || e.LogIndex >= size || leaves[e.LogIndex] != e.Leaf {
			t.Errorf("%s note %d: logged %v at %d, but the log holds it elsewhere or not at all", e.Type, e.Seq, e.Logged, e.LogIndex)
		}
	}
}

// TestStepsAreLogged: each step's notes reach the log once the step has returned, the store
// knows where, and the bundle proves every note against the log's checkpoint once it is published.
func TestStepsAreLogged(t *testing.T) {
	w := newWorld(t)
	l := w.openLog(t)
	ctx := t.Context()
	bobID, err := protocol.NewIdentity(bob, rand.NewChaCha8([32]byte{2}))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := w.a.RegisterKey(ctx, bob, bobID.Verifier); err != nil { // a KEY record, of no label
		t.Fatal(err)
	}
	ps, err := w.a.Submit(ctx, agent.Submission{Sender: alice, Recipients: []string{bob, "carol@c.example"}, Message: msg})
	if err != nil {
		t.Fatal(err)
	}
	p := ps[0]
	if err := w.a.Flush(ctx); err != nil {
		t.Fatal(err)
	}
	if size, err := l.Size(ctx); err != nil || size != 3 {
		t.Fatalf("log size once the notes are published: %d, %v; want 3 (KEY and two COPs)", size, err)
	}
	w.deliverQueue(t)
	if _, err := w.a.Accept(ctx, w.mails.token(t, bob), agent.Acceptance{Client: "192.0.2.1"}); err != nil {
		t.Fatal(err)
	}
	notes := w.notes(t, ps[0].Label, ps[1].Label, evidence.Label{})
	sameAsLog(t, l, notes)

	// Once a checkpoint covers the notes, the bundle carries it and a proof for each note, and
	// x/mod's tlog accepts every proof.
	size, _ := l.Size(ctx)
	deadline := time.Now().Add(10 * time.Second)
	for {
		cp, err := l.Checkpoint(ctx)
		if err != nil {
			t.Fatal(err)
		}
		if cp.Size >= size {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("no checkpoint of %d entries within 10 s", size)
		}
		time.Sleep(20 * time.Millisecond)
	}
	b, err := w.a.Bundle(ctx, p.Label, false)
	if err != nil {
		t.Fatal(err)
	}
	if len(b.Proofs) != len(b.Notes) || b.Checkpoint == nil {
		t.Fatalf("bundle of %d notes with %d proofs", len(b.Notes), len(b.Proofs))
	}
	cp, err := l.Checkpoint(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if string(b.Checkpoint) != string(cp.Raw) {
		t.Fatalf("the bundle's checkpoint is not the log's:\n%s", b.Checkpoint)
	}
	for _, pr := range b.Proofs {
		leaf := b.Notes[pr.Note].Leaf()
		proof := make(tlog.RecordProof, len(pr.Hashes))
		for i, h := range pr.Hashes {
			proof[i] = tlog.Hash(h)
		}
		if err := tlog.CheckRecord(proof, int64(cp.Size), cp.Hash, int64(pr.Index), tlog.RecordHash(leaf[:])); err != nil {
			t.Errorf("proof of the %s note: %v", b.Notes[pr.Note].Record.Type, err)
		}
	}
	enc, err := b.Encode()
	if err != nil {
		t.Fatal(err)
	}
	if _, err := evidence.ParseBundle(enc); err != nil {
		t.Fatalf("the bundle with proofs does not parse: %v", err)
	}
}

// TestRecoverLog: the two crashes between a step's commit and the store's record of its log
// index. A note committed but never appended is appended at the next start, in storage order; a
// note appended whose index was never recorded is found in the log and not appended again.
func TestRecoverLog(t *testing.T) {
	w := newWorld(t)
	l := w.openLog(t)
	ctx := t.Context()
	p := w.submit(t, agent.Submission{})

	// Two steps' notes committed behind the agent's back, as if it died after each commit; the
	// first of them was appended too before the process died, the second was not.
	signer := func(typ evidence.Type, at time.Duration) *evidence.Note {
		n, err := evidence.Sign(&evidence.Record{Type: typ, Label: p.Label, Agent: w.a.Name(),
			Recipient: bob, Content: evidence.Sum(msg), Client: "192.0.2.9", Time: t0.Add(at)}, w.id.Signer)
		if err != nil {
			t.Fatal(err)
		}
		return n
	}
	appended, lost := signer(evidence.RET, time.Minute), signer(evidence.RET, 2*time.Minute)
	for _, n := range []*evidence.Note{appended, lost} {
		if err := w.st.Update(ctx, func(tx store.Tx) error { _, err := tx.AddEvidence(p.Label, n); return err }); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := l.Append(ctx, appended.Leaf()); err != nil {
		t.Fatal(err)
	}
	for i := range 40 { // and later steps, logged and recorded: the gap is not at the end of the log
		w.clock.add(time.Second)
		w.submit(t, agent.Submission{Recipients: []string{fmt.Sprintf("r%d@x.example", i)}})
	}

	// The restart: a new log and agent on the same directories.
	if err := w.a.Flush(ctx); err != nil {
		t.Fatal(err)
	}
	if err := l.Close(ctx); err != nil {
		t.Fatal(err)
	}
	l = w.openLog(t)
	recorded, backfilled, err := w.a.RecoverLog(ctx)
	if err != nil || recorded != 1 || backfilled != 1 {
		t.Fatalf("RecoverLog: %d recorded, %d appended, %v; want 1 and 1", recorded, backfilled, err)
	}
	var all []store.Evidence
	err = w.st.View(ctx, func(tx store.Tx) error {
		un, err := tx.UnloggedEvidence(0)
		if len(un) != 0 {
			t.Errorf("%d notes unlogged after recovery", len(un))
		}
		n, err2 := tx.CountLogged(0)
		if n != 43 {
			t.Errorf("%d notes logged after recovery, want 43", n)
		}
		for _, leaf := range []evidence.Hash{appended.Leaf(), lost.Leaf()} {
			e, err := tx.EvidenceByLeaf(p.Label, leaf)
			if err != nil {
				return err
			}
			all = append(all, e)
		}
		return errors.Join(err, err2)
	})
	if err != nil {
		t.Fatal(err)
	}
	size, _ := l.Size(ctx)
	// The COP is entry 0, the note appended before the crash 1, the later steps' COPs 2 to 41.
	if size != 43 || all[0].LogIndex != 1 || all[1].LogIndex != 42 {
		t.Fatalf("log of %d entries, the appended note at %d, the lost one at %d; want 43, 1, 42", size, all[0].LogIndex, all[1].LogIndex)
	}
	leaves, err := l.Leaves(ctx, 0, size)
	if err != nil {
		t.Fatal(err)
	}
	seen := map[evidence.Hash]bool{}
	for _, h := range leaves {
		if seen[h] {
			t.Fatalf("the log holds %x twice", h)
		}
		seen[h] = true
	}

	// Nothing to do the next time.
	if recorded, backfilled, err := w.a.RecoverLog(ctx); recorded != 0 || backfilled != 0 || err != nil {
		t.Fatalf("RecoverLog again: %d, %d, %v", recorded, backfilled, err)
	}
}

// TestRecoverLogRefusesShrunkLog: a store that records more than the log holds means the log
// lost entries (its directory restored from an old backup); the agent must not start on it.
func TestRecoverLogRefusesShrunkLog(t *testing.T) {
	w := newWorld(t)
	l := w.openLog(t)
	w.submit(t, agent.Submission{})
	w.submit(t, agent.Submission{Recipients: []string{"carol@c.example"}})
	if err := w.a.Flush(t.Context()); err != nil {
		t.Fatal(err)
	}
	l.Close(t.Context())
	os.RemoveAll(filepath.Join(w.dir, "log"))
	w.openLog(t)
	if _, _, err := w.a.RecoverLog(t.Context()); err == nil {
		t.Fatal("RecoverLog on a log that lost its entries: no error")
	}
}

// failingLog is the world's evidence log with a switch that makes it refuse appends, as a full
// disk under the log would.
type failingLog struct {
	*evlog.Log
	fail atomic.Bool
}

func (f *failingLog) Append(ctx context.Context, leaves ...evidence.Hash) ([]uint64, error) {
	if f.fail.Load() {
		return nil, errors.New("no space left on device")
	}
	return f.Log.Append(ctx, leaves...)
}

// openFailingLog opens the world's log behind a failingLog, failing from the start.
func (w *world) openFailingLog(t *testing.T) *failingLog {
	t.Helper()
	l, err := evlog.Open(evlog.Config{Dir: filepath.Join(w.dir, "log"), Signer: w.id.Signer, Verifier: w.id.Verifier})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { l.Close(context.Background()) })
	f := &failingLog{Log: l}
	f.fail.Store(true)
	s := settings()
	s.Log = f
	w.a = agent.New(w.id, w.st, w.blobs, w.mails, s, w.clock.now, nil)
	return f
}

// untilAccepted submits s until the agent takes it: once the log works again, the agent sees it
// at its next try (a second).
func untilAccepted(t *testing.T, a *agent.Agent, s agent.Submission) []agent.Posting {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for {
		ps, err := a.Submit(t.Context(), s)
		if err == nil {
			return ps
		}
		if agent.KindOf(err) != agent.KindUnavailable || time.Now().After(deadline) {
			t.Fatalf("Submit once the log works again: %v", err)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// TestStepsWaitForAFailingLog: a step is acknowledged once it is stored; when the log then
// refuses its notes, they stay queued, new messages are refused (unavailable) before anything
// is stored, while the steps of the items already taken go on (the notification is recorded
// sent, its NTF signed and queued for the log), until the log works again and every note
// reaches it once.
func TestStepsWaitForAFailingLog(t *testing.T) {
	w := newWorld(t)
	l := w.openFailingLog(t)
	first, err := w.a.Submit(t.Context(), agent.Submission{Sender: alice, Recipients: []string{bob}, Message: msg})
	if err != nil {
		t.Fatalf("Submit, stored but not yet logged: %v", err)
	}
	if err := w.a.Flush(t.Context()); err != nil { // the append is tried, and fails
		t.Fatal(err)
	}
	_, err = w.a.Submit(t.Context(), agent.Submission{Sender: alice, Recipients: []string{"carol@c.example"}, Message: msg})
	if agent.KindOf(err) != agent.KindUnavailable {
		t.Fatalf("Submit while the log fails: %v, want an unavailable error", err)
	}
	var items []store.Item
	if err := w.st.View(t.Context(), func(tx store.Tx) (err error) { items, err = tx.ItemsBySender(alice, 10, 0); return err }); err != nil || len(items) != 1 {
		t.Fatalf("items after the refusal: %d, %v; want only the first", len(items), err)
	}
	w.deliverQueue(t) // the first item's notification and receipt go out while the log fails
	var it store.Item
	if err := w.st.View(t.Context(), func(tx store.Tx) (err error) { it, err = tx.Item(first[0].Label); return err }); err != nil || it.State != store.StateNotified {
		t.Fatalf("the first item after its notification went out: %s, %v; want notified", it.State, err)
	}
	l.fail.Store(false)
	second := untilAccepted(t, w.a, agent.Submission{Sender: alice, Recipients: []string{"carol@c.example"}, Message: msg})
	notes := w.notes(t, first[0].Label, second[0].Label)
	if len(notes) != 3 {
		t.Errorf("%d notes, want the two COPs and the NTF", len(notes))
	}
	sameAsLog(t, l.Log, notes)
}

// TestRetryWhileTheLogFailsCertifiesOnce: a client that resends a message whose 250 it never got
// — here while the log is failing — gets the item and COP of the first time, not a second
// certification, and the notes of the first time reach the log once it works again.
func TestRetryWhileTheLogFailsCertifiesOnce(t *testing.T) {
	w := newWorld(t)
	l := w.openFailingLog(t)
	s := agent.Submission{Sender: alice, Recipients: []string{bob}, Message: msg, MessageID: "<lease-1@a.example>"}
	ps, err := w.a.Submit(t.Context(), s)
	if err != nil || len(ps) != 1 {
		t.Fatalf("Submit: %v", err)
	}
	if err := w.a.Flush(t.Context()); err != nil {
		t.Fatal(err)
	}
	again, err := w.a.Submit(t.Context(), s)
	if err != nil || again[0].Label != ps[0].Label || !bytes.Equal(again[0].COP.Bytes(), ps[0].COP.Bytes()) {
		t.Fatalf("the retry: %v, want label %s", err, ps[0].Label)
	}
	l.fail.Store(false)
	deadline := time.Now().Add(10 * time.Second)
	for {
		if err := w.a.Flush(t.Context()); err != nil {
			t.Fatal(err)
		}
		var un []store.Evidence
		if err := w.st.View(t.Context(), func(tx store.Tx) (err error) { un, err = tx.UnloggedEvidence(0); return err }); err != nil {
			t.Fatal(err)
		}
		if len(un) == 0 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("%d notes still unlogged 10 s after the log works again", len(un))
		}
		time.Sleep(50 * time.Millisecond)
	}
	var items []store.Item
	var un []store.Evidence
	var mails []store.Outbound
	err = w.st.View(t.Context(), func(tx store.Tx) (err error) {
		if items, err = tx.ItemsBySender(alice, 10, 0); err != nil {
			return err
		}
		if mails, err = tx.OutboundFor(ps[0].Label); err != nil {
			return err
		}
		un, err = tx.UnloggedEvidence(0)
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	if len(items) != 1 || len(mails) != 2 || len(un) != 0 {
		t.Errorf("%d items, %d mails, %d unlogged notes; want one item, its notification and receipt, all logged", len(items), len(mails), len(un))
	}
	// Another message with the same Message-ID, or the same message without one, is new.
	other := s
	other.Message = append(bytes.Clone(msg), "P.S.\r\n"...)
	if p2, err := w.a.Submit(t.Context(), other); err != nil || p2[0].Label == ps[0].Label {
		t.Errorf("another content under the same Message-ID: %v", err)
	}
	plain := s
	plain.MessageID = ""
	if p3, err := w.a.Submit(t.Context(), plain); err != nil || p3[0].Label == ps[0].Label {
		t.Errorf("the same content without a Message-ID: %v", err)
	}
}
