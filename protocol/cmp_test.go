package protocol_test

import (
	"bytes"
	"encoding/base64"
	"encoding/binary"
	"strings"
	"testing"
	"time"

	"certmail/evidence"
	"certmail/protocol"
	"certmail/protocol/sim"
)

// cmpParties makes A, B and T for one CMP run; ttp is reused when given (T serves many labels).
func (w *ttpWorld) cmpParties(t testing.TB, p evidence.Protocol, linked bool, seed uint64, ttp *protocol.CMPTTP) (*protocol.CMPSender, *protocol.CMPRecipient, *protocol.CMPTTP) {
	t.Helper()
	a, err := protocol.NewCMPSender(protocol.CMPSenderConfig{Protocol: p, Sender: w.alice, Recipient: ttpBob,
		TTP: ttpHost, TTPBox: w.box.Public(), Trust: w.trust, Message: w.msg, Linked: linked, Rand: ttpSeeded(seed)})
	if err != nil {
		t.Fatal(err)
	}
	b, err := protocol.NewCMPRecipient(protocol.CMPRecipientConfig{Recipient: w.bob, Trust: w.trust})
	if err != nil {
		t.Fatal(err)
	}
	if ttp == nil {
		if ttp, err = protocol.NewCMPTTP(protocol.CMPTTPConfig{ID: w.ttp, Box: w.box, Trust: w.trust}); err != nil {
			t.Fatal(err)
		}
	}
	return a, b, ttp
}

// ttpHonest runs parties over a network without faults.
func ttpHonest(t testing.TB, horizon time.Duration, parties ...protocol.Party) *sim.Trace {
	t.Helper()
	tr, err := sim.Run(sim.Config{Seed: 1, Start: ttpT0, Horizon: horizon, Parties: parties})
	if err != nil {
		t.Fatal(err)
	}
	return tr
}

var cmpCases = []struct {
	name   string
	proto  evidence.Protocol
	linked bool
}{
	{"cmp1", evidence.CMP1, false},
	{"cmp2", evidence.CMP2, false},
	{"cmp2-linked", evidence.CMP2, true},
}

// TestCMPHonestRun: A gets a receipt the judge accepts, B gets m and a proof of origin, T is done.
func TestCMPHonestRun(t *testing.T) {
	w := newTTPWorld(t)
	for _, tc := range cmpCases {
		t.Run(tc.name, func(t *testing.T) {
			a, b, ttp := w.cmpParties(t, tc.proto, tc.linked, 1, nil)
			tr := ttpHonest(t, time.Hour, a, b, ttp)
			l := a.Label()
			if !a.Done() || !ttp.Done() {
				t.Fatalf("A done %v, T done %v\n%s", a.Done(), ttp.Done(), tr)
			}
			if m, ok := b.Message(l); !ok || !bytes.Equal(m, w.msg) {
				t.Fatalf("B holds %q, want the message", m)
			}
			v := ttpWantProven(t, w, a.Bundle())
			for _, who := range []string{ttpAlice, ttpBob, ttpHost} {
				if !strings.Contains(v.Summary, who) {
					t.Errorf("summary %q does not name %s", v.Summary, who)
				}
			}
			_, hasKey := a.Bundle().Item(evidence.ItemSecret)
			_, hasC := a.Bundle().Item(evidence.ItemCiphertext)
			if want := tc.proto == evidence.CMP2 && !tc.linked; hasKey != want || hasC != want {
				t.Errorf("bundle holds K %v and c %v, want %v", hasKey, hasC, want)
			}
			if tc.linked && !strings.Contains(strings.Join(v.Notices, "\n"), "linked") {
				t.Errorf("the verdict does not say that K and c were recomputed: %v", v.Notices)
			}
			// B's proof of origin.
			ov := ttpVerdict(t, w, ttpRoundTrip(t, b.Bundle(l)))
			if !ov.Valid || ov.Outcome != evidence.OutcomeOriginProven || !strings.Contains(ov.Summary, "origin") {
				t.Fatalf("B's proof of origin:\n%s", ov.Text())
			}
			saveVector(t, tc.name, a.Bundle())
		})
	}
}

