package bench

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"
)

// acceptPrefix marks the synthetic recipients that accept at once: the sink hands their
// notifications' pickup links to whoever waits for them.
const acceptPrefix = "accept-"

// sink is the mail server beyond the agent (and beyond the floor server): it takes every
// message, counts notifications (mail to a recipient) and receipts (mail back to the sender),
// and passes on the pickup links of recipients that accept at once.
//
// It speaks just enough SMTP (RFC 5321) for the agent's and the floor's clients, by hand rather
// than with go-smtp's server, because of what it costs. In a deployment the mail servers beyond
// the agent run on machines of their own; here the sink shares the bench's two cores with the
// server it measures. As a go-smtp server (upstream's, which read DATA a byte at a time; the
// copy in third_party no longer does) the sink took 0.24 ms of CPU for each certified 10 KB
// message and 0.9 ms at 100 KB (BENCHMARKS.md), CPU the agent then lacked, while Postfix's
// baseline relays to smtp-sink. This sink reads DATA a line at a time from its buffer and
// keeps a message only to look for a pickup link.
type sink struct {
	l    net.Listener
	addr string
	wg   sync.WaitGroup

	mu            sync.Mutex
	cond          *sync.Cond
	conns         map[net.Conn]bool
	closed        bool
	notifications int
	others        int
	links         map[string]string // recipient → pickup link
}

var linkRE = regexp.MustCompile(`https://[^\s/"<>]+/pickup/[A-Za-z0-9_-]{43}`)

func newSink() (*sink, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, fmt.Errorf("bench: sink: %w", err)
	}
	s := &sink{l: l, addr: l.Addr().String(), conns: map[net.Conn]bool{}, links: map[string]string{}}
	s.cond = sync.NewCond(&s.mu)
	s.wg.Go(s.serve)
	return s, nil
}

func (s *sink) Addr() string { return s.addr }

// Close stops the sink: no new connections, and those open are closed.
func (s *sink) Close() {
	s.l.Close()
	s.mu.Lock()
	s.closed = true
	for c := range s.conns {
		c.Close()
	}
	s.mu.Unlock()
	s.wg.Wait()
}

func (s *sink) serve() {
	for {
		c, err := s.l.Accept()
		if err != nil {
			return
		}
		s.mu.Lock()
		if s.closed {
			s.mu.Unlock()
			c.Close()
			return
		}
		s.conns[c] = true
		s.mu.Unlock()
		s.wg.Go(func() {
			s.session(c, c)
			c.Close()
			s.mu.Lock()
			delete(s.conns, c)
			s.mu.Unlock()
		})
	}
}

// session serves one SMTP session, reading commands from r and replying on w, until QUIT, an
// error, or a line longer than the buffer outside DATA. Replies wait in the buffer while
// commands are pipelined after them.
func (s *sink) session(r io.Reader, w io.Writer) {
	br := bufio.NewReaderSize(r, 64<<10)
	bw := bufio.NewWriter(w)
	reply := func(lines string) bool {
		bw.WriteString(lines)
		return br.Buffered() > 0 || bw.Flush() == nil
	}
	if !reply("220 sink.bench.test ESMTP\r\n") {
		return
	}
	var rcpts []string
	var chunks []byte // the message so far, from BDAT chunks (RFC 3030)
	for {
		line, err := br.ReadSlice('\n')
		if err != nil {
			return
		}
		verb, arg := smtpCommand(line)
		ok := true
		switch verb {
		case "EHLO":
			ok = reply("250-sink.bench.test\r\n250-PIPELINING\r\n250-CHUNKING\r\n250-8BITMIME\r\n250-SMTPUTF8\r\n250 ENHANCEDSTATUSCODES\r\n")
		case "HELO":
			ok = reply("250 sink.bench.test\r\n")
		case "MAIL":
			rcpts, chunks = rcpts[:0], nil
			ok = reply("250 2.1.0 OK\r\n")
		case "RCPT":
			to, found := mailboxArg(arg, "TO:")
			if !found {
				ok = reply("501 5.5.4 Syntax: RCPT TO:<address>\r\n")
				break
			}
			rcpts = append(rcpts, to)
			ok = reply("250 2.1.5 OK\r\n")
		case "DATA":
			if len(rcpts) == 0 {
				ok = reply("503 5.5.1 RCPT first\r\n")
				break
			}
			if !reply("354 End data with <CR><LF>.<CR><LF>\r\n") {
				return
			}
			body, err := readData(br, s.wantsLink(rcpts))
			if err != nil {
				return
			}
			s.received(rcpts, body)
			rcpts = rcpts[:0]
			ok = reply("250 2.0.0 OK\r\n")
		case "BDAT":
			size, last, good := bdatArgs(arg)
			if !good {
				// Without its size the chunk cannot be told from the commands after it.
				reply("501 5.5.4 Syntax: BDAT size [LAST]\r\n")
				bw.Flush()
				return
			}
			keep := len(rcpts) > 0 && s.wantsLink(rcpts)
			if chunks, err = readChunk(br, size, chunks, keep); err != nil {
				return
			}
			switch {
			case len(rcpts) == 0:
				ok = reply("503 5.5.1 RCPT first\r\n")
			case last:
				s.received(rcpts, chunks)
				rcpts, chunks = rcpts[:0], nil
				ok = reply("250 2.0.0 OK\r\n")
			default:
				ok = reply("250 2.0.0 chunk OK\r\n")
			}
		case "RSET":
			rcpts, chunks = rcpts[:0], nil
			ok = reply("250 2.0.0 OK\r\n")
		case "NOOP":
			ok = reply("250 2.0.0 OK\r\n")
		case "QUIT":
			reply("221 2.0.0 Bye\r\n")
			bw.Flush()
			return
		default:
			ok = reply("502 5.5.2 Command not recognized\r\n")
		}
		if !ok {
			return
		}
	}
}

