package smtpd_test

import (
	"bytes"
	"context"
	"crypto/tls"
	"fmt"
	"io"
	"net"
	"net/textproto"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"certmail/evidence"
	"certmail/mailfmt"
	"certmail/store"
)

// FuzzSession drives the command loop with random lines after a fixed preamble: EHLO only
// (auth false), or EHLO, STARTTLS, EHLO and a successful AUTH (auth true). Whatever the lines,
// the server must not panic, must answer with well-formed replies, must never store anything
// for a client that did not authenticate, and must store exactly the items whose labels its
// 250 replies name.
func FuzzSession(f *testing.F) {
	w := newWorld(f, options{limits: mailfmt.Limits{MaxBytes: 8 << 10}, maxRecipients: 5})
	ml := newMemListener()
	go w.srv.Serve(ml)

	m := message(alice)
	for _, seed := range []struct {
		auth   bool
		script string
	}{
		{true, "MAIL FROM:<" + alice + ">\r\nRCPT TO:<" + bob + ">\r\nDATA\r\n" + m + ".\r\nQUIT\r\n"},
		{true, "MAIL FROM:<" + alice + ">\r\nRCPT TO:<" + bob + ">\r\nRCPT TO:<" + dave + ">\r\nBDAT " +
			strconv.Itoa(len(m)) + " LAST\r\n" + m + "RSET\r\n"},
		{true, "MAIL FROM:<" + alice + "> SIZE=100\r\nRCPT TO:<x@y.example> NOTIFY=NEVER\r\nDATA\r\n" +
			message(alice, "Certmail-Mode: cem") + ".\r\nMAIL FROM:<" + alice + ">\r\n"},
		{true, "MAIL FROM:<carol@c.example>\r\nRCPT TO:<" + bob + ">\r\nDATA\r\n" + message(carol) + ".\r\n"},
		{true, "MAIL FROM:<" + alice + ">\r\nRCPT TO:<" + bob + ">\r\nDATA\r\n" +
			message(alice, "MIME-Version: 1.0", "Content-Type: multipart/mixed; boundary=b") + ".\r\n"},
		{true, "EHLO again\r\nAUTH PLAIN\r\n*\r\nAUTH LOGIN\r\nx\r\n\r\nSTARTTLS\r\nVRFY bob\r\nHELP\r\nNOOP\r\nRSET\r\nQUIT\r\n"},
		{true, "BDAT 5\r\nabcdeBDAT x\r\nDATA\r\n.\r\nRCPT TO:<" + bob + ">\r\n"},
		{false, "MAIL FROM:<" + alice + ">\r\nRCPT TO:<" + bob + ">\r\nDATA\r\n" + m + ".\r\n"},
		{false, plain(alice, alicePW) + "\r\nAUTH LOGIN\r\nMAIL FROM:<>\r\n"},
		{false, "STARTTLS\r\n\x16\x03\x01\x00\x05hello\r\nMAIL FROM:<" + alice + ">\r\n"},
		{false, "BDAT 10 LAST\r\n0123456789HELO x\r\nMAIL FROM:<" + alice + ">\r\n"},
		{false, "\x00\xff\r\n" + strings.Repeat("A", 2100) + "\r\n"},
	} {
		f.Add(seed.auth, []byte(seed.script))
	}

	f.Fuzz(func(t *testing.T, auth bool, script []byte) {
		if len(script) > 4096 {
			t.Skip("inputs are bounded to 4 KB")
		}
		commits, inserted := w.st.commits.Load(), w.st.inserted.Load()
		out := w.memSession(t, ml, auth, script)
		labels := checkReplies(t, out)
		if n := w.st.commits.Load() - commits; !auth && n != 0 {
			t.Fatalf("an unauthenticated session committed %d transactions; replies:\n%s", n, out)
		}
		if n := w.st.inserted.Load() - inserted; n != int64(len(labels)) {
			t.Fatalf("%d items stored, but the replies name %d labels:\n%s", n, len(labels), out)
		}
		for _, l := range labels {
			err := w.st.View(context.Background(), func(tx store.Tx) error {
				it, err := tx.Item(l)
				if err == nil && it.Sender != alice {
					err = fmt.Errorf("sender %s", it.Sender)
				}
				return err
			})
			if err != nil {
				t.Fatalf("label %s named in a 250: %v", l, err)
			}
		}
		if _, panics := w.logs.problems(); len(panics) > 0 {
			t.Fatalf("the server panicked: %s", panics[0])
		}
	})
}

