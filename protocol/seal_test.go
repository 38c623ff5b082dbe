package protocol_test

import (
	"bytes"
	"crypto/aes"
	"crypto/cipher"
	"crypto/hmac"
	"crypto/sha256"
	"errors"
	"testing"
	"time"

	"certmail/evidence"
	"certmail/protocol"
)

func TestEncryptRoundTrip(t *testing.T) {
	key, err := protocol.NewMessageKey(ttpSeeded(1))
	if err != nil {
		t.Fatal(err)
	}
	for _, m := range [][]byte{nil, []byte("x"), bytes.Repeat([]byte("certified\r\n"), 10000)} {
		c, err := protocol.Encrypt(key, m, nil)
		if err != nil {
			t.Fatal(err)
		}
		if len(c) != 12+len(m)+16 {
			t.Fatalf("E_K of %d bytes is %d bytes, want nonce, ciphertext and tag", len(m), len(c))
		}
		got, err := protocol.Decrypt(key, c)
		if err != nil || !bytes.Equal(got, m) {
			t.Fatalf("round trip: %v", err)
		}
	}
	// Two encryptions of one message differ (fresh nonces).
	c1, _ := protocol.Encrypt(key, []byte("m"), nil)
	c2, _ := protocol.Encrypt(key, []byte("m"), nil)
	if bytes.Equal(c1, c2) {
		t.Fatal("two encryptions under random nonces are equal")
	}
}

func TestDecryptRefusesWrongKeyAndTampering(t *testing.T) {
	key, _ := protocol.NewMessageKey(ttpSeeded(2))
	other, _ := protocol.NewMessageKey(ttpSeeded(3))
	c, err := protocol.Encrypt(key, []byte("the contract"), ttpSeeded(4))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := protocol.Decrypt(other, c); !errors.Is(err, protocol.ErrOpen) {
		t.Fatalf("wrong key: %v, want ErrOpen", err)
	}
	for i := range c {
		bad := bytes.Clone(c)
		bad[i] ^= 0x40
		if _, err := protocol.Decrypt(key, bad); !errors.Is(err, protocol.ErrOpen) {
			t.Fatalf("byte %d changed: %v, want ErrOpen", i, err)
		}
	}
	for _, short := range [][]byte{nil, c[:11], c[:27]} {
		if _, err := protocol.Decrypt(key, short); !errors.Is(err, protocol.ErrOpen) {
			t.Fatalf("%d bytes: %v, want ErrOpen", len(short), err)
		}
	}
	if _, err := protocol.Decrypt(key[:16], c); !errors.Is(err, protocol.ErrKeySize) {
		t.Fatalf("16-byte key: %v, want ErrKeySize", err)
	}
}

// hkdfSHA256 is RFC 5869 written out again, so that the test checks the documented derivation
// rather than the code's own call.
func hkdfSHA256(ikm, salt []byte, info string, n int) []byte {
	ext := hmac.New(sha256.New, salt)
	ext.Write(ikm)
	prk := ext.Sum(nil)
	var out, prev []byte
	for i := byte(1); len(out) < n; i++ {
		h := hmac.New(sha256.New, prk)
		h.Write(prev)
		h.Write([]byte(info))
		h.Write([]byte{i})
		prev = h.Sum(nil)
		out = append(out, prev...)
	}
	return out[:n]
}

func TestLinkedKey(t *testing.T) {
	l, _ := evidence.NewLabel(ttpSeeded(5))
	m := []byte("From: alice@a.example\r\n\r\nlinked\r\n")
	key, nonce := protocol.LinkedKey(l, m)
	if want := hkdfSHA256(m, []byte(l.String()), "certmail linked key", 32); !bytes.Equal(key, want) {
		t.Fatalf("linked key %x, want HKDF-SHA256(M, L, \"certmail linked key\") = %x", key, want)
	}
	if want := hkdfSHA256(m, []byte(l.String()), "certmail linked nonce", 12); !bytes.Equal(nonce, want) {
		t.Fatalf("linked nonce %x, want %x", nonce, want)
	}
	k1, c1, err := protocol.EncryptLinked(l, m)
	if err != nil {
		t.Fatal(err)
	}
	k2, c2, _ := protocol.EncryptLinked(l, m)
	if !bytes.Equal(k1, k2) || !bytes.Equal(c1, c2) {
		t.Fatal("the linked key and ciphertext are not a function of (L, M)")
	}
	// C is the nonce, then AES-256-GCM with no associated data.
	block, _ := aes.NewCipher(key)
	gcm, _ := cipher.NewGCM(block)
	if want := gcm.Seal(bytes.Clone(nonce), nonce, m, nil); !bytes.Equal(c1, want) {
		t.Fatal("the linked ciphertext is not nonce || AES-256-GCM(K, nonce, M)")
	}
	l2, _ := evidence.NewLabel(ttpSeeded(6))
	if k3, _, _ := protocol.EncryptLinked(l2, m); bytes.Equal(k3, k1) {
		t.Fatal("another label gives the same linked key")
	}
	if k4, _, _ := protocol.EncryptLinked(l, append(bytes.Clone(m), '!')); bytes.Equal(k4, k1) {
		t.Fatal("another message gives the same linked key")
	}
}