// cmpOffer runs A's step 1 into B and returns B's request to T.
func cmpRequestOf(t *testing.T, a *protocol.CMPSender, b *protocol.CMPRecipient) protocol.Msg {
	t.Helper()
	offer := a.Start(ttpT0)
	if len(offer) != 1 {
		t.Fatalf("A sent %d messages, want its offer", len(offer))
	}
	for _, m := range b.Receive(ttpT0, offer[0]) {
		if strings.HasSuffix(m.Step, "/2") {
			return m
		}
	}
	t.Fatal("B did not ask T")
	return protocol.Msg{}
}

func cmpReplaceNote(t *testing.T, m protocol.Msg, typ evidence.Type, n *evidence.Note) protocol.Msg {
	t.Helper()
	c := m.Clone()
	for i, raw := range c.Notes {
		old, err := evidence.ParseNote(raw)
		if err != nil {
			t.Fatal(err)
		}
		if old.Record.Type == typ {
			if n == nil {
				c.Notes = append(c.Notes[:i], c.Notes[i+1:]...)
			} else {
				c.Notes[i] = n.Bytes()
			}
			return c
		}
	}
	t.Fatalf("no %s in %s", typ, m.Step)
	return c
}

func cmpNoteIn(t *testing.T, m protocol.Msg, typ evidence.Type) *evidence.Note {
	t.Helper()
	for _, raw := range m.Notes {
		if n, err := evidence.ParseNote(raw); err == nil && n.Record.Type == typ {
			return n
		}
	}
	t.Fatalf("no %s in %s", typ, m.Step)
	return nil
}

// cmpWantRefused checks that T answered a request with a refusal only: no content, no receipt.
func cmpWantRefused(t *testing.T, w *ttpWorld, ttp *protocol.CMPTTP, l evidence.Label, out []protocol.Msg, secret []byte) {
	t.Helper()
	if ttp.Served(l) {
		t.Fatal("T served the label")
	}
	for _, m := range out {
		if !strings.HasSuffix(m.Step, "/refused") || ttpCarries(m, secret) {
			t.Fatalf("T sent %s to %s", m.Step, m.To)
		}
	}
	if len(out) != 1 {
		t.Fatalf("T sent %d messages, want one refusal", len(out))
	}
}

