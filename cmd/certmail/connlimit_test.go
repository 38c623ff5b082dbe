package main

import (
	"bufio"
	"crypto/tls"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"
)

func TestConnLimit(t *testing.T) {
	for _, c := range []struct {
		configured, n int
		nofile        uint64
		want          int
	}{
		{1000, 3, 20000, 1000},      // room enough
		{1000, 3, 1024, 170},        // (1024 − 512) / 3
		{1000, 2, 100, 1},           // never none
		{1000, 3, ^uint64(0), 1000}, // unlimited
	} {
		if got := connLimit(c.configured, c.n, c.nofile); got != c.want {
			t.Errorf("connLimit(%d, %d, %d) = %d, want %d", c.configured, c.n, c.nofile, got, c.want)
		}
	}
}

// Beyond limits.max_connections, a connection waits to be greeted until another ends, and
// the agent goes on serving the ones it has.
func TestServeMaxConnections(t *testing.T) {
	sk := newSink(t)
	p := startAgent(t, sk.addr, "[limits]\nmax_connections = 2\n")
	twoServedThirdWaits(t, p.smtp, "max_connections = 2")
}

// Beyond limits.max_submission_sessions, an SMTP client waits to be greeted as it would over
// max_connections, while HTTPS serves more connections than that.
func TestServeMaxSubmissionSessions(t *testing.T) {
	sk := newSink(t)
	p := startAgent(t, sk.addr, "[limits]\nmax_submission_sessions = 2\n")
	twoServedThirdWaits(t, p.smtp, "max_submission_sessions = 2")
	// Held open, each waits for a request for 10 s (ReadHeaderTimeout) before the agent closes
	// it: a handshake that waited for a free slot would take that long.
	tlsCfg := p.client.Transport.(*http.Transport).TLSClientConfig
	for i := range 3 {
		d := &net.Dialer{Timeout: 5 * time.Second}
		c, err := tls.DialWithDialer(d, "tcp", p.https, tlsCfg)
		if err != nil {
			t.Fatalf("HTTPS connection %d with the SMTP sessions full: %v", i+1, err)
		}
		defer c.Close()
	}
}

// twoServedThirdWaits opens three connections to addr, where the agent serves two at once: the
// first two are greeted, the third only once the first has ended, and the second is served
// all along.
func twoServedThirdWaits(t *testing.T, addr, limit string) {
	t.Helper()
	greeting := func(c net.Conn, within time.Duration) (string, error) {
		c.SetReadDeadline(time.Now().Add(within))
		return bufio.NewReader(c).ReadString('\n')
	}
	var conns []net.Conn
	for i := range 3 {
		c, err := net.Dial("tcp", addr)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { c.Close() })
		conns = append(conns, c)
		if i < 2 {
			if line, err := greeting(c, 10*time.Second); err != nil || !strings.HasPrefix(line, "220 ") {
				t.Fatalf("connection %d: %q, %v; want a 220 greeting", i+1, line, err)
			}
		}
	}
	if line, err := greeting(conns[2], 500*time.Millisecond); err == nil {
		t.Fatalf("a third connection over %s was greeted: %q", limit, line)
	}
	conns[0].Close()
	if line, err := greeting(conns[2], 10*time.Second); err != nil || !strings.HasPrefix(line, "220 ") {
		t.Fatalf("the waiting connection once another ended: %q, %v; want a 220 greeting", line, err)
	}
	if _, err := conns[1].Write([]byte("NOOP\r\n")); err != nil {
		t.Fatal(err)
	}
	if line, err := greeting(conns[1], 10*time.Second); err != nil || !strings.HasPrefix(line, "250 ") {
		t.Fatalf("NOOP on a connection served all along: %q, %v", line, err)
	}
}
