package protocol_test

import (
	"bytes"
	"strings"
	"testing"
	"time"

	"certmail/evidence"
	"certmail/protocol"
)

const (
	srWindow = 2 * time.Hour    // B's T − now
	srGrace  = 10 * time.Minute // B looks for the key until T + Grace
)

// srParties makes A, B and X (the agent ttp.example's log) for one SR run; x is reused when
// given.
func (w *ttpWorld) srParties(t testing.TB, optimistic bool, seed uint64, x *protocol.SRPublisher) (*protocol.SRSender, *protocol.SRRecipient, *protocol.SRPublisher) {
	t.Helper()
	a, err := protocol.NewSRSender(protocol.SRSenderConfig{Sender: ttpAlice, Account: w.account, Recipient: ttpBob, Message: w.msg,
		Locations: []string{ttpHost}, Trust: w.trust, Optimistic: optimistic, MinWindow: time.Hour,
		Margin: 40 * time.Minute, RequestWait: 150 * time.Minute, Rand: ttpSeeded(seed)})
	if err != nil {
		t.Fatal(err)
	}
	b, err := protocol.NewSRRecipient(protocol.SRRecipientConfig{Recipient: w.bob, Locations: []string{ttpHost},
		Trust: w.trust, Window: srWindow, Grace: srGrace, Expectation: "the signed contract"})
	if err != nil {
		t.Fatal(err)
	}
	if x == nil {
		if x, err = protocol.NewSRPublisher(protocol.SRPublisherConfig{ID: w.ttp, Trust: w.trust,
			Accounts: map[string][]byte{ttpAlice: w.account}}); err != nil {
			t.Fatal(err)
		}
	}
	return a, b, x
}

// TestSRHonestRun: pessimistic, A publishes at X and proves receipt with the PUB; optimistic, B's
// key receipt makes the publication unnecessary.
func TestSRHonestRun(t *testing.T) {
	w := newTTPWorld(t)
	for _, tc := range []struct {
		name       string
		optimistic bool
	}{{"sr", false}, {"sr-optimistic", true}} {
		t.Run(tc.name, func(t *testing.T) {
			a, b, x := w.srParties(t, tc.optimistic, 1, nil)
			tr := ttpHonest(t, 4*time.Hour, a, b, x)
			l := a.Label()
			if !a.Done() || !a.Proven() || !b.Done() {
				t.Fatalf("A done %v proven %v, B done %v\n%s", a.Done(), a.Proven(), b.Done(), tr)
			}
			if m, ok := b.Message(l); !ok || !bytes.Equal(m, w.msg) {
				t.Fatal("B does not hold the message")
			}
			v := ttpWantProven(t, w, a.Bundle())
			hasPUB, hasRcpt := ttpNoteOf(a.Bundle(), evidence.PUB) != nil, ttpNoteOf(a.Bundle(), evidence.SRKEYRCPT) != nil
			if hasPUB == tc.optimistic || hasRcpt != tc.optimistic || (x.Published(l) != nil) == tc.optimistic {
				t.Fatalf("PUB in bundle %v, key receipt %v, published at X %v", hasPUB, hasRcpt, x.Published(l) != nil)
			}
			notices := strings.Join(v.Notices, "\n")
			if strings.Contains(notices, "the PUB record's time is") == tc.optimistic {
				t.Errorf("the notice about the log inclusion of PUB: %q", notices)
			}
			if !strings.Contains(v.Summary, ttpBob) || !strings.Contains(v.Summary, ttpAlice) {
				t.Errorf("summary %q does not say who proves what against whom", v.Summary)
			}
			saveVector(t, tc.name, a.Bundle())
		})
	}
}

func srFind(t *testing.T, msgs []protocol.Msg, step string) protocol.Msg {
	t.Helper()
	for _, m := range msgs {
		if m.Step == step {
			return m
		}
	}
	t.Fatalf("no %s among %d messages", step, len(msgs))
	return protocol.Msg{}
}

