package protocol_test

import (
	"bytes"
	"strings"
	"testing"
	"time"

	"certmail/evidence"
	"certmail/protocol"
)

// aghpParties makes S, R and the TTP for one AGHP run; ttp is reused when given.
func (w *ttpWorld) aghpParties(t testing.TB, mode string, seed uint64, ttp *protocol.AGHPTTP) (*protocol.AGHPSender, *protocol.AGHPRecipient, *protocol.AGHPTTP) {
	t.Helper()
	s, err := protocol.NewAGHPSender(protocol.AGHPSenderConfig{Sender: ttpAlice, Recipient: ttpBob, TTP: ttpHost,
		TTPBox: w.box.Public(), Trust: w.trust, Mode: mode, Message: w.msg, Password: w.rpwd, Rand: ttpSeeded(seed),
		Cleartext: []byte("Certified mail from alice@a.example. ttp.example gives you the key and alice a receipt.")})
	if err != nil {
		t.Fatal(err)
	}
	r, err := protocol.NewAGHPRecipient(protocol.AGHPRecipientConfig{Recipient: ttpBob, Password: w.rpwd, TTPs: []string{ttpHost}})
	if err != nil {
		t.Fatal(err)
	}
	if ttp == nil {
		if ttp, err = protocol.NewAGHPTTP(protocol.AGHPTTPConfig{ID: w.ttp, Box: w.box,
			Passwords: map[string][]byte{ttpBob: w.rpwd}}); err != nil {
			t.Fatal(err)
		}
	}
	return s, r, ttp
}

// TestAGHPHonestRun: in every mode R gets m and S the TTP's receipt; the judge accepts the
// receipt as proof of receipt only where the TTP authenticated R.
func TestAGHPHonestRun(t *testing.T) {
	w := newTTPWorld(t)
	for _, mode := range protocol.AGHPModes() {
		t.Run(mode, func(t *testing.T) {
			s, r, ttp := w.aghpParties(t, mode, 1, nil)
			tr := ttpHonest(t, time.Hour, s, r, ttp)
			l := s.Label()
			if !s.Done() || !r.Done() || !ttp.Done() {
				t.Fatalf("S done %v, R done %v, TTP done %v\n%s", s.Done(), r.Done(), ttp.Done(), tr)
			}
			if m, ok := r.Message(l); !ok || !bytes.Equal(m, w.msg) {
				t.Fatal("R does not hold the message")
			}
			if ttp.Served(l) != ttpBob {
				t.Fatalf("the TTP released the key to %q", ttp.Served(l))
			}
			if mode == protocol.AGHPTTPAuth || mode == protocol.AGHPBothAuth {
				v := ttpWantProven(t, w, s.Bundle())
				if !strings.Contains(v.Summary, "authenticated "+ttpBob) {
					t.Errorf("summary %q does not say that the TTP authenticated R", v.Summary)
				}
				if mode == protocol.AGHPTTPAuth {
					saveVector(t, "aghp", s.Bundle())
				}
				return
			}
			ttpWantRefused(t, w, ttpRoundTrip(t, s.Bundle()), "mode")
		})
	}
}

// TestAGHPReceiptWithoutTTPAuthentication: in a mode where the TTP does not authenticate R,
// someone other than R can fetch the key, and the TTP's receipt still names R: Mallory, who read
// S's e-mail on its way (no-auth), or S itself, who knows RPwd (sender-auth). The judge does not
// accept such a receipt as proof that R received the message. Where the TTP authenticates R,
// Mallory is refused and R is served.
func TestAGHPReceiptWithoutTTPAuthentication(t *testing.T) {
	w := newTTPWorld(t)
	for _, mode := range protocol.AGHPModes() {
		t.Run(mode, func(t *testing.T) {
			s, r, ttp := w.aghpParties(t, mode, 2, nil)
			l := s.Label()
			offer := s.Start(ttpT0)[0]
			intruder, password := ttpMallory, []byte("mallory's guess")
			if mode == protocol.AGHPSenderAuth {
				intruder, password = ttpAlice, w.rpwd // S shares RPwd with R in this mode
			}
			fetcher, err := protocol.NewAGHPRecipient(protocol.AGHPRecipientConfig{Recipient: intruder, Password: password, TTPs: []string{ttpHost}})
			if err != nil {
				t.Fatal(err)
			}
			out := ttp.Receive(ttpT0.Add(time.Minute), srFind(t, fetcher.Receive(ttpT0, offer), "aghp/2"))
			if mode == protocol.AGHPTTPAuth || mode == protocol.AGHPBothAuth {
				if len(out) != 1 {
					t.Fatalf("mode %s: the TTP answered %s with %d messages, want one refusal", mode, intruder, len(out))
				}
				if reason := string(out[0].Data["reason"]); ttp.Served(l) != "" || out[0].Step != "aghp/refused" ||
					reason != "authentication" && !(mode == protocol.AGHPBothAuth && reason == "exchange-hash") {
					t.Fatalf("mode %s: the TTP served %q to %s", mode, ttp.Served(l), intruder)
				}
				ask := srFind(t, r.Receive(ttpT0, offer), "aghp/2")
				if out := ttp.Receive(ttpT0.Add(2*time.Minute), ask); ttp.Served(l) != ttpBob || len(out) != 2 {
					t.Fatal("the TTP refused R after refusing Mallory")
				}
				return
			}
			if ttp.Served(l) != intruder || len(out) != 2 || out[0].To != intruder || !bytes.Equal(out[0].Data["key"], s.Key()) {
				t.Fatalf("in mode %s the TTP should have given %s the key (served %q)", mode, intruder, ttp.Served(l))
			}
			fetcher.Receive(ttpT0.Add(time.Minute), out[0])
			if m, ok := fetcher.Message(l); !ok || !bytes.Equal(m, w.msg) {
				t.Fatalf("%s did not read the message", intruder)
			}
			s.Receive(ttpT0.Add(time.Minute), out[1])
			if !s.Done() || ttpNoteOf(s.Bundle(), evidence.AGHPRECEIPT).Record.Recipient != ttpBob {
				t.Fatal("S holds no receipt naming R")
			}
			v := ttpWantRefused(t, w, s.Bundle(), "mode")
			if !strings.Contains(v.Summary, "did not authenticate") {
				t.Errorf("summary %q does not say why", v.Summary)
			}
			if mode == protocol.AGHPNoAuth {
				saveVector(t, "aghp-no-ttp-auth", s.Bundle())
			}
		})
	}
}

