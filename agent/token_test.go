package agent_test

import (
	"bytes"
	"crypto/sha256"
	"database/sql"
	"encoding/base64"
	"path/filepath"
	"testing"
	"time"

	"certmail/agent"
	"certmail/evidence"
	"certmail/store"
)

// The keys the store finds items by pickup token sort in the order the items were posted, and
// a link of an earlier version, whose token is 32 random bytes, still opens its item.
func TestPickupTokens(t *testing.T) {
	w := newWorld(t)
	var prev []byte
	for i := range 5 {
		w.submit(t, agent.Submission{Subject: "the lease"})
		tok := w.mails.token(t, bob)
		if len(tok) != 43 {
			t.Fatalf("token %d is %d characters, want 43", i, len(tok))
		}
		if v, err := w.a.Pickup(t.Context(), tok); err != nil || v.State != store.StatePosted {
			t.Fatalf("pickup of item %d: %v, %v", i, v.State, err)
		}
		k := agent.TokenHash(tok)
		if prev != nil && bytes.Compare(prev, k[:]) >= 0 {
			t.Fatalf("the key of item %d, posted a second later, sorts before the last one's", i)
		}
		prev = bytes.Clone(k[:])
		w.clock.add(time.Second)
	}

	// An item of an earlier version: its token hashes whole.
	tok := w.mails.token(t, bob)
	old := base64.RawURLEncoding.EncodeToString(bytes.Repeat([]byte{0xa5}, 32))
	legacy := sha256.Sum256([]byte("certmail pickup token\n" + old)) // what earlier versions kept
	db, err := sql.Open("sqlite", filepath.Join(w.dir, "certmail.db"))
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	newKey := agent.TokenHash(tok)
	if _, err := db.Exec(`UPDATE items SET token_hash = ? WHERE token_hash = ?`, evidence.Hash(legacy).String(), newKey.String()); err != nil {
		t.Fatal(err)
	}
	if v, err := w.a.Pickup(t.Context(), old); err != nil || v.State != store.StatePosted {
		t.Fatalf("pickup with a token of an earlier version: %v, %v", v.State, err)
	}
	if _, err := w.a.Pickup(t.Context(), tok); agent.KindOf(err) != agent.KindNotFound {
		t.Fatalf("pickup with the token that item no longer has: %v", err)
	}
}
