package smtpd_test

import (
	"context"
	"database/sql"
	"fmt"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"certmail/store/sqlite"
)

// acked is a message the agent acknowledged: what to find in the store for it.
type acked struct {
	reply, message string
}

// checkAll checks that every acknowledged message is stored, with its COP over it.
func (w *world) checkAll(t *testing.T, all []acked) {
	t.Helper()
	for _, a := range all {
		w.checkCertified(t, a.reply, []byte(a.message), bob)
	}
	if n := len(w.items(t)); n != len(all) {
		t.Fatalf("%d items stored for %d acknowledged messages", n, len(all))
	}
}

// TestFaultDiskFullForMessages: while a message body cannot be written (ENOSPC), a submission gets
// 451 4.3.0 with no cause shown, and leaves no item, COP, timer or queued mail (no notification,
// no posting receipt, no NAC: the sender's retry is the remedy). On the same connection, once
// space is back, the next submission is certified, and every message acknowledged before is
// still there with its COP.
func TestFaultDiskFullForMessages(t *testing.T) {
	t.Parallel()
	w := newWorld(t, options{})
	c := w.login(t)
	var all []acked
	send := func(i int) (int, string, string) {
		m := message(alice, fmt.Sprintf("X-Attempt: %d", i))
		code, reply := c.send(m, bob)
		return code, reply, m
	}
	code, reply, m := send(1)
	if code != 250 {
		t.Fatalf("before the fault: %d %s", code, reply)
	}
	all = append(all, acked{reply, m})

	w.st.full.Store(true)
	before := w.state(t)
	for i := 2; i <= 3; i++ {
		code, reply, _ := send(i)
		if code != 451 || !strings.HasPrefix(reply, "4.3.0 ") || !strings.Contains(reply, "try again later") {
			t.Fatalf("with the disk full: %d %s, want 451 4.3.0", code, reply)
		}
		if strings.Contains(reply, "no space") {
			t.Errorf("the reply %q shows the internal cause", reply)
		}
	}
	if after := w.state(t); after != before {
		t.Fatalf("refused submissions changed the store: %+v, then %+v", before, after)
	}
	if !strings.Contains(w.logs.String(), "no space left on device") {
		t.Error("the log lacks the cause of the refusal")
	}

	w.st.full.Store(false)
	code, reply, m = send(4)
	if code != 250 {
		t.Fatalf("after the fault: %d %s", code, reply)
	}
	all = append(all, acked{reply, m})
	w.checkAll(t, all)
}

// TestFaultWriteLockHeldByAnotherProcess: another connection to the database (as `certmail user
// add` makes while the server runs) holds the write lock while submissions arrive. Released
// within the busy timeout, the submission waits and is then certified: its 250 comes only after
// the release. Held past the busy timeout (10 s), the submission gets 451 4.3.0 and leaves
// nothing behind. Released, the next submission is certified and every acknowledged message is
// there with its COP.
func TestFaultWriteLockHeldByAnotherProcess(t *testing.T) {
	t.Parallel()
	w := newWorld(t, options{})
	db := w.st.Store.(*sqlite.Store)
	other, err := sql.Open("sqlite", db.Path())
	if err != nil {
		t.Fatal(err)
	}
	defer other.Close()
	conn, err := other.Conn(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	lock := func() {
		t.Helper()
		if _, err := conn.ExecContext(t.Context(), "BEGIN IMMEDIATE"); err != nil {
			t.Fatal(err)
		}
	}
	var released atomic.Bool
	unlock := func() {
		released.Store(true)
		if _, err := conn.ExecContext(context.Background(), "ROLLBACK"); err != nil {
			t.Error(err)
		}
	}

	c := w.login(t)
	c.nc.SetDeadline(time.Now().Add(2 * time.Minute)) // the busy timeout is waited for below
	var all []acked
	send := func(i int) (int, string, string) {
		m := message(alice, fmt.Sprintf("X-Attempt: %d", i))
		code, reply := c.send(m, bob)
		return code, reply, m
	}

	lock()
	time.AfterFunc(500*time.Millisecond, unlock)
	code, reply, m := send(1)
	if code != 250 || !released.Load() {
		t.Fatalf("with the lock held for half a second: %d %s (lock released: %v)", code, reply, released.Load())
	}
	all = append(all, acked{reply, m})

	lock()
	before := w.state(t)
	code, reply, _ = send(2)
	if code != 451 || !strings.HasPrefix(reply, "4.3.0 ") {
		t.Fatalf("with the lock held past the busy timeout: %d %s, want 451 4.3.0", code, reply)
	}
	if after := w.state(t); after != before {
		t.Fatalf("the refused submission changed the store: %+v, then %+v", before, after)
	}
	unlock()

	code, reply, m = send(3)
	if code != 250 {
		t.Fatalf("after the lock was released: %d %s", code, reply)
	}
	all = append(all, acked{reply, m})
	w.checkAll(t, all)
}
