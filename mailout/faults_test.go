package mailout_test

import (
	"bytes"
	"io"
	"net"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"certmail/config"
	"certmail/evidence"
	"certmail/mailout"
	"certmail/store"
)

// peer is the next mail server behind a bad network: a TCP listener on loopback that accepts
// every connection and then does what the test says — never answers ("hang"), answers one byte
// a second ("drip"), relays to a real SMTP server until the message data starts and then cuts
// the connection ("cut" in a BDAT chunk, "cut-data" after DATA), or relays the whole session ("relay") when the network is healthy.
type peer struct {
	port    string
	backend string // the real server behind it

	mu    sync.Mutex
	mode  string
	conns []net.Conn // every connection it holds, closed by cutAll and at cleanup
	open  int        // connections accepted and not yet closed by either side
}

func newPeer(t *testing.T, ip, backend string) *peer {
	t.Helper()
	l, err := net.Listen("tcp", net.JoinHostPort(ip, "0"))
	if err != nil {
		t.Fatal(err)
	}
	p := &peer{backend: backend, mode: "relay"}
	_, p.port, _ = net.SplitHostPort(l.Addr().String())
	go func() {
		for {
			c, err := l.Accept()
			if err != nil {
				return
			}
			go p.serve(c)
		}
	}()
	t.Cleanup(func() {
		l.Close()
		p.cutAll()
	})
	return p
}

func (p *peer) set(mode string) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.mode = mode
}

func (p *peer) hold(c net.Conn) string {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.conns = append(p.conns, c)
	p.open++
	return p.mode
}

func (p *peer) opened() int {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.open
}

// cutAll resets every connection the peer holds, as a network cut would.
func (p *peer) cutAll() {
	p.mu.Lock()
	defer p.mu.Unlock()
	for _, c := range p.conns {
		if tc, ok := c.(*net.TCPConn); ok {
			tc.SetLinger(0) // RST, not FIN
		}
		c.Close()
	}
	p.conns = nil
}

func (p *peer) serve(c net.Conn) {
	defer func() {
		p.mu.Lock()
		p.open--
		p.mu.Unlock()
	}()
	switch p.hold(c) {
	case "hang":
		io.Copy(io.Discard, c) // until the client gives up or the test cuts it
	case "drip":
		for _, b := range []byte("220 mx.b.example ESMTP, very slowly\r\n") {
			if _, err := c.Write([]byte{b}); err != nil {
				return
			}
			time.Sleep(time.Second)
		}
		io.Copy(io.Discard, c)
	case "cut":
		p.relay(c, 64, false)
	case "cut-data":
		p.relay(c, 64, true)
	default:
		p.relay(c, -1, false)
	}
}

// relay joins c to the real server. With cutAfter ≥ 0 it passes on only that many bytes of the
// message data, then resets both connections: the server never sees the end of the data. A
// message in a BDAT chunk comes in the same write as MAIL and RCPT: the cut waits for the
// server's replies to those to reach the client, so that it falls in the message. With
// noChunking it takes CHUNKING out of the server's EHLO reply, and the client sends DATA.
func (p *peer) relay(c net.Conn, cutAfter int, noChunking bool) {
	b, err := net.Dial("tcp", p.backend)
	if err != nil {
		c.Close()
		return
	}
	p.hold(b)
	defer func() {
		p.mu.Lock()
		p.open--
		p.mu.Unlock()
	}()
	var replies atomic.Int64 // reply lines passed on to the client
	go func() {
		buf := make([]byte, 4096)
		for {
			n, err := b.Read(buf)
			chunk := buf[:n]
			if noChunking {
				chunk = bytes.ReplaceAll(chunk, []byte("250-CHUNKING\r\n"), nil)
			}
			if _, werr := c.Write(chunk); werr != nil || err != nil {
				return
			}
			replies.Add(int64(bytes.Count(chunk, []byte("\n"))))
		}
	}()
	buf := make([]byte, 4096)
	inData, passed := false, 0
	for {
		n, err := c.Read(buf)
		chunk := buf[:n]
		head := 0 // bytes of chunk before the message data
		if !inData {
			head = len(chunk)
			if i := bytes.Index(bytes.ToUpper(chunk), []byte("BDAT ")); i >= 0 {
				if j := bytes.Index(chunk[i:], []byte("\r\n")); j >= 0 {
					head, inData = i+j+2, true
				}
			}
		}
		if inData && cutAfter >= 0 {
			chunk = chunk[:head+min(len(chunk)-head, cutAfter-passed)]
			passed += len(chunk) - head
		}
		before := replies.Load()
		if _, werr := b.Write(chunk); werr != nil || err != nil {
			break
		}
		if inData && cutAfter >= 0 && passed >= cutAfter {
			if head > 0 { // MAIL and RCPT went with the chunk: let their replies through
				for deadline := time.Now().Add(5 * time.Second); replies.Load() < before+2 && time.Now().Before(deadline); {
					time.Sleep(time.Millisecond)
				}
			}
			p.cutAll()
			return
		}
		// The client sends DATA last and waits for 354 (RFC 5321 4.1.1.4): what follows is data.
		if bytes.HasSuffix(bytes.ToUpper(chunk), []byte("DATA\r\n")) {
			inData = true
		}
	}
	c.Close()
	b.Close()
}

