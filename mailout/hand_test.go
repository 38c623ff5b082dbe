package mailout_test

import (
	"context"
	"fmt"
	"testing"
	"time"

	"certmail/evidence"
	"certmail/mailout"
	"certmail/store"
)

// A submission's mails, handed to a running queue, go out at once without waiting for a poll
// or a run to claim them, and their outcomes are recorded as any delivery's: sent, and the
// NTF signed. Until then, no run takes them: they are stored claimed.
func TestHandedMailsGoOutAtOnce(t *testing.T) {
	w := newWorld(t, true)
	s := newSink(t, sinkOptions{})
	cfg := smarthost(s)
	cfg.Poll = time.Hour
	q := w.queue(cfg)

	// Before Run: stored claimed, so that a run finds nothing due.
	l := w.submit(t, bob)[bob]
	for _, kind := range []string{"notification", "posting-receipt"} {
		if m := w.outbound(t, l, kind); m.State != store.OutQueued || !m.NextAttempt.After(w.clock.now().Add(10*time.Minute)) {
			t.Fatalf("%s stored %s, due %s: want queued and claimed", kind, m.State, m.NextAttempt)
		}
	}
	runOnce(t, q, 0, 0, 0)

	stop := startRun(t, q)
	waitFor(t, func() bool { return s.count() == 2 }) // handed before Run: taken when it starts
	l2 := w.submit(t, carol)[carol]
	waitFor(t, func() bool { return len(s.to(carol)) == 1 && s.count() == 4 })
	stop()
	for _, l := range []evidence.Label{l, l2} {
		for _, kind := range []string{"notification", "posting-receipt"} {
			if m := w.outbound(t, l, kind); m.State != store.OutSent || m.Attempts != 1 {
				t.Errorf("%s %s: %s after %d attempts, want sent after 1", l, kind, m.State, m.Attempts)
			}
		}
		if n := count(w.evidence(t, l), evidence.NTF); n != 1 {
			t.Errorf("%s: %d NTF, want 1", l, n)
		}
	}
}

// Mails stored claimed whose process stopped before it delivered them (handed to no running
// queue) are due again when the next process recovers its claims, and go out then.
func TestHandedMailsOfAStoppedProcess(t *testing.T) {
	w := newWorld(t, true)
	s := newSink(t, sinkOptions{})
	cfg := smarthost(s)
	w.queue(cfg) // the process that stops before its queue runs
	l := w.submit(t, bob)[bob]

	restarted := w.queue(cfg)
	runOnce(t, restarted, 0, 0, 0) // still claimed
	n, err := restarted.RecoverClaims(context.Background())
	if err != nil || n != 2 {
		t.Fatalf("RecoverClaims = %d, %v; want the two mails", n, err)
	}
	runOnce(t, restarted, 2, 0, 0)
	if len(s.to(bob)) != 1 || count(w.evidence(t, l), evidence.NTF) != 1 {
		t.Errorf("after the restart bob got %d mails, evidence %v", len(s.to(bob)), w.evidence(t, l))
	}
}

// When more mails are handed over than the queue keeps waiting in memory (its deliveries fall
// behind), the rest go back to the store, due at once, and a run claims and delivers them:
// every mail goes out once.
func TestHandedBeyondWhatWaitsInMemory(t *testing.T) {
	w := newWorld(t, true)
	s := newSink(t, sinkOptions{})
	cfg := smarthost(s)
	cfg.Poll = time.Hour
	q := w.queue(cfg)
	const n = 1000 + 25 // maxHanded and some
	now := w.clock.now()
	var ms []store.Outbound
	if err := w.st.Update(context.Background(), func(tx store.Tx) error {
		for i := range n {
			m, err := tx.Enqueue(q.Claim(store.Outbound{Kind: "warning", From: "certmail@certmail.test", To: fmt.Sprintf("r%d@b.example", i),
				Data: []byte(fmt.Sprintf("Subject: %d\r\n\r\nhello\r\n", i)), State: store.OutQueued, Created: now, Updated: now}))
			if err != nil {
				return err
			}
			ms = append(ms, m)
		}
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	q.Hand(ms...) // no Run yet: all of them wait
	var due []store.Outbound
	if err := w.st.View(context.Background(), func(tx store.Tx) (err error) { due, err = tx.DueOutbound(now, 2*n); return err }); err != nil {
		t.Fatal(err)
	}
	if len(due) != 25 {
		t.Fatalf("%d mails due after handing over %d, want the 25 beyond what waits in memory", len(due), n)
	}

	stop := startRun(t, q)
	waitFor(t, func() bool { return s.count() >= n })
	stop()
	seen := map[string]int{}
	for _, m := range ms {
		seen[m.To] += len(s.to(m.To))
	}
	for to, k := range seen {
		if k != 1 {
			t.Errorf("%s got %d mails, want 1", to, k)
		}
	}
}

// A handed mail the next server refuses for now is retried after its backoff, not at the
// queue's next poll.
func TestHandedMailRetriedAfterItsBackoff(t *testing.T) {
	w := newWorld(t, true)
	s := newSink(t, sinkOptions{})
	s.set(bob, "451")
	cfg := smarthost(s)
	cfg.Poll = time.Hour
	cfg.RetryInitial, cfg.RetryMax = 300*time.Millisecond, time.Second
	q := w.queue(cfg)
	defer startRun(t, q)()

	l := w.submit(t, bob)[bob]
	waitFor(t, func() bool { return w.outbound(t, l, "notification").Attempts == 1 })
	s.set(bob, "")
	w.clock.add(time.Second) // past the backoff
	waitFor(t, func() bool { return w.outbound(t, l, "notification").State == store.OutSent })
	if n := w.outbound(t, l, "notification"); n.Attempts != 2 || len(s.to(bob)) != 1 {
		t.Errorf("notification sent after %d attempts, %d at the sink; want 2 attempts and 1 mail", n.Attempts, len(s.to(bob)))
	}
}

// startRun runs q until the returned stop is called, which waits for Run to return.
func startRun(t *testing.T, q *mailout.Queue) (stop func()) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	stopped := make(chan struct{})
	go func() { q.Run(ctx); close(stopped) }()
	return func() {
		t.Helper()
		cancel()
		select {
		case <-stopped:
		case <-time.After(10 * time.Second):
			t.Fatal("Run does not stop")
		}
	}
}
