package agent_test

import (
	"bytes"
	"context"
	"database/sql"
	"errors"
	"fmt"
	"math/rand/v2"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"certmail/agent"
	"certmail/evidence"
	"certmail/protocol"
	"certmail/store"
	"certmail/store/blobfs"
	"certmail/store/sqlite"
)

// recorder composes mails as plain text and remembers what it was asked, so tests can follow
// the pickup link the way a recipient reading its notification would.
type recorder struct {
	mu       sync.Mutex
	notices  []agent.Notice
	receipts []agent.Receipt
}

func (r *recorder) Notification(n agent.Notice) ([]byte, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.notices = append(r.notices, n)
	return []byte(fmt.Sprintf("To: %s\r\nSubject: certified message\r\n\r\n%s\r\n", n.To, n.PickupURL)), nil
}

func (r *recorder) Receipt(rc agent.Receipt) ([]byte, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.receipts = append(r.receipts, rc)
	return []byte(fmt.Sprintf("To: %s\r\nSubject: %s\r\n\r\n%s\r\n", rc.To, rc.Kind, rc.Label)), nil
}

func (r *recorder) token(t *testing.T, to string) string {
	t.Helper()
	r.mu.Lock()
	defer r.mu.Unlock()
	for i := len(r.notices) - 1; i >= 0; i-- {
		if r.notices[i].To == to {
			u := r.notices[i].PickupURL
			return u[strings.LastIndex(u, "/")+1:]
		}
	}
	t.Fatalf("no notification to %s", to)
	return ""
}

func (r *recorder) kinds(to string) []agent.ReceiptKind {
	r.mu.Lock()
	defer r.mu.Unlock()
	var out []agent.ReceiptKind
	for _, rc := range r.receipts {
		if rc.To == to {
			out = append(out, rc.Kind)
		}
	}
	return out
}

// clock is a settable time source.
type clock struct {
	mu sync.Mutex
	t  time.Time
}

func (c *clock) now() time.Time { c.mu.Lock(); defer c.mu.Unlock(); return c.t }
func (c *clock) add(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.t = c.t.Add(d)
}

type world struct {
	a     *agent.Agent
	st    store.Store
	blobs store.Blobs
	mails *recorder
	clock *clock
	id    *protocol.Identity
	dir   string
}

const (
	alice = "alice@a.example"
	bob   = "bob@b.example"
)

var t0 = time.Date(2026, 3, 2, 9, 0, 0, 0, time.UTC)

func settings() agent.Settings {
	return agent.Settings{PublicURL: "https://certmail.test", DefaultDeadline: 48 * time.Hour,
		MinDeadline: time.Hour, MaxDeadline: 30 * 24 * time.Hour, WarnAt: 0.5, Bounce: "certmail@certmail.test"}
}

func newWorld(t *testing.T) *world {
	t.Helper()
	dir := t.TempDir()
	w := &world{mails: &recorder{}, clock: &clock{t: t0}, dir: dir}
	var err error
	if w.id, err = protocol.NewIdentity("certmail.test", rand.NewChaCha8([32]byte{1})); err != nil {
		t.Fatal(err)
	}
	w.open(t)
	if err := w.st.Update(context.Background(), func(tx store.Tx) error {
		return tx.PutUser(store.User{Address: alice, PasswordHash: "$argon2id$unused", Created: t0})
	}); err != nil {
		t.Fatal(err)
	}
	return w
}

