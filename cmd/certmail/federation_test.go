package main

import (
	"context"
	"fmt"
	"math/rand/v2"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"certmail/evidence"
	"certmail/internal/logbuf"
)

// peerProc is one agent of a federation test: an agentProc with its own host name, mail domains
// and relay endpoint.
type peerProc struct {
	*agentProc
	name   string
	relay  string
	domain string
}

// startPeer starts an agent named name serving domain, with an inbound relay endpoint, its
// outbound mail going to the sink.
func startPeer(t *testing.T, bin, name, domain, sinkAddr string) *peerProc {
	t.Helper()
	ports := freePorts(t, 3)
	p := &peerProc{agentProc: &agentProc{dir: t.TempDir(), smtp: ports[0], https: ports[1], out: &logbuf.Buffer{}},
		name: name, relay: ports[2], domain: domain}
	_, port, _ := net.SplitHostPort(p.https)
	p.config = filepath.Join(p.dir, "certmail.toml")
	cfg := fmt.Sprintf(`data_dir = %q
hostname = %q
domains = [%q]
public_url = "https://localhost:%s"
[listen]
smtp_submission = %q
smtp_inbound = %q
https = %q
[outbound]
mode = "smarthost"
smarthost = %q
tls = "none"
retry_initial = "300ms"
retry_max = "1s"
[deadlines]
min = "5s"
default = "2m"
`, filepath.Join(p.dir, "data"), name, domain, port, p.smtp, p.relay, p.https, sinkAddr)
	if err := os.WriteFile(p.config, []byte(cfg), 0o600); err != nil {
		t.Fatal(err)
	}
	p.start(t, bin)
	return p
}

// trust adds the other agents to p's trust store, each with its key, relay endpoint, TLS pin and
// the domains given.
func (p *peerProc) trust(t *testing.T, peers ...*peerProc) {
	t.Helper()
	for _, q := range peers {
		code, out, errs := p.certmail(t, "", "peer", "add", q.name, "--key-file", filepath.Join(q.dir, "data", "agent.pub"),
			"--relay", q.relay, "--domain", q.domain, "--tls-cert", filepath.Join(q.dir, "data", "tls.crt"))
		if code != exitOK {
			t.Fatalf("%s: peer add %s: %d %s %s", p.name, q.name, code, out, errs)
		}
	}
}

// restart stops the agent (SIGTERM) and starts it again, so that it reads its trust store.
func (p *peerProc) restart(t *testing.T, bin string) {
	t.Helper()
	p.cmd.Process.Signal(syscall.SIGTERM)
	p.cmd.Wait()
	p.start(t, bin)
}

func (p *peerProc) vkey(t *testing.T) string {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(p.dir, "data", "agent.pub"))
	if err != nil {
		t.Fatal(err)
	}
	return strings.TrimSpace(string(b))
}

// federation starts agent1 (a.example, alice's agent), agent2 (an intermediate serving
// relay.example) and agent3 (b.example, bob's agent) with trust stores that route b.example from
// agent1 to agent2 and from agent2 to agent3, and alice's account at agent1.
func federation(t *testing.T) (p1, p2, p3 *peerProc, mx *sink, bin string) {
	t.Helper()
	if testing.Short() {
		t.Skip("three agents take a while to start; this runs without -short")
	}
	bin, err := binary()
	if err != nil {
		t.Fatal(err)
	}
	mx = newSink(t)
	p1 = startPeer(t, bin, "agent1.example", "a.example", mx.addr)
	p2 = startPeer(t, bin, "agent2.example", "relay.example", mx.addr)
	p3 = startPeer(t, bin, "agent3.example", "b.example", mx.addr)
	// agent1 relays b.example to agent2, agent2 to agent3 (PEC's provider index, as each
	// operator sees it): agent1 knows agent3 only by key, under agent3's own host name.
	p3for1 := *p3
	p3for1.domain = "agent3.example"
	p2for3 := *p2
	p2for3.domain = "relay.example"
	p2b := *p2
	p2b.domain = "b.example"
	p1.trust(t, &p2b, &p3for1)
	p2.trust(t, p1, p3)
	p3.trust(t, p1, &p2for3)
	for _, p := range []*peerProc{p1, p2, p3} {
		p.restart(t, bin)
	}
	if code, out, errs := p1.certmail(t, "correct horse battery\n", "user", "add", "alice@a.example", "--password-stdin"); code != 0 {
		t.Fatalf("user add: %d %s %s", code, out, errs)
	}
	return p1, p2, p3, mx, bin
}