// memSession runs the preamble over an in-memory connection, then sends script, closes its
// writing side and returns everything the server wrote after the preamble.
func (w *world) memSession(t *testing.T, ml *memListener, auth bool, script []byte) []byte {
	t.Helper()
	cc, sc := memPipe()
	defer cc.Close()
	ml.conns <- sc

	timer := time.AfterFunc(20*time.Second, func() {
		cc.hung.Store(true)
		cc.Close() // unblocks the reads below
	})
	defer timer.Stop()

	var conn interface {
		net.Conn
		CloseWrite() error
	} = cc
	tp := textproto.NewConn(cc)
	step := func(line string, want int) {
		t.Helper()
		if line != "" {
			if err := tp.PrintfLine("%s", line); err != nil {
				t.Fatalf("preamble %s: %v", redact(line), err)
			}
		}
		if code, msg, err := tp.ReadResponse(want); err != nil {
			t.Fatalf("preamble %s: %d %s: %v", redact(line), code, msg, err)
		}
	}
	step("", 220)
	step("EHLO fuzz.test", 250)
	if auth {
		step("STARTTLS", 220)
		tc := tls.Client(cc, &tls.Config{RootCAs: w.roots, ServerName: "localhost"})
		if err := tc.Handshake(); err != nil {
			t.Fatal(err)
		}
		conn, tp = tc, textproto.NewConn(tc)
		step("EHLO fuzz.test", 250)
		step(plain(alice, alicePW), 235)
	}

	go func() {
		if _, err := conn.Write(script); err == nil {
			conn.Write([]byte("\r\n"))
		}
		conn.CloseWrite()
	}()
	out, _ := io.ReadAll(tp.R) // an error is the end of the session too: what matters is what came
	if cc.hung.Load() {
		t.Fatalf("the session did not end; replies so far:\n%s", out)
	}
	return out
}

var enhancedRE = regexp.MustCompile(`^([245])\.[0-9]{1,3}\.[0-9]{1,3} `)

// checkReplies checks that out is a sequence of whole, well-formed replies (RFC 5321 4.2: a
// three-digit code, "-" on every line but the last of a reply, the same code on each line;
// RFC 2034: an enhanced code of the same class) and returns the labels the 250s name.
func checkReplies(t *testing.T, out []byte) []evidence.Label {
	t.Helper()
	if len(out) > 0 && !bytes.HasSuffix(out, []byte("\r\n")) {
		t.Fatalf("the replies end in the middle of a line:\n%q", out)
	}
	var labels []evidence.Label
	code := ""
	for _, line := range strings.SplitAfter(string(out), "\r\n") {
		if line == "" {
			continue
		}
		text := strings.TrimSuffix(line, "\r\n")
		if strings.ContainsAny(text, "\n") || len(text) < 4 || text[0] < '2' || text[0] > '5' ||
			!isDigits(text[:3]) || text[3] != ' ' && text[3] != '-' {
			t.Fatalf("malformed reply line %q in:\n%s", line, out)
		}
		if code != "" && text[:3] != code {
			t.Fatalf("reply line %q continues a %s reply:\n%s", line, code, out)
		}
		if e := enhancedRE.FindStringSubmatch(text[4:]); e != nil && e[1] != text[:1] {
			t.Fatalf("reply line %q has an enhanced code of another class", line)
		}
		if text[:3] == "421" && strings.Contains(text, "Internal server error") {
			t.Fatalf("the server panicked:\n%s", out)
		}
		if text[:3] == "250" {
			for _, m := range certifiedRE.FindAllStringSubmatch(text, -1) {
				l, err := evidence.ParseLabel(m[1])
				if err != nil {
					t.Fatalf("reply %q: %v", line, err)
				}
				labels = append(labels, l)
			}
		}
		code = text[:3]
		if text[3] == ' ' {
			code = ""
		}
	}
	if code != "" {
		t.Fatalf("the last reply is unfinished:\n%s", out)
	}
	return labels
}

func isDigits(s string) bool {
	for i := 0; i < len(s); i++ {
		if s[i] < '0' || s[i] > '9' {
			return false
		}
	}
	return true
}

// memListener hands the server in-memory connections.
type memListener struct {
	conns chan net.Conn
	once  sync.Once
	done  chan struct{}
}

func newMemListener() *memListener {
	return &memListener{conns: make(chan net.Conn), done: make(chan struct{})}
}

func (l *memListener) Accept() (net.Conn, error) {
	select {
	case c := <-l.conns:
		return c, nil
	case <-l.done:
		return nil, net.ErrClosed
	}
}

