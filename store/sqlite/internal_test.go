package sqlite

import (
	"bytes"
	"context"
	"database/sql"
	"errors"
	"fmt"
	"math/rand/v2"
	"net/url"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"certmail/evidence"
	"certmail/internal/killtest"
	"certmail/store"
	"certmail/store/storetest"
)

// crashChildEnv names the database a re-executed test binary writes to until it is killed.
const crashChildEnv = "CERTMAIL_SQLITE_CRASH_CHILD"

func TestMain(m *testing.M) { killtest.Main(m, crashChildEnv, crashChild) }

// crashChild commits items one Update at a time, each with its COP and a deadline timer, and
// prints each label on stdout as soon as its Update has returned: a printed label is a promise
// that the item is durable.
func crashChild(path string) error {
	f, err := storetest.NewFixture()
	if err != nil {
		return err
	}
	s, err := Open(path)
	if err != nil {
		return err
	}
	for i := 0; i < 100000; i++ {
		l, err := f.NewLabel()
		if err != nil {
			return err
		}
		it := f.Item(l, f.T0.Add(time.Duration(i)*time.Millisecond))
		n, err := f.Note(l, evidence.COP, it.Submitted)
		if err != nil {
			return err
		}
		err = s.Update(context.Background(), func(tx store.Tx) error {
			if err := tx.InsertItem(it); err != nil {
				return err
			}
			if _, err := tx.AddEvidence(l, n); err != nil {
				return err
			}
			return tx.SetTimer(store.Timer{Label: l, Kind: "deadline", Due: it.Deadline})
		})
		if err != nil {
			return err
		}
		if _, err := os.Stdout.WriteString(l.String() + "\n"); err != nil {
			return err
		}
	}
	return s.Close()
}

// TestDurabilityAfterKill kills a writing child process at random moments (during Open and its
// migration too) and checks, after each kill, that every item the child reported committed is
// there with its evidence and timer, and that the database is intact. A kill is not a power cut
// (the page cache survives it); synchronous=FULL, checked in TestOpen, is what covers that.
func TestDurabilityAfterKill(t *testing.T) {
	const rounds = 20
	seed := uint64(20260302)
	rng := rand.New(rand.NewPCG(seed, seed))
	path := filepath.Join(t.TempDir(), "crash", "certmail.db")
	f, err := storetest.NewFixture()
	if err != nil {
		t.Fatal(err)
	}
	keys, err := f.Keys()
	if err != nil {
		t.Fatal(err)
	}
	var promised []evidence.Label
	for round := range rounds {
		delay := time.Duration(rng.IntN(250)) * time.Millisecond
		labels, stderr := runAndKill(t, path, delay)
		t.Logf("round %d: killed after %v, %d commits reported", round, delay, len(labels))
		promised = append(promised, labels...)

		s, err := Open(path)
		if err != nil {
			t.Fatalf("round %d: reopen after kill: %v\nchild stderr: %s", round, err, stderr)
		}
		var ok string
		if err := s.w.QueryRow("PRAGMA integrity_check").Scan(&ok); err != nil || ok != "ok" {
			t.Errorf("round %d: integrity_check: %q, %v", round, ok, err)
		}
		// Every label ever promised is still there; this round's are checked in full.
		for table, have := range map[string]map[string]bool{"items": rowLabels(t, s, "items"), "evidence": rowLabels(t, s, "evidence"), "timers": rowLabels(t, s, "timers")} {
			for _, l := range promised {
				if !have[l.String()] {
					t.Fatalf("round %d (seed %d): %s reported committed is not in %s", round, seed, l, table)
				}
			}
		}
		err = s.View(t.Context(), func(tx store.Tx) error {
			for _, l := range labels {
				if _, err := tx.Item(l); err != nil {
					return fmt.Errorf("item reported committed: %w", err)
				}
				ev, err := tx.Evidence(l)
				if err != nil {
					return err
				}
				if len(ev) != 1 || ev[0].Type != evidence.COP {
					return fmt.Errorf("evidence of %s: %d notes, want its COP", l, len(ev))
				}
				n, err := evidence.ParseNote(ev[0].Note)
				if err != nil {
					return err
				}
				if err := n.Verify(keys); err != nil || n.Record.Label != l {
					return fmt.Errorf("COP of %s: label %s, %v", l, n.Record.Label, err)
				}
				if tm, err := tx.Timers(l); err != nil || len(tm) != 1 {
					return fmt.Errorf("timers of %s: %v, %v", l, tm, err)
				}
			}
			return nil
		})
		if err != nil {
			t.Fatalf("round %d (seed %d): %v", round, seed, err)
		}
		if err := s.Close(); err != nil {
			t.Fatal(err)
		}
	}
	// A test that never saw a commit would prove nothing.
	if len(promised) < rounds {
		t.Fatalf("only %d commits reported in %d rounds: the child hardly ran", len(promised), rounds)
	}
}