// TestCMPTTPReleasesOnlyAfterValidRequest: T releases m (CMP1) or K (CMP2) only for a request
// that B signed with its bound key, for the label, parties and hash of the box; and only once.
func TestCMPTTPReleasesOnlyAfterValidRequest(t *testing.T) {
	w := newTTPWorld(t)
	for _, tc := range cmpCases[:2] {
		t.Run(tc.name, func(t *testing.T) {
			a, b, _ := w.cmpParties(t, tc.proto, false, 2, nil)
			req := cmpRequestOf(t, a, b)
			l := a.Label()
			secret := w.msg
			if tc.proto == evidence.CMP2 {
				secret = a.Key()
			}
			_, reqType, nrdType := cmpTypesOf(tc.proto)
			signed := cmpNoteIn(t, req, reqType)
			flipped := req.Clone()
			for i, raw := range flipped.Notes {
				if bytes.Equal(raw, signed.Bytes()) {
					flipped.Notes[i][len(raw)-5] ^= 1 // a byte of the signature
				}
			}
			otherHash := func(r *evidence.Record) {
				r.Content, r.Ciphertext = zeroOr(r.Content, evidence.Sum([]byte("x"))), zeroOr(r.Ciphertext, evidence.Sum([]byte("x")))
			}
			bad := map[string]protocol.Msg{
				"no request":         cmpReplaceNote(t, req, reqType, nil),
				"bad signature":      flipped,
				"unbound key":        cmpReplaceNote(t, req, reqType, ttpResign(t, signed, func(*evidence.Record) {}, w.forgedBob)),
				"no KEY record of B": cmpReplaceNote(t, req, evidence.KEY, nil),
				"another hash":       cmpReplaceNote(t, req, reqType, ttpResign(t, signed, otherHash, w.bob.ID)),
				"another label":      cmpReplaceNote(t, req, reqType, ttpResign(t, signed, func(r *evidence.Record) { r.Label = ttpOtherLabel }, w.bob.ID)),
				"another TTP":        cmpReplaceNote(t, req, reqType, ttpResign(t, signed, func(r *evidence.Record) { r.Agent = ttpEvil }, w.bob.ID)),
				"not a box":          withData(req, "box", []byte("not a box")),
			}
			for name, m := range bad {
				t.Run(name, func(t *testing.T) {
					_, _, ttp := w.cmpParties(t, tc.proto, false, 2, nil)
					cmpWantRefused(t, w, ttp, l, ttp.Receive(ttpT0, m), secret)
				})
			}
			// The valid request: steps 3 and 4 together, each once.
			_, _, ttp := w.cmpParties(t, tc.proto, false, 2, nil)
			out := ttp.Receive(ttpT0, req)
			if len(out) != 2 || !ttp.Served(l) || out[0].To != ttpBob || out[1].To != ttpAlice || !ttpCarries(out[0], secret) {
				t.Fatalf("T answered a valid request with %d messages", len(out))
			}
			nrd := cmpNoteIn(t, out[1], nrdType)
			if nrd.Record.Request != signed.Leaf() {
				t.Fatalf("the NRD names request %s, want %s", nrd.Record.Request, signed.Leaf())
			}
			// Asked again while the answers are unacknowledged: the same answers, no new NRD.
			again := ttp.Receive(ttpT0.Add(time.Second), req)
			for _, m := range again {
				if strings.HasSuffix(m.Step, "/4") && !bytes.Equal(cmpNoteIn(t, m, nrdType).Bytes(), nrd.Bytes()) {
					t.Fatal("T signed a second NRD for the label")
				}
			}
			// Once both are acknowledged, a replay of the request is refused.
			b.Receive(ttpT0, out[0])
			a.Receive(ttpT0, out[1])
			for _, m := range append(b.Receive(ttpT0, out[0]), a.Receive(ttpT0, out[1])...) {
				ttp.Receive(ttpT0, m)
			}
			if !ttp.Done() {
				t.Fatal("T still resends after both acknowledgements")
			}
			if out := ttp.Receive(ttpT0.Add(time.Hour), req); len(out) != 1 || !strings.HasSuffix(out[0].Step, "/refused") {
				t.Fatalf("a replayed request got %d answers, want one refusal", len(out))
			}
		})
	}
}

func cmpTypesOf(p evidence.Protocol) (nro, req, nrd evidence.Type) {
	if p == evidence.CMP2 {
		return evidence.CMP2NRO, evidence.CMP2REQ, evidence.CMP2NRD
	}
	return evidence.CMPNRO, evidence.CMPREQ, evidence.CMPNRD
}

func zeroOr(h, other evidence.Hash) evidence.Hash {
	if h.IsZero() {
		return h
	}
	return other
}

func withData(m protocol.Msg, k string, v []byte) protocol.Msg {
	c := m.Clone()
	c.Data[k] = v
	return c
}