// TestSRAliceDoesNotPublishByT: B asked for the key by T; A publishes only after T, or never.
// B's run ends at T + Grace without the key, and the judge refuses A's claim: B wins.
func TestSRAliceDoesNotPublishByT(t *testing.T) {
	w := newTTPWorld(t)
	for _, late := range []bool{true, false} {
		name := map[bool]string{true: "after T", false: "never"}[late]
		t.Run(name, func(t *testing.T) {
			a, b, x := w.srParties(t, false, 12, nil)
			l := a.Label()
			offer := a.Start(ttpT0)[0]
			req := srFind(t, b.Receive(ttpT0.Add(time.Second), offer), "sr/b")
			publish := srFind(t, a.Receive(ttpT0.Add(2*time.Second), req), "sr/c")
			deadline := b.Deadline(l)
			// B looks at X, finds nothing by T + Grace, and closes the exchange.
			for closed, _ := b.Closed(l); !closed; closed, _ = b.Closed(l) {
				now, ok := b.Wake()
				if !ok {
					t.Fatal("B waits for nothing before its exchange is closed")
				}
				for _, m := range b.Tick(now) {
					if m.To == ttpHost {
						if out := x.Receive(now, m); len(out) > 0 {
							t.Fatal("X answered a look-up before anything was published")
						}
					}
				}
			}
			if !b.NotPublished(l) || !b.Done() {
				t.Fatal("B did not conclude that A failed to publish by T")
			}
			if closed, at := b.Closed(l); !closed || at.After(deadline.Add(srGrace)) {
				t.Fatalf("B closed %v at %s, want by T + Grace %s", closed, at, deadline.Add(srGrace))
			}
			if late {
				out := x.Receive(deadline.Add(time.Hour), publish)
				a.Receive(deadline.Add(time.Hour), srFind(t, out, "sr/c-pub"))
				if !a.Done() || a.Proven() {
					t.Fatalf("A done %v proven %v after a publication past T", a.Done(), a.Proven())
				}
			}
			v := ttpWantRefused(t, w, a.Bundle(), map[bool]string{true: "deadline", false: "publication"}[late])
			if !strings.Contains(v.Summary, ttpBob+" wins") {
				t.Fatalf("want B winning, got:\n%s", v.Text())
			}
			if late {
				saveVector(t, "sr-not-published", a.Bundle())
			}
		})
	}
}

// TestSRPublisherPublishesOnce: X signs one PUB per label, for the sender of a request B signed
// naming X; a replay gets the same record, another key nothing.
func TestSRPublisherPublishesOnce(t *testing.T) {
	w := newTTPWorld(t)
	a, b, x := w.srParties(t, false, 13, nil)
	offer := a.Start(ttpT0)[0]
	req := srFind(t, b.Receive(ttpT0, offer), "sr/b")
	publish := srFind(t, a.Receive(ttpT0, req), "sr/c")
	first := srFind(t, x.Receive(ttpT0, publish), "sr/c-pub")
	again := srFind(t, x.Receive(ttpT0.Add(time.Minute), publish), "sr/c-pub")
	if !bytes.Equal(first.Notes[0], again.Notes[0]) {
		t.Fatal("X signed a second PUB for the label")
	}
	for name, m := range map[string]protocol.Msg{
		"another key":      withData(publish, "key", bytes.Repeat([]byte{1}, 32)),
		"not the sender":   withData(publish, "auth", []byte("mallory's guess")),
		"no request":       func() protocol.Msg { c := publish.Clone(); c.Notes = nil; return c }(),
		"unsigned request": cmpReplaceNote(t, publish, evidence.SRREQ, ttpResign(t, cmpNoteIn(t, publish, evidence.SRREQ), func(*evidence.Record) {}, w.forgedBob)),
	} {
		_, _, fresh := w.srParties(t, false, 13, nil)
		if name == "another key" {
			fresh = x
		}
		if out := fresh.Receive(ttpT0, m); len(out) != 0 {
			t.Errorf("%s: X published", name)
		}
	}
}

// TestSRJudgeRefusesMutations: targeted changes of honest SR proofs are refused.
func TestSRJudgeRefusesMutations(t *testing.T) {
	w := newTTPWorld(t)
	for _, optimistic := range []bool{false, true} {
		a, b, x := w.srParties(t, optimistic, 14, nil)
		ttpHonest(t, 4*time.Hour, a, b, x)
		bn := a.Bundle()
		ttpWantProven(t, w, bn)
		for _, mu := range srMutations(t, w, bn) {
			t.Run(map[bool]string{false: "pub/", true: "key-receipt/"}[optimistic]+mu.name, func(t *testing.T) {
				ttpWantRefused(t, w, mu.b, "")
			})
		}
	}
}

