package agent_test

import (
	"context"
	"crypto/ed25519"
	"fmt"
	"strings"
	"testing"
	"time"

	"certmail/agent"
	"certmail/evidence"
	"certmail/store"
)

// browserKey is a recipient key as a browser holds it: a raw Ed25519 key pair, no note format.
func browserKey(seed byte) ed25519.PrivateKey {
	s := make([]byte, ed25519.SeedSize)
	s[0] = seed
	return ed25519.NewKeyFromSeed(s)
}

func vkeyOf(t *testing.T, address string, k ed25519.PrivateKey) string {
	t.Helper()
	v, err := agent.VerifierKeyFor(address, k.Public().(ed25519.PublicKey))
	if err != nil {
		t.Fatal(err)
	}
	return v
}

// signIn does what the pickup page's script does: fetch the COD text, sign its bytes, and have
// the agent assemble the note.
func signIn(t *testing.T, w *world, tok string, k ed25519.PrivateKey) []byte {
	t.Helper()
	ctx := context.Background()
	text, err := w.a.CODText(ctx, tok)
	if err != nil {
		t.Fatal(err)
	}
	n, err := w.a.CODNote(ctx, tok, text, ed25519.Sign(k, text))
	if err != nil {
		t.Fatal(err)
	}
	return n
}

func evidenceTypes(t *testing.T, w *world, l evidence.Label) string {
	t.Helper()
	var types []string
	for _, f := range w.verdict(t, l).Facts {
		types = append(types, string(f.Type))
	}
	return strings.Join(types, " ")
}

func TestEnrolThroughThePickupLinkThenSign(t *testing.T) {
	w := newWorld(t)
	ctx := context.Background()
	p := w.submit(t, agent.Submission{Password: "open sesame 42"})
	w.deliverQueue(t)
	tok := w.mails.token(t, bob)
	k := browserKey(7)
	vkey := vkeyOf(t, bob, k)

	// No key yet: a signed acceptance cannot be assembled, and nothing changes.
	text, err := w.a.CODText(ctx, tok)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := w.a.CODNote(ctx, tok, text, ed25519.Sign(k, text)); agent.KindOf(err) != agent.KindForbidden {
		t.Fatalf("COD without an enrolled key: %v", err)
	}
	// Enrolment wants the message password, like acceptance.
	if _, err := w.a.EnrolKey(ctx, tok, "guess", vkey); agent.KindOf(err) != agent.KindForbidden {
		t.Fatalf("enrolment with a wrong password: %v", err)
	}
	// A key named after someone else is refused.
	if _, err := w.a.EnrolKey(ctx, tok, "open sesame 42", vkeyOf(t, alice, k)); agent.KindOf(err) != agent.KindInvalid {
		t.Fatalf("enrolment of a key named for alice: %v", err)
	}
	w.clock.add(time.Second)
	e, err := w.a.EnrolKey(ctx, tok, "open sesame 42", vkey)
	if err != nil || !e.New || e.Record == nil || e.Record.Record.Type != evidence.KEY || e.Record.Record.Subject != bob || e.Address != bob {
		t.Fatalf("enrolment: %+v %v", e, err)
	}
	if again, err := w.a.EnrolKey(ctx, tok, "open sesame 42", vkey); err != nil || again.New {
		t.Fatalf("enrolling the same key again: %+v %v", again, err)
	}

	// The text fetched before the key was bound would not convince an arbiter: refused.
	stale, err := w.a.CODNote(ctx, tok, text, ed25519.Sign(k, text))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := w.a.Accept(ctx, tok, agent.Acceptance{Password: "open sesame 42", COD: stale}); agent.KindOf(err) != agent.KindInvalid {
		t.Fatalf("COD dated before its key's KEY record: %v", err)
	}
	// A signature by another key is refused.
	other := signIn(t, w, tok, browserKey(8))
	if _, err := w.a.Accept(ctx, tok, agent.Acceptance{Password: "open sesame 42", COD: other}); agent.KindOf(err) != agent.KindForbidden {
		t.Fatalf("COD signed by a key not registered: %v", err)
	}
	// A text altered after the agent gave it no longer matches the signature made over it.
	fresh, _ := w.a.CODText(ctx, tok)
	forged := []byte(strings.Replace(string(fresh), "recipient bob@b.example", "recipient eve@b.example", 1))
	if n, err := w.a.CODNote(ctx, tok, forged, ed25519.Sign(k, fresh)); err == nil {
		if _, err := w.a.Accept(ctx, tok, agent.Acceptance{Password: "open sesame 42", COD: n}); agent.KindOf(err) != agent.KindInvalid {
			t.Fatalf("COD naming another recipient: %v", err)
		}
	}
	if st := w.stateOf(t, p.Label); st != store.StateNotified {
		t.Fatalf("refused acceptances changed the item: %s", st)
	}

	if _, err := w.a.Accept(ctx, tok, agent.Acceptance{Password: "open sesame 42", Client: "198.51.100.7", COD: signIn(t, w, tok, k)}); err != nil {
		t.Fatal(err)
	}
	want(t, w.verdict(t, p.Label), evidence.OutcomeDelivered, evidence.RecipientSigned)
	if got := evidenceTypes(t, w, p.Label); got != "KEY COP NTF COD-IP DLV ROD" {
		t.Fatalf("evidence %s", got)
	}

	// Once decided, the link enrols nothing and gives no text to sign.
	if _, err := w.a.EnrolKey(ctx, tok, "open sesame 42", vkeyOf(t, bob, browserKey(9))); agent.KindOf(err) != agent.KindGone {
		t.Fatalf("enrolment after acceptance: %v", err)
	}
	if _, err := w.a.CODText(ctx, tok); agent.KindOf(err) != agent.KindGone {
		t.Fatalf("COD text after acceptance: %v", err)
	}
}

