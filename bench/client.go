package bench

import (
	"bytes"
	"context"
	"fmt"
	"net"
	"net/textproto"
	"os/exec"
	"strconv"
	"sync"
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

// rawConn is one SMTP client connection that sends one message, in two halves when asked.
type rawConn struct {
	nc net.Conn
	tp *textproto.Conn
}

func dialRaw(ctx context.Context, addr string) (*rawConn, error) {
	var d net.Dialer
	nc, err := d.DialContext(ctx, "tcp", addr)
	if err != nil {
		return nil, fmt.Errorf("bench: dial %s: %w", addr, err)
	}
	nc.SetDeadline(time.Now().Add(5 * time.Minute))
	rc := &rawConn{nc: nc, tp: textproto.NewConn(nc)}
	if _, _, err := rc.tp.ReadResponse(220); err != nil {
		nc.Close()
		return nil, fmt.Errorf("bench: greeting of %s: %w", addr, err)
	}
	return rc, nil
}

func (rc *rawConn) Close() error { return rc.nc.Close() }

func (rc *rawConn) cmd(expect int, format string, args ...any) (string, error) {
	id, err := rc.tp.Cmd(format, args...)
	if err != nil {
		return "", err
	}
	rc.tp.StartResponse(id)
	defer rc.tp.EndResponse(id)
	_, msg, err := rc.tp.ReadResponse(expect)
	return msg, err
}

// begin sends the envelope and the message, all but the final dot.
func (rc *rawConn) begin(rcpt string, msg []byte) error {
	for _, step := range []struct {
		expect int
		line   string
	}{{250, "EHLO bench.localhost"}, {250, "MAIL FROM:<" + benchUser + ">"}, {250, "RCPT TO:<" + rcpt + ">"}, {354, "DATA"}} {
		if _, err := rc.cmd(step.expect, "%s", step.line); err != nil {
			return fmt.Errorf("bench: %s: %w", step.line, err)
		}
	}
	// Dot-stuffing: the bench's messages have no line starting with a dot.
	if _, err := rc.nc.Write(msg); err != nil {
		return err
	}
	if !bytes.HasSuffix(msg, []byte("\r\n")) {
		_, err := rc.nc.Write([]byte("\r\n"))
		return err
	}
	return nil
}

// end sends the final dot and returns the server's reply to it, then says QUIT.
func (rc *rawConn) end() (string, error) {
	if _, err := rc.nc.Write([]byte(".\r\n")); err != nil {
		return "", err
	}
	_, msg, err := rc.tp.ReadResponse(250)
	if err != nil {
		return msg, fmt.Errorf("bench: end of data: %w", err)
	}
	rc.tp.PrintfLine("QUIT")
	return msg, nil
}

// submit sends one message on a connection of its own and returns the reply to its data.
func submit(ctx context.Context, addr, rcpt string, msg []byte) (string, error) {
	rc, err := dialRaw(ctx, addr)
	if err != nil {
		return "", err
	}
	defer rc.Close()
	if err := rc.begin(rcpt, msg); err != nil {
		return "", err
	}
	return rc.end()
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
	n := max(int(rate*dur.Seconds()), 1)
	interval := time.Duration(float64(time.Second) / rate)
	var (
		mu    sync.Mutex
		times []time.Duration
		wg    sync.WaitGroup
		last  time.Time
	)
	start := time.Now()
	for i := range n {
		if d := time.Until(start.Add(time.Duration(i) * interval)); d > 0 {
			select {
			case <-ctx.Done():
				return l, ctx.Err()
			case <-time.After(d):
			}
		}
		// Each message its own Message-ID: the agent answers the same message handed in again
		// with the item it made the first time.
		msg := message(benchRcpt, size)
		wg.Go(func() {
			t0 := time.Now()
			_, err := submit(ctx, addr, benchRcpt, msg)
			took := time.Since(t0)
			mu.Lock()
			defer mu.Unlock()
			if err != nil {
				if l.Errors++; l.Errors == 1 {
					l.FirstError = err.Error()
				}
				return
			}
			times = append(times, took)
			last = time.Now()
		})
	}
	wg.Wait()
	l.P50, l.P99 = percentile(times, 50), percentile(times, 99)
	if len(times) > 0 {
		l.Done = float64(len(times)) / last.Sub(start).Seconds()
	}
	if missing == nil {
		return l, wait(len(times))
	}
	l.Behind = max(missing(len(times)), 0)
	t := time.Now()
	err := wait(len(times))
	l.CaughtUp = time.Since(t)
	return l, err
}