// srMutations lists the targeted changes of an SR proof of receipt the judge must refuse.
func srMutations(t testing.TB, w *ttpWorld, b *evidence.Bundle) []ttpMutation {
	req := ttpNoteOf(b, evidence.SRREQ)
	other := evidence.Sum([]byte("another ciphertext"))
	reqBy := func(change func(*evidence.Record)) *evidence.Bundle {
		return ttpWithNote(b, evidence.SRREQ, ttpResign(t, req, change, w.bob.ID), "")
	}
	muts := []ttpMutation{
		{"bundle for another label", ttpRelabel(b)},
		{"request for another label", reqBy(func(r *evidence.Record) { r.Label = ttpOtherLabel })},
		{"request for another ciphertext", reqBy(func(r *evidence.Record) { r.Ciphertext = other })},
		{"request by an unbound key", ttpWithNote(b, evidence.SRREQ, ttpResign(t, req, func(*evidence.Record) {}, w.forgedBob), w.forgedBob.Verifier)},
		{"no request", ttpWithout(b, evidence.SRREQ, "")},
		{"no KEY record of B", ttpWithout(b, evidence.KEY, ttpBob)},
		{"another message", ttpWithItem(b, evidence.ItemMessage, []byte("another message"))},
		{"another key", ttpWithItem(b, evidence.ItemSecret, bytes.Repeat([]byte{9}, 32))},
		{"another ciphertext", ttpWithItem(b, evidence.ItemCiphertext, []byte("0123456789abcdef0123456789abcdef"))},
	}
	if pub := ttpNoteOf(b, evidence.PUB); pub != nil {
		pubBy := func(change func(*evidence.Record)) *evidence.Bundle {
			return ttpWithNote(b, evidence.PUB, ttpResign(t, pub, change, w.ttp), "")
		}
		muts = append(muts,
			ttpMutation{"publication for another label", pubBy(func(r *evidence.Record) { r.Label = ttpOtherLabel })},
			ttpMutation{"publication for another ciphertext", pubBy(func(r *evidence.Record) { r.Ciphertext = other })},
			ttpMutation{"publication of another key", pubBy(func(r *evidence.Record) { r.Secret = bytes.Repeat([]byte{9}, 32) })},
			ttpMutation{"publication after T", pubBy(func(r *evidence.Record) { r.Time = req.Record.Deadline.Add(time.Second) })},
			ttpMutation{"publication of another protocol", pubBy(func(r *evidence.Record) { r.Protocol = evidence.CMP2 })},
			ttpMutation{"request with a deadline before the publication", reqBy(func(r *evidence.Record) { r.Deadline = pub.Record.Time.Add(-time.Second) })},
			ttpMutation{"publication at another agent", ttpWithNote(b, evidence.PUB,
				ttpResign(t, pub, func(r *evidence.Record) { r.Agent = ttpEvil }, w.evil), w.evil.Verifier)},
			ttpMutation{"publication signed by a key not X's", ttpWithNote(b, evidence.PUB,
				ttpResign(t, pub, func(*evidence.Record) {}, w.forgedTTP), w.forgedTTP.Verifier)},
			ttpMutation{"no publication", ttpWithout(b, evidence.PUB, "")})
	}
	if rc := ttpNoteOf(b, evidence.SRKEYRCPT); rc != nil {
		rcBy := func(change func(*evidence.Record)) *evidence.Bundle {
			return ttpWithNote(b, evidence.SRKEYRCPT, ttpResign(t, rc, change, w.bob.ID), "")
		}
		muts = append(muts,
			ttpMutation{"key receipt for another label", rcBy(func(r *evidence.Record) { r.Label = ttpOtherLabel })},
			ttpMutation{"key receipt for another key", rcBy(func(r *evidence.Record) { r.KeyHash = other })},
			ttpMutation{"key receipt for another ciphertext", rcBy(func(r *evidence.Record) { r.Ciphertext = other })},
			ttpMutation{"key receipt naming another sender", rcBy(func(r *evidence.Record) { r.Sender = ttpMallory })},
			ttpMutation{"key receipt by an unbound key", ttpWithNote(b, evidence.SRKEYRCPT, ttpResign(t, rc, func(*evidence.Record) {}, w.forgedBob), w.forgedBob.Verifier)},
			ttpMutation{"no key receipt", ttpWithout(b, evidence.SRKEYRCPT, "")})
	}
	return muts
}
