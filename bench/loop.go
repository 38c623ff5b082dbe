package bench

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"net/netip"
	"runtime"
	"time"

	"golang.org/x/sys/unix"
)

// loopClient is the latency runs' client: every connection of an open loop driven from one
// OS thread with epoll, as Postfix's smtp-source drives its sessions with select. Written by
// hand because no SMTP load generator offers an open loop, and a goroutine a connection cost
// the bench's process about 0.2 ms of CPU a message at 2,000 msg/s (Go's scheduler waking a
// goroutine for every reply, and sysmon), against smtp-source's 0.04 ms at the peak the
// latency run is scaled from: the two cores it shares with the server it measures.
//
// It needs PIPELINING, which certmail and Postfix offer: EHLO, then MAIL FROM, RCPT TO and
// DATA in one write, then the message, its final dot and QUIT in another.
type loopClient struct {
	ep       int
	sa       unix.Sockaddr
	family   int
	rcpt     string
	size     int
	envelope []byte
	sessions map[int]*loopSession
	buf      []byte
	// What the run measured: each message's time from connect to the reply to its data.
	times  []time.Duration
	last   time.Time
	errors int
	first  string
}

// A session's steps, each ended by the replies it waits for.
const (
	stepConnect  = iota // the connection is being made
	stepGreeting        // 220
	stepEHLO            // 250, which must offer PIPELINING
	stepEnvelope        // 250, 250 and 354 to MAIL FROM, RCPT TO and DATA
	stepData            // 250 to the message
	stepQuit            // 221
)

// stepName names a step in an error.
func stepName(step int) string {
	return [...]string{"connect", "greeting", "EHLO", "MAIL FROM, RCPT TO, DATA", "end of data", "QUIT"}[step]
}

type loopSession struct {
	fd      int
	step    int
	replies int // replies taken in this step
	started time.Time
	in      []byte // read, not yet taken as replies
	out     []byte // still to write
	msg     []byte // the message, its final dot and QUIT
}

func newLoopClient(addr, rcpt string, size int) (*loopClient, error) {
	ap, err := netip.ParseAddrPort(addr)
	if err != nil {
		return nil, fmt.Errorf("bench: address %q: %w", addr, err)
	}
	c := &loopClient{rcpt: rcpt, size: size, sessions: map[int]*loopSession{}, buf: make([]byte, 64<<10),
		envelope: []byte("MAIL FROM:<" + benchUser + ">\r\nRCPT TO:<" + rcpt + ">\r\nDATA\r\n")}
	if ap.Addr().Is4() {
		c.family, c.sa = unix.AF_INET, &unix.SockaddrInet4{Port: int(ap.Port()), Addr: ap.Addr().As4()}
	} else {
		c.family, c.sa = unix.AF_INET6, &unix.SockaddrInet6{Port: int(ap.Port()), Addr: ap.Addr().As16()}
	}
	if c.ep, err = unix.EpollCreate1(unix.EPOLL_CLOEXEC); err != nil {
		return nil, fmt.Errorf("bench: epoll: %w", err)
	}
	return c, nil
}

// run starts n sessions, one every interval from start whether or not the earlier ones have
// finished, and returns once all have ended.
func (c *loopClient) run(ctx context.Context, n int, interval time.Duration) error {
	runtime.LockOSThread()
	defer runtime.UnlockOSThread()
	defer unix.Close(c.ep)
	events := make([]unix.EpollEvent, 256)
	start := time.Now()
	started := 0
	for started < n || len(c.sessions) > 0 {
		now := time.Now()
		for started < n && !now.Before(start.Add(time.Duration(started)*interval)) {
			c.dial(now)
			started++
		}
		wait := 100 // ms, to see ctx end
		if started < n {
			// epoll waits whole milliseconds: a session starts at most one late.
			wait = int((time.Until(start.Add(time.Duration(started)*interval)) + time.Millisecond - 1) / time.Millisecond)
		}
		got, err := unix.EpollWait(c.ep, events, max(wait, 0))
		if err != nil && !errors.Is(err, unix.EINTR) {
			c.closeAll()
			return fmt.Errorf("bench: epoll: %w", err)
		}
		for _, ev := range events[:max(got, 0)] {
			if s := c.sessions[int(ev.Fd)]; s != nil {
				c.event(s, ev.Events)
			}
		}
		if err := ctx.Err(); err != nil {
			c.closeAll()
			return err
		}
	}
	return nil
}

// dial starts a session: a non-blocking connect, and the message it will send.
func (c *loopClient) dial(now time.Time) {
	// Each message its own Message-ID: the agent answers the same message handed in again
	// with the item it made the first time.
	msg := append(body(message(c.rcpt, c.size)), ".\r\nQUIT\r\n"...)
	fd, err := unix.Socket(c.family, unix.SOCK_STREAM|unix.SOCK_NONBLOCK|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		c.failed(fmt.Errorf("bench: socket: %w", err))
		return
	}
	if err := unix.Connect(fd, c.sa); err != nil && !errors.Is(err, unix.EINPROGRESS) {
		unix.Close(fd)
		c.failed(fmt.Errorf("bench: connect: %w", err))
		return
	}
	ev := unix.EpollEvent{Events: unix.EPOLLIN | unix.EPOLLOUT | unix.EPOLLRDHUP | unix.EPOLLET, Fd: int32(fd)}
	if err := unix.EpollCtl(c.ep, unix.EPOLL_CTL_ADD, fd, &ev); err != nil {
		unix.Close(fd)
		c.failed(fmt.Errorf("bench: epoll: %w", err))
		return
	}
	c.sessions[fd] = &loopSession{fd: fd, started: now, msg: msg}
}