// TestFaultPeerHangsDripsAndCuts: the MX of bob's domain sits behind a bad network while dave's
// and alice's are healthy. While bob's server holds its connection without a word, the other
// mails are delivered; a delivery that hangs or drips is ended by the timeout, one cut in the
// middle of the data, in a BDAT chunk or after DATA, is not taken for delivered; each failure is retried after a doubling
// backoff, and once the network is healthy the notification is delivered, once, and signed for
// with one NTF.
func TestFaultPeerHangsDripsAndCuts(t *testing.T) {
	w := newWorld(t)
	bobs := newSink(t, sinkOptions{})
	p := newPeer(t, "127.0.0.2", bobs.addr)
	others := newSink(t, sinkOptions{ip: "127.0.0.3", port: p.port})
	res := resolver{
		mx: map[string][]*net.MX{"b.example": {{Host: "mx.b.example.", Pref: 10}}, "d.example": {{Host: "mx.d.example.", Pref: 10}}},
		hosts: map[string][]string{"mx.b.example": {"127.0.0.2"}, "mx.d.example": {"127.0.0.3"},
			"a.example": {"127.0.0.3"}},
	}
	cfg := mailout.Config{Mode: config.ModeMX, Resolver: res, Port: p.port, Timeout: time.Minute}
	q := w.queue(cfg)
	labels := w.submit(t, bob, dave)
	l := labels[bob]

	// A peer that accepts and never answers holds one worker, not the queue.
	p.set("hang")
	done := make(chan [3]int, 1)
	go func() {
		d, r, b, err := q.RunOnce(t.Context())
		if err != nil {
			t.Errorf("RunOnce: %v", err)
		}
		done <- [3]int{d, r, b}
	}()
	waitFor(t, func() bool { return p.opened() == 1 && len(others.to(dave)) == 1 && len(others.to(alice)) == 2 })
	select {
	case got := <-done:
		t.Fatalf("the run ended (%v) while bob's server still held its connection", got)
	default:
	}
	p.cutAll() // the network drops the hung connection
	if got := <-done; got != [3]int{3, 1, 0} {
		t.Fatalf("delivered, retried, bounced: %v, want 3, 1, 0", got)
	}
	if w.item(t, labels[dave]).State != store.StateNotified {
		t.Fatal("dave's item is not notified")
	}

	// Each later failure waits its backoff: 5m, 10m, 20m, 40m, 80m (RetryInitial 5m, doubling).
	cfg.Timeout = time.Second
	q = w.queue(cfg)
	next := t0.Add(5 * time.Minute)
	for i, mode := range []string{"hang", "drip", "cut", "cut-data"} {
		n := w.outbound(t, l, "notification")
		if n.State != store.OutQueued || n.Attempts != i+1 || !n.NextAttempt.Equal(next) || n.LastError == "" {
			t.Fatalf("before the %s attempt: %s after %d attempts, next %s (want %s), last error %q",
				mode, n.State, n.Attempts, n.NextAttempt, next, n.LastError)
		}
		w.clock.set(next.Add(-time.Second))
		runOnce(t, q, 0, 0, 0) // not due yet
		w.clock.set(next)
		p.set(mode)
		runOnce(t, q, 0, 1, 0)
		// The reason the sender would read in a bounce says what happened.
		why := w.outbound(t, l, "notification").LastError
		if want := map[string]string{"hang": "mx.b.example: no answer within 1s", "drip": "mx.b.example: no answer within 1s",
			"cut": "mx.b.example: BDAT: ", "cut-data": "mx.b.example: end of DATA: "}[mode]; !strings.HasPrefix(why, want) {
			t.Fatalf("after the %s attempt the reason is %q, want %q…", mode, why, want)
		}
		next = next.Add(5 * time.Minute << (i + 1))
	}
	if len(bobs.to(bob)) != 0 || w.item(t, l).State != store.StatePosted {
		t.Fatalf("a cut delivery counted: bob's server has %d mails, the item is %s", len(bobs.to(bob)), w.item(t, l).State)
	}

	p.set("relay")
	w.clock.set(next)
	runOnce(t, q, 1, 0, 0)
	n := w.outbound(t, l, "notification")
	if got := bobs.to(bob); len(got) != 1 || !bytes.Equal(got[0].data, n.Data) {
		t.Fatalf("bob's server got %d mails", len(got))
	}
	if n.State != store.OutSent || n.Attempts != 6 {
		t.Fatalf("after the network healed: %s after %d attempts", n.State, n.Attempts)
	}
	if it := w.item(t, l); it.State != store.StateNotified || count(w.evidence(t, l), evidence.NTF) != 1 {
		t.Fatalf("item %s with %v", it.State, w.evidence(t, l))
	}
	runOnce(t, q, 0, 0, 0)
	if len(bobs.to(bob)) != 1 || len(others.to(dave)) != 1 || len(others.to(alice)) != 2 {
		t.Fatal("a mail went twice")
	}
}
