package smtp

// certmail: tests of pipeline.go.

import (
	"bufio"
	"errors"
	"io"
	"net"
	"strconv"
	"strings"
	"testing"
	"time"
)

// script is a scripted SMTP server on loopback: it greets, answers EHLO with caps, and then
// hands the connection to run. It reports run's failure to the test.
func script(t *testing.T, caps []string, run func(r *bufio.Reader, w net.Conn) error) *Client {
	t.Helper()
	ln := newLocalListener(t)
	t.Cleanup(func() { ln.Close() })
	done := make(chan error, 1)
	go func() {
		c, err := ln.Accept()
		if err != nil {
			done <- err
			return
		}
		defer c.Close()
		c.SetDeadline(time.Now().Add(10 * time.Second))
		r := bufio.NewReader(c)
		c.Write([]byte("220 test ESMTP\r\n"))
		if line, err := r.ReadString('\n'); err != nil || !strings.HasPrefix(line, "EHLO ") {
			done <- errors.New("no EHLO: " + line)
			return
		}
		reply := "250-test\r\n"
		for _, c := range caps {
			reply += "250-" + c + "\r\n"
		}
		c.Write([]byte(reply + "250 HELP\r\n"))
		done <- run(r, c)
	}()
	t.Cleanup(func() {
		if err := <-done; err != nil {
			t.Errorf("server: %v", err)
		}
	})
	conn, err := net.Dial("tcp", ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	c := NewClient(conn)
	c.CommandTimeout = 10 * time.Second
	t.Cleanup(func() { c.Close() })
	return c
}

// expect reads the next line and fails unless it is want.
func expect(r *bufio.Reader, want string) error {
	line, err := r.ReadString('\n')
	if err != nil {
		return err
	}
	if line != want+"\r\n" {
		return errors.New("got " + strings.TrimSpace(line) + ", want " + want)
	}
	return nil
}

func expectAll(r *bufio.Reader, want ...string) error {
	for _, w := range want {
		if err := expect(r, w); err != nil {
			return err
		}
	}
	return nil
}

// The three commands reach a server that offers PIPELINING before it answers any of them: a
// client that waited for the reply to MAIL would wait here for ever.
func TestTransactionPipelined(t *testing.T) {
	c := script(t, []string{"PIPELINING", "SIZE 1000"}, func(r *bufio.Reader, w net.Conn) error {
		if err := expectAll(r, "MAIL FROM:<a@example.org> SIZE=9", "RCPT TO:<b@example.net>", "DATA"); err != nil {
			return err
		}
		w.Write([]byte("250 2.1.0 ok\r\n250 2.1.5 ok\r\n354 go on\r\n"))
		if err := expectAll(r, "Hi there", "."); err != nil {
			return err
		}
		w.Write([]byte("250 2.0.0 queued as 1\r\n"))
		if err := expect(r, "QUIT"); err != nil {
			return err
		}
		w.Write([]byte("221 bye\r\n"))
		return nil
	})
	wc, err := c.Transaction("a@example.org", &MailOptions{Size: 9}, "b@example.net", nil)
	if err != nil {
		t.Fatal(err)
	}
	wc.Write([]byte("Hi there\r\n"))
	resp, err := wc.CloseWithResponse()
	if err != nil {
		t.Fatal(err)
	}
	if resp.StatusText != "2.0.0 queued as 1" {
		t.Errorf("reply to the dot %q, want 2.0.0 queued as 1", resp.StatusText)
	}
	if err := c.Quit(); err != nil {
		t.Error(err)
	}
}

// A server that does not offer PIPELINING gets each command once it has answered the one
// before.
func TestTransactionOneAtATime(t *testing.T) {
	c := script(t, nil, func(r *bufio.Reader, w net.Conn) error {
		for _, step := range []struct{ cmd, reply string }{
			{"MAIL FROM:<a@example.org>", "250 ok\r\n"},
			{"RCPT TO:<b@example.net>", "250 ok\r\n"},
			{"DATA", "354 go on\r\n"},
		} {
			if err := expect(r, step.cmd); err != nil {
				return err
			}
			w.SetReadDeadline(time.Now().Add(100 * time.Millisecond))
			if _, err := r.Peek(1); err == nil {
				return errors.New("the client sent more before the reply to " + step.cmd)
			}
			w.SetReadDeadline(time.Now().Add(10 * time.Second))
			w.Write([]byte(step.reply))
		}
		if err := expectAll(r, "Hi", "."); err != nil {
			return err
		}
		w.Write([]byte("250 queued\r\n"))
		return nil
	})
	wc, err := c.Transaction("a@example.org", nil, "b@example.net", nil)
	if err != nil {
		t.Fatal(err)
	}
	wc.Write([]byte("Hi\r\n"))
	if err := wc.Close(); err != nil {
		t.Fatal(err)
	}
}

// A refused recipient is the error, the reply to DATA is read too, and the session goes on
// after RSET.
func TestTransactionRecipientRefused(t *testing.T) {
	c := script(t, []string{"PIPELINING"}, func(r *bufio.Reader, w net.Conn) error {
		if err := expectAll(r, "MAIL FROM:<a@example.org>", "RCPT TO:<nobody@example.net>", "DATA"); err != nil {
			return err
		}
		w.Write([]byte("250 ok\r\n550 5.1.1 no such user\r\n554 5.5.1 no valid recipients\r\n"))
		if err := expect(r, "RSET"); err != nil {
			return err
		}
		w.Write([]byte("250 ok\r\n"))
		// Upstream's Reset has the client greet again.
		if err := expect(r, "EHLO localhost"); err != nil {
			return err
		}
		w.Write([]byte("250-test\r\n250 PIPELINING\r\n"))
		if err := expectAll(r, "MAIL FROM:<a@example.org>", "RCPT TO:<b@example.net>", "DATA"); err != nil {
			return err
		}
		w.Write([]byte("250 ok\r\n250 ok\r\n354 go on\r\n"))
		if err := expectAll(r, "Hi", "."); err != nil {
			return err
		}
		w.Write([]byte("250 queued\r\n"))
		return nil
	})
	_, err := c.Transaction("a@example.org", nil, "nobody@example.net", nil)
	var ce *CommandError
	var se *SMTPError
	if !errors.As(err, &ce) || ce.Command != "RCPT" || !errors.As(err, &se) || se.Code != 550 {
		t.Fatalf("error %v, want the 550 to RCPT", err)
	}
	if err := c.Reset(); err != nil {
		t.Fatal(err)
	}
	wc, err := c.Transaction("a@example.org", nil, "b@example.net", nil)
	if err != nil {
		t.Fatal(err)
	}
	wc.Write([]byte("Hi\r\n"))
	if err := wc.Close(); err != nil {
		t.Fatal(err)
	}
}

// RFC 2920 3.1: a server that answers DATA with 354 after refusing MAIL is sent a lone dot,
// and the error is the refusal of MAIL.
func TestTransactionDataAfterRefusal(t *testing.T) {
	c := script(t, []string{"PIPELINING"}, func(r *bufio.Reader, w net.Conn) error {
		if err := expectAll(r, "MAIL FROM:<a@example.org>", "RCPT TO:<b@example.net>", "DATA"); err != nil {
			return err
		}
		w.Write([]byte("451 4.3.0 try later\r\n503 5.5.1 MAIL first\r\n354 go on\r\n"))
		if err := expect(r, "."); err != nil {
			return err
		}
		w.Write([]byte("554 5.5.1 no valid recipients\r\n"))
		return expect(r, "NOOP")
	})
	_, err := c.Transaction("a@example.org", nil, "b@example.net", nil)
	var ce *CommandError
	var se *SMTPError
	if !errors.As(err, &ce) || ce.Command != "MAIL" || !errors.As(err, &se) || se.Code != 451 {
		t.Fatalf("error %v, want the 451 to MAIL", err)
	}
	// The reply to the dot was read: the next command gets a reply of its own.
	c.text.PrintfLine("NOOP")
}

// A session the server has closed fails at MAIL with an error that is not a reply.
func TestTransactionClosed(t *testing.T) {
	c := script(t, []string{"PIPELINING"}, func(r *bufio.Reader, w net.Conn) error {
		return nil // closes the connection
	})
	if err := c.hello(); err != nil {
		t.Fatal(err)
	}
	time.Sleep(50 * time.Millisecond)
	_, err := c.Transaction("a@example.org", nil, "b@example.net", nil)
	var ce *CommandError
	var se *SMTPError
	if !errors.As(err, &ce) || ce.Command != "MAIL" || errors.As(err, &se) {
		t.Fatalf("error %v, want a session error at MAIL", err)
	}
}

// A line the client must not send is refused before anything is written.
func TestTransactionBadAddress(t *testing.T) {
	c := script(t, []string{"PIPELINING"}, func(r *bufio.Reader, w net.Conn) error {
		if err := expect(r, "QUIT"); err != nil {
			return err
		}
		w.Write([]byte("221 bye\r\n"))
		return nil
	})
	_, err := c.Transaction("a@example.org", nil, "b@example.net\r\nRSET", nil)
	var ce *CommandError
	if !errors.As(err, &ce) || ce.Command != "RCPT" {
		t.Fatalf("error %v, want RCPT's", err)
	}
	if err := c.Quit(); err != nil {
		t.Error(err)
	}
}

// A server that refuses MAIL with 421 and closes the session: the error is the 421, not the
// end of the session that the replies after it meet.
func TestTransactionClosing(t *testing.T) {
	c := script(t, []string{"PIPELINING"}, func(r *bufio.Reader, w net.Conn) error {
		if err := expectAll(r, "MAIL FROM:<a@example.org>", "RCPT TO:<b@example.net>", "DATA"); err != nil {
			return err
		}
		w.Write([]byte("421 4.4.2 idle too long\r\n"))
		return nil
	})
	_, err := c.Transaction("a@example.org", nil, "b@example.net", nil)
	var ce *CommandError
	var se *SMTPError
	if !errors.As(err, &ce) || ce.Command != "MAIL" || !errors.As(err, &se) || se.Code != 421 {
		t.Fatalf("error %v, want the 421 to MAIL", err)
	}
}

// readChunk reads a BDAT chunk of n bytes and fails unless it is want.
func readChunk(r *bufio.Reader, want string) error {
	got := make([]byte, len(want))
	if _, err := io.ReadFull(r, got); err != nil {
		return err
	}
	if string(got) != want {
		return errors.New("chunk " + strconv.Quote(string(got)) + ", want " + strconv.Quote(want))
	}
	return nil
}

// A server that offers PIPELINING and CHUNKING gets MAIL, RCPT and the message in one BDAT
// chunk before it answers any of them; the message goes as it is, its dots not stuffed.
func TestSendChunked(t *testing.T) {
	const msg = "Hi\r\n.dot\r\n"
	c := script(t, []string{"PIPELINING", "CHUNKING", "SIZE 1000"}, func(r *bufio.Reader, w net.Conn) error {
		if err := expectAll(r, "MAIL FROM:<a@example.org> SIZE=10", "RCPT TO:<b@example.net>", "BDAT 10 LAST"); err != nil {
			return err
		}
		if err := readChunk(r, msg); err != nil {
			return err
		}
		w.Write([]byte("250 2.1.0 ok\r\n250 2.1.5 ok\r\n250 2.0.0 queued as 7\r\n"))
		if err := expect(r, "QUIT"); err != nil {
			return err
		}
		w.Write([]byte("221 bye\r\n"))
		return nil
	})
	if err := c.Send("a@example.org", &MailOptions{Size: len64(msg)}, "b@example.net", nil, []byte(msg)); err != nil {
		t.Fatal(err)
	}
	if err := c.Quit(); err != nil {
		t.Error(err)
	}
}

func len64(s string) int64 { return int64(len(s)) }

// A refused recipient is the error, not the server's reply to the chunk after it, and the
// session goes on after RSET.
func TestSendChunkedRecipientRefused(t *testing.T) {
	c := script(t, []string{"PIPELINING", "CHUNKING"}, func(r *bufio.Reader, w net.Conn) error {
		if err := expectAll(r, "MAIL FROM:<a@example.org>", "RCPT TO:<nobody@example.net>", "BDAT 4 LAST"); err != nil {
			return err
		}
		if err := readChunk(r, "Hi\r\n"); err != nil {
			return err
		}
		w.Write([]byte("250 ok\r\n550 5.1.1 no such user\r\n503 5.5.1 no valid recipients\r\n"))
		if err := expect(r, "RSET"); err != nil {
			return err
		}
		w.Write([]byte("250 ok\r\n"))
		if err := expect(r, "EHLO localhost"); err != nil { // upstream's Reset greets again
			return err
		}
		w.Write([]byte("250-test\r\n250-PIPELINING\r\n250 CHUNKING\r\n"))
		if err := expectAll(r, "MAIL FROM:<a@example.org>", "RCPT TO:<b@example.net>", "BDAT 4 LAST"); err != nil {
			return err
		}
		if err := readChunk(r, "Hi\r\n"); err != nil {
			return err
		}
		w.Write([]byte("250 ok\r\n250 ok\r\n250 queued\r\n"))
		return nil
	})
	err := c.Send("a@example.org", nil, "nobody@example.net", nil, []byte("Hi\r\n"))
	var ce *CommandError
	var se *SMTPError
	if !errors.As(err, &ce) || ce.Command != "RCPT" || !errors.As(err, &se) || se.Code != 550 {
		t.Fatalf("error %v, want the 550 to RCPT", err)
	}
	if err := c.Reset(); err != nil {
		t.Fatalf("RSET after the refusal: %v", err)
	}
	if err := c.Send("a@example.org", nil, "b@example.net", nil, []byte("Hi\r\n")); err != nil {
		t.Fatalf("the next mail: %v", err)
	}
}

// The reply to the chunk says whether the server took the mail: a refusal is the error of
// BDAT, and the end of the session there an error that is not a reply.
func TestSendChunkedMessageRefused(t *testing.T) {
	for _, tc := range []struct {
		reply string
		code  int
	}{{"554 5.6.0 content refused\r\n", 554}, {"", 0}} {
		c := script(t, []string{"PIPELINING", "CHUNKING"}, func(r *bufio.Reader, w net.Conn) error {
			if err := expectAll(r, "MAIL FROM:<a@example.org>", "RCPT TO:<b@example.net>", "BDAT 4 LAST"); err != nil {
				return err
			}
			if err := readChunk(r, "Hi\r\n"); err != nil {
				return err
			}
			w.Write([]byte("250 ok\r\n250 ok\r\n" + tc.reply))
			return nil // closes the connection
		})
		err := c.Send("a@example.org", nil, "b@example.net", nil, []byte("Hi\r\n"))
		var ce *CommandError
		var se *SMTPError
		if !errors.As(err, &ce) || ce.Command != "BDAT" || errors.As(err, &se) != (tc.code != 0) || (tc.code != 0 && se.Code != tc.code) {
			t.Errorf("reply %q: error %v, want it at BDAT", tc.reply, err)
		}
	}
}

// Without CHUNKING the message goes after DATA, its dots stuffed, and a refusal of it is the
// error of the end of DATA.
func TestSendWithoutChunking(t *testing.T) {
	c := script(t, []string{"PIPELINING"}, func(r *bufio.Reader, w net.Conn) error {
		if err := expectAll(r, "MAIL FROM:<a@example.org>", "RCPT TO:<b@example.net>", "DATA"); err != nil {
			return err
		}
		w.Write([]byte("250 ok\r\n250 ok\r\n354 go on\r\n"))
		if err := expectAll(r, "Hi", "..dot", "."); err != nil {
			return err
		}
		w.Write([]byte("554 5.6.0 content refused\r\n"))
		return nil
	})
	err := c.Send("a@example.org", nil, "b@example.net", nil, []byte("Hi\r\n.dot\r\n"))
	var ce *CommandError
	var se *SMTPError
	if !errors.As(err, &ce) || ce.Command != "end of DATA" || !errors.As(err, &se) || se.Code != 554 {
		t.Fatalf("error %v, want the 554 to the end of DATA", err)
	}
}

// A session the server closed while it was idle fails at MAIL with an error that is not a
// reply: nothing of the mail was taken, and the caller may try a new session.
func TestSendChunkedClosed(t *testing.T) {
	c := script(t, []string{"PIPELINING", "CHUNKING"}, func(r *bufio.Reader, w net.Conn) error {
		return nil // closes the connection
	})
	if err := c.hello(); err != nil {
		t.Fatal(err)
	}
	time.Sleep(50 * time.Millisecond)
	err := c.Send("a@example.org", nil, "b@example.net", nil, []byte("Hi\r\n"))
	var ce *CommandError
	var se *SMTPError
	if !errors.As(err, &ce) || ce.Command != "MAIL" || errors.As(err, &se) {
		t.Fatalf("error %v, want a session error at MAIL", err)
	}
}

// expectMail reads one mail of a SendMany group: its commands and its chunk.
func expectMail(r *bufio.Reader, rset bool, to, chunk string) error {
	if rset {
		if err := expect(r, "RSET"); err != nil {
			return err
		}
	}
	if err := expectAll(r, "MAIL FROM:<a@example.org>", "RCPT TO:<"+to+">", "BDAT "+strconv.Itoa(len(chunk))+" LAST"); err != nil {
		return err
	}
	return readChunk(r, chunk)
}

// The mails of a group reach a server that offers PIPELINING and CHUNKING before it answers
// any, each after an RSET but the first; each mail gets its own verdict, a mail with an address
// the client must not send is left out, and the session goes on after them.
func TestSendManyOneWrite(t *testing.T) {
	c := script(t, []string{"PIPELINING", "CHUNKING"}, func(r *bufio.Reader, w net.Conn) error {
		for i, to := range []string{"b@example.net", "nobody@example.net", "d@example.net"} {
			if err := expectMail(r, i > 0, to, "Hi "+to+"\r\n"); err != nil {
				return err
			}
		}
		w.Write([]byte("250 ok\r\n250 ok\r\n250 queued\r\n" +
			"250 reset\r\n250 ok\r\n550 5.1.1 no such user\r\n503 5.5.1 no valid recipients\r\n" +
			"250 reset\r\n250 ok\r\n250 ok\r\n250 queued\r\n"))
		if err := expect(r, "QUIT"); err != nil {
			return err
		}
		w.Write([]byte("221 bye\r\n"))
		return nil
	})
	var mails []Mail
	for _, to := range []string{"b@example.net", "bad@example.net\r\nRSET", "nobody@example.net", "d@example.net"} {
		mails = append(mails, Mail{From: "a@example.org", To: to, Data: []byte("Hi " + to + "\r\n")})
	}
	errs := c.SendMany(mails)
	var ce *CommandError
	var se *SMTPError
	if errs[0] != nil || errs[3] != nil {
		t.Errorf("the mails the server took: %v, %v", errs[0], errs[3])
	}
	if !errors.As(errs[1], &ce) || ce.Command != "RCPT" || errors.As(errs[1], &se) {
		t.Errorf("the bad address: %v, want RCPT's, not the server's", errs[1])
	}
	if !errors.As(errs[2], &ce) || ce.Command != "RCPT" || !errors.As(errs[2], &se) || se.Code != 550 {
		t.Errorf("the refused recipient: %v, want the 550 to RCPT", errs[2])
	}
	if err := c.Quit(); err != nil {
		t.Error(err)
	}
}

// When the session ends in a group, the mail whose replies it cut and every mail after it
// have the error of the session; those before it keep their verdicts.
func TestSendManyBroken(t *testing.T) {
	c := script(t, []string{"PIPELINING", "CHUNKING"}, func(r *bufio.Reader, w net.Conn) error {
		for i, to := range []string{"b@example.net", "c@example.net", "d@example.net"} {
			if err := expectMail(r, i > 0, to, "Hi\r\n"); err != nil {
				return err
			}
		}
		w.Write([]byte("250 ok\r\n250 ok\r\n250 queued\r\n250 reset\r\n250 ok\r\n"))
		return nil // closes the connection
	})
	var mails []Mail
	for _, to := range []string{"b@example.net", "c@example.net", "d@example.net"} {
		mails = append(mails, Mail{From: "a@example.org", To: to, Data: []byte("Hi\r\n")})
	}
	errs := c.SendMany(mails)
	var ce *CommandError
	var se *SMTPError
	if errs[0] != nil {
		t.Errorf("the mail the server took: %v", errs[0])
	}
	if !errors.As(errs[1], &ce) || ce.Command != "RCPT" || errors.As(errs[1], &se) {
		t.Errorf("the mail cut at RCPT: %v, want a session error at RCPT", errs[1])
	}
	if !errors.As(errs[2], &ce) || ce.Command != "MAIL" || errors.As(errs[2], &se) {
		t.Errorf("the mail after: %v, want a session error at MAIL", errs[2])
	}
}

// Without CHUNKING the mails go one after another, each after DATA.
func TestSendManyWithoutChunking(t *testing.T) {
	c := script(t, []string{"PIPELINING"}, func(r *bufio.Reader, w net.Conn) error {
		for _, to := range []string{"b@example.net", "c@example.net"} {
			if err := expectAll(r, "MAIL FROM:<a@example.org>", "RCPT TO:<"+to+">", "DATA"); err != nil {
				return err
			}
			w.Write([]byte("250 ok\r\n250 ok\r\n354 go on\r\n"))
			if err := expectAll(r, "Hi", "."); err != nil {
				return err
			}
			w.Write([]byte("250 queued\r\n"))
		}
		return nil
	})
	errs := c.SendMany([]Mail{{From: "a@example.org", To: "b@example.net", Data: []byte("Hi\r\n")},
		{From: "a@example.org", To: "c@example.net", Data: []byte("Hi\r\n")}})
	if errs[0] != nil || errs[1] != nil {
		t.Fatalf("errors %v", errs)
	}
}