// rowLabels returns the set of labels in a table.
func rowLabels(t *testing.T, s *Store, table string) map[string]bool {
	t.Helper()
	rows, err := s.r.Query("SELECT label FROM " + table)
	if err != nil {
		t.Fatal(err)
	}
	defer rows.Close()
	out := map[string]bool{}
	for rows.Next() {
		var l string
		if err := rows.Scan(&l); err != nil {
			t.Fatal(err)
		}
		out[l] = true
	}
	if err := rows.Err(); err != nil {
		t.Fatal(err)
	}
	return out
}

// runAndKill starts the crash child on path, SIGKILLs it after delay, and returns the labels it
// reported (whole lines only) and what it wrote on stderr.
func runAndKill(t *testing.T, path string, delay time.Duration) ([]evidence.Label, string) {
	t.Helper()
	lines, stderr := killtest.Run(t, crashChildEnv, path, delay)
	labels := make([]evidence.Label, len(lines))
	for i, line := range lines {
		l, err := evidence.ParseLabel(line)
		if err != nil {
			t.Fatalf("the child reported %q: %v", line, err)
		}
		labels[i] = l
	}
	return labels, stderr
}

func TestOpen(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "a", "b c?#%20") // URI-special characters in the path
	path := filepath.Join(dir, "certmail.db")
	s, err := Open(path)
	if err != nil {
		t.Fatal(err)
	}
	f, err := storetest.NewFixture()
	if err != nil {
		t.Fatal(err)
	}
	it := f.Item(evidence.Label{1}, f.T0)
	if err := s.Update(t.Context(), func(tx store.Tx) error { return tx.InsertItem(it) }); err != nil {
		t.Fatal(err)
	}

	// The pragmas durability rests on, on the writer, and its savepoint journals in memory;
	// readers cannot write.
	for pragma, want := range map[string]string{"journal_mode": "wal", "synchronous": "2", "foreign_keys": "1", "busy_timeout": busyTimeout,
		"temp_store": "2"} {
		var got string
		if err := s.w.QueryRow("PRAGMA " + pragma).Scan(&got); err != nil || got != want {
			t.Errorf("writer PRAGMA %s = %q (%v), want %q", pragma, got, err, want)
		}
	}
	if _, err := s.r.Exec("DELETE FROM items"); err == nil {
		t.Error("a read connection could write")
	}
	if got := s.w.Stats().MaxOpenConnections; got != 1 {
		t.Errorf("writer pool allows %d connections, want 1", got)
	}

	for _, c := range []struct {
		path string
		mode os.FileMode
	}{{filepath.Dir(dir), 0o700}, {dir, 0o700}, {path, 0o600}, {path + "-wal", 0o600}, {path + "-shm", 0o600}} {
		fi, err := os.Stat(c.path)
		if err != nil {
			t.Error(err)
			continue
		}
		if fi.Mode().Perm() != c.mode {
			t.Errorf("%s: mode %v, want %v", c.path, fi.Mode().Perm(), c.mode)
		}
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}

	// Reopened: the data is there and the schema is not applied twice.
	s, err = Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	var versions, latest int
	if err := s.w.QueryRow("SELECT COUNT(*), MAX(version) FROM schema_migrations").Scan(&versions, &latest); err != nil {
		t.Fatal(err)
	}
	if versions != SchemaVersion() || latest != SchemaVersion() || latest != 11 {
		t.Errorf("schema_migrations: %d rows, latest %d; want %d", versions, latest, SchemaVersion())
	}
	if err := s.View(t.Context(), func(tx store.Tx) error { _, err := tx.Item(it.Label); return err }); err != nil {
		t.Errorf("item after reopening: %v", err)
	}
}

func TestOpenRefusesNewerSchema(t *testing.T) {
	path := filepath.Join(t.TempDir(), "certmail.db")
	s, err := Open(path)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := s.w.Exec("INSERT INTO schema_migrations (version, applied) VALUES (?, 0)", SchemaVersion()+1); err != nil {
		t.Fatal(err)
	}
	s.Close()
	if s, err := Open(path); err == nil || !strings.Contains(err.Error(), "newer") {
		if s != nil {
			s.Close()
		}
		t.Fatalf("Open of a database of a newer schema: %v, want a refusal", err)
	}
}

