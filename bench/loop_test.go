package bench

import (
	"bufio"
	"bytes"
	"context"
	"net"
	"strings"
	"testing"
	"time"
)

// The latency client's open loop delivers every message it offers to a server that pipelines,
// and times each.
func TestOpenLoop(t *testing.T) {
	sk, err := newSink()
	if err != nil {
		t.Fatal(err)
	}
	defer sk.Close()
	ctx := context.Background()
	l, err := openLoop(ctx, sk.Addr(), 2000, 400, 500*time.Millisecond,
		func(n int) int { got, _ := sk.counts(); return n - got },
		func(n int) error {
			return sk.waitFor(ctx, 10*time.Second, "the open loop's mail", func() bool { return sk.notifications >= n })
		})
	if err != nil {
		t.Fatal(err)
	}
	if l.Errors != 0 || l.P50 <= 0 || l.P99 < l.P50 || l.Done <= 0 {
		t.Fatalf("open loop: %+v", l)
	}
	if got, _ := sk.counts(); got != 200 {
		t.Fatalf("the sink got %d messages, want the 200 offered", got)
	}
}

// A session that cannot go on is counted as an error with its reason, and the loop goes on.
func TestOpenLoopErrors(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	// A server of the old kind: it offers no PIPELINING.
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			go func() {
				defer c.Close()
				c.Write([]byte("220 old.example\r\n"))
				br := bufio.NewReader(c)
				for {
					line, err := br.ReadString('\n')
					if err != nil {
						return
					}
					if strings.HasPrefix(line, "QUIT") {
						c.Write([]byte("221 bye\r\n"))
						return
					}
					c.Write([]byte("250 old.example\r\n"))
				}
			}()
		}
	}()
	l, err := openLoop(context.Background(), ln.Addr().String(), 1000, 200, 100*time.Millisecond, nil,
		func(n int) error {
			if n != 0 {
				t.Errorf("%d messages acknowledged by a server the client cannot pipeline to", n)
			}
			return nil
		})
	if err != nil {
		t.Fatal(err)
	}
	if l.Errors != 20 || !strings.Contains(l.FirstError, "PIPELINING") {
		t.Fatalf("errors %d (%q), want 20 for the missing PIPELINING", l.Errors, l.FirstError)
	}

	// Nothing listening: every connect fails.
	addr := ln.Addr().String()
	ln.Close()
	l, err = openLoop(context.Background(), addr, 1000, 200, 50*time.Millisecond, nil, func(int) error { return nil })
	if err != nil {
		t.Fatal(err)
	}
	if l.Errors != 10 || !strings.Contains(l.FirstError, "connect") {
		t.Fatalf("errors %d (%q), want 10 refused connections", l.Errors, l.FirstError)
	}
}

func TestTakeReply(t *testing.T) {
	in := []byte("250-first\r\n250-PIPELINING\r\n250 last\r\n354 go\r\n250 par")
	code, text, ok := takeReply(&in)
	if !ok || code != 250 || string(text) != "250-first\r\n250-PIPELINING\r\n250 last\r\n" {
		t.Fatalf("first reply: %d %q %v", code, text, ok)
	}
	if code, _, ok = takeReply(&in); !ok || code != 354 {
		t.Fatalf("second reply: %d %v", code, ok)
	}
	if _, _, ok = takeReply(&in); ok || string(in) != "250 par" {
		t.Fatalf("a partial reply was taken, or its bytes lost: %q", in)
	}
}

// takeReply takes whole replies from the front of what it is given, never more, and loses
// nothing.
func FuzzTakeReply(f *testing.F) {
	f.Add([]byte("250-a\r\n250 b\r\n221 c\r\n"))
	f.Add([]byte("2\n\n250-\n"))
	f.Fuzz(func(t *testing.T, b []byte) {
		in := bytes.Clone(b)
		var taken []byte
		for {
			_, text, ok := takeReply(&in)
			if !ok {
				break
			}
			if len(text) == 0 || text[len(text)-1] != '\n' {
				t.Fatalf("a reply %q does not end a line", text)
			}
			taken = append(taken, text...)
		}
		if !bytes.Equal(append(taken, in...), b) {
			t.Fatalf("taken %q and left %q of %q", taken, in, b)
		}
	})
}