// TestAGHPSenderAuthNeedsPassword: in the modes with sender authentication, a recipient who does
// not know RPwd computes another hR, and the TTP refuses to release the key.
func TestAGHPSenderAuthNeedsPassword(t *testing.T) {
	w := newTTPWorld(t)
	s, _, ttp := w.aghpParties(t, protocol.AGHPSenderAuth, 3, nil)
	impostor, err := protocol.NewAGHPRecipient(protocol.AGHPRecipientConfig{Recipient: ttpBob, Password: []byte("guess"), TTPs: []string{ttpHost}})
	if err != nil {
		t.Fatal(err)
	}
	ask := srFind(t, impostor.Receive(ttpT0, s.Start(ttpT0)[0]), "aghp/2")
	out := ttp.Receive(ttpT0, ask)
	if ttp.Served(s.Label()) != "" || len(out) != 1 || string(out[0].Data["reason"]) != "exchange-hash" {
		t.Fatalf("the TTP answered a request with the wrong hR: %d messages, served %q", len(out), ttp.Served(s.Label()))
	}
}

// TestAGHPJudgeRefusesMutations: targeted changes of an honest AGHP proof are refused.
func TestAGHPJudgeRefusesMutations(t *testing.T) {
	w := newTTPWorld(t)
	for _, mode := range []string{protocol.AGHPTTPAuth, protocol.AGHPBothAuth} {
		s, r, ttp := w.aghpParties(t, mode, 4, nil)
		ttpHonest(t, time.Hour, s, r, ttp)
		bn := s.Bundle()
		ttpWantProven(t, w, bn)
		for _, mu := range aghpMutations(t, w, bn) {
			t.Run(mode+"/"+mu.name, func(t *testing.T) { ttpWantRefused(t, w, mu.b, "") })
		}
	}
}

// aghpMutations lists the targeted changes of an AGHP proof of receipt the judge must refuse.
func aghpMutations(t testing.TB, w *ttpWorld, b *evidence.Bundle) []ttpMutation {
	rc := ttpNoteOf(b, evidence.AGHPRECEIPT)
	other := evidence.Sum([]byte("another exchange"))
	rcBy := func(change func(*evidence.Record)) *evidence.Bundle {
		return ttpWithNote(b, evidence.AGHPRECEIPT, ttpResign(t, rc, change, w.ttp), "")
	}
	forged := ttpWithNote(b, evidence.AGHPRECEIPT, ttpResign(t, rc, func(*evidence.Record) {}, w.forgedTTP), w.forgedTTP.Verifier)
	forged.Keys = []string{w.forgedTTP.Verifier} // as a forger would hand it over
	muts := []ttpMutation{
		{"bundle for another label", ttpRelabel(b)},
		{"receipt for another label", rcBy(func(r *evidence.Record) { r.Label = ttpOtherLabel })},
		{"receipt for another exchange", rcBy(func(r *evidence.Record) { r.Exchange = other })},
		{"receipt for another key", rcBy(func(r *evidence.Record) { r.KeyHash = other })},
		{"receipt from a mode without TTP authentication", rcBy(func(r *evidence.Record) { r.Mode = protocol.AGHPNoAuth })},
		{"receipt from an unknown mode", rcBy(func(r *evidence.Record) { r.Mode = "trust-me" })},
		{"receipt signed by a key that is not the TTP's", forged},
		{"no receipt", ttpWithout(b, evidence.AGHPRECEIPT, "")},
	}
	for _, item := range []string{evidence.ItemCleartext, evidence.ItemChallenge, evidence.ItemResponse,
		evidence.ItemCiphertext, evidence.ItemSecret, evidence.ItemMessage} {
		muts = append(muts, ttpMutation{"another " + item, ttpWithItem(b, item, bytes.Repeat([]byte{'x'}, 32))})
	}
	return muts
}