// keyArgs pins the three agents' keys for certmail verify.
func keyArgs(t *testing.T, ps ...*peerProc) []string {
	var args []string
	for _, p := range ps {
		args = append(args, "--key", p.vkey(t))
	}
	return args
}

// bundleOf fetches a label's bundle from agent1 as alice and verifies it with the three agents'
// keys pinned; it returns the verdict and the bundle.
func bundleOf(t *testing.T, s *sender, label string, ps ...*peerProc) (string, *evidence.Bundle) {
	t.Helper()
	bf := filepath.Join(t.TempDir(), label+".bundle")
	if code, out, errs := s.run(t, "status", label, "--bundle", bf); code != exitOK {
		t.Fatalf("status --bundle: exit %d\n%s%s", code, out, errs)
	}
	code, verdict, errs := verify(t, append([]string{bf}, keyArgs(t, ps...)...)...)
	if code != exitOK {
		t.Fatalf("verify %s: exit %d\n%s%s", label, code, verdict, errs)
	}
	data, _ := os.ReadFile(bf)
	b, err := evidence.ParseBundle(data)
	if err != nil {
		t.Fatal(err)
	}
	return verdict, b
}

func types(b *evidence.Bundle) map[evidence.Type]int {
	n := map[evidence.Type]int{}
	for _, x := range b.Notes {
		n[x.Record.Type]++
	}
	return n
}

// linkFor waits for the notification of label at the sink and returns its pickup link.
func linkFor(t *testing.T, mx *sink, to, label string) string {
	t.Helper()
	m := mx.wait(t, to, regexp.QuoteMeta(label))
	link := linkRE.FindString(string(m))
	if link == "" {
		t.Fatalf("no pickup link in the notification:\n%s", m)
	}
	return link
}

// released waits until the pickup page at p shows the content (P1's countersignature has come
// back down the chain) and returns the page.
func released(t *testing.T, p *peerProc, link, want string) string {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for {
		code, page := get(t, p.client, link)
		if code == http.StatusOK && strings.Contains(page, want) {
			return page
		}
		if time.Now().After(deadline) {
			t.Fatalf("the content was not released at %s: %d\n%s", p.name, code, page)
		}
		time.Sleep(200 * time.Millisecond)
	}
}

