package agent_test

import (
	"context"
	"errors"
	"math/rand/v2"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"certmail/agent"
	"certmail/evidence"
	"certmail/protocol"
	"certmail/relay"
	"certmail/store"
	"certmail/store/blobfs"
	"certmail/store/sqlite"
)

// node is one agent of an in-process chain; the test moves the relay mails between them as the
// outbound queue and the relay endpoint would, through relay.ParseMail.
type node struct {
	name  string
	a     *agent.Agent
	st    store.Store
	mails *recorder
	id    *protocol.Identity
}

type chain struct {
	nodes map[string]*node
	clock *clock
}

// newChain makes agent1 (alice's, a.example), agent2 and agent3 (bob's, b.example); agent1
// routes b.example to agent2, agent2 to agent3. Every agent knows every other's key.
func newChain(t *testing.T) *chain {
	t.Helper()
	c := &chain{nodes: map[string]*node{}, clock: &clock{t: t0}}
	names := []string{"agent1.example", "agent2.example", "agent3.example"}
	ids := map[string]*protocol.Identity{}
	keys := map[string]string{}
	for i, n := range names {
		id, err := protocol.NewIdentity(n, rand.NewChaCha8([32]byte{byte(i + 10)}))
		if err != nil {
			t.Fatal(err)
		}
		ids[n], keys[n] = id, id.Verifier
	}
	routes := map[string]map[string]string{
		"agent1.example": {"b.example": "agent2.example"},
		"agent2.example": {"b.example": "agent3.example", "a.example": "agent1.example"},
		"agent3.example": {"a.example": "agent1.example"},
	}
	domains := map[string]string{"agent1.example": "a.example", "agent2.example": "relay.example", "agent3.example": "b.example"}
	for _, n := range names {
		dir := t.TempDir()
		st, err := sqlite.Open(filepath.Join(dir, "certmail.db"))
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { st.Close() })
		blobs, err := blobfs.Open(filepath.Join(dir, "blobs"))
		if err != nil {
			t.Fatal(err)
		}
		peers := agent.Peers{Keys: map[string]string{}, Routes: routes[n]}
		for k, v := range keys {
			if k != n {
				peers.Keys[k] = v
			}
		}
		s := settings()
		s.Peers, s.Domains = peers, []string{domains[n]}
		nd := &node{name: n, st: st, mails: &recorder{}, id: ids[n]}
		nd.a = agent.New(ids[n], st, blobs, nd.mails, s, c.clock.now, nil)
		c.nodes[n] = nd
	}
	if err := c.nodes["agent1.example"].st.Update(context.Background(), func(tx store.Tx) error {
		return tx.PutUser(store.User{Address: alice, PasswordHash: "$argon2id$unused", Created: t0})
	}); err != nil {
		t.Fatal(err)
	}
	return c
}

func (c *chain) n(i int) *node {
	return c.nodes[[]string{"", "agent1.example", "agent2.example", "agent3.example"}[i]]
}

// pump delivers queued mail until none is left: relay mails to the agent they name, through
// ParseMail with that agent's trusted keys; other mails are marked sent.
func (c *chain) pump(t *testing.T) {
	t.Helper()
	ctx := context.Background()
	for moved := true; moved; {
		moved = false
		for _, from := range c.nodes {
			var due []store.Outbound
			if err := from.st.View(ctx, func(tx store.Tx) (err error) { due, err = tx.DueOutbound(c.clock.now(), 100); return err }); err != nil {
				t.Fatal(err)
			}
			for _, m := range due {
				if agent.IsPeerMail(m.Kind) {
					to := c.nodes[strings.TrimPrefix(m.To, relay.Address(""))]
					if err := c.take(to, m.Data); err != nil {
						t.Fatalf("%s -> %s: %s: %v", from.name, to.name, m.Kind, err)
					}
				}
				if err := from.a.Sent(ctx, m); err != nil {
					t.Fatal(err)
				}
				moved = true
			}
		}
	}
}

// take hands a relay mail to an agent as its relay endpoint does.
func (c *chain) take(to *node, data []byte) error {
	m, err := relay.ParseMail(data, 1<<24, func(name string) (string, bool) {
		if nd, ok := c.nodes[name]; ok && name != to.name {
			return nd.id.Verifier, true
		}
		return "", false
	})
	if err != nil {
		return err
	}
	return to.a.Take(context.Background(), m)
}

// send builds a relay mail signed by the agent from, as a peer (or an impostor holding from's
// key) could, and hands it to to.
func (c *chain) send(from, to *node, step relay.Step, l evidence.Label, notes []*evidence.Note, msg []byte) error {
	m, err := relay.NewMail(step, l, to.name, notes, msg, c.clock.now(), from.id.Signer)
	if err != nil {
		return err
	}
	data, err := m.Encode("test")
	if err != nil {
		return err
	}
	return c.take(to, data)
}

