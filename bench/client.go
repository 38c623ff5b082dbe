package bench

import (
	"bufio"
	"bytes"
	"context"
	"fmt"
	"io"
	"net"
	"net/textproto"
	"os/exec"
	"strconv"
	"strings"
	"time"
)

// runSource runs Postfix's smtp-source: n messages with a body of size bytes over conc
// connections, one message per connection (-d), from benchUser to benchRcpt.
func runSource(ctx context.Context, source, addr string, size, conc, n int) error {
	cmd := exec.CommandContext(ctx, source, "-d", "-s", strconv.Itoa(conc), "-m", strconv.Itoa(n),
		"-l", strconv.Itoa(size), "-f", benchUser, "-t", benchRcpt, "-S", "bench", "-M", "localhost", addr)
	if out, err := cmd.CombinedOutput(); err != nil {
		return fmt.Errorf("bench: smtp-source to %s: %v\n%s", addr, err, out)
	}
	return nil
}

// rawConn is one SMTP client connection that sends one message, in two halves when asked:
// the time-to-ROD and memory measurements' client (the latency runs have loopClient). When
// the server offers PIPELINING (RFC 2920), as certmail and Postfix do, it sends its commands
// in the groups that mail servers' own clients send: MAIL FROM, RCPT TO and DATA in one write,
// and the message, its final dot and QUIT in another.
type rawConn struct {
	nc         net.Conn
	tp         *textproto.Reader
	pipelining bool
}

func dialRaw(ctx context.Context, addr string) (*rawConn, error) {
	var d net.Dialer
	nc, err := d.DialContext(ctx, "tcp", addr)
	if err != nil {
		return nil, fmt.Errorf("bench: dial %s: %w", addr, err)
	}
	nc.SetDeadline(time.Now().Add(5 * time.Minute))
	rc := &rawConn{nc: nc, tp: textproto.NewReader(bufio.NewReader(nc))}
	if _, _, err := rc.tp.ReadResponse(220); err != nil {
		nc.Close()
		return nil, fmt.Errorf("bench: greeting of %s: %w", addr, err)
	}
	return rc, nil
}

func (rc *rawConn) Close() error { return rc.nc.Close() }

// send writes the lines in one write and reads a reply for each, which must have the codes
// expected; it returns the text of the last.
func (rc *rawConn) send(lines []string, expect ...int) (string, error) {
	if _, err := io.WriteString(rc.nc, strings.Join(lines, "\r\n")+"\r\n"); err != nil {
		return "", err
	}
	var msg string
	for i, code := range expect {
		var err error
		if _, msg, err = rc.tp.ReadResponse(code); err != nil {
			return msg, fmt.Errorf("bench: %s: %w", lines[i], err)
		}
	}
	return msg, nil
}

// begin sends the envelope and the message, all but the final dot.
func (rc *rawConn) begin(rcpt string, msg []byte) error {
	if err := rc.envelope(rcpt); err != nil {
		return err
	}
	_, err := rc.nc.Write(body(msg))
	return err
}

// envelope says EHLO and sends MAIL FROM, RCPT TO and DATA, in one write when the server
// offers PIPELINING.
func (rc *rawConn) envelope(rcpt string) error {
	ehlo, err := rc.send([]string{"EHLO bench.localhost"}, 250)
	if err != nil {
		return err
	}
	// textproto joins the lines of a reply with newlines; the first is the greeting.
	for kw := range strings.Lines(ehlo) {
		if strings.EqualFold(strings.TrimSpace(kw), "PIPELINING") {
			rc.pipelining = true
		}
	}
	steps := []string{"MAIL FROM:<" + benchUser + ">", "RCPT TO:<" + rcpt + ">", "DATA"}
	codes := []int{250, 250, 354}
	if rc.pipelining {
		_, err := rc.send(steps, codes...)
		return err
	}
	for i := range steps {
		if _, err := rc.send(steps[i:i+1], codes[i]); err != nil {
			return err
		}
	}
	return nil
}

// body is the message as DATA carries it: the bench's messages have no line that begins
// with a dot, so there is nothing to stuff, only a line to end.
func body(msg []byte) []byte {
	if bytes.HasSuffix(msg, []byte("\r\n")) {
		return msg
	}
	return append(msg[:len(msg):len(msg)], "\r\n"...)
}

// end sends the final dot, after rest (the part of the message not yet sent), and returns
// the server's reply to the data; then it says QUIT. When the server pipelines, the rest,
// the dot and QUIT go in one write, a group RFC 2920 allows: message content may begin one,
// and QUIT end it.
func (rc *rawConn) end(rest []byte) (string, error) {
	tail := ".\r\n"
	if rc.pipelining {
		tail += "QUIT\r\n"
	}
	bufs := net.Buffers{[]byte(tail)}
	if len(rest) > 0 {
		bufs = net.Buffers{body(rest), []byte(tail)}
	}
	if _, err := bufs.WriteTo(rc.nc); err != nil {
		return "", err
	}
	_, msg, err := rc.tp.ReadResponse(250)
	if err != nil {
		return msg, fmt.Errorf("bench: end of data: %w", err)
	}
	if !rc.pipelining {
		io.WriteString(rc.nc, "QUIT\r\n")
	}
	return msg, nil
}

// submit sends one message on a connection of its own and returns the reply to its data.
func submit(ctx context.Context, addr, rcpt string, msg []byte) (string, error) {
	rc, err := dialRaw(ctx, addr)
	if err != nil {
		return "", err
	}
	defer rc.Close()
	if err := rc.envelope(rcpt); err != nil {
		return "", err
	}
	return rc.end(msg)
}

// openLoop offers messages of size bytes at rate per second for dur, each on a connection of
// its own started on schedule whether or not earlier ones have finished (an open loop, so a
// slow server cannot slow the offered load and hide its latency), and measures each from
// connect to the reply to its data. wait is then called with the number of messages that
// were acknowledged, to let the server finish them before what comes next. missing, when not
// nil, is asked first how many of those the server had yet to pass on: the Latency keeps its
// answer and how long wait took (Behind, CaughtUp).
func openLoop(ctx context.Context, addr string, size int, rate float64, dur time.Duration, missing func(int) int, wait func(int) error) (Latency, error) {
	l := Latency{Size: size, Offered: rate}
	c, err := newLoopClient(addr, benchRcpt, size)
	if err != nil {
		return l, err
	}
	start := time.Now()
	if err := c.run(ctx, max(int(rate*dur.Seconds()), 1), time.Duration(float64(time.Second)/rate)); err != nil {
		return l, err
	}
	l.Errors, l.FirstError = c.errors, c.first
	l.P50, l.P99 = percentile(c.times, 50), percentile(c.times, 99)
	if len(c.times) > 0 {
		l.Done = float64(len(c.times)) / c.last.Sub(start).Seconds()
	}
	if missing == nil {
		return l, wait(len(c.times))
	}
	l.Behind = max(missing(len(c.times)), 0)
	t := time.Now()
	err = wait(len(c.times))
	l.CaughtUp = time.Since(t)
	return l, err
}
