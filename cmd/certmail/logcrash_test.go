package main

import (
	"context"
	"crypto/sha256"
	"fmt"
	"io"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"golang.org/x/mod/sumdb/tlog"

	"certmail/evidence"
	"certmail/store"
	"certmail/store/sqlite"
)

// TestLogSurvivesKill SIGKILLs the agent while many clients submit messages to several
// recipients each (every acknowledged step appends its notes to the evidence log), while a
// monitor fetches every checkpoint the log publishes. After the last restart an independent
// verifier (x/mod's tlog over HTTP, logverify_test.go) checks that the log's entries hash to its
// checkpoint, that it is consistent with every checkpoint published before any kill, that every
// note the store holds (every acknowledged one among them) is in it, and that none is in it
// twice.
func TestLogSurvivesKill(t *testing.T) {
	kills, _, p, bin, pool, rng := killRig(t, "CERTMAIL_LOG_KILLS", 8, "")

	var mu sync.Mutex
	acked := map[string]bool{}     // labels whose submission got 250
	seen := map[tlog.Tree][]byte{} // every checkpoint published, with its note
	n := 0
	for range kills {
		lc := newLogClient(t, p)
		ctx, cancel := context.WithCancel(context.Background())
		var wg sync.WaitGroup
		for range 3 { // each logs in once (argon2id): more would spend the round logging in
			wg.Go(func() {
				for ctx.Err() == nil {
					sub, err := dialSubmitter(p, pool)
					if err != nil {
						time.Sleep(10 * time.Millisecond)
						continue
					}
					for ctx.Err() == nil {
						mu.Lock()
						n++
						i := n
						mu.Unlock()
						labels, err := submitMany(sub, i, 4)
						if err != nil {
							break
						}
						mu.Lock()
						for _, l := range labels {
							acked[l] = true
						}
						mu.Unlock()
					}
					sub.c.Close()
				}
			})
		}
		wg.Go(func() { // the monitor
			for ctx.Err() == nil {
				resp, err := lc.c.Get(lc.url + "checkpoint")
				if err == nil {
					raw, err := io.ReadAll(resp.Body)
					resp.Body.Close()
					if err == nil && resp.StatusCode == 200 { // a kill may cut a response short
						tree, err := lc.openCheckpoint(raw)
						if err != nil {
							t.Errorf("a published checkpoint does not verify: %v", err)
							return
						}
						mu.Lock()
						seen[tree] = raw
						mu.Unlock()
					}
				}
				time.Sleep(15 * time.Millisecond)
			}
		})
		time.Sleep(time.Duration(800+rng.IntN(1000)) * time.Millisecond)
		p.kill()
		cancel()
		wg.Wait()
		p.start(t, bin) // and the restart repairs the log (agent.RecoverLog)
	}
	t.Logf("%d kills, %d submissions tried, %d messages acknowledged, %d checkpoints seen", kills, n, len(acked), len(seen))
	if len(acked) < kills {
		t.Fatalf("only %d messages acknowledged in %d rounds: the stream did not run; agent log:\n%s", len(acked), kills, p.out)
	}

	// What the store holds, read with the agent stopped: every note of every item.
	p.cmd.Process.Signal(syscall.SIGTERM)
	p.cmd.Wait()
	notes := map[evidence.Hash]string{}
	st, err := sqlite.Open(filepath.Join(p.dir, "data", dbFile))
	if err != nil {
		t.Fatal(err)
	}
	err = st.View(context.Background(), func(tx store.Tx) error {
		items, err := tx.ItemsBySender("alice@localhost", 0, 0)
		if err != nil {
			return err
		}
		have := map[string]bool{}
		for _, it := range items {
			have[it.Label.String()] = true
			evs, err := tx.Evidence(it.Label)
			if err != nil {
				return err
			}
			for _, e := range evs {
				notes[e.Leaf] = fmt.Sprintf("%s of %s", e.Type, it.Label)
			}
		}
		for l := range acked {
			if !have[l] {
				t.Errorf("acknowledged message %s is not in the store", l)
			}
		}
		un, err := tx.UnloggedEvidence(0)
		if len(un) != 0 {
			t.Errorf("%d notes unlogged after the restart's recovery", len(un))
		}
		return err
	})
	st.Close()
	if err != nil {
		t.Fatal(err)
	}

	// The log as a verifier sees it, the agent running again.
	p.start(t, bin)
	lc := newLogClient(t, p)
	final, _ := lc.checkpoint()
	entries, hashes := lc.entries(final)
	for old := range seen {
		if old.N > final.N {
			t.Fatalf("a checkpoint of %d entries was published before a kill; the log now has %d", old.N, final.N)
		}
		if root, err := tlog.TreeHash(old.N, hashes); err != nil || root != old.Hash {
			t.Fatalf("the log is not consistent with the checkpoint of size %d published before a kill:\n%s", old.N, seen[old])
		}
		if old.N == 0 {
			continue // the empty tree is a prefix of every tree
		}
		if err := lc.proveConsistent(old, final); err != nil {
			t.Fatalf("consistency proof from size %d to %d: %v", old.N, final.N, err)
		}
	}
	inLog := map[evidence.Hash]int{}
	for i, e := range entries {
		if len(e) != sha256.Size {
			t.Fatalf("entry %d is %d bytes, not a leaf hash", i, len(e))
		}
		if j, dup := inLog[evidence.Hash(e)]; dup {
			t.Fatalf("entries %d and %d are the same note", j, i)
		}
		inLog[evidence.Hash(e)] = i
	}
	for leaf, what := range notes {
		if _, ok := inLog[leaf]; !ok {
			t.Errorf("the %s is not in the log", what)
		}
	}
	if len(entries) < len(notes) {
		t.Errorf("the log holds %d entries for %d notes", len(entries), len(notes))
	}
	// And certmail log fsck, reading the stored tiles themselves, finds the log whole.
	if code, out, errs := runCLI("log", "fsck", filepath.Join(p.dir, "data", "log")); code != exitOK || !strings.Contains(out, "signature checked") {
		t.Errorf("log fsck after the kills: exit %d\n%s%s", code, out, errs)
	}
}

// submitMany sends message i to k recipients at once and returns the labels of the 250.
func submitMany(s *submitter, i, k int) ([]string, error) {
	if err := s.c.Mail("alice@localhost", nil); err != nil {
		return nil, err
	}
	for r := range k {
		if err := s.c.Rcpt(fmt.Sprintf("m%d.r%d@example.org", i, r), nil); err != nil {
			return nil, err
		}
	}
	w, err := s.c.Data()
	if err != nil {
		return nil, err
	}
	fmt.Fprintf(w, "From: alice@localhost\r\nTo: m%d.r0@example.org\r\nSubject: log crash %d\r\n\r\nmessage %d\r\n", i, i, i)
	resp, err := w.CloseWithResponse()
	if err != nil {
		return nil, err
	}
	var labels []string
	for _, m := range labelRE.FindAllStringSubmatch(resp.StatusText, -1) {
		labels = append(labels, m[1])
	}
	if len(labels) != k {
		return nil, fmt.Errorf("250 with %d labels for %d recipients: %q", len(labels), k, resp.StatusText)
	}
	return labels, nil
}