func (c *chain) evidence(t *testing.T, nd *node, l evidence.Label) []*evidence.Note {
	t.Helper()
	var out []*evidence.Note
	err := nd.st.View(context.Background(), func(tx store.Tx) error {
		evs, err := tx.Evidence(l)
		for _, e := range evs {
			n, err := evidence.ParseNote(e.Note)
			if err != nil {
				return err
			}
			out = append(out, n)
		}
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	return out
}

func find(notes []*evidence.Note, typ evidence.Type) *evidence.Note {
	for _, n := range notes {
		if n.Record.Type == typ {
			return n
		}
	}
	return nil
}

// verdictAt judges agent1's bundle for l with all three keys pinned.
func (c *chain) verdict(t *testing.T, l evidence.Label) *evidence.Verdict {
	t.Helper()
	b, err := c.n(1).a.Bundle(context.Background(), l, true)
	if err != nil {
		t.Fatal(err)
	}
	keys, _ := evidence.NewKeys(c.n(1).id.Verifier, c.n(2).id.Verifier, c.n(3).id.Verifier)
	return protocol.JudgeAt(b.Check(keys), c.clock.now())
}

func TestChainDelivers(t *testing.T) {
	c := newChain(t)
	ctx := context.Background()
	p := func() agent.Posting {
		ps, err := c.n(1).a.Submit(ctx, agent.Submission{Sender: alice, Recipients: []string{bob}, Message: msg, Subject: "the lease"})
		if err != nil {
			t.Fatal(err)
		}
		return ps[0]
	}()
	c.pump(t)
	tok := c.n(3).mails.token(t, bob)
	if _, err := c.n(3).a.Accept(ctx, tok, agent.Acceptance{Client: "192.0.2.7"}); err != nil {
		t.Fatal(err)
	}
	// Before agent1's decision comes back, agent3 holds M back.
	if _, _, err := c.n(3).a.Content(ctx, tok, "192.0.2.7"); agent.KindOf(err) != agent.KindUnavailable {
		t.Fatalf("content before the countersignature: %v", err)
	}
	c.pump(t)
	if m, _, err := c.n(3).a.Content(ctx, tok, "192.0.2.7"); err != nil || string(m) != string(msg) {
		t.Fatalf("content after the countersignature: %q, %v", m, err)
	}
	want(t, c.verdict(t, p.Label), evidence.OutcomeDelivered, evidence.AgentAttested)
	if got := c.n(1).mails.kinds(alice); len(got) != 2 || got[1] != agent.ReceiptDelivery {
		t.Errorf("alice's receipts: %v", got)
	}
}

// TestChainRefusals sends each forgery the federation must refuse to the agent it would fool,
// and checks the reason and that nothing changed.
func TestChainRefusals(t *testing.T) {
	c := newChain(t)
	ctx := context.Background()
	a1, a2, a3 := c.n(1), c.n(2), c.n(3)
	submit := func(text string) evidence.Label {
		m := []byte("From: alice@a.example\r\nTo: bob@b.example\r\nSubject: x\r\n\r\n" + text + "\r\n")
		ps, err := a1.a.Submit(ctx, agent.Submission{Sender: alice, Recipients: []string{bob}, Message: m})
		if err != nil {
			t.Fatal(err)
		}
		return ps[0].Label
	}
	l1, l2 := submit("first"), submit("second")
	c.pump(t)
	ev1, ev2 := c.evidence(t, a3, l1), c.evidence(t, a3, l2)
	cop1, cop2 := find(ev1, evidence.COP), find(ev2, evidence.COP)
	var ack1, ack2 *evidence.Note // agent2's ACKs to agent1
	for _, n := range c.evidence(t, a1, l1) {
		if n.Record.Type == evidence.ACK {
			ack1 = n
		}
	}
	for _, n := range c.evidence(t, a1, l2) {
		if n.Record.Type == evidence.ACK {
			ack2 = n
		}
	}
	impostor, err := protocol.NewIdentity("agent1.example", rand.NewChaCha8([32]byte{99}))
	if err != nil {
		t.Fatal(err)
	}
	stranger, err := protocol.NewIdentity("mallory.example", rand.NewChaCha8([32]byte{98}))
	if err != nil {
		t.Fatal(err)
	}
	sign := func(id *protocol.Identity, r *evidence.Record) *evidence.Note {
		n, err := evidence.Sign(r, id.Signer)
		if err != nil {
			t.Fatal(err)
		}
		return n
	}
	fresh := evidence.Label{7, 7, 7}
	forgedCOP := sign(impostor, &evidence.Record{Type: evidence.COP, Label: fresh, Protocol: evidence.CEMIP, Agent: "agent1.example",
		Sender: alice, Recipient: bob, Content: evidence.Sum(msg), Deadline: t0.Add(48 * time.Hour), Time: t0})
	rodBy := func(id *protocol.Identity, l evidence.Label, content evidence.Hash) *evidence.Note {
		return sign(id, &evidence.Record{Type: evidence.ROD, Label: l, Protocol: evidence.CEMIP, Agent: id.Name,
			Origin: "agent1.example", Recipient: bob, Content: content, Time: t0})
	}
	strangerNode := &node{name: "mallory.example", id: stranger}
	impostorNode := &node{name: "agent1.example", id: impostor}

	cases := []struct {
		name, want string
		err        error
	}{
		{"relay from an agent not in the trust store", "mallory.example is not in the trust store",
			c.send(strangerNode, a2, relay.StepRelay, cop1.Record.Label, []*evidence.Note{cop1}, msg)},
		{"relay signed with a key the trust store does not hold", "not signed by agent1.example's key",
			c.send(impostorNode, a2, relay.StepRelay, fresh, []*evidence.Note{forgedCOP}, msg)},
		{"relay whose COP the sending agent did not sign", "do not hold",
			c.send(a1, a2, relay.StepRelay, fresh, []*evidence.Note{forgedCOP}, msg)},
		{"relay whose message does not match the COP", "the message hashes to",
			c.send(a1, a2, relay.StepRelay, cop1.Record.Label, []*evidence.Note{cop1}, []byte("From: x@a.example\r\n\r\nother\r\n"))},
		{"relay whose COP is for another label than the envelope", "is for label",
			c.send(a1, a2, relay.StepRelay, fresh, []*evidence.Note{cop1}, msg)},
		{"relay replayed to another agent under a label it has seen", "was seen before",
			c.send(a1, a3, relay.StepRelay, l1, []*evidence.Note{cop1}, []byte("From: alice@a.example\r\nTo: bob@b.example\r\nSubject: x\r\n\r\nfirst\r\n"))},
		{"relay whose chain skips an agent", "last taken by agent1.example, but agent2.example relays it",
			c.send(a2, a3, relay.StepRelay, fresh, []*evidence.Note{sign(a1.id, &evidence.Record{Type: evidence.COP, Label: fresh, Protocol: evidence.CEMIP,
				Agent: "agent1.example", Sender: alice, Recipient: bob, Content: evidence.Sum(msg), Deadline: t0.Add(48 * time.Hour), Time: t0})}, msg)},
		{"ACK signed by an agent that did not take the item", "was not relayed between this agent and agent3.example",
			c.send(a3, a1, relay.StepAck, l1, []*evidence.Note{ack1}, nil)},
		{"ACK signed by another agent than the one that sends it", "the ACK is signed as agent3.example",
			c.send(a2, a1, relay.StepAck, l1, []*evidence.Note{sign(a3.id, &evidence.Record{Type: evidence.ACK, Label: l1, Protocol: evidence.CEMIP,
				Agent: "agent3.example", From: "agent1.example", Recipient: bob, Content: cop1.Record.Content, Time: t0})}, nil)},
		{"ACK of another message replayed for this one", "is for label",
			c.send(a2, a1, relay.StepAck, l1, []*evidence.Note{ack2}, nil)},
		{"ROD signed by an agent other than the recipient's", "the ROD is signed as agent2.example, but the recipient's agent is agent3.example",
			c.send(a3, a2, relay.StepReport, l1, []*evidence.Note{rodBy(a2.id, l1, cop1.Record.Content)}, nil)},
		{"ROD of another message replayed for this one", "is for label",
			c.send(a3, a2, relay.StepReport, l1, []*evidence.Note{rodBy(a3.id, l2, cop2.Record.Content)}, nil)},
		{"ROD for another content", "names another",
			c.send(a3, a2, relay.StepReport, l1, []*evidence.Note{rodBy(a3.id, l1, cop2.Record.Content)}, nil)},
		{"decision not countersigned by the sender's agent", "does not hold",
			c.send(a2, a3, relay.StepDecision, l1, []*evidence.Note{rodBy(a3.id, l1, cop1.Record.Content)}, nil)},
	}
	for _, tc := range cases {
		var re *relay.RefusedError
		if !errors.As(tc.err, &re) || !strings.Contains(re.Reason, tc.want) {
			t.Errorf("%s: got %v, want a refusal saying %q", tc.name, tc.err, tc.want)
		}
	}
	// Nothing the forgeries carried was taken: each agent still holds the evidence it had.
	if got := c.evidence(t, a3, l1); len(got) != len(ev1) {
		t.Errorf("agent3 holds %d notes for %s after the forgeries, %d before", len(got), l1, len(ev1))
	}
	if got := c.evidence(t, a2, fresh); len(got) != 0 {
		t.Errorf("agent2 stored %d notes of forged relays", len(got))
	}
	for _, l := range []evidence.Label{l1, l2} {
		if v := c.verdict(t, l); !v.Valid || v.Outcome != evidence.OutcomePosted {
			t.Errorf("%s after the forgeries: %s", l, v.Text())
		}
	}
}

// TestChainLateReport: the recipient accepts at agent3 just before agent3 closes, but agent1's
// deadline notice is given first; the report that arrives after it is answered with the notice,
// and agent3 never releases M.
func TestChainLateReport(t *testing.T) {
	c := newChain(t)
	ctx := context.Background()
	ps, err := c.n(1).a.Submit(ctx, agent.Submission{Sender: alice, Recipients: []string{bob}, Message: msg, Deadline: t0.Add(2 * time.Hour)})
	if err != nil {
		t.Fatal(err)
	}
	c.pump(t)
	tok := c.n(3).mails.token(t, bob)
	if _, err := c.n(3).a.Accept(ctx, tok, agent.Acceptance{Client: "192.0.2.7"}); err != nil {
		t.Fatal(err)
	}
	// The report is lost for a while; agent1's deadline passes.
	c.clock.add(2 * time.Hour)
	if _, err := c.n(1).a.RunTimers(ctx); err != nil {
		t.Fatal(err)
	}
	c.pump(t)
	if _, _, err := c.n(3).a.Content(ctx, tok, "192.0.2.7"); err == nil {
		t.Fatal("agent3 released M although agent1 gave notice of non-delivery")
	}
	v := c.verdict(t, ps[0].Label)
	if !v.Valid || v.Outcome != evidence.OutcomeNotDelivered {
		t.Fatalf("verdict: %s", v.Text())
	}
	if n := find(c.evidence(t, c.n(3), ps[0].Label), evidence.NDN); n == nil {
		t.Error("agent3 holds no notice of non-delivery")
	}
}

// TestChainCarriesTheMessagePassword: the message password the sender set at agent1 protects
// the pickup at agent3, which never learns the password itself, only its hash.
func TestChainCarriesTheMessagePassword(t *testing.T) {
	c := newChain(t)
	ctx := context.Background()
	if _, err := c.n(1).a.Submit(ctx, agent.Submission{Sender: alice, Recipients: []string{bob}, Message: msg,
		Password: "blue heron 42", Hint: "the bird"}); err != nil {
		t.Fatal(err)
	}
	c.pump(t)
	tok := c.n(3).mails.token(t, bob)
	v, err := c.n(3).a.Pickup(ctx, tok)
	if err != nil || !v.NeedPassword || v.Hint != "the bird" {
		t.Fatalf("pickup at agent3: %+v, %v", v, err)
	}
	if _, err := c.n(3).a.Accept(ctx, tok, agent.Acceptance{Password: "wrong"}); agent.KindOf(err) != agent.KindForbidden {
		t.Fatalf("a wrong password at agent3: %v", err)
	}
	if _, err := c.n(3).a.Accept(ctx, tok, agent.Acceptance{Password: "blue heron 42"}); err != nil {
		t.Fatalf("the right password at agent3: %v", err)
	}
}

// TestChainRetraction: alice retracts at agent1 after agent3 notified bob; the retraction goes
// down the chain, and bob can no longer accept at agent3.
func TestChainRetraction(t *testing.T) {
	c := newChain(t)
	ctx := context.Background()
	ps, err := c.n(1).a.Submit(ctx, agent.Submission{Sender: alice, Recipients: []string{bob}, Message: msg})
	if err != nil {
		t.Fatal(err)
	}
	c.pump(t)
	tok := c.n(3).mails.token(t, bob)
	if err := c.n(1).a.Retract(ctx, alice, ps[0].Label); err != nil {
		t.Fatal(err)
	}
	c.pump(t)
	if _, err := c.n(3).a.Accept(ctx, tok, agent.Acceptance{}); agent.KindOf(err) != agent.KindGone {
		t.Fatalf("accepting at agent3 after the retraction: %v", err)
	}
	for _, nd := range []*node{c.n(2), c.n(3)} {
		if find(c.evidence(t, nd, ps[0].Label), evidence.RTR) == nil {
			t.Errorf("%s holds no RTR", nd.name)
		}
	}
	want(t, c.verdict(t, ps[0].Label), evidence.OutcomeRetracted, "")
}
