package agent_test

import (
	"context"
	"testing"
	"time"

	"certmail/agent"
	"certmail/evidence"
	"certmail/store"
)

func TestItemsPages(t *testing.T) {
	w := newWorld(t)
	ctx := context.Background()
	const carol = "carol@c.example"
	if err := w.st.Update(ctx, func(tx store.Tx) error {
		return tx.PutUser(store.User{Address: carol, PasswordHash: "$argon2id$unused", Created: t0})
	}); err != nil {
		t.Fatal(err)
	}
	var posted []evidence.Label // oldest first
	for i := range 5 {
		posted = append(posted, w.submit(t, agent.Submission{Subject: string(rune('a' + i))}).Label)
		w.submit(t, agent.Submission{Sender: carol}) // another sender's item between alice's
		w.clock.add(time.Minute)
	}

	var got []evidence.Label
	for offset, wantMore := range []bool{true, true, false} {
		items, more, err := w.a.Items(ctx, alice, offset*2, 2)
		if err != nil {
			t.Fatal(err)
		}
		if more != wantMore {
			t.Fatalf("page %d: more %v, want %v", offset, more, wantMore)
		}
		for _, it := range items {
			if it.Sender != alice {
				t.Fatalf("alice's list holds an item of %s", it.Sender)
			}
			got = append(got, it.Label)
		}
	}
	if len(got) != len(posted) {
		t.Fatalf("%d items listed, want %d", len(got), len(posted))
	}
	for i := range got {
		if got[i] != posted[len(posted)-1-i] {
			t.Fatalf("item %d is %s, want %s: newest first", i, got[i], posted[len(posted)-1-i])
		}
	}
	if items, more, err := w.a.Items(ctx, "nobody@n.example", 0, 10); err != nil || more || len(items) != 0 {
		t.Fatalf("a sender with no items: %v %v %v", items, more, err)
	}
	if _, _, err := w.a.Items(ctx, alice, -1, 10); agent.KindOf(err) != agent.KindInvalid {
		t.Fatalf("negative offset: %v", err)
	}
}

func TestSender(t *testing.T) {
	w := newWorld(t)
	ctx := context.Background()
	if u, err := w.a.Sender(ctx, alice); err != nil || u.Address != alice {
		t.Fatalf("alice: %+v %v", u, err)
	}
	// A recipient known only by its key, an unknown address and a disabled account may not send.
	if err := w.st.Update(ctx, func(tx store.Tx) error {
		if err := tx.PutUser(store.User{Address: bob, VerifierKey: "unused", Created: t0}); err != nil {
			return err
		}
		return tx.PutUser(store.User{Address: "dis@d.example", PasswordHash: "$argon2id$unused", Disabled: true, Created: t0})
	}); err != nil {
		t.Fatal(err)
	}
	for _, a := range []string{bob, "nobody@n.example", "dis@d.example"} {
		if _, err := w.a.Sender(ctx, a); agent.KindOf(err) != agent.KindForbidden {
			t.Errorf("%s: %v, want forbidden", a, err)
		}
	}
}