// TestCMPRequestSignedByOtherThanBRefused: Mallory, a user with a bound key of her own, cannot
// obtain the content of a box addressed to Bob, nor make T sign a receipt naming Bob.
func TestCMPRequestSignedByOtherThanBRefused(t *testing.T) {
	w := newTTPWorld(t)
	a, b, _ := w.cmpParties(t, evidence.CMP1, false, 3, nil)
	req := cmpRequestOf(t, a, b)
	signed := cmpNoteIn(t, req, evidence.CMPREQ)
	// Mallory asks in her own name, with her own KEY record.
	mine := cmpReplaceNote(t, req, evidence.CMPREQ,
		ttpResign(t, signed, func(r *evidence.Record) { r.Recipient = ttpMallory }, w.mallory.ID))
	mine.Notes = append(mine.Notes, w.mallory.Binding.Bytes())
	mine.From = ttpMallory
	// Mallory signs Bob's request with her key, and with a key she made under Bob's name.
	asBob := cmpReplaceNote(t, req, evidence.CMPREQ, forgeSigned(t, signed, w.mallory.ID))
	forged := cmpReplaceNote(t, req, evidence.CMPREQ, ttpResign(t, signed, func(*evidence.Record) {}, w.forgedBob))
	for name, m := range map[string]protocol.Msg{"in her name": mine, "bob's request, her key": asBob, "bob's request, forged key": forged} {
		t.Run(name, func(t *testing.T) {
			_, _, ttp := w.cmpParties(t, evidence.CMP1, false, 3, nil)
			cmpWantRefused(t, w, ttp, a.Label(), ttp.Receive(ttpT0, m), w.msg)
		})
	}
}

// forgeSigned re-signs n's exact body with a key of another name: a note that claims to be Bob's
// but carries only Mallory's signature.
func forgeSigned(t *testing.T, n *evidence.Note, by *protocol.Identity) *evidence.Note {
	t.Helper()
	text, _, _ := strings.Cut(string(n.Bytes()), "\n\n")
	sig, err := by.Signer.Sign([]byte(text + "\n"))
	if err != nil {
		t.Fatal(err)
	}
	raw := text + "\n\n— " + by.Signer.Name() + " " + base64.StdEncoding.EncodeToString(append(binary.BigEndian.AppendUint32(nil, by.Signer.KeyHash()), sig...)) + "\n"
	out, err := evidence.ParseNote([]byte(raw))
	if err != nil {
		t.Fatal(err)
	}
	return out
}

// ttpPack is the documented box plaintext format (4-byte big-endian length, then the bytes),
// written again here so that the test does not take the format from the code it tests.
func ttpPack(fields ...[]byte) []byte {
	var out []byte
	for _, f := range fields {
		out = binary.BigEndian.AppendUint32(out, uint32(len(f)))
		out = append(out, f...)
	}
	return out
}

// TestCMP2KeyThatDoesNotDecryptIsCaught: A seals for T a key that does not open c. T cannot see
// that and releases it; B finds out (the key matches the H(K) T signed, so it was not changed in
// transit) and does not get m; and the judge refuses A's claim whichever key A shows.
func TestCMP2KeyThatDoesNotDecryptIsCaught(t *testing.T) {
	w := newTTPWorld(t)
	a, b, ttp := w.cmpParties(t, evidence.CMP2, false, 4, nil)
	offer := a.Start(ttpT0)[0]
	l := a.Label()
	c := offer.Data["ciphertext"]
	nro := cmpNoteIn(t, offer, evidence.CMP2NRO)
	wrong := bytes.Repeat([]byte{7}, 32)
	hc := evidence.Sum(c)
	box, err := protocol.SealBox(w.box.Public(), "certmail cmp2 box", ttpPack([]byte(l.String()), []byte(ttpAlice), []byte(ttpBob),
		ttpPack(wrong, hc[:]), nro.Bytes()))
	if err != nil {
		t.Fatal(err)
	}
	cheat := withData(offer, "box", box)
	var req protocol.Msg
	for _, m := range b.Receive(ttpT0, cheat) {
		if m.Step == "cmp2/2" {
			req = m
		}
	}
	out := ttp.Receive(ttpT0, req)
	if len(out) != 2 {
		t.Fatalf("T answered with %d messages, want release and receipt", len(out))
	}
	b.Receive(ttpT0, out[0])
	if _, ok := b.Message(l); ok || !b.BadKey(l) {
		t.Fatalf("B holds the message %v, saw the bad key %v", ok, b.BadKey(l))
	}
	// A's own machine does not take a receipt that proves nothing.
	if a.Receive(ttpT0, out[1]); a.Done() {
		t.Fatal("A took a receipt for a key that does not decrypt c")
	}
	notes := []*evidence.Note{cmpNoteIn(t, out[1], evidence.CMP2NRD), cmpNoteIn(t, out[1], evidence.CMP2REQ), w.bob.Binding}
	claim := func(key []byte) *evidence.Bundle {
		bn := &evidence.Bundle{Label: l, Notes: notes}
		for _, k := range []string{w.ttp.Verifier, w.agentB.Verifier, w.bob.ID.Verifier} {
			bn.AddKey(k)
		}
		bn.SetItem(evidence.ItemMessage, w.msg)
		bn.SetItem(evidence.ItemCiphertext, c)
		bn.SetItem(evidence.ItemSecret, key)
		return bn
	}
	ttpWantRefused(t, w, claim(wrong), "decryption")
	ttpWantRefused(t, w, claim(a.Key()), "key")
}

