package smtpd

import (
	"net"
	"sync"
	"time"
)

// Replies leave in as few writes as the dialogue allows. go-smtp flushes every reply line on
// its own — the eight lines of the EHLO reply are eight system calls and eight TCP segments —
// and offers no hook to change that, so the server's connections hold what it writes until it
// waits for the client: a Read sends everything written before it (the rule RFC 2920 §3.1
// gives a server that supports PIPELINING), and so do Close and a new write deadline, which
// must not apply to bytes written under the old one (crypto/tls closes by setting the
// deadline to now). A Write that comes while a Read
// waits, or that would make the held bytes exceed replyBuffer, goes out at once, so nothing
// written can ever wait behind a blocked read.
const replyBuffer = 16 << 10

// replyListener hands out replyConns.
type replyListener struct{ net.Listener }

func (l replyListener) Accept() (net.Conn, error) {
	c, err := l.Listener.Accept()
	if err != nil {
		return nil, err
	}
	return &replyConn{Conn: c}, nil
}

// replyConn is a server connection that holds its writes until it next reads.
type replyConn struct {
	net.Conn
	mu      sync.Mutex
	held    []byte
	reading bool  // a Read waits for the client: writes go out at once
	err     error // the first failed write, reported by the next Read or Write
}

func (c *replyConn) Write(p []byte) (int, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.err != nil {
		return 0, c.err
	}
	if !c.reading && len(c.held)+len(p) <= replyBuffer {
		c.held = append(c.held, p...)
		return len(p), nil
	}
	if err := c.flushLocked(); err != nil {
		return 0, err
	}
	n, err := c.Conn.Write(p)
	c.err = err
	return n, err
}

func (c *replyConn) Read(p []byte) (int, error) {
	c.mu.Lock()
	err := c.flushLocked()
	c.reading = err == nil
	c.mu.Unlock()
	if err != nil {
		return 0, err
	}
	n, err := c.Conn.Read(p)
	c.mu.Lock()
	c.reading = false
	c.mu.Unlock()
	return n, err
}

func (c *replyConn) SetWriteDeadline(t time.Time) error {
	c.mu.Lock()
	c.flushLocked() // a failure stays in c.err for the next Read or Write
	c.mu.Unlock()
	return c.Conn.SetWriteDeadline(t)
}

func (c *replyConn) SetDeadline(t time.Time) error {
	c.mu.Lock()
	c.flushLocked()
	c.mu.Unlock()
	return c.Conn.SetDeadline(t)
}

func (c *replyConn) Close() error {
	c.mu.Lock()
	c.flushLocked() // the last reply (221, 421) goes out if it can; closing goes on regardless
	c.mu.Unlock()
	return c.Conn.Close()
}

// flushLocked sends the held bytes. c.mu is held.
func (c *replyConn) flushLocked() error {
	if c.err != nil {
		return c.err
	}
	if len(c.held) == 0 {
		return nil
	}
	_, c.err = c.Conn.Write(c.held)
	c.held = c.held[:0]
	return c.err
}