// TestFederationThreeAgents: A@agent1 -> B@agent3 via agent2, each a certmail serve process with
// its own ports and data. The relay leaves COP, two ACKs, NTF, DLV and the ROD countersigned by
// agent1; the bundle alice downloads verifies with every agent's key pinned, every note proven
// in agent1's log; bob gets the content only once agent1's countersignature is back.
func TestFederationThreeAgents(t *testing.T) {
	p1, p2, p3, mx, _ := federation(t)
	alice := newSender(t, p1.agentProc, "alice@a.example", "correct horse battery")
	body := "The signed contract, as agreed.\n"
	label := alice.send(t, "--to", "bob@b.example", "--subject", "contract", "--text", body)
	mx.wait(t, "alice@a.example", "Subject: Accepted: contract")

	link := linkFor(t, mx, "bob@b.example", label)
	if !strings.Contains(link, strings.TrimPrefix(p3.https, "127.0.0.1")) {
		t.Errorf("the pickup link %s is not agent3's (%s)", link, p3.https)
	}
	if !acceptLink(p3.agentProc, link) {
		t.Fatalf("accepting at agent3 failed\nagent3 log:\n%s", p3.out)
	}
	released(t, p3, link, "The signed contract")
	mx.wait(t, "alice@a.example", "Subject: Delivered: contract")

	verdict, b := bundleOf(t, alice, label, p1, p2, p3)
	if !strings.Contains(verdict, "delivered") || !strings.Contains(verdict, "agent-attested") {
		t.Errorf("verdict:\n%s", verdict)
	}
	got := types(b)
	for typ, want := range map[evidence.Type]int{evidence.COP: 1, evidence.ACK: 2, evidence.NTF: 1, evidence.DLV: 1, evidence.ROD: 1} {
		if got[typ] != want {
			t.Errorf("%d %s notes in the bundle, want %d (all: %v)", got[typ], typ, want, got)
		}
	}
	if len(b.Proofs) != len(b.Notes) {
		t.Errorf("%d log proofs for %d notes", len(b.Proofs), len(b.Notes))
	}
	for _, n := range b.Notes {
		if n.Record.Type == evidence.ROD && len(n.Sigs) != 2 {
			t.Errorf("the ROD carries %d signatures, want agent3's and agent1's", len(n.Sigs))
		}
	}
	// Each agent's part of the chain, by name.
	for _, want := range []string{"agent1.example", "agent2.example", "agent3.example"} {
		if !strings.Contains(verdict, want) {
			t.Errorf("the verdict does not name %s:\n%s", want, verdict)
		}
	}
}

// TestFederationKillIntermediate SIGKILLs agent2 while items are being relayed through it and
// restarts it: every item is delivered, and no bundle holds a note twice.
func TestFederationKillIntermediate(t *testing.T) {
	p1, p2, p3, mx, bin := federation(t)
	alice := newSender(t, p1.agentProc, "alice@a.example", "correct horse battery")
	var labels []string
	for i := range 4 {
		labels = append(labels, alice.send(t, "--to", "bob@b.example", "--subject", fmt.Sprintf("item %d", i), "--text", fmt.Sprintf("Item number %d.\n", i)))
		if i == 1 {
			p2.kill()
		}
	}
	time.Sleep(500 * time.Millisecond)
	p2.start(t, bin)
	for i, l := range labels {
		link := linkFor(t, mx, "bob@b.example", l)
		if !acceptLink(p3.agentProc, link) {
			t.Fatalf("accepting %s failed\nagent3 log:\n%s", l, p3.out)
		}
		released(t, p3, link, fmt.Sprintf("Item number %d.", i))
	}
	for _, l := range labels {
		deadline := time.Now().Add(20 * time.Second)
		for {
			verdict, b := bundleOf(t, alice, l, p1, p2, p3)
			got := types(b)
			if strings.Contains(verdict, "delivered") && !strings.Contains(verdict, "not delivered") {
				if got[evidence.ACK] != 2 || got[evidence.ROD] != 1 || got[evidence.COP] != 1 {
					t.Errorf("%s: notes %v, want one COP, two ACKs, one ROD", l, got)
				}
				break
			}
			if time.Now().After(deadline) {
				t.Fatalf("%s not delivered: %s", l, verdict)
			}
			time.Sleep(300 * time.Millisecond)
		}
	}
}

// TestFederationRecipientAgentDown: agent3 is down past the deadline; agent2's relay is never
// acknowledged, so agent2 gives notice (NDN, relay), agent1 passes it to alice, and the verdict
// says not delivered.
func TestFederationRecipientAgentDown(t *testing.T) {
	p1, p2, p3, mx, _ := federation(t)
	p3.kill()
	alice := newSender(t, p1.agentProc, "alice@a.example", "correct horse battery")
	label := alice.send(t, "--to", "bob@b.example", "--subject", "urgent", "--text", "Too late.\n", "--deadline", "20s")
	mx.wait(t, "alice@a.example", "Subject: Not delivered: urgent")
	verdict, b := bundleOf(t, alice, label, p1, p2, p3)
	if !strings.Contains(verdict, "not delivered") {
		t.Errorf("verdict:\n%s", verdict)
	}
	got := types(b)
	if got[evidence.NDN] != 1 || got[evidence.ACK] != 1 {
		t.Errorf("notes %v, want one ACK (agent2's) and one NDN", got)
	}
}

