package smtpd_test

import (
	"context"
	crand "crypto/rand"
	"crypto/tls"
	"errors"
	"math/rand/v2"
	"net"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/emersion/go-smtp"

	"certmail/agent"
	"certmail/evidence"
	"certmail/pki"
	"certmail/protocol"
	"certmail/relay"
	"certmail/smtpd"
	"certmail/store"
	"certmail/store/blobfs"
	"certmail/store/sqlite"
)

// relayRig is agent2's relay endpoint, trusting agent1 whose TLS key it pins as pin says.
type relayRig struct {
	addr    string
	st      store.Store
	agent1  *protocol.Identity
	cert1   tls.Certificate // agent1's TLS certificate, from agent1's own CA
	pinned  string
	stopped chan error
}

func newRelayRig(t *testing.T, pinOK bool) *relayRig {
	t.Helper()
	dir := t.TempDir()
	now := time.Now()
	tlsFor := func(name string) tls.Certificate {
		ca, err := pki.LoadOrCreateCA(filepath.Join(dir, name, "ca"), name, now)
		if err != nil {
			t.Fatal(err)
		}
		cert, err := ca.ServerCertificate(filepath.Join(dir, name, "tls"), []string{name, "localhost", "127.0.0.1"}, now)
		if err != nil {
			t.Fatal(err)
		}
		return cert
	}
	r := &relayRig{cert1: tlsFor("agent1.example"), stopped: make(chan error, 1)}
	r.pinned = pki.SPKIPin(r.cert1.Leaf)
	if !pinOK {
		r.pinned = pki.SPKIPin(tlsFor("other.example").Leaf)
	}
	var err error
	if r.agent1, err = protocol.NewIdentity("agent1.example", rand.NewChaCha8([32]byte{11})); err != nil {
		t.Fatal(err)
	}
	id2, err := protocol.NewIdentity("agent2.example", rand.NewChaCha8([32]byte{12}))
	if err != nil {
		t.Fatal(err)
	}
	db, err := sqlite.Open(filepath.Join(dir, "certmail.db"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { db.Close() })
	blobs, err := blobfs.Open(filepath.Join(dir, "blobs"))
	if err != nil {
		t.Fatal(err)
	}
	r.st = db
	ag := agent.New(id2, db, blobs, recorder{}, agent.Settings{PublicURL: "https://agent2.example", DefaultDeadline: 48 * time.Hour,
		MinDeadline: time.Hour, MaxDeadline: 30 * 24 * time.Hour, Bounce: "certmail@agent2.example",
		Peers: agent.Peers{Keys: map[string]string{"agent1.example": r.agent1.Verifier}}, Domains: []string{"b.example"}}, nil, nil)
	srv := smtpd.NewRelay(smtpd.RelayConfig{TLS: pki.TLSConfig(tlsFor("agent2.example")), MaxBytes: 1 << 20,
		Peer: func(name string) (string, string, bool) {
			if name == "agent1.example" {
				return r.agent1.Verifier, r.pinned, true
			}
			return "", "", false
		}}, ag)
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	r.addr = l.Addr().String()
	go func() { r.stopped <- srv.Serve(l) }()
	t.Cleanup(func() {
		srv.Close()
		if err := <-r.stopped; !errors.Is(err, smtpd.ErrServerClosed) {
			t.Errorf("serve: %v", err)
		}
	})
	return r
}

// relayMail is a relay of a fresh item agent1 posted for bob@b.example, its envelope signed
// by envelope.
func (r *relayRig) relayMail(t *testing.T, envelope *protocol.Identity) (evidence.Label, []byte) {
	t.Helper()
	msg := []byte("From: alice@a.example\r\nTo: bob@b.example\r\nSubject: x\r\n\r\nhello\r\n")
	l, err := evidence.NewLabel(crand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	now := evidence.CanonicalTime(time.Now())
	cop, err := evidence.Sign(&evidence.Record{Type: evidence.COP, Label: l, Protocol: evidence.CEMIP, Agent: "agent1.example",
		Sender: "alice@a.example", Recipient: "bob@b.example", Content: evidence.Sum(msg), Deadline: now.Add(48 * time.Hour), Time: now}, r.agent1.Signer)
	if err != nil {
		t.Fatal(err)
	}
	m, err := relay.NewMail(relay.StepRelay, l, "agent2.example", []*evidence.Note{cop}, msg, now, envelope.Signer)
	if err != nil {
		t.Fatal(err)
	}
	data, err := m.Encode("t")
	if err != nil {
		t.Fatal(err)
	}
	return l, data
}

// send relays data to the endpoint with the client certificates given, and returns the error
// of the first command refused.
func (r *relayRig) send(t *testing.T, certs []tls.Certificate, data []byte) error {
	t.Helper()
	c, err := smtp.DialStartTLS(r.addr, &tls.Config{InsecureSkipVerify: true, Certificates: certs})
	if err != nil {
		return err
	}
	defer c.Close()
	if err := c.Mail(relay.Address("agent1.example"), nil); err != nil {
		return err
	}
	if err := c.Rcpt(relay.Address("agent2.example"), nil); err != nil {
		return err
	}
	w, err := c.Data()
	if err != nil {
		return err
	}
	if _, err := w.Write(data); err != nil {
		return err
	}
	return w.Close()
}

func (r *relayRig) has(t *testing.T, l evidence.Label) bool {
	err := r.st.View(context.Background(), func(tx store.Tx) error { _, err := tx.Item(l); return err })
	if err != nil && !errors.Is(err, store.ErrNotFound) {
		t.Fatal(err)
	}
	return err == nil
}

func wantRefused(t *testing.T, what string, err error, code int, says string) {
	t.Helper()
	var se *smtp.SMTPError
	if !errors.As(err, &se) || se.Code != code || !strings.Contains(se.Message, says) {
		t.Errorf("%s: got %v, want %d saying %q", what, err, code, says)
	}
}

func TestRelayEndpoint(t *testing.T) {
	r := newRelayRig(t, true)
	l, data := r.relayMail(t, r.agent1)
	if err := r.send(t, []tls.Certificate{r.cert1}, data); err != nil {
		t.Fatalf("a relay from a trusted peer: %v", err)
	}
	if !r.has(t, l) {
		t.Fatal("250, but the item is not stored")
	}
	// The same relay again (the sender missed the 250): accepted, nothing twice.
	if err := r.send(t, []tls.Certificate{r.cert1}, data); err != nil {
		t.Errorf("the same relay again: %v", err)
	}

	// Without TLS, no transaction starts.
	c, err := smtp.Dial(r.addr)
	if err != nil {
		t.Fatal(err)
	}
	wantRefused(t, "MAIL FROM without TLS", c.Mail(relay.Address("agent1.example"), nil), 530, "STARTTLS")
	c.Close()

	// TLS without a client certificate: the handshake or MAIL FROM fails.
	l2, data2 := r.relayMail(t, r.agent1)
	if err := r.send(t, nil, data2); err == nil || r.has(t, l2) {
		t.Errorf("a relay without a client certificate: %v", err)
	}

	// An agent the trust store does not hold.
	mallory, _ := protocol.NewIdentity("mallory.example", rand.NewChaCha8([32]byte{13}))
	l3, data3 := r.relayMail(t, mallory)
	wantRefused(t, "a relay from an unknown agent", r.send(t, []tls.Certificate{r.cert1}, data3), 554, "not in the trust store")
	if r.has(t, l3) {
		t.Error("the unknown agent's item was stored")
	}
}

func TestRelayEndpointPinsTLSKey(t *testing.T) {
	r := newRelayRig(t, false)
	l, data := r.relayMail(t, r.agent1)
	wantRefused(t, "a relay over a TLS key the trust store does not pin", r.send(t, []tls.Certificate{r.cert1}, data), 554, "pins for agent1.example")
	if r.has(t, l) {
		t.Error("stored anyway")
	}
}