// smtpCommand splits a command line into its verb, in upper case, and the rest.
func smtpCommand(line []byte) (verb string, arg []byte) {
	line = bytes.TrimRight(line, "\r\n")
	v, rest, _ := bytes.Cut(line, []byte(" "))
	return strings.ToUpper(string(v)), rest
}

// mailboxArg is the address of "TO:<address> params" (prefix "TO:"), without its brackets.
func mailboxArg(arg []byte, prefix string) (string, bool) {
	if len(arg) < len(prefix) || !strings.EqualFold(string(arg[:len(prefix)]), prefix) {
		return "", false
	}
	rest := bytes.TrimLeft(arg[len(prefix):], " ")
	if len(rest) == 0 || rest[0] != '<' {
		return "", false
	}
	addr, _, found := bytes.Cut(rest[1:], []byte(">"))
	return string(addr), found
}

// readData reads a message's data up to its end line (".", RFC 5321 §4.1.1.4), and returns
// it, dots unstuffed, when keep is set, else nil. Lines longer than the buffer come in pieces.
func readData(br *bufio.Reader, keep bool) ([]byte, error) {
	var body []byte
	lineStart := true
	for {
		piece, err := br.ReadSlice('\n')
		if err != nil && err != bufio.ErrBufferFull {
			return nil, err
		}
		if lineStart && piece[0] == '.' {
			if string(piece) == ".\r\n" || string(piece) == ".\n" {
				return body, nil
			}
			piece = piece[1:]
		}
		if keep {
			body = append(body, piece...)
		}
		lineStart = err == nil
	}
}

// maxMessage is the longest message the sink keeps to look for a link in.
const maxMessage = 64 << 20

// bdatArgs parses the arguments of BDAT: the chunk's size, and whether it is the last.
func bdatArgs(arg []byte) (size int64, last bool, ok bool) {
	f := strings.Fields(string(arg))
	if len(f) == 0 || len(f) > 2 || (len(f) == 2 && !strings.EqualFold(f[1], "LAST")) {
		return 0, false, false
	}
	size, err := strconv.ParseInt(f[0], 10, 32)
	if err != nil || size < 0 {
		return 0, false, false
	}
	return size, len(f) == 2, true
}

// readChunk reads a BDAT chunk of size bytes, appended to body when keep is set, else
// discarded; the chunk is the message's bytes as they are, nothing stuffed.
func readChunk(br *bufio.Reader, size int64, body []byte, keep bool) ([]byte, error) {
	if !keep {
		_, err := br.Discard(int(size))
		return body, err
	}
	if int64(len(body))+size > maxMessage {
		return nil, errors.New("bench: sink: message too long")
	}
	n := len(body)
	body = slices.Grow(body, int(size))[:n+int(size)]
	_, err := io.ReadFull(br, body[n:])
	return body, err
}

// wantsLink reports whether a message to rcpts must be searched for a pickup link.
func (s *sink) wantsLink(rcpts []string) bool {
	for _, to := range rcpts {
		if strings.HasPrefix(to, acceptPrefix) {
			return true
		}
	}
	return false
}

// received counts a message to rcpts, and keeps the pickup link of an accepting recipient.
func (s *sink) received(rcpts []string, body []byte) {
	link := linkRE.Find(body)
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, to := range rcpts {
		if to == benchUser { // receipts go back to the sender
			s.others++
			continue
		}
		s.notifications++
		if link != nil && strings.HasPrefix(to, acceptPrefix) {
			s.links[to] = string(link)
		}
	}
	s.cond.Broadcast()
}

// counts returns the notifications and other mails received so far.
func (s *sink) counts() (notifications, others int) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.notifications, s.others
}

// waitFor waits until cond (called with the sink's lock held) holds, ctx ends or limit passes.
func (s *sink) waitFor(ctx context.Context, limit time.Duration, what string, cond func() bool) error {
	stop := context.AfterFunc(ctx, func() { s.mu.Lock(); s.cond.Broadcast(); s.mu.Unlock() })
	defer stop()
	deadline := time.Now().Add(limit)
	t := time.AfterFunc(limit, func() { s.mu.Lock(); s.cond.Broadcast(); s.mu.Unlock() })
	defer t.Stop()
	s.mu.Lock()
	defer s.mu.Unlock()
	for !cond() {
		if err := ctx.Err(); err != nil {
			return err
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("bench: %s: not within %v (sink has %d notifications, %d other mails)", what, limit, s.notifications, s.others)
		}
		s.cond.Wait()
	}
	return nil
}

// link waits for the pickup link sent to rcpt.
func (s *sink) link(ctx context.Context, rcpt string) (string, error) {
	var l string
	err := s.waitFor(ctx, time.Minute, "notification to "+rcpt, func() bool {
		l = s.links[rcpt]
		return l != ""
	})
	return l, err
}