func (w *world) open(t *testing.T) {
	t.Helper()
	st, err := sqlite.Open(filepath.Join(w.dir, "certmail.db"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	blobs, err := blobfs.Open(filepath.Join(w.dir, "blobs"))
	if err != nil {
		t.Fatal(err)
	}
	w.st, w.blobs = st, blobs
	w.a = agent.New(w.id, st, blobs, w.mails, settings(), w.clock.now, nil)
}

var msg = []byte("From: alice@a.example\r\nTo: bob@b.example\r\nSubject: the lease\r\n\r\nSigned copy attached.\r\n")

func (w *world) submit(t *testing.T, s agent.Submission) agent.Posting {
	t.Helper()
	if s.Sender == "" {
		s.Sender = alice
	}
	if s.Recipients == nil {
		s.Recipients = []string{bob}
	}
	if s.Message == nil {
		s.Message = msg
	}
	ps, err := w.a.Submit(context.Background(), s)
	if err != nil {
		t.Fatalf("submit: %v", err)
	}
	return ps[0]
}

// due returns the queued mails due now.
func (w *world) due(t *testing.T) []store.Outbound {
	t.Helper()
	var due []store.Outbound
	if err := w.st.View(context.Background(), func(tx store.Tx) (err error) { due, err = tx.DueOutbound(w.clock.now(), 100); return err }); err != nil {
		t.Fatal(err)
	}
	return due
}

// deliverQueue marks every queued mail sent, as the outbound queue would after a 250.
func (w *world) deliverQueue(t *testing.T) {
	t.Helper()
	for _, m := range w.due(t) {
		if err := w.a.Sent(context.Background(), m); err != nil {
			t.Fatal(err)
		}
	}
}

// verdict judges the sender's bundle, with the message, as an arbiter would.
func (w *world) verdict(t *testing.T, l evidence.Label) *evidence.Verdict {
	t.Helper()
	b, err := w.a.Bundle(context.Background(), l, true)
	if err != nil {
		t.Fatal(err)
	}
	enc, err := b.Encode()
	if err != nil {
		t.Fatal(err)
	}
	parsed, err := evidence.ParseBundle(enc)
	if err != nil {
		t.Fatal(err)
	}
	keys, _ := evidence.NewKeys(w.id.Verifier)
	return protocol.JudgeAt(parsed.Check(keys), w.clock.now())
}

func want(t *testing.T, v *evidence.Verdict, outcome evidence.Outcome, att evidence.Attestation) {
	t.Helper()
	if !v.Valid || v.Outcome != outcome || v.Attestation != att {
		t.Fatalf("want valid %s %s, got:\n%s", outcome, att, v.Text())
	}
}

// A recipient may decide on a message whose notification its server took when the agent
// stopped before recording the delivery: the token it comes with proves the notification
// reached it, so the agent signs the NTF then, once, and the delivery made again after the
// restart adds none.
func TestDecisionBeforeTheDeliveryIsRecorded(t *testing.T) {
	for _, decide := range []string{"accept", "refuse"} {
		w := newWorld(t)
		ctx := context.Background()
		p := w.submit(t, agent.Submission{Subject: "the lease"})
		tok := w.mails.token(t, bob) // delivered, but not recorded as sent
		w.clock.add(time.Minute)
		var err error
		if decide == "accept" {
			_, err = w.a.Accept(ctx, tok, agent.Acceptance{Client: "198.51.100.7"})
		} else {
			err = w.a.Refuse(ctx, tok, "")
		}
		if err != nil {
			t.Fatalf("%s: %v", decide, err)
		}
		w.deliverQueue(t) // the delivery made again after the restart
		v := w.verdict(t, p.Label)
		var types []string
		for _, f := range v.Facts {
			types = append(types, string(f.Type))
		}
		want := map[string]string{"accept": "COP NTF DLV ROD", "refuse": "COP NTF REJ"}[decide]
		if got := strings.Join(types, " "); got != want || !v.Valid {
			t.Errorf("%s before the delivery was recorded: evidence %s (valid %v), want %s\n%s", decide, got, v.Valid, want, v.Text())
		}
	}
}

// TestNTFNeverBeforeTheCOP: a note is never dated before the latest note of its item; with the
// clock set back between posting and delivery, the NTF is dated with the COP.
func TestNTFNeverBeforeTheCOP(t *testing.T) {
	w := newWorld(t)
	ctx := context.Background()
	p := w.submit(t, agent.Submission{})
	due := w.due(t)
	w.clock.add(-time.Hour)
	for _, m := range due {
		if err := w.a.Sent(ctx, m); err != nil {
			t.Fatal(err)
		}
	}
	b, err := w.a.Bundle(ctx, p.Label, false)
	if err != nil {
		t.Fatal(err)
	}
	var types []string
	for _, n := range b.Notes {
		types = append(types, string(n.Record.Type))
		if n.Record.Time.Before(p.COP.Record.Time) {
			t.Errorf("%s dated %s, before the COP's %s", n.Record.Type, n.Record.Time, p.COP.Record.Time)
		}
	}
	if got := strings.Join(types, " "); got != "COP NTF" {
		t.Fatalf("evidence %s, want COP NTF", got)
	}
	want(t, w.verdict(t, p.Label), evidence.OutcomePosted, "")
}

func TestPostNotifyAcceptRetrieve(t *testing.T) {
	w := newWorld(t)
	ctx := context.Background()
	p := w.submit(t, agent.Submission{Subject: "the lease"})
	if p.COP.Record.Type != evidence.COP || p.COP.Record.Content != evidence.Sum(msg) {
		t.Fatalf("posting: %+v", p.COP.Record)
	}
	want(t, w.verdict(t, p.Label), evidence.OutcomePosted, "")
	if got := w.mails.kinds(alice); len(got) != 1 || got[0] != agent.ReceiptPosting {
		t.Fatalf("sender's mails: %v", got)
	}
	n := w.mails.notices[0]
	if n.Commitment != evidence.Commitment(p.Label, msg) || n.Message != nil {
		t.Fatalf("notification under cem-ip must carry H(L,M) and never M: %+v", n)
	}
	w.deliverQueue(t)
	tok := w.mails.token(t, bob)

	if _, _, err := w.a.Content(ctx, tok, "198.51.100.7"); agent.KindOf(err) != agent.KindForbidden {
		t.Fatalf("content before acceptance: %v", err)
	}
	w.clock.add(time.Hour)
	if _, err := w.a.Accept(ctx, tok, agent.Acceptance{Client: "198.51.100.7"}); err != nil {
		t.Fatal(err)
	}
	m, view, err := w.a.Content(ctx, tok, "198.51.100.7")
	if err != nil || string(m) != string(msg) || view.State != store.StateDelivered {
		t.Fatalf("content: %q %v %v", m, view.State, err)
	}
	if _, err := w.a.Accept(ctx, tok, agent.Acceptance{}); agent.KindOf(err) != agent.KindGone {
		t.Fatalf("second acceptance: %v", err)
	}
	v := w.verdict(t, p.Label)
	want(t, v, evidence.OutcomeDelivered, evidence.AgentAttested)
	var types []string
	for _, f := range v.Facts {
		types = append(types, string(f.Type))
	}
	if got := strings.Join(types, " "); got != "COP NTF DLV ROD RET" {
		t.Fatalf("evidence %s", got)
	}
	if got := w.mails.kinds(alice); len(got) != 2 || got[1] != agent.ReceiptDelivery {
		t.Fatalf("sender's mails: %v", got)
	}
}

func TestRecipientSignsWithRegisteredKey(t *testing.T) {
	w := newWorld(t)
	ctx := context.Background()
	bobID, err := protocol.NewIdentity(bob, rand.NewChaCha8([32]byte{2}))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := w.a.RegisterKey(ctx, bob, bobID.Verifier); err != nil {
		t.Fatal(err)
	}
	w.clock.add(time.Minute)
	p := w.submit(t, agent.Submission{})
	w.deliverQueue(t)
	tok := w.mails.token(t, bob)
	view, err := w.a.Pickup(ctx, tok)
	if err != nil {
		t.Fatal(err)
	}
	cod := func(c evidence.Hash, typ evidence.Type) []byte {
		n, err := evidence.Sign(&evidence.Record{Type: typ, Label: view.Label, Agent: w.a.Name(), Recipient: bob,
			Commitment: c, Time: w.clock.now()}, bobID.Signer)
		if err != nil {
			t.Fatal(err)
		}
		return n.Bytes()
	}
	if _, err := w.a.Accept(ctx, tok, agent.Acceptance{COD: cod(evidence.Sum([]byte("other")), evidence.CODIP)}); agent.KindOf(err) != agent.KindInvalid {
		t.Fatalf("COD for another content: %v", err)
	}
	if _, err := w.a.Accept(ctx, tok, agent.Acceptance{COD: cod(view.Commitment, evidence.CODIP)}); err != nil {
		t.Fatal(err)
	}
	want(t, w.verdict(t, p.Label), evidence.OutcomeDelivered, evidence.RecipientSigned)
}

func TestDeadlineWarnsThenGivesNotice(t *testing.T) {
	w := newWorld(t)
	ctx := context.Background()
	p := w.submit(t, agent.Submission{Deadline: t0.Add(4 * time.Hour)})
	w.deliverQueue(t)
	tok := w.mails.token(t, bob)

	w.clock.add(2 * time.Hour)
	if n, err := w.a.RunTimers(ctx); err != nil || n != 1 {
		t.Fatalf("warning timer: %d fired, %v", n, err)
	}
	// The store is reopened: timers are rows, and a restart loses none.
	w.open(t)
	w.clock.add(2 * time.Hour)
	if n, err := w.a.RunTimers(ctx); err != nil || n != 1 {
		t.Fatalf("deadline timer after restart: %d fired, %v", n, err)
	}
	if n, _ := w.a.RunTimers(ctx); n != 0 {
		t.Fatalf("a timer fired twice")
	}
	want(t, w.verdict(t, p.Label), evidence.OutcomeNotDelivered, "")
	if got := w.mails.kinds(alice); len(got) != 3 || got[1] != agent.ReceiptWarning || got[2] != agent.ReceiptNonDelivery {
		t.Fatalf("sender's mails: %v", got)
	}
	if _, err := w.a.Accept(ctx, tok, agent.Acceptance{}); agent.KindOf(err) != agent.KindGone {
		t.Fatalf("pickup after the deadline: %v", err)
	}
}

// The agent stops taking acceptances a little before T and fires the deadline timer then, so
// that its NDN is signed by T even when the timer loop runs a tick late.
func TestAcceptanceClosesBeforeTheDeadline(t *testing.T) {
	w := newWorld(t)
	ctx := context.Background()
	T := t0.Add(4 * time.Hour)
	p := w.submit(t, agent.Submission{Deadline: T})
	w.deliverQueue(t)
	tok := w.mails.token(t, bob)
	v, err := w.a.Pickup(ctx, tok)
	if err != nil || v.Deadline != T.Add(-time.Minute) {
		t.Fatalf("pickup view closes at %s (%v), want a minute before %s", v.Deadline, err, T)
	}
	w.clock.add(4*time.Hour - time.Minute + 500*time.Millisecond) // the timer loop is half a second late
	if _, err := w.a.Accept(ctx, tok, agent.Acceptance{}); agent.KindOf(err) != agent.KindGone {
		t.Fatalf("acceptance after closing: %v", err)
	}
	if n, err := w.a.RunTimers(ctx); err != nil || n != 2 {
		t.Fatalf("timers: %d fired, %v", n, err)
	}
	want(t, w.verdict(t, p.Label), evidence.OutcomeNotDelivered, "")
}

func TestRefusal(t *testing.T) {
	w := newWorld(t)
	ctx := context.Background()
	p := w.submit(t, agent.Submission{})
	w.deliverQueue(t)
	tok := w.mails.token(t, bob)
	if err := w.a.Refuse(ctx, tok, ""); err != nil {
		t.Fatal(err)
	}
	if _, err := w.a.Accept(ctx, tok, agent.Acceptance{}); agent.KindOf(err) != agent.KindGone {
		t.Fatalf("acceptance after refusal: %v", err)
	}
	if _, _, err := w.a.Content(ctx, tok, ""); agent.KindOf(err) != agent.KindForbidden {
		t.Fatalf("content after refusal: %v", err)
	}
	want(t, w.verdict(t, p.Label), evidence.OutcomeRefused, "")
}

func TestRetraction(t *testing.T) {
	w := newWorld(t)
	ctx := context.Background()
	p := w.submit(t, agent.Submission{})
	w.deliverQueue(t)
	tok := w.mails.token(t, bob)
	if err := w.a.Retract(ctx, "mallory@m.example", p.Label); agent.KindOf(err) != agent.KindNotFound {
		t.Fatalf("retraction by another user: %v", err)
	}
	if err := w.a.Retract(ctx, alice, p.Label); err != nil {
		t.Fatal(err)
	}
	view, err := w.a.Pickup(ctx, tok)
	if err != nil || !strings.Contains(view.Why, "retracted") {
		t.Fatalf("pickup page after retraction: %+v %v", view, err)
	}
	if _, err := w.a.Accept(ctx, tok, agent.Acceptance{}); agent.KindOf(err) != agent.KindGone {
		t.Fatalf("acceptance after retraction: %v", err)
	}
	want(t, w.verdict(t, p.Label), evidence.OutcomeRetracted, "")
	if err := w.a.Retract(ctx, alice, p.Label); agent.KindOf(err) != agent.KindGone {
		t.Fatalf("second retraction: %v", err)
	}
}

func TestMessagePasswordAndItsRateLimit(t *testing.T) {
	w := newWorld(t)
	ctx := context.Background()
	w.submit(t, agent.Submission{Password: "open sesame 42", Hint: "the usual"})
	w.deliverQueue(t)
	tok := w.mails.token(t, bob)
	view, err := w.a.Pickup(ctx, tok)
	if err != nil || !view.NeedPassword || view.Hint != "the usual" {
		t.Fatalf("view %+v %v", view, err)
	}
	for i := range 5 {
		if _, err := w.a.Accept(ctx, tok, agent.Acceptance{Password: fmt.Sprintf("guess %d", i)}); agent.KindOf(err) != agent.KindForbidden {
			t.Fatalf("wrong password %d: %v", i, err)
		}
	}
	if _, err := w.a.Accept(ctx, tok, agent.Acceptance{Password: "open sesame 42"}); agent.KindOf(err) != agent.KindUnavailable {
		t.Fatalf("right password after five wrong ones: %v", err)
	}
	w.clock.add(16 * time.Minute)
	if _, err := w.a.Accept(ctx, tok, agent.Acceptance{Password: "open sesame 42"}); err != nil {
		t.Fatalf("right password after the window: %v", err)
	}
}

func TestBadSubmissionsChangeNothing(t *testing.T) {
	w := newWorld(t)
	ctx := context.Background()
	if err := w.st.Update(ctx, func(tx store.Tx) error {
		return tx.PutUser(store.User{Address: "carol@a.example", Disabled: true, Created: t0})
	}); err != nil {
		t.Fatal(err)
	}
	cases := map[string]struct {
		s    agent.Submission
		kind agent.ErrorKind
	}{
		"unknown sender":    {agent.Submission{Sender: "mallory@m.example", Recipients: []string{bob}, Message: msg}, agent.KindForbidden},
		"disabled sender":   {agent.Submission{Sender: "carol@a.example", Recipients: []string{bob}, Message: msg}, agent.KindForbidden},
		"unknown, no rcpt":  {agent.Submission{Sender: "mallory@m.example", Recipients: []string{}, Message: msg}, agent.KindForbidden},
		"disabled, no rcpt": {agent.Submission{Sender: "carol@a.example", Recipients: []string{}, Message: msg}, agent.KindForbidden},
		"no recipient":      {agent.Submission{Sender: alice, Recipients: []string{}, Message: msg}, agent.KindInvalid},
		"bad recipient":     {agent.Submission{Sender: alice, Recipients: []string{"bob at b"}, Message: msg}, agent.KindInvalid},
		"twice":             {agent.Submission{Sender: alice, Recipients: []string{bob, bob}, Message: msg}, agent.KindInvalid},
		"unknown mode":      {agent.Submission{Sender: alice, Recipients: []string{bob}, Message: msg, Protocol: "pec"}, agent.KindInvalid},
		"other protocol":    {agent.Submission{Sender: alice, Recipients: []string{bob}, Message: msg, Protocol: evidence.CMP1}, agent.KindInvalid},
		"deadline too soon": {agent.Submission{Sender: alice, Recipients: []string{bob}, Message: msg, Deadline: t0.Add(time.Minute)}, agent.KindInvalid},
		"deadline too far":  {agent.Submission{Sender: alice, Recipients: []string{bob}, Message: msg, Deadline: t0.Add(365 * 24 * time.Hour)}, agent.KindInvalid},
		"short password":    {agent.Submission{Sender: alice, Recipients: []string{bob}, Message: msg, Password: "123"}, agent.KindInvalid},
	}
	nacs := 0
	for name, c := range cases {
		_, err := w.a.Submit(ctx, c.s)
		if agent.KindOf(err) != c.kind {
			t.Errorf("%s: %v (kind %d, want %d)", name, err, agent.KindOf(err), c.kind)
			continue
		}
		// A known, enabled sender's refused submission is recorded by a NAC it can verify.
		var e *agent.Error
		if !errors.As(err, &e) {
			t.Fatalf("%s: %T is not an agent error", name, err)
		}
		if c.kind == agent.KindForbidden {
			if !e.NAC.IsZero() {
				t.Errorf("%s: a NAC (%s) for a sender the agent does not serve", name, e.NAC)
			}
			continue
		}
		if e.NAC.IsZero() {
			t.Errorf("%s: refused without a NAC", name)
			continue
		}
		nacs++
		v := w.verdict(t, e.NAC)
		if !v.Valid || v.Outcome != evidence.OutcomeRefusedAtPosting || !strings.Contains(v.Summary, e.Reason) {
			t.Errorf("%s: NAC bundle judged:\n%s", name, v.Text())
		}
	}
	if got := w.mails.kinds(alice); len(got) != nacs || nacs == 0 || got[0] != agent.ReceiptNonAcceptance {
		t.Errorf("alice got %v, want %d notices of non-acceptance", got, nacs)
	}
	var items []store.Item
	if err := w.st.View(ctx, func(tx store.Tx) (err error) { items, err = tx.ItemsBySender(alice, 10, 0); return err }); err != nil || len(items) != 0 {
		t.Fatalf("bad submissions left %d items (%v)", len(items), err)
	}
	if _, err := w.a.Pickup(ctx, "forged-token"); agent.KindOf(err) != agent.KindNotFound {
		t.Fatalf("forged token: %v", err)
	}
}

func TestBouncedNotificationGivesNotice(t *testing.T) {
	w := newWorld(t)
	ctx := context.Background()
	p := w.submit(t, agent.Submission{})
	due := w.due(t)
	for _, m := range due {
		if m.Kind == "notification" {
			if err := w.a.Bounced(ctx, m, "550 5.1.1 no such user"); err != nil {
				t.Fatal(err)
			}
		}
	}
	v := w.verdict(t, p.Label)
	want(t, v, evidence.OutcomeNotDelivered, "")
	if !strings.Contains(v.Summary, "bounced") {
		t.Fatalf("summary %q", v.Summary)
	}
}

// TestTheSameMessageHandedInAgain: a message handed in again by its sender — a client that
// never got its 250, or several at once — gets the items of the first time, however many
// submissions race; the same message to other recipients makes items of its own.
func TestTheSameMessageHandedInAgain(t *testing.T) {
	w := newWorld(t)
	ctx := context.Background()
	s := agent.Submission{Sender: alice, Recipients: []string{bob}, Message: msg, MessageID: "<lease-2@a.example>"}
	labels := make([]evidence.Label, 8)
	var wg sync.WaitGroup
	for i := range labels {
		wg.Go(func() {
			ps, err := w.a.Submit(ctx, s)
			if err != nil || len(ps) != 1 {
				t.Errorf("submission %d: %v", i, err)
				return
			}
			labels[i] = ps[0].Label
		})
	}
	wg.Wait()
	if again := w.submit(t, s); again.Label != labels[0] {
		t.Fatalf("handed in once more: label %s, want %s", again.Label, labels[0])
	}
	for i, l := range labels {
		if l != labels[0] {
			t.Fatalf("submission %d got label %s, submission 0 %s: one message certified twice", i, l, labels[0])
		}
	}
	other := s
	other.Recipients = []string{"carol@c.example"}
	if p := w.submit(t, other); p.Label == labels[0] {
		t.Fatal("the same message to another recipient was answered with bob's item")
	}
	var items []store.Item
	if err := w.st.View(ctx, func(tx store.Tx) (err error) { items, err = tx.ItemsBySender(alice, 10, 0); return err }); err != nil {
		t.Fatal(err)
	}
	if len(items) != 2 {
		t.Fatalf("%d items, want bob's and carol's", len(items))
	}
}

func TestSeveralRecipientsGetTheirOwnLabels(t *testing.T) {
	w := newWorld(t)
	ps, err := w.a.Submit(context.Background(), agent.Submission{Sender: alice, Recipients: []string{bob, "carol@c.example"}, Message: msg})
	if err != nil || len(ps) != 2 || ps[0].Label == ps[1].Label {
		t.Fatalf("postings %+v %v", ps, err)
	}
	if w.mails.token(t, bob) == w.mails.token(t, "carol@c.example") {
		t.Fatal("two recipients share a pickup token")
	}
}

// The real mails: every path composes with mailfmt, and the notification carries the pickup
// link and the commitment but never the content or the subject.
func TestRealMailsOnEveryPath(t *testing.T) {
	w := newWorld(t)
	ctx := context.Background()
	w.a = agent.New(w.id, w.st, w.blobs, agent.MIMEMails{Domain: "certmail.test", Now: w.clock.now, Rand: rand.NewChaCha8([32]byte{3})}, settings(), w.clock.now, nil)
	accepted, err := w.a.Submit(ctx, agent.Submission{Sender: alice, Recipients: []string{bob, "carol@c.example", "dave@d.example"},
		Message: msg, Subject: "the lease", Password: "open sesame 42", Hint: "the usual", Receipt: "full"})
	if err != nil {
		t.Fatal(err)
	}
	var queued []store.Outbound
	if err := w.st.View(ctx, func(tx store.Tx) (err error) { queued, err = tx.DueOutbound(w.clock.now(), 100); return err }); err != nil {
		t.Fatal(err)
	}
	tokens := map[string]string{}
	for _, m := range queued {
		if m.Kind != "notification" {
			continue
		}
		body := string(m.Data)
		if strings.Contains(body, "the lease") || strings.Contains(body, "Signed copy attached") {
			t.Fatalf("the notification to %s reveals the subject or the content:\n%s", m.To, body)
		}
		i := strings.Index(body, "https://certmail.test/pickup/")
		if i < 0 {
			t.Fatalf("no pickup link in the notification:\n%s", body)
		}
		tok := body[i+len("https://certmail.test/pickup/"):]
		tokens[m.To] = tok[:43] // 32 bytes, unpadded base64url
		if err := w.a.Sent(ctx, m); err != nil {
			t.Fatal(err)
		}
	}
	if len(tokens) != 3 {
		t.Fatalf("notifications to %v", tokens)
	}
	if _, err := w.a.Accept(ctx, tokens[bob], agent.Acceptance{Password: "open sesame 42", Client: "198.51.100.7"}); err != nil {
		t.Fatal(err)
	}
	if err := w.a.Refuse(ctx, tokens["carol@c.example"], "open sesame 42"); err != nil {
		t.Fatal(err)
	}
	if err := w.a.Retract(ctx, alice, accepted[2].Label); err != nil {
		t.Fatal(err)
	}
	w.clock.add(30 * time.Hour)
	if _, err := w.a.RunTimers(ctx); err != nil {
		t.Fatal(err)
	}
	kinds := map[string]int{}
	if err := w.st.View(ctx, func(tx store.Tx) error {
		for _, p := range accepted {
			out, err := tx.OutboundFor(p.Label)
			if err != nil {
				return err
			}
			for _, m := range out {
				kinds[m.Kind]++
			}
		}
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	for k, n := range map[string]int{"notification": 3, "posting-receipt": 3, "delivery-receipt": 1, "refusal": 1, "retraction": 1} {
		if kinds[k] != n {
			t.Errorf("%d %s mails, want %d (all: %v)", kinds[k], k, n, kinds)
		}
	}

	// A refused submission: the notice of non-acceptance says why and carries the NAC.
	_, err = w.a.Submit(ctx, agent.Submission{Sender: alice, Recipients: []string{bob}, Message: msg, Subject: "the lease", Deadline: t0.Add(400 * 24 * time.Hour)})
	var e *agent.Error
	if !errors.As(err, &e) || e.NAC.IsZero() {
		t.Fatalf("refused submission: %v", err)
	}
	var out []store.Outbound
	if err := w.st.View(ctx, func(tx store.Tx) (err error) { out, err = tx.OutboundFor(e.NAC); return err }); err != nil || len(out) != 1 {
		t.Fatalf("NAC mails: %d (%v)", len(out), err)
	}
	body := string(out[0].Data)
	if out[0].Kind != "non-acceptance" || out[0].To != alice || !strings.Contains(body, "NOT accepted") || !strings.Contains(body, "Not accepted: the lease") {
		t.Fatalf("notice of non-acceptance to %s:\n%s", out[0].To, body)
	}
}

// TestMessagesOfAnEarlierDataDirectory: a body that a data directory of an earlier version keeps
// as a file, not in the database, is still given with the item's bundle; a body neither holds is
// an error, not an empty message.
func TestMessagesOfAnEarlierDataDirectory(t *testing.T) {
	w := newWorld(t)
	p := w.submit(t, agent.Submission{Sender: alice, Recipients: []string{bob}, Message: msg})
	if _, err := w.blobs.Put(t.Context(), msg); err != nil {
		t.Fatal(err)
	}
	db, err := sql.Open("sqlite", filepath.Join(w.dir, "certmail.db"))
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	if _, err := db.Exec(`DELETE FROM messages`); err != nil {
		t.Fatal(err)
	}
	b, err := w.a.Bundle(t.Context(), p.Label, true)
	if err != nil {
		t.Fatalf("bundle of an item whose body is a file: %v", err)
	}
	if m, ok := b.Item(evidence.ItemMessage); !ok || !bytes.Equal(m, msg) {
		t.Fatalf("the bundle's message: %q, %v", m, ok)
	}
	if err := os.RemoveAll(filepath.Join(w.dir, "blobs")); err != nil {
		t.Fatal(err)
	}
	if _, err := w.a.Bundle(t.Context(), p.Label, true); err == nil {
		t.Fatal("bundle of an item whose body is nowhere: no error")
	}
}
