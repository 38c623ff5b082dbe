package protocol_test

import (
	"fmt"
	"math/rand/v2"
	"testing"
	"time"

	"golang.org/x/mod/sumdb/note"

	"certmail/evidence"
)

// archive is what an arbiter or auditor checks at once: many distinct cem-ip bundles shaped like
// the cem-ip-n2-signed vector (COP, ACK, NTF, KEY, COD-IP, ROD countersigned: six notes, seven
// signatures), between the agents p1.example and p2.example, each to one of users recipients
// who signs with their own key, bound by a KEY record of p2.
type archive struct {
	files [][]byte // encoded bundles, each with its own label, message and times
	keys  []string // every verifier key, to pin
}

func newArchive(t testing.TB, bundles, users int) *archive {
	t.Helper()
	var seed [32]byte
	seed[0] = 7
	r := rand.NewChaCha8(seed)
	a := &archive{}
	signer := func(name string) (note.Signer, string) {
		skey, vkey, err := note.GenerateKey(r, name)
		if err != nil {
			t.Fatal(err)
		}
		s, err := note.NewSigner(skey)
		if err != nil {
			t.Fatal(err)
		}
		a.keys = append(a.keys, vkey)
		return s, vkey
	}
	p1, p1key := signer("p1.example")
	p2, p2key := signer("p2.example")
	type user struct {
		addr string
		s    note.Signer
		vkey string
	}
	us := make([]user, users)
	for i := range us {
		addr := fmt.Sprintf("user%d@b.example", i)
		name, err := evidence.KeyName(addr)
		if err != nil {
			t.Fatal(err)
		}
		s, vkey := signer(name)
		us[i] = user{addr, s, vkey}
	}
	t0 := time.Date(2026, 1, 5, 9, 0, 0, 0, time.UTC)
	for i := range bundles {
		u := us[i%users]
		label, err := evidence.NewLabel(r)
		if err != nil {
			t.Fatal(err)
		}
		msg := fmt.Appendf(nil, "From: alice@a.example\r\nTo: %s\r\nSubject: offer %d\r\n\r\nThe signed offer is attached.\r\n", u.addr, i)
		h, commit := evidence.Sum(msg), evidence.Commitment(label, msg)
		at := func(ms int) time.Time {
			return t0.Add(time.Duration(i)*time.Minute + time.Duration(ms)*time.Millisecond)
		}
		b := &evidence.Bundle{Label: label}
		for _, k := range []string{p1key, p2key, u.vkey} {
			b.AddKey(k)
		}
		add := func(rec *evidence.Record, signers ...note.Signer) {
			n, err := evidence.Sign(rec, signers...)
			if err != nil {
				t.Fatal(err)
			}
			b.Notes = append(b.Notes, n)
		}
		add(&evidence.Record{Type: evidence.COP, Label: label, Protocol: evidence.CEMIP, Agent: "p1.example", Sender: "alice@a.example",
			Recipient: u.addr, Content: h, Deadline: at(3600_000), Time: at(1)}, p1)
		add(&evidence.Record{Type: evidence.ACK, Label: label, Protocol: evidence.CEMIP, Agent: "p2.example", From: "p1.example",
			Recipient: u.addr, Content: h, Time: at(2)}, p2)
		add(&evidence.Record{Type: evidence.NTF, Label: label, Protocol: evidence.CEMIP, Agent: "p2.example", Recipient: u.addr,
			Content: h, Commitment: commit, Deadline: at(3600_000), Time: at(2)}, p2)
		add(&evidence.Record{Type: evidence.KEY, Agent: "p2.example", Subject: u.addr, Key: u.vkey, Time: at(2)}, p2)
		add(&evidence.Record{Type: evidence.CODIP, Label: label, Agent: "p2.example", Recipient: u.addr, Commitment: commit, Time: at(3)}, u.s)
		add(&evidence.Record{Type: evidence.ROD, Label: label, Protocol: evidence.CEMIP, Agent: "p2.example", Origin: "p1.example",
			Recipient: u.addr, Content: h, Time: at(5)}, p2, p1)
		b.SetItem(evidence.ItemMessage, msg)
		enc, err := b.Encode()
		if err != nil {
			t.Fatal(err)
		}
		a.files = append(a.files, enc)
	}
	return a
}
