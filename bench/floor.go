package bench

import (
	"bytes"
	"certmail/evidence"
	"certmail/evlog"
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
	"golang.org/x/mod/sumdb/note"
)

// floor is the least a certified mail server must do per message, with nothing else: receive
// it over SMTP, hash it, sign three Ed25519 signatures over the hash (the certificate of
// posting, the notification's and one more, as certmail's steps of a delivery sign), append
// message and signatures to a file and fsync it (group commit, as certmail does) before the
// 250, append the three signatures' hashes to a real evidence log (package evlog, tessera) in
// batches after the commit, and send a one-line notification to the sink over a pooled
// connection. No database, no MIME, no receipts, no TLS. Its throughput, measured like certmail's, is the bound this machine puts
// on certified mail: certmail's throughput as a fraction of it is what the goal "≥ 50 % of
// what the machine allows" is about.
type floor struct {
	srv    *smtp.Server
	addr   string
	key    ed25519.PrivateKey
	file   *os.File
	log    *evlog.Log
	writes chan *floorWrite
	leaves chan []evidence.Hash
	notify chan struct{}
	done   chan struct{}
}

type floorWrite struct {
	data   []byte
	leaves []evidence.Hash
	done   chan error
}

// floorSignatures is how many signatures the floor makes per message.
const floorSignatures = 3

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
	skey, vkey, err := note.GenerateKey(rand.Reader, "floor.bench.test")
	if err != nil {
		return nil, err
	}
	signer, err := note.NewSigner(skey)
	if err != nil {
		return nil, err
	}
	el, err := evlog.Open(evlog.Config{Dir: filepath.Join(dir, "log"), Signer: signer, Verifier: vkey})
	if err != nil {
		return nil, err
	}
	fl := &floor{key: key, file: f, log: el, writes: make(chan *floorWrite, 1024), leaves: make(chan []evidence.Hash, 1<<16),
		notify: make(chan struct{}, 1<<20), done: make(chan struct{})}
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
	go fl.logger()
	for range floorSenders {
		go fl.sender(sk.Addr())
	}
	return fl, nil
}

func (fl *floor) Close() {
	fl.srv.Close()
	close(fl.done)
	fl.file.Close()
	fl.log.Close(context.Background())
}

// logger appends the hashes of committed signatures to the evidence log, everything waiting at
// once, as certmail's publisher does.
func (fl *floor) logger() {
	for {
		var batch []evidence.Hash
		select {
		case <-fl.done:
			return
		case ls := <-fl.leaves:
			batch = append(batch, ls...)
		}
	drain:
		for {
			select {
			case ls := <-fl.leaves:
				batch = append(batch, ls...)
			default:
				break drain
			}
		}
		fl.log.Append(context.Background(), batch...)
	}
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
			if err == nil {
				fl.leaves <- w.leaves
			}
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
	w := &floorWrite{data: append(m, h[:]...), done: make(chan error, 1)}
	for i := range floorSignatures {
		sig := ed25519.Sign(s.fl.key, append(h[:], byte(i)))
		w.data = append(w.data, sig...)
		w.leaves = append(w.leaves, evidence.Sum(sig))
	}
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
