package main

import (
	"bufio"
	"net"
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
	greeting := func(c net.Conn, within time.Duration) (string, error) {
		c.SetReadDeadline(time.Now().Add(within))
		return bufio.NewReader(c).ReadString('\n')
	}
	var conns []net.Conn
	for i := range 3 {
		c, err := net.Dial("tcp", p.smtp)
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		conns = append(conns, c)
		if i < 2 {
			if line, err := greeting(c, 10*time.Second); err != nil || !strings.HasPrefix(line, "220 ") {
				t.Fatalf("connection %d: %q, %v; want a 220 greeting", i+1, line, err)
			}
		}
	}
	if line, err := greeting(conns[2], 500*time.Millisecond); err == nil {
		t.Fatalf("a third connection over max_connections = 2 was greeted: %q", line)
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