func TestOpenRefusesNonDatabase(t *testing.T) {
	path := filepath.Join(t.TempDir(), "certmail.db")
	if err := os.WriteFile(path, []byte("this is not an SQLite database, and it is long enough to tell\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	if s, err := Open(path); err == nil {
		s.Close()
		t.Fatal("Open of a file that is not a database: no error")
	}
}

// Two stores on one file are what two processes are (the CLI beside the server): each has its
// own writer, and BEGIN IMMEDIATE with the busy timeout must serialise them without a
// "database is locked" reaching either caller.
func TestTwoWritersOnOneFile(t *testing.T) {
	path := filepath.Join(t.TempDir(), "certmail.db")
	f, err := storetest.NewFixture()
	if err != nil {
		t.Fatal(err)
	}
	var stores [2]*Store
	for i := range stores {
		if stores[i], err = Open(path); err != nil {
			t.Fatal(err)
		}
		defer stores[i].Close()
	}
	const per = 20
	var wg sync.WaitGroup
	errs := make(chan error, 2*per)
	for i, s := range stores {
		wg.Go(func() {
			for j := range per {
				l := evidence.Label{byte(i + 1), byte(j + 1)}
				err := s.Update(t.Context(), func(tx store.Tx) error {
					// Read first, then write: a deferred BEGIN would fail here with SQLITE_BUSY
					// instead of waiting.
					if _, err := tx.Item(l); !errors.Is(err, store.ErrNotFound) {
						return err
					}
					return tx.InsertItem(f.Item(l, f.T0))
				})
				if err != nil {
					errs <- err
				}
			}
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Errorf("Update beside another process's writer: %v", err)
	}
	err = stores[0].View(t.Context(), func(tx store.Tx) error {
		items, err := tx.ItemsBySender(storetest.Sender, 0, 0)
		if err == nil && len(items) != 2*per {
			err = fmt.Errorf("%d items, want %d", len(items), 2*per)
		}
		return err
	})
	if err != nil {
		t.Error(err)
	}
}

// A stored note that no longer hashes to its leaf is reported, never returned as evidence.
func TestCorruptEvidenceIsAnError(t *testing.T) {
	s, err := Open(filepath.Join(t.TempDir(), "certmail.db"))
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	f, err := storetest.NewFixture()
	if err != nil {
		t.Fatal(err)
	}
	l := evidence.Label{7}
	n, err := f.Note(l, evidence.COP, f.T0)
	if err != nil {
		t.Fatal(err)
	}
	if err := s.Update(t.Context(), func(tx store.Tx) error { _, err := tx.AddEvidence(l, n); return err }); err != nil {
		t.Fatal(err)
	}
	forged := []byte(strings.Replace(string(n.Bytes()), "bob@b.example", "bob@c.example", 1))
	if _, err := s.w.Exec("UPDATE evidence SET note = ?", forged); err != nil {
		t.Fatal(err)
	}
	err = s.View(t.Context(), func(tx store.Tx) error {
		if ev, err := tx.Evidence(l); err == nil {
			t.Errorf("Evidence of a damaged note: %d notes, no error", len(ev))
		}
		if _, err := tx.EvidenceByLeaf(n.Record.Label, n.Leaf()); err == nil || errors.Is(err, store.ErrNotFound) {
			t.Errorf("EvidenceByLeaf of a damaged note: %v, want a corruption error", err)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
}

// TestMigrateToLogIndex opens a database of schema version 1, from before the evidence log: its
// notes come back unlogged, so the agent backfills them into the log at its next start.
func TestMigrateToLogIndex(t *testing.T) {
	f, err := storetest.NewFixture()
	if err != nil {
		t.Fatal(err)
	}
	l := evidence.Label{9}
	n, err := f.Note(l, evidence.COP, f.T0)
	if err != nil {
		t.Fatal(err)
	}
	path := databaseOfVersion(t, 1, func(db *sql.DB) error {
		_, err := db.Exec(`INSERT INTO evidence (label, type, leaf, note, stored) VALUES (?, ?, ?, ?, ?)`,
			l.String(), "COP", n.Leaf().String(), n.Bytes(), f.T0.UnixMilli())
		return err
	})

	s, err := Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	err = s.Update(t.Context(), func(tx store.Tx) error {
		ev, err := tx.UnloggedEvidence(0)
		if err != nil {
			return err
		}
		if len(ev) != 1 || ev[0].Leaf != n.Leaf() || ev[0].Logged {
			t.Fatalf("unlogged notes after migrating: %+v, want the one stored note", ev)
		}
		return tx.SetLogIndex(ev[0].Seq, 0)
	})
	if err != nil {
		t.Fatal(err)
	}
	err = s.View(t.Context(), func(tx store.Tx) error {
		e, err := tx.EvidenceByLeaf(n.Record.Label, n.Leaf())
		if err == nil && (!e.Logged || e.LogIndex != 0) {
			t.Errorf("after SetLogIndex: %+v", e)
		}
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
}

// Schema v9 copies the evidence table to drop its index by leaf alone: every note keeps its
// sequence number, label and log index, and a note stored again is still a duplicate — a
// labelled one under its label, a KEY record under any.
func TestMigrateEvidenceToLabelAndLeaf(t *testing.T) {
	f, err := storetest.NewFixture()
	if err != nil {
		t.Fatal(err)
	}
	l, other := evidence.Label{9}, evidence.Label{10}
	var notes []*evidence.Note
	for _, typ := range []evidence.Type{evidence.COP, evidence.NTF, evidence.KEY} {
		n, err := f.Note(l, typ, f.T0)
		if err != nil {
			t.Fatal(err)
		}
		notes = append(notes, n)
	}
	path := databaseOfVersion(t, 8, func(db *sql.DB) error {
		for i, n := range notes {
			label, index := any(l.String()), any(int64(i))
			if n.Record.Type == evidence.KEY {
				label = nil
			}
			if n.Record.Type == evidence.NTF {
				index = nil // not logged yet
			}
			if _, err := db.Exec(`INSERT INTO evidence (seq, label, type, leaf, note, stored, log_index) VALUES (?, ?, ?, ?, ?, ?, ?)`,
				10*(i+1), label, string(n.Record.Type), n.Leaf().String(), n.Bytes(), f.T0.UnixMilli(), index); err != nil {
				return err
			}
		}
		return nil
	})

	s, err := Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	err = s.Update(t.Context(), func(tx store.Tx) error {
		ev, err := tx.Evidence(l)
		if err != nil {
			return err
		}
		if len(ev) != 2 || ev[0].Seq != 10 || ev[0].Leaf != notes[0].Leaf() || !ev[0].Logged || ev[0].LogIndex != 0 ||
			ev[1].Seq != 20 || ev[1].Leaf != notes[1].Leaf() || ev[1].Logged {
			t.Errorf("the label's notes after migrating: %+v", ev)
		}
		key, err := tx.EvidenceByLeaf(evidence.Label{}, notes[2].Leaf())
		if err != nil || key.Seq != 30 || !key.Logged || key.LogIndex != 2 {
			t.Errorf("the KEY record after migrating: %+v, %v", key, err)
		}
		if _, err := tx.AddEvidence(l, notes[0]); !errors.Is(err, store.ErrDuplicate) {
			t.Errorf("the COP again: %v, want ErrDuplicate", err)
		}
		if _, err := tx.AddEvidence(other, notes[2]); !errors.Is(err, store.ErrDuplicate) {
			t.Errorf("the KEY record again, under a label: %v, want ErrDuplicate", err)
		}
		e, err := tx.AddEvidence(other, mustNote(t, f, other))
		if err == nil && e.Seq <= 30 {
			t.Errorf("a new note after migrating is stored as %d", e.Seq)
		}
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	var leafAlone int
	if err := s.w.QueryRow(`SELECT COUNT(*) FROM pragma_index_list('evidence') AS il
		WHERE (SELECT group_concat(name) FROM pragma_index_info(il.name)) = 'leaf' AND il.partial = 0`).Scan(&leafAlone); err != nil {
		t.Fatal(err)
	}
	if leafAlone != 0 {
		t.Errorf("%d indexes of evidence by leaf alone after migrating", leafAlone)
	}
}

func mustNote(t *testing.T, f *storetest.Fixture, l evidence.Label) *evidence.Note {
	t.Helper()
	n, err := f.Note(l, evidence.COP, f.T0)
	if err != nil {
		t.Fatal(err)
	}
	return n
}

// Bodies stored before schema v10 are keyed by their hash alone: Message finds one whatever the
// time it is asked for, and a mail enqueued to carry it is stored without it and read back whole.
func TestMessagesOfAnEarlierSchema(t *testing.T) {
	s, err := Open(filepath.Join(t.TempDir(), "certmail.db"))
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	body := []byte("From: a@a.example\r\n\r\nstored by an earlier version\r\n")
	h, at := evidence.Sum(body), time.Date(2026, 3, 2, 9, 0, 0, 0, time.UTC)
	if _, err := s.w.Exec(`INSERT INTO messages (key, data) VALUES (?, ?)`, h.String(), body); err != nil {
		t.Fatal(err)
	}
	mail := append([]byte("Subject: your receipt\r\n\r\n"), body...)
	err = s.Update(t.Context(), func(tx store.Tx) error {
		got, err := tx.Message(h, at)
		if err != nil || !bytes.Equal(got, body) {
			t.Errorf("Message of an earlier version's body: %q, %v", got, err)
		}
		_, err = tx.Enqueue(store.Outbound{Kind: "delivery-receipt", To: "a@a.example", Data: mail, Message: h, MessageTime: at,
			MessageAt: len(mail) - len(body), NextAttempt: at, Created: at, Updated: at})
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	var kept []byte
	var key string
	if err := s.w.QueryRow(`SELECT data, message FROM outbound_data`).Scan(&kept, &key); err != nil {
		t.Fatal(err)
	}
	if bytes.Contains(kept, body) || key != h.String() {
		t.Errorf("the stored mail: %q, carrying %q", kept, key)
	}
	err = s.View(t.Context(), func(tx store.Tx) error {
		due, err := tx.DueOutbound(at, 0)
		if err == nil && (len(due) != 1 || !bytes.Equal(due[0].Data, mail)) {
			t.Errorf("the mail read back: %+v", due)
		}
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
}

// databaseOfVersion makes a database of schema version v, as certmail of that version left it,
// has fill write into it, and returns its path, for Open to migrate.
func databaseOfVersion(t *testing.T, v int, fill func(db *sql.DB) error) string {
	t.Helper()
	path := filepath.Join(t.TempDir(), "certmail.db")
	if err := createFile(path); err != nil {
		t.Fatal(err)
	}
	db, err := sql.Open("sqlite", dsn(path, url.Values{"_journal_mode": {"WAL"}}))
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	stmts := []string{`CREATE TABLE schema_migrations (version INTEGER NOT NULL, applied BIGINT NOT NULL,
		CONSTRAINT schema_migrations_pkey PRIMARY KEY (version))`}
	for i, m := range migrations[:v] {
		stmts = append(append(stmts, m...), fmt.Sprintf(`INSERT INTO schema_migrations (version, applied) VALUES (%d, 0)`, i+1))
	}
	for _, q := range stmts {
		if _, err := db.Exec(q); err != nil {
			t.Fatal(err)
		}
	}
	if err := fill(db); err != nil {
		t.Fatal(err)
	}
	return path
}

// A label's notes are found through the index by (label, leaf), not by a scan of every note,
// and come back in the order they were stored whatever their leaves (schema v11).
func TestEvidenceOfALabelByIndex(t *testing.T) {
	s, err := Open(filepath.Join(t.TempDir(), "certmail.db"))
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	for _, l := range []evidence.Label{{7}, {}} {
		q, args := evidenceOf(l)
		rows, err := s.w.Query(`EXPLAIN QUERY PLAN `+q, args...)
		if err != nil {
			t.Fatal(err)
		}
		var plan []string
		for rows.Next() {
			var id, parent, notused int
			var detail string
			if err := rows.Scan(&id, &parent, &notused, &detail); err != nil {
				t.Fatal(err)
			}
			plan = append(plan, detail)
		}
		rows.Close()
		if p := strings.Join(plan, "; "); !strings.Contains(p, "USING INDEX evidence_label_leaf_key") {
			t.Errorf("%s: plan %q, want the index by label and leaf", q, p)
		}
	}

	// Four notes of one label, stored in the reverse order of their leaves.
	f, err := storetest.NewFixture()
	if err != nil {
		t.Fatal(err)
	}
	l := evidence.Label{7}
	var notes []*evidence.Note
	for i, typ := range []evidence.Type{evidence.COP, evidence.NTF, evidence.DLV, evidence.CMPNRO} {
		n, err := f.Note(l, typ, f.T0.Add(time.Duration(i)*time.Second))
		if err != nil {
			t.Fatal(err)
		}
		notes = append(notes, n)
	}
	slices.SortFunc(notes, func(a, b *evidence.Note) int { la, lb := a.Leaf(), b.Leaf(); return bytes.Compare(lb[:], la[:]) })
	var stored []evidence.Hash
	err = s.Update(t.Context(), func(tx store.Tx) error {
		for _, n := range notes {
			if _, err := tx.AddEvidence(l, n); err != nil {
				return err
			}
			stored = append(stored, n.Leaf())
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	err = s.View(t.Context(), func(tx store.Tx) error {
		ev, err := tx.Evidence(l)
		if err != nil {
			return err
		}
		var got []evidence.Hash
		for _, e := range ev {
			got = append(got, e.Leaf)
		}
		if !slices.Equal(got, stored) {
			t.Errorf("the label's notes in the order %v, want %v (as stored)", got, stored)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
}
