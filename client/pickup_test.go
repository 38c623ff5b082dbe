package client

import (
	"errors"
	"math/rand/v2"
	"strings"
	"testing"
	"time"

	"certmail/api"
	"certmail/evidence"
)

// The recipient signs a certificate of delivery only for the item it was notified of, and
// keeps a downloaded message that is not the one committed to, with an alarm.

var (
	pickupNow = time.Date(2026, 3, 2, 9, 0, 0, 0, time.UTC)
	message   = []byte("From: alice@a.example\r\nTo: bob@b.example\r\n\r\nSigned copy attached.\r\n")
)

func testLabel(t *testing.T, seed uint64) evidence.Label {
	t.Helper()
	l, err := evidence.NewLabel(rand.NewChaCha8([32]byte{byte(seed)}))
	if err != nil {
		t.Fatal(err)
	}
	return l
}

// view is what the pickup API shows bob of an item in mode.
func view(l evidence.Label, mode evidence.Protocol) *api.PickupView {
	v := &api.PickupView{Label: l.String(), Mode: string(mode), Recipient: "bob@b.example",
		Commitment: evidence.Commitment(l, message).String()}
	if mode == evidence.CEM {
		v.Content = evidence.Sum(message).String()
	}
	return v
}

func codText(t *testing.T, r *evidence.Record) string {
	t.Helper()
	b, err := r.Encode()
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

func TestCODFor(t *testing.T) {
	l, other := testLabel(t, 1), testLabel(t, 2)
	cod := func(typ evidence.Type, mod func(r *evidence.Record)) *evidence.Record {
		r := &evidence.Record{Type: typ, Label: l, Agent: "certmail.b.example", Recipient: "bob@b.example", Time: pickupNow}
		switch typ {
		case evidence.CODIP:
			r.Commitment = evidence.Commitment(l, message)
		case evidence.CODBasic:
			r.Content = evidence.Sum(message)
		}
		if mod != nil {
			mod(r)
		}
		return r
	}
	for _, c := range []struct {
		name string
		mode evidence.Protocol
		r    *evidence.Record
		ok   bool
	}{
		{"cem-ip", evidence.CEMIP, cod(evidence.CODIP, nil), true},
		{"cem-nsr", evidence.CEMNSR, cod(evidence.CODNSR, nil), true},
		{"cem", evidence.CEM, cod(evidence.CODBasic, nil), true},
		{"another label", evidence.CEMIP, cod(evidence.CODIP, func(r *evidence.Record) { r.Label, r.Commitment = other, evidence.Commitment(other, message) }), false},
		{"another recipient", evidence.CEMIP, cod(evidence.CODIP, func(r *evidence.Record) { r.Recipient = "carol@c.example" }), false},
		{"another message", evidence.CEMIP, cod(evidence.CODIP, func(r *evidence.Record) { r.Commitment = evidence.Commitment(l, []byte("other")) }), false},
		{"another content", evidence.CEM, cod(evidence.CODBasic, func(r *evidence.Record) { r.Content = evidence.Sum([]byte("other")) }), false},
		{"the type of another mode", evidence.CEMIP, cod(evidence.CODNSR, nil), false},
		{"no certificate of delivery", evidence.CEMIP, &evidence.Record{Type: evidence.DLV, Label: l, Protocol: evidence.CEMIP,
			Agent: "certmail.b.example", Recipient: "bob@b.example", Content: evidence.Sum(message), Method: "password",
			Client: "192.0.2.1", Time: pickupNow}, false},
	} {
		r, err := codFor(view(l, c.mode), codText(t, c.r))
		switch {
		case c.ok && (err != nil || r.Type != c.r.Type || r.Label != l):
			t.Errorf("%s: %v, want it signed", c.name, err)
		case !c.ok && (err == nil || !strings.Contains(err.Error(), "nothing was signed")):
			t.Errorf("%s: %v, want a refusal to sign", c.name, err)
		}
	}
	if _, err := codFor(view(l, evidence.CEMIP), "not a record"); err == nil || !strings.Contains(err.Error(), "no evidence record") {
		t.Errorf("garbage: %v", err)
	}
}

func TestCheckMessage(t *testing.T) {
	l := testLabel(t, 1)
	for _, c := range []struct {
		mode    evidence.Protocol
		m       []byte
		checked string
		want    string // in the mismatch; "" for none
	}{
		{evidence.CEMIP, message, "the commitment H(L,M)", ""},
		{evidence.CEMIP, []byte("another message"), "", "the commitment " + evidence.Commitment(l, message).String()},
		{evidence.CEM, message, "the content hash H(M)", ""},
		{evidence.CEM, []byte("another message"), "", "the content hash " + evidence.Sum(message).String()},
		{evidence.CEMNSR, []byte("anything"), "", ""},
	} {
		checked, err := checkMessage(view(l, c.mode), c.m)
		var mm *MismatchError
		switch {
		case checked != c.checked:
			t.Errorf("%s: checked against %q, want %q", c.mode, checked, c.checked)
		case c.want == "" && err != nil:
			t.Errorf("%s: %v", c.mode, err)
		case c.want != "" && (!errors.As(err, &mm) || !strings.Contains(mm.Want, c.want)):
			t.Errorf("%s: %v, want a mismatch with %s", c.mode, err, c.want)
		}
	}
	if _, err := checkMessage(&api.PickupView{Label: "01jdz4q8x3", Mode: "cem-ip"}, message); err == nil || !strings.Contains(err.Error(), "the agent gave label") {
		t.Errorf("a bad label: %v", err)
	}
}
