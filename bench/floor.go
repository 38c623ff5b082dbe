package bench

import (
	"bytes"
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"crypto/sha256"
	"fmt"
	"io"
	"log"
	"net"
	"os"
	"path/filepath"
	"time"

	"github.com/emersion/go-smtp"
)

// floor is the least a certified mail server must do per message, with nothing else: receive
// it over SMTP, hash it, sign one Ed25519 signature over the hash, append message and
// signature to a file and fsync it (group commit, as certmail does) before the 250, then send
// a one-line notification to the sink over a pooled connection. No database, no MIME, no
// receipts, no TLS. Its throughput, measured like certmail's, is the bound this machine puts
// on certified mail: certmail's throughput as a fraction of it is what the goal "≥ 50 % of
// what the machine allows" is about.
type floor struct {
	srv    *smtp.Server
	addr   string
	key    ed25519.PrivateKey
	file   *os.File
	writes chan *floorWrite
	notify chan struct{}
	done   chan struct{}
}

type floorWrite struct {
	data []byte
	done chan error
}

// floorSenders is how many connections the floor keeps open to the sink.
const floorSenders = 4

func startFloor(dir string, sk *sink) (*floor, error) {
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, err
	}
	_, key, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		return nil, err
	}
	f, err := os.OpenFile(filepath.Join(dir, "evidence"), os.O_WRONLY|os.O_CREATE|os.O_APPEND, 0o600)
	if err != nil {
		return nil, err
	}
	fl := &floor{key: key, file: f, writes: make(chan *floorWrite, 1024), notify: make(chan struct{}, 1<<20), done: make(chan struct{})}
	fl.srv = smtp.NewServer(smtp.BackendFunc(func(*smtp.Conn) (smtp.Session, error) { return &floorSession{fl: fl}, nil }))
	fl.srv.Domain = "floor.bench.test"
	fl.srv.MaxMessageBytes = 64 << 20
	fl.srv.ErrorLog = log.New(io.Discard, "", 0)
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, err
	}
	fl.addr = l.Addr().String()
	go fl.srv.Serve(l)
	go fl.writer()
	for range floorSenders {
		go fl.sender(sk.Addr())
	}
	return fl, nil
}

func (fl *floor) Close() {
	fl.srv.Close()
	close(fl.done)
	fl.file.Close()
}

// writer appends what is queued and syncs once for all of it.
func (fl *floor) writer() {
	batch := []*floorWrite{}
	for {
		select {
		case <-fl.done:
			return
		case w := <-fl.writes:
			batch = append(batch[:0], w)
		}
	drain:
		for {
			select {
			case w := <-fl.writes:
				batch = append(batch, w)
			default:
				break drain
			}
		}
		var err error
		for _, w := range batch {
			if _, werr := fl.file.Write(w.data); werr != nil && err == nil {
				err = werr
			}
		}
		if serr := fl.file.Sync(); err == nil {
			err = serr
		}
		for _, w := range batch {
			w.done <- err
		}
	}
}

// sender delivers notifications to the sink over one kept-open connection.
func (fl *floor) sender(addr string) {
	body := []byte("From: <floor@localhost>\r\nTo: <" + benchRcpt + ">\r\nSubject: a certified message waits\r\n\r\nhttps://localhost/pickup/\r\n")
	var c *smtp.Client
	for {
		select {
		case <-fl.done:
			if c != nil {
				c.Close()
			}
			return
		case <-fl.notify:
		}
		for try := 0; ; try++ {
			if c == nil {
				var err error
				if c, err = smtp.Dial(addr); err != nil {
					time.Sleep(10 * time.Millisecond)
					continue
				}
			}
			if err := c.SendMail("floor@localhost", []string{benchRcpt}, bytes.NewReader(body)); err != nil {
				c.Close()
				c = nil
				continue
			}
			break
		}
	}
}

type floorSession struct{ fl *floor }

func (s *floorSession) Mail(string, *smtp.MailOptions) error { return nil }
func (s *floorSession) Rcpt(string, *smtp.RcptOptions) error { return nil }
func (s *floorSession) Reset()                               {}
func (s *floorSession) Logout() error                        { return nil }

func (s *floorSession) Data(r io.Reader) error {
	m, err := io.ReadAll(r)
	if err != nil {
		return err
	}
	h := sha256.Sum256(m)
	sig := ed25519.Sign(s.fl.key, h[:])
	w := &floorWrite{data: append(append(m, h[:]...), sig...), done: make(chan error, 1)}
	s.fl.writes <- w
	if err := <-w.done; err != nil {
		return fmt.Errorf("floor: %w", err)
	}
	s.fl.notify <- struct{}{}
	return nil
}

// point runs smtp-source against the floor and times it until the sink has every notification.
func (fl *floor) point(ctx context.Context, source string, sk *sink, size, conc, n int) (Point, error) {
	base, _ := sk.counts()
	start := time.Now()
	if err := runSource(ctx, source, fl.addr, size, conc, n); err != nil {
		return Point{}, err
	}
	if err := sk.waitFor(ctx, 10*time.Minute, "the floor's notifications", func() bool { return sk.notifications >= base+n }); err != nil {
		return Point{}, err
	}
	return Point{Server: "floor", Size: size, Concurrency: conc, Messages: n, Elapsed: time.Since(start)}, nil
}