// TestLinkedKeyArbiterRecomputes: given only M, an arbiter recomputes C from (L, M) and finds the
// H(C) and H(K) that the TTP signed in a CMP2 receipt, with no one having kept K.
func TestLinkedKeyArbiterRecomputes(t *testing.T) {
	w := newTTPWorld(t)
	a, b, ttp := w.cmpParties(t, evidence.CMP2, true, 6, nil)
	ttpHonest(t, time.Hour, a, b, ttp)
	nrd := ttpNoteOf(a.Bundle(), evidence.CMP2NRD)
	if nrd == nil {
		t.Fatal("no CMP2-NRD")
	}
	key, c, err := protocol.EncryptLinked(a.Label(), w.msg)
	if err != nil {
		t.Fatal(err)
	}
	if evidence.Sum(c) != nrd.Record.Ciphertext || evidence.Sum(key) != nrd.Record.KeyHash {
		t.Fatal("the recomputed C and K do not hash to what the receipt names")
	}
	if k, ok := b.Key(a.Label()); !ok || !bytes.Equal(k, key) {
		t.Fatal("B was released another key")
	}
	// With another message, the recomputation fails: the receipt binds M.
	if _, c2, _ := protocol.EncryptLinked(a.Label(), []byte("another message")); evidence.Sum(c2) == nrd.Record.Ciphertext {
		t.Fatal("another message recomputes the same C")
	}
}

func TestSealBox(t *testing.T) {
	k, err := protocol.NewBoxKey(ttpSeeded(7))
	if err != nil {
		t.Fatal(err)
	}
	k2, _ := protocol.NewBoxKey(ttpSeeded(7))
	if !bytes.Equal(k.Public(), k2.Public()) || len(k.Public()) != 32 {
		t.Fatal("a seeded box key is not reproducible, or not an X25519 key")
	}
	other, _ := protocol.NewBoxKey(ttpSeeded(8))
	box, err := protocol.SealBox(k.Public(), "certmail test", []byte("K and H(c)"))
	if err != nil {
		t.Fatal(err)
	}
	if pt, err := k.Open("certmail test", box); err != nil || string(pt) != "K and H(c)" {
		t.Fatalf("open: %q %v", pt, err)
	}
	if _, err := other.Open("certmail test", box); !errors.Is(err, protocol.ErrOpen) {
		t.Fatalf("another key opened the box: %v", err)
	}
	if _, err := k.Open("certmail other step", box); !errors.Is(err, protocol.ErrOpen) {
		t.Fatalf("the box opened under another info string: %v", err)
	}
	for i := range box {
		bad := bytes.Clone(box)
		bad[i] ^= 1
		if _, err := k.Open("certmail test", bad); !errors.Is(err, protocol.ErrOpen) {
			t.Fatalf("byte %d changed: %v", i, err)
		}
	}
	if _, err := protocol.SealBox([]byte("short"), "x", nil); err == nil {
		t.Fatal("sealed to a malformed public key")
	}
}

// TestAGHPExchangeHashFormat pins hS: SHA-256 over the tag and the four fields, each as a 4-byte
// big-endian length and the bytes, so that moving bytes between fields changes the hash.
func TestAGHPExchangeHashFormat(t *testing.T) {
	want := sha256.Sum256(ttpPack([]byte("certmail aghp exchange"), []byte("clear"), []byte("q"), nil, []byte("em")))
	if got := protocol.AGHPExchangeHash([]byte("clear"), []byte("q"), nil, []byte("em")); got != want {
		t.Fatalf("hS = %s, want %x", got, want)
	}
	if protocol.AGHPExchangeHash([]byte("clearq"), nil, nil, []byte("em")) == want {
		t.Fatal("moving bytes from q to the cleartext keeps hS")
	}
	r := protocol.AGHPResponse(ttpAlice, []byte("pw"), []byte("q"))
	if wantR := sha256.Sum256(ttpPack([]byte("certmail aghp response"), []byte(ttpAlice), []byte("pw"), []byte("q"))); !bytes.Equal(r, wantR[:]) {
		t.Fatalf("r = %x, want %x", r, wantR)
	}
}