func (l *memListener) Close() error   { l.once.Do(func() { close(l.done) }); return nil }
func (l *memListener) Addr() net.Addr { return memAddr("memory") }

type memAddr string

func (a memAddr) Network() string { return "mem" }
func (a memAddr) String() string  { return string(a) }

// halfPipe is one direction of a memConn: an unbounded buffer, so neither side blocks on the
// other's reading, with a writer that can close it (the reader drains it, then gets EOF).
type halfPipe struct {
	mu     sync.Mutex
	cond   *sync.Cond
	buf    bytes.Buffer
	eof    bool // the writer is done
	broken bool // the reader is gone
}

func newHalfPipe() *halfPipe {
	p := &halfPipe{}
	p.cond = sync.NewCond(&p.mu)
	return p
}

func (p *halfPipe) read(b []byte) (int, error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	for p.buf.Len() == 0 && !p.eof && !p.broken {
		p.cond.Wait()
	}
	switch {
	case p.broken:
		return 0, net.ErrClosed
	case p.buf.Len() > 0:
		return p.buf.Read(b)
	}
	return 0, io.EOF
}

func (p *halfPipe) write(b []byte) (int, error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.eof || p.broken {
		return 0, net.ErrClosed
	}
	p.buf.Write(b)
	p.cond.Broadcast()
	return len(b), nil
}

func (p *halfPipe) set(f func()) {
	p.mu.Lock()
	defer p.mu.Unlock()
	f()
	p.cond.Broadcast()
}

// memConn is one end of an in-memory connection with half-close.
type memConn struct {
	in, out *halfPipe
	local   memAddr
	remote  net.Addr
	hung    *atomic.Bool // set when the session is cut off for taking too long
}

func memPipe() (client, server *memConn) {
	a, b := newHalfPipe(), newHalfPipe()
	// The server sees a documentation address (RFC 5737) as the client's.
	client = &memConn{in: a, out: b, local: "client", remote: memAddr("server"), hung: &atomic.Bool{}}
	server = &memConn{in: b, out: a, local: "server", remote: &net.TCPAddr{IP: net.IPv4(192, 0, 2, 1), Port: 50000}, hung: client.hung}
	return client, server
}

func (c *memConn) Read(b []byte) (int, error)  { return c.in.read(b) }
func (c *memConn) Write(b []byte) (int, error) { return c.out.write(b) }
func (c *memConn) CloseWrite() error           { c.out.set(func() { c.out.eof = true }); return nil }

func (c *memConn) Close() error {
	c.in.set(func() { c.in.broken = true })
	c.out.set(func() { c.out.eof = true })
	return nil
}

func (c *memConn) LocalAddr() net.Addr  { return c.local }
func (c *memConn) RemoteAddr() net.Addr { return c.remote }

// Deadlines are not kept (the fuzz test ends every session by closing its writing side), but
// setting one on a closed connection fails as on a real one: go-smtp relies on that to stop
// reading a connection it closed.
func (c *memConn) SetDeadline(time.Time) error      { return c.deadline() }
func (c *memConn) SetReadDeadline(time.Time) error  { return c.deadline() }
func (c *memConn) SetWriteDeadline(time.Time) error { return c.deadline() }

func (c *memConn) deadline() error {
	c.in.mu.Lock()
	defer c.in.mu.Unlock()
	if c.in.broken {
		return net.ErrClosed
	}
	return nil
}

// The fuzz harness reaches certification: a whole transaction after the preamble gets a 250
// with a label, and an unauthenticated one gets none.
func TestMemSession(t *testing.T) {
	t.Parallel()
	w := newWorld(t, options{})
	ml := newMemListener()
	go w.srv.Serve(ml)
	script := []byte("MAIL FROM:<" + alice + ">\r\nRCPT TO:<" + bob + ">\r\nDATA\r\n" + message(alice) + ".\r\nQUIT\r\n")
	if labels := checkReplies(t, w.memSession(t, ml, true, script)); len(labels) != 1 {
		t.Fatalf("authenticated session: labels %v, want one", labels)
	}
	out := w.memSession(t, ml, false, script)
	if labels := checkReplies(t, out); len(labels) != 0 || !strings.Contains(string(out), "530 5.7.0") {
		t.Fatalf("unauthenticated session: labels %v, replies:\n%s", labels, out)
	}
	if w.st.inserted.Load() != 1 {
		t.Fatalf("%d items inserted, want 1", w.st.inserted.Load())
	}
}