func (w *world) stateOf(t *testing.T, l evidence.Label) store.State {
	t.Helper()
	var it store.Item
	if err := w.st.View(context.Background(), func(tx store.Tx) (err error) { it, err = tx.Item(l); return err }); err != nil {
		t.Fatal(err)
	}
	return it.State
}

// Wrong passwords at enrolment count against the same limit as at acceptance: enrolment is no
// side door for guessing.
func TestEnrolmentCountsWrongPasswords(t *testing.T) {
	w := newWorld(t)
	ctx := context.Background()
	w.submit(t, agent.Submission{Password: "open sesame 42"})
	w.deliverQueue(t)
	tok := w.mails.token(t, bob)
	vkey := vkeyOf(t, bob, browserKey(1))
	for i := range 5 {
		if _, err := w.a.EnrolKey(ctx, tok, fmt.Sprintf("guess %d", i), vkey); agent.KindOf(err) != agent.KindForbidden {
			t.Fatalf("wrong password %d: %v", i, err)
		}
	}
	if _, err := w.a.Accept(ctx, tok, agent.Acceptance{Password: "open sesame 42"}); agent.KindOf(err) != agent.KindUnavailable {
		t.Fatalf("acceptance after five wrong passwords at enrolment: %v", err)
	}
}

// Each mode has the recipient sign its own certificate (PROTOCOLS.md §1), and the text the agent
// gives is exactly what its COD check wants.
func TestCODTextPerMode(t *testing.T) {
	for _, tc := range []struct {
		mode evidence.Protocol
		typ  evidence.Type
		has  string
	}{
		{evidence.CEM, evidence.CODBasic, "\ncontent sha256:"},
		{evidence.CEMNSR, evidence.CODNSR, ""},
		{evidence.CEMIP, evidence.CODIP, "\ncommitment sha256:"},
	} {
		t.Run(string(tc.mode), func(t *testing.T) {
			w := newWorld(t)
			ctx := context.Background()
			p := w.submit(t, agent.Submission{Protocol: tc.mode})
			w.deliverQueue(t)
			tok := w.mails.token(t, bob)
			k := browserKey(3)
			if _, err := w.a.EnrolKey(ctx, tok, "", vkeyOf(t, bob, k)); err != nil {
				t.Fatal(err)
			}
			text, err := w.a.CODText(ctx, tok)
			if err != nil {
				t.Fatal(err)
			}
			r, err := evidence.ParseRecord(text)
			if err != nil || r.Type != tc.typ || r.Label != p.Label || r.Recipient != bob || r.Agent != w.a.Name() || !strings.Contains(string(text), tc.has) {
				t.Fatalf("COD text %q: %+v %v", text, r, err)
			}
			if _, err := w.a.Accept(ctx, tok, agent.Acceptance{COD: signIn(t, w, tok, k)}); err != nil {
				t.Fatal(err)
			}
			want(t, w.verdict(t, p.Label), evidence.OutcomeDelivered, evidence.RecipientSigned)
		})
	}
}

// A recipient whose account the administrator disabled cannot enrol a key through a link.
func TestEnrolmentRefusedForADisabledAccount(t *testing.T) {
	w := newWorld(t)
	ctx := context.Background()
	w.submit(t, agent.Submission{})
	w.deliverQueue(t)
	tok := w.mails.token(t, bob)
	if err := w.st.Update(ctx, func(tx store.Tx) error {
		return tx.PutUser(store.User{Address: bob, Disabled: true, Created: t0})
	}); err != nil {
		t.Fatal(err)
	}
	if _, err := w.a.EnrolKey(ctx, tok, "", vkeyOf(t, bob, browserKey(6))); agent.KindOf(err) != agent.KindForbidden {
		t.Fatalf("enrolment for a disabled account: %v", err)
	}
}

func TestCODNoteRefusesMalformedSignatures(t *testing.T) {
	w := newWorld(t)
	ctx := context.Background()
	w.submit(t, agent.Submission{})
	w.deliverQueue(t)
	tok := w.mails.token(t, bob)
	if _, err := w.a.EnrolKey(ctx, tok, "", vkeyOf(t, bob, browserKey(4))); err != nil {
		t.Fatal(err)
	}
	text, _ := w.a.CODText(ctx, tok)
	for name, tc := range map[string]struct{ text, sig []byte }{
		"short signature":  {text, make([]byte, 63)},
		"no final newline": {text[:len(text)-1], make([]byte, 64)},
	} {
		if _, err := w.a.CODNote(ctx, tok, tc.text, tc.sig); agent.KindOf(err) != agent.KindInvalid {
			t.Errorf("%s: %v", name, err)
		}
	}
	if _, err := w.a.CODNote(ctx, "no-such-token", text, make([]byte, 64)); agent.KindOf(err) != agent.KindNotFound {
		t.Errorf("unknown token: %v", err)
	}
	if _, err := agent.VerifierKeyFor(bob, make([]byte, 31)); agent.KindOf(err) != agent.KindInvalid {
		t.Errorf("a 31-byte public key: %v", err)
	}
}