// TestFederationKills SIGKILLs a random one of the three agents at random instants while alice
// sends a stream of certified messages and bob accepts each as its notification arrives, then
// restarts it; CERTMAIL_FED_KILLS sets the number of kills (default 6). Afterwards every message
// that got its label is delivered, and each bundle holds each note of the chain exactly once.
func TestFederationKills(t *testing.T) {
	kills := 6
	if s := os.Getenv("CERTMAIL_FED_KILLS"); s != "" {
		kills, _ = strconv.Atoi(s)
	}
	p1, p2, p3, mx, bin := federation(t)
	alice := newSender(t, p1.agentProc, "alice@a.example", "correct horse battery")
	rng := rand.New(rand.NewPCG(uint64(time.Now().UnixNano()), 5))
	var mu sync.Mutex
	var acked []string
	accepted := map[string]bool{}
	n := 0
	acceptAll := func(stop func() bool) {
		for !stop() {
			var links []string
			mx.mu.Lock()
			for _, m := range mx.got {
				if m.to == "bob@b.example" {
					if l := linkRE.Find(m.data); l != nil {
						links = append(links, string(l))
					}
				}
			}
			mx.mu.Unlock()
			for _, link := range links {
				mu.Lock()
				done := accepted[link]
				mu.Unlock()
				if !done && acceptLink(p3.agentProc, link) {
					mu.Lock()
					accepted[link] = true
					mu.Unlock()
				}
			}
			time.Sleep(50 * time.Millisecond)
		}
	}
	kinds := map[string]int{}
	for range kills {
		ctx, cancel := context.WithCancel(context.Background())
		var wg sync.WaitGroup
		wg.Go(func() {
			for ctx.Err() == nil {
				mu.Lock()
				n++
				i := n
				mu.Unlock()
				code, out, _ := alice.run(t, "send", "--to", "bob@b.example", "--subject", fmt.Sprintf("item %d", i), "--text", fmt.Sprintf("Item %d.\n", i))
				if m := certifiedRE.FindStringSubmatch(out); code == exitOK && m != nil {
					mu.Lock()
					acked = append(acked, m[1])
					mu.Unlock()
				} else {
					time.Sleep(50 * time.Millisecond)
				}
			}
		})
		wg.Go(func() { acceptAll(func() bool { return ctx.Err() != nil }) })
		time.Sleep(time.Duration(300+rng.IntN(900)) * time.Millisecond)
		victim := []*peerProc{p1, p2, p3}[rng.IntN(3)]
		victim.kill()
		kinds[victim.name]++
		cancel()
		wg.Wait()
		victim.start(t, bin)
	}
	t.Logf("%d kills (%v), %d sends tried, %d acknowledged", kills, kinds, n, len(acked))
	if len(acked) == 0 {
		t.Fatal("no message was acknowledged")
	}
	// Bob accepts what is left; every acknowledged message ends delivered.
	done := make(chan struct{})
	go acceptAll(func() bool {
		select {
		case <-done:
			return true
		default:
			return false
		}
	})
	defer close(done)
	deadline := time.Now().Add(90*time.Second + time.Duration(len(acked))*100*time.Millisecond)
	for _, l := range acked {
		for {
			verdict, b := bundleOf(t, alice, l, p1, p2, p3)
			if strings.Contains(verdict, "outcome delivered") {
				got := types(b)
				for typ, want := range map[evidence.Type]int{evidence.COP: 1, evidence.ACK: 2, evidence.NTF: 1, evidence.DLV: 1, evidence.ROD: 1} {
					if got[typ] != want {
						t.Errorf("%s: %d %s notes, want %d (%v)", l, got[typ], typ, want, got)
					}
				}
				break
			}
			if time.Now().After(deadline) {
				t.Fatalf("%s is not delivered after the kills:\n%s", l, verdict)
			}
			time.Sleep(300 * time.Millisecond)
		}
	}
}