// TestCMPJudgeRefusesMutations: every targeted change of an honest proof of receipt (another
// label, party, hash, protocol, TTP or item) is refused, with the check that catches it.
func TestCMPJudgeRefusesMutations(t *testing.T) {
	w := newTTPWorld(t)
	for _, tc := range cmpCases {
		t.Run(tc.name, func(t *testing.T) {
			a, b, ttp := w.cmpParties(t, tc.proto, tc.linked, 5, nil)
			ttpHonest(t, time.Hour, a, b, ttp)
			bn := a.Bundle()
			ttpWantProven(t, w, bn)
			for _, mu := range cmpMutations(t, w, bn) {
				t.Run(mu.name, func(t *testing.T) { ttpWantRefused(t, w, mu.b, "") })
			}
		})
	}
}

// cmpMutations lists the targeted changes of a CMP proof of receipt the judge must refuse.
func cmpMutations(t testing.TB, w *ttpWorld, b *evidence.Bundle) []ttpMutation {
	nrdType, reqType := evidence.CMPNRD, evidence.CMPREQ
	if ttpNoteOf(b, evidence.CMP2NRD) != nil {
		nrdType, reqType = evidence.CMP2NRD, evidence.CMP2REQ
	}
	nrd, req := ttpNoteOf(b, nrdType), ttpNoteOf(b, reqType)
	other := evidence.Sum([]byte("another message"))
	hashes := func(r *evidence.Record) {
		r.Content, r.Ciphertext = zeroOr(r.Content, other), zeroOr(r.Ciphertext, other)
	}
	nrdBy := func(change func(*evidence.Record)) *evidence.Bundle {
		return ttpWithNote(b, nrdType, ttpResign(t, nrd, change, w.ttp), "")
	}
	// The same receipt as the other protocol's token (a CMP1 NRD in a CMP2 bundle and back).
	swapped := ttpResign(t, nrd, func(r *evidence.Record) {
		if r.Type == evidence.CMPNRD {
			r.Type, r.Ciphertext, r.KeyHash, r.Content = evidence.CMP2NRD, r.Content, r.Content, evidence.Hash{}
		} else {
			r.Type, r.Content, r.Ciphertext, r.KeyHash = evidence.CMPNRD, r.Ciphertext, evidence.Hash{}, evidence.Hash{}
		}
	}, w.ttp)
	muts := []ttpMutation{
		{"bundle for another label", ttpRelabel(b)},
		{"receipt for another label", nrdBy(func(r *evidence.Record) { r.Label = ttpOtherLabel })},
		{"receipt naming another recipient", nrdBy(func(r *evidence.Record) { r.Recipient = ttpMallory })},
		{"receipt naming another sender", nrdBy(func(r *evidence.Record) { r.Sender = ttpMallory })},
		{"receipt for another hash", nrdBy(hashes)},
		{"receipt for another request", nrdBy(func(r *evidence.Record) { r.Request = other })},
		{"receipt of another protocol", ttpWithNote(b, nrdType, swapped, "")},
		{"receipt signed by an agent that is not the TTP", ttpWithNote(b, nrdType,
			ttpResign(t, nrd, func(r *evidence.Record) { r.Agent = ttpEvil }, w.evil), w.evil.Verifier)},
		{"receipt signed by a key not the TTP's", ttpWithNote(b, nrdType,
			ttpResign(t, nrd, func(*evidence.Record) {}, w.forgedTTP), w.forgedTTP.Verifier)},
		{"request for another hash", ttpWithNote(b, reqType, ttpResign(t, req, hashes, w.bob.ID), "")},
		{"request by an unbound key", ttpWithNote(b, reqType, ttpResign(t, req, func(*evidence.Record) {}, w.forgedBob), w.forgedBob.Verifier)},
		{"no request", ttpWithout(b, reqType, "")},
		{"no KEY record of B", ttpWithout(b, evidence.KEY, ttpBob)},
		{"another message", ttpWithItem(b, evidence.ItemMessage, []byte("another message"))},
	}
	if nrdType == evidence.CMP2NRD {
		muts = append(muts,
			ttpMutation{"another key", ttpWithItem(b, evidence.ItemSecret, bytes.Repeat([]byte{9}, 32))},
			ttpMutation{"another ciphertext", ttpWithItem(b, evidence.ItemCiphertext, []byte("0123456789abcdef0123456789abcdef"))},
			ttpMutation{"receipt for another key", nrdBy(func(r *evidence.Record) { r.KeyHash = other })})
	}
	return muts
}

