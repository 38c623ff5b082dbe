package bench

import (
	"context"
	"fmt"
	"io"
	"log"
	"net"
	"regexp"
	"strings"
	"sync"
	"time"

	"github.com/emersion/go-smtp"
)

// acceptPrefix marks the synthetic recipients that accept at once: the sink hands their
// notifications' pickup links to whoever waits for them.
const acceptPrefix = "accept-"

// sink is the mail server beyond the agent (and beyond the floor server): it takes every
// message, counts notifications (mail to a recipient) and receipts (mail back to the sender), and passes on the pickup links of recipients
// that accept at once.
type sink struct {
	srv  *smtp.Server
	addr string

	mu            sync.Mutex
	cond          *sync.Cond
	notifications int
	others        int
	links         map[string]string // recipient → pickup link
}

var linkRE = regexp.MustCompile(`https://[^\s/"<>]+/pickup/[A-Za-z0-9_-]{43}`)

func newSink() (*sink, error) {
	s := &sink{links: map[string]string{}}
	s.cond = sync.NewCond(&s.mu)
	s.srv = smtp.NewServer(smtp.BackendFunc(func(*smtp.Conn) (smtp.Session, error) { return &sinkSession{s: s}, nil }))
	s.srv.Domain = "sink.bench.test"
	s.srv.MaxMessageBytes = 64 << 20
	s.srv.ErrorLog = log.New(io.Discard, "", 0)
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, fmt.Errorf("bench: sink: %w", err)
	}
	s.addr = l.Addr().String()
	go s.srv.Serve(l)
	return s, nil
}

func (s *sink) Addr() string { return s.addr }
func (s *sink) Close()       { s.srv.Close() }

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

type sinkSession struct {
	s     *sink
	rcpts []string
}

func (ss *sinkSession) Mail(string, *smtp.MailOptions) error { return nil }
func (ss *sinkSession) Rcpt(to string, _ *smtp.RcptOptions) error {
	ss.rcpts = append(ss.rcpts, to)
	return nil
}

func (ss *sinkSession) Data(r io.Reader) error {
	b, err := io.ReadAll(r)
	if err != nil {
		return err
	}
	link := linkRE.Find(b)
	s := ss.s
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, to := range ss.rcpts {
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
	return nil
}

func (ss *sinkSession) Reset()        { ss.rcpts = nil }
func (ss *sinkSession) Logout() error { return nil }
