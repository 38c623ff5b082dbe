package bench

import (
	"bufio"
	"bytes"
	"context"
	"io"
	"net/textproto"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/emersion/go-smtp"
)

// The sink takes what the agent's client (go-smtp) sends: several messages over one
// connection, a receipt to the sender, dot-stuffed lines and lines longer than its buffer, and
// hands on the pickup link of an accepting recipient only.
func TestSink(t *testing.T) {
	s, err := newSink()
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	c, err := smtp.Dial(s.Addr())
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	link := "https://localhost:8443/pickup/" + strings.Repeat("A", 43)
	send := func(to, body string) {
		t.Helper()
		if err := c.SendMail("agent@localhost", []string{to}, strings.NewReader(body)); err != nil {
			t.Fatalf("to %s: %v", to, err)
		}
	}
	send("rcpt@bench.example", "Subject: waiting\r\n\r\n"+link+"\r\n")
	send(acceptPrefix+"1@bench.example", "Subject: waiting\r\n\r\n.\r\n..leading dots\r\n"+strings.Repeat("x", 200<<10)+"\r\nopen "+link+"\r\n")
	send(benchUser, "Subject: accepted\r\n\r\n"+link+"\r\n")
	// The agent's client sends each mail in one BDAT chunk (RFC 3030), its dots as they are.
	chunked := "Subject: waiting\r\n\r\n.\r\n..leading dots\r\n" + strings.Repeat("y", 200<<10) + "\r\nopen " + link + "/2\r\n"
	if err := c.Send("agent@localhost", nil, acceptPrefix+"2@bench.example", nil, []byte(chunked)); err != nil {
		t.Fatalf("in a chunk: %v", err)
	}
	if err := c.Quit(); err != nil {
		t.Fatal(err)
	}
	if err := s.waitFor(context.Background(), 5*time.Second, "four mails", func() bool { return s.notifications+s.others == 4 }); err != nil {
		t.Fatal(err)
	}
	if n, o := s.counts(); n != 3 || o != 1 {
		t.Fatalf("%d notifications and %d others, want 3 and 1", n, o)
	}
	got, err := s.link(context.Background(), acceptPrefix+"1@bench.example")
	if err != nil || got != link {
		t.Fatalf("link %q, %v; want %q", got, err, link)
	}
	if got, err := s.link(context.Background(), acceptPrefix+"2@bench.example"); err != nil || got != link {
		t.Fatalf("link from the chunk %q, %v; want %q", got, err, link)
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if _, ok := s.links["rcpt@bench.example"]; ok {
		t.Fatal("kept the link of a recipient that does not accept")
	}
}

// Bad commands get an SMTP error and the session goes on; a chunk before RCPT is read and
// refused; a message may come in several chunks.
func TestSinkRefuses(t *testing.T) {
	in := "EHLO x\r\nDATA\r\nRCPT TO:nobracket\r\nVRFY x\r\nMAIL FROM:<a@b>\r\nRCPT TO:<c@d>\r\nDATA\r\nhi\r\n.\r\n" +
		"BDAT 6\r\nDATA\r\n" + "MAIL FROM:<a@b>\r\nRCPT TO:<c@d>\r\nBDAT 4\r\nhi\r\nBDAT 6 LAST\r\nQUIT\r\nQUIT\r\n"
	var out bytes.Buffer
	s := &sink{links: map[string]string{}}
	s.cond = sync.NewCond(&s.mu)
	s.session(strings.NewReader(in), &out)
	var codes []string
	for _, l := range strings.Split(strings.TrimSpace(out.String()), "\r\n") {
		if len(l) > 3 && l[3] == ' ' {
			codes = append(codes, l[:3])
		}
	}
	if got := strings.Join(codes, " "); got != "220 250 503 501 502 250 250 354 250 503 250 250 250 250 221" {
		t.Fatalf("replies %s\n%s", got, out.String())
	}
	if s.notifications != 2 {
		t.Fatalf("%d notifications, want 2", s.notifications)
	}
	// A BDAT without a size cannot be told from what follows: the session ends.
	out.Reset()
	s.session(strings.NewReader("EHLO x\r\nBDAT x\r\nQUIT\r\n"), &out)
	if !strings.HasSuffix(out.String(), "\r\n501 5.5.4 Syntax: BDAT size [LAST]\r\n") {
		t.Fatalf("after BDAT x: %q", out.String())
	}
}

// What the sink reads from DATA is what net/textproto's DotReader reads, but for its line
// ends: the sink keeps CRLF.
func FuzzSinkData(f *testing.F) {
	f.Add([]byte("Subject: x\r\n\r\n.hidden\r\n..\r\nend\r\n"))
	f.Add([]byte("no newline at the end"))
	f.Add([]byte("\r\r\n.\r.\n"))
	f.Fuzz(func(t *testing.T, body []byte) {
		var wire bytes.Buffer
		w := textproto.NewWriter(bufio.NewWriter(&wire)).DotWriter()
		w.Write(body)
		w.Close()
		want, err := io.ReadAll(textproto.NewReader(bufio.NewReader(bytes.NewReader(wire.Bytes()))).DotReader())
		if err != nil {
			t.Fatal(err)
		}
		br := bufio.NewReaderSize(bytes.NewReader(wire.Bytes()), 16)
		got, err := readData(br, true)
		if err != nil {
			t.Fatalf("%q: %v", wire.Bytes(), err)
		}
		if string(bytes.ReplaceAll(got, []byte("\r\n"), []byte("\n"))) != string(want) {
			t.Fatalf("wire %q: read %q, DotReader %q", wire.Bytes(), got, want)
		}
		if br.Buffered() != 0 {
			t.Fatalf("wire %q: %d bytes left after the end line", wire.Bytes(), br.Buffered())
		}
	})
}

// No input stops the sink's session from ending, or makes it panic.
func FuzzSinkSession(f *testing.F) {
	f.Add("EHLO x\r\nMAIL FROM:<a@b>\r\nRCPT TO:<accept-1@b>\r\nDATA\r\nhttps://h/pickup/x\r\n.\r\nQUIT\r\n")
	f.Add("RCPT TO:<\r\nDATA\r\n")
	f.Add("MAIL FROM:<a@b>\r\nRCPT TO:<accept-1@b>\r\nBDAT 20 LAST\r\nhttps://h/pickup/x\r\nBDAT 99999999999\r\n")
	f.Fuzz(func(t *testing.T, in string) {
		s := &sink{links: map[string]string{}}
		s.cond = sync.NewCond(&s.mu)
		s.session(strings.NewReader(in), io.Discard)
	})
}
