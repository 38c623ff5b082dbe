package smtpd_test

import (
	"bufio"
	"net"
	"net/netip"
	"strings"
	"sync"
	"testing"
)

// writeCounter counts the writes made on the connections it accepts.
type writeCounter struct {
	net.Listener
	mu     sync.Mutex
	writes []string
}

func (l *writeCounter) Accept() (net.Conn, error) {
	c, err := l.Listener.Accept()
	if err != nil {
		return nil, err
	}
	return countedConn{c, l}, nil
}

type countedConn struct {
	net.Conn
	l *writeCounter
}

func (c countedConn) Write(p []byte) (int, error) {
	c.l.mu.Lock()
	c.l.writes = append(c.l.writes, string(p))
	c.l.mu.Unlock()
	return c.Conn.Write(p)
}

// TestRepliesInOneWrite: each reply leaves the server in one write, the eight lines of the
// EHLO reply too, and replies to pipelined commands (RFC 2920) all come back.
func TestRepliesInOneWrite(t *testing.T) {
	t.Parallel()
	counter := &writeCounter{}
	w := newWorld(t, options{trusted: []netip.Prefix{netip.MustParsePrefix("127.0.0.0/8")},
		listener: func(l net.Listener) net.Listener { counter.Listener = l; return counter }})
	nc, err := net.Dial("tcp", w.addr)
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	r := bufio.NewReader(nc)
	reply := func() []string {
		t.Helper()
		var lines []string
		for {
			line, err := r.ReadString('\n')
			if err != nil {
				t.Fatalf("after %q: %v", lines, err)
			}
			lines = append(lines, line)
			if len(line) < 4 || line[3] != '-' {
				return lines
			}
		}
	}
	reply() // greeting
	if _, err := nc.Write([]byte("EHLO client.test\r\n")); err != nil {
		t.Fatal(err)
	}
	ehlo := reply()
	if len(ehlo) < 5 || !strings.HasPrefix(ehlo[len(ehlo)-1], "250 ") {
		t.Fatalf("EHLO reply %q", ehlo)
	}
	// Pipelined: three commands in one write, three replies.
	if _, err := nc.Write([]byte("MAIL FROM:<" + alice + ">\r\nRCPT TO:<" + bob + ">\r\nNOOP\r\n")); err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"250 ", "250 ", "250 "} {
		if got := reply(); !strings.HasPrefix(got[0], want) {
			t.Fatalf("pipelined reply %q, want %q", got, want)
		}
	}
	if _, err := nc.Write([]byte("QUIT\r\n")); err != nil {
		t.Fatal(err)
	}
	if got := reply(); !strings.HasPrefix(got[0], "221 ") {
		t.Fatalf("QUIT reply %q", got)
	}

	counter.mu.Lock()
	defer counter.mu.Unlock()
	var ehloWrites int
	for _, wr := range counter.writes {
		if strings.Contains(wr, "250-") {
			ehloWrites++
			if n := strings.Count(wr, "\r\n"); n != len(ehlo) {
				t.Errorf("a write of the EHLO reply holds %d of its %d lines", n, len(ehlo))
			}
		}
	}
	if ehloWrites != 1 {
		t.Errorf("the %d-line EHLO reply took %d writes, want 1", len(ehlo), ehloWrites)
	}
}