// event moves a session on: edge-triggered, so it reads and writes until the kernel says
// it would block.
func (c *loopClient) event(s *loopSession, events uint32) {
	if s.step == stepConnect {
		if events&(unix.EPOLLOUT|unix.EPOLLERR|unix.EPOLLHUP) == 0 {
			return
		}
		if soErr, err := unix.GetsockoptInt(s.fd, unix.SOL_SOCKET, unix.SO_ERROR); err != nil || soErr != 0 {
			c.end(s, fmt.Errorf("bench: connect: %v", errors.Join(err, unix.Errno(soErr))))
			return
		}
		s.step = stepGreeting
	}
	if err := c.flush(s); err != nil {
		c.end(s, err)
		return
	}
	for {
		n, err := unix.Read(s.fd, c.buf)
		if n > 0 {
			s.in = append(s.in, c.buf[:n]...)
			if !c.replies(s) {
				return
			}
			continue
		}
		switch {
		case errors.Is(err, unix.EAGAIN):
			return
		case errors.Is(err, unix.EINTR):
			continue
		case err == nil && s.step == stepQuit: // the server closed after its 221, or before it
			c.end(s, nil)
		default:
			c.end(s, fmt.Errorf("bench: %s: connection closed (%v)", stepName(s.step), err))
		}
		return
	}
}

// replies takes the whole replies read so far; false when the session has ended.
func (c *loopClient) replies(s *loopSession) bool {
	for {
		code, text, ok := takeReply(&s.in)
		if !ok {
			return true
		}
		if !c.reply(s, code, text) {
			return false
		}
	}
}

// takeReply takes one whole reply (its last line is "ddd text") from the front of in.
func takeReply(in *[]byte) (code int, text []byte, ok bool) {
	b := *in
	for off := 0; ; {
		i := bytes.IndexByte(b[off:], '\n')
		if i < 0 {
			return 0, nil, false
		}
		line := b[off : off+i+1]
		off += i + 1
		if len(line) < 5 || line[3] != '-' {
			reply := b[:off]
			*in = b[off:]
			if len(line) < 3 {
				return 0, reply, true
			}
			return int(line[0]-'0')*100 + int(line[1]-'0')*10 + int(line[2]-'0'), reply, true
		}
	}
}

// reply acts on one reply; false when the session has ended.
func (c *loopClient) reply(s *loopSession, code int, text []byte) bool {
	want := 250
	switch s.step {
	case stepGreeting:
		want = 220
	case stepEnvelope:
		if s.replies == 2 {
			want = 354
		}
	case stepQuit:
		c.end(s, nil)
		return false
	}
	if code != want {
		c.end(s, fmt.Errorf("bench: %s: %s", stepName(s.step), bytes.TrimSpace(text)))
		return false
	}
	s.replies++
	switch s.step {
	case stepGreeting:
		s.out = []byte("EHLO bench.localhost\r\n")
	case stepEHLO:
		if !bytes.Contains(bytes.ToUpper(text), []byte("PIPELINING")) {
			c.end(s, errors.New("bench: the server does not offer PIPELINING, which the latency client needs"))
			return false
		}
		s.out = c.envelope
	case stepEnvelope:
		if s.replies < 3 {
			return true
		}
		s.out = s.msg
	case stepData:
		now := time.Now()
		c.times = append(c.times, now.Sub(s.started))
		c.last = now
	}
	s.step++
	s.replies = 0
	if err := c.flush(s); err != nil {
		c.end(s, err)
		return false
	}
	return true
}

// flush writes what the session has to write, until the kernel would block.
func (c *loopClient) flush(s *loopSession) error {
	for len(s.out) > 0 {
		n, err := unix.Write(s.fd, s.out)
		if n > 0 {
			s.out = s.out[n:]
		}
		switch {
		case errors.Is(err, unix.EAGAIN):
			return nil
		case errors.Is(err, unix.EINTR):
		case err != nil:
			return fmt.Errorf("bench: %s: %w", stepName(s.step), err)
		}
	}
	return nil
}

// end closes a session, counting err if it came before the reply to the data.
func (c *loopClient) end(s *loopSession, err error) {
	unix.Close(s.fd)
	delete(c.sessions, s.fd)
	if err != nil && s.step <= stepData {
		c.failed(err)
	}
}

func (c *loopClient) failed(err error) {
	if c.errors++; c.errors == 1 {
		c.first = err.Error()
	}
}

func (c *loopClient) closeAll() {
	for _, s := range c.sessions {
		unix.Close(s.fd)
	}
	clear(c.sessions)
}