// TestCMPTTPResendsAfterLostAnswers: T's acceptance is one durable transition; if both answers are
// lost (or T crashes right after it), T resends both, the same bytes, until acknowledged, and a
// restart from its stored state does the same.
func TestCMPTTPResendsAfterLostAnswers(t *testing.T) {
	w := newTTPWorld(t)
	a, b, ttp := w.cmpParties(t, evidence.CMP2, false, 7, nil)
	req := cmpRequestOf(t, a, b)
	first := ttp.Receive(ttpT0, req) // lost on the way
	restarted := ttp.Clone()
	for _, tt := range []*protocol.CMPTTP{ttp, restarted} {
		at, ok := tt.Wake()
		if !ok {
			t.Fatal("T does not plan to resend")
		}
		again := tt.Tick(at)
		if len(again) != 2 || !bytes.Equal(again[0].Notes[len(again[0].Notes)-1], first[0].Notes[len(first[0].Notes)-1]) ||
			ttpMsgText(again[1]) != ttpMsgText(first[1]) {
			t.Fatalf("T resent %d messages, want the same release and receipt", len(again))
		}
	}
	// Once both are acknowledged, T rests.
	for _, m := range append(b.Receive(ttpT0, first[0]), a.Receive(ttpT0, first[1])...) {
		ttp.Receive(ttpT0, m)
	}
	if _, ok := ttp.Wake(); ok || !ttp.Done() {
		t.Fatal("T still resends after both acknowledgements")
	}
	if _, ok := b.Message(a.Label()); !ok || !a.Done() {
		t.Fatal("the resent answers did not complete the exchange")
	}
}

// ttpMsgText renders a message for comparison.
func ttpMsgText(m protocol.Msg) string {
	var b bytes.Buffer
	b.WriteString(m.From + "\n" + m.To + "\n" + m.Step + "\n")
	for _, n := range m.Notes {
		b.Write(n)
	}
	for _, k := range []string{"label", "key", "message"} {
		b.WriteString(k + "=" + string(m.Data[k]) + "\n")
	}
	return b.String()
}
