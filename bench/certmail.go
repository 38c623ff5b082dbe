package bench

import (
	"bufio"
	"bytes"
	"context"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/cookiejar"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"
)

// The bench's sender and recipient. The sender submits from the trusted network, so it needs
// no password at the SMTP door; it is still a user of the agent, as certmail requires.
const (
	benchUser = "bench@localhost"
	benchRcpt = "rcpt@bench.example"
)

// certmail is a throwaway `certmail serve`.
type certmail struct {
	cmd     *exec.Cmd
	dir     string
	config  string
	smtp    string
	https   string
	log     *os.File
	client  *http.Client
	metric  string
	logSeen bool // the agent exports the log metric
	exited  chan error
}

// startCertmail starts the agent with its data in o.Dir/name, outbound mail to the sink,
// submission from 127.0.0.0/8 trusted as benchUser, and limits (TOML keys of [limits]) set
// apart from their defaults.
func startCertmail(ctx context.Context, o Options, sinkAddr, name, limits string) (*certmail, error) {
	dir := filepath.Join(o.Dir, name)
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, err
	}
	smtpAddr, err := freePort()
	if err != nil {
		return nil, err
	}
	httpsAddr, err := freePort()
	if err != nil {
		return nil, err
	}
	_, port, _ := net.SplitHostPort(httpsAddr)
	c := &certmail{dir: dir, config: filepath.Join(dir, "certmail.toml"), smtp: smtpAddr, https: httpsAddr,
		metric: o.LogMetric, exited: make(chan error, 1)}
	cfg := fmt.Sprintf(`data_dir = %q
hostname = "localhost"
public_url = "https://localhost:%s"
[listen]
smtp_submission = %q
https = %q
[submission]
trusted_networks = ["127.0.0.0/8"]
trusted_user = %q
[outbound]
mode = "smarthost"
smarthost = %q
tls = "none"
[limits]
%s
`, filepath.Join(dir, "data"), port, smtpAddr, httpsAddr, benchUser, sinkAddr, limits)
	if err := os.WriteFile(c.config, []byte(cfg), 0o600); err != nil {
		return nil, err
	}
	pw := make([]byte, 16)
	rand.Read(pw)
	add := exec.CommandContext(ctx, o.Certmail, "user", "add", benchUser, "--password-stdin", "--config", c.config)
	add.Stdin = strings.NewReader(hex.EncodeToString(pw) + "\n")
	if out, err := add.CombinedOutput(); err != nil {
		return nil, fmt.Errorf("bench: certmail user add: %v\n%s", err, out)
	}
	if c.log, err = os.Create(filepath.Join(dir, "serve.log")); err != nil {
		return nil, err
	}
	c.cmd = exec.Command(o.Certmail, "serve", "--config", c.config)
	c.cmd.Stderr = c.log
	if o.CPUProfile != "" {
		c.cmd.Env = append(os.Environ(), "CERTMAIL_CPUPROFILE="+o.CPUProfile)
	}
	out, err := c.cmd.StdoutPipe()
	if err != nil {
		return nil, err
	}
	if err := c.cmd.Start(); err != nil {
		return nil, fmt.Errorf("bench: start certmail serve: %w", err)
	}
	go func() { c.exited <- c.cmd.Wait() }()
	ready := make(chan struct{})
	go func() {
		sc := bufio.NewScanner(out)
		once := sync.Once{}
		for sc.Scan() {
			if strings.HasPrefix(sc.Text(), "Next, send") {
				once.Do(func() { close(ready) })
			}
		}
	}()
	select {
	case <-ready:
	case err := <-c.exited:
		return nil, fmt.Errorf("bench: certmail serve exited (%v); its log: %s", err, c.log.Name())
	case <-time.After(time.Minute):
		c.Stop()
		return nil, fmt.Errorf("bench: certmail serve did not start within a minute; its log: %s", c.log.Name())
	}
	pool := x509.NewCertPool()
	ca, err := os.ReadFile(filepath.Join(dir, "data", "ca.crt"))
	if err != nil || !pool.AppendCertsFromPEM(ca) {
		c.Stop()
		return nil, fmt.Errorf("bench: the agent's CA: %v", err)
	}
	jar, _ := cookiejar.New(nil)
	c.client = &http.Client{Jar: jar, Timeout: time.Minute, Transport: &http.Transport{
		TLSClientConfig:     &tls.Config{RootCAs: pool, ServerName: "localhost"},
		MaxIdleConnsPerHost: 16,
		DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
			var d net.Dialer
			return d.DialContext(ctx, "tcp", httpsAddr)
		},
	}}
	return c, nil
}

// Stop ends the agent with SIGTERM, as an operator would (so a CPU profile gets written), and
// kills it when it does not end within 10 s.
func (c *certmail) Stop() {
	if c.cmd.Process == nil {
		return
	}
	c.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-c.exited:
	case <-time.After(10 * time.Second):
		c.cmd.Process.Kill()
		<-c.exited
	}
	c.log.Close()
}

// point submits n messages of size bytes over c connections with smtp-source and times them
// until every notification has reached the sink (and every note the log, when it has one).
func (c *certmail) point(ctx context.Context, source string, sk *sink, size, conc, n int, _ string) (Point, error) {
	baseN, baseO := sk.counts()
	baseLog, _ := c.logCount(ctx)
	cpu0, _ := cpuTime(c.cmd.Process.Pid)
	start := time.Now()
	if err := runSource(ctx, source, c.smtp, size, conc, n); err != nil {
		return Point{}, fmt.Errorf("%w (certmail's log: %s)", err, c.log.Name())
	}
	acked := time.Since(start)
	if err := sk.waitFor(ctx, 10*time.Minute, "certmail's notifications", func() bool { return sk.notifications >= baseN+n }); err != nil {
		return Point{}, err
	}
	if err := c.waitLog(ctx, baseLog+notesPerMessage*n); err != nil {
		return Point{}, err
	}
	p := Point{Server: "certmail", Size: size, Concurrency: conc, Messages: n, Elapsed: time.Since(start), Acked: acked}
	if cpu1, err := cpuTime(c.cmd.Process.Pid); err == nil {
		p.CPU = cpu1 - cpu0
	}
	// The posting receipts go out after the notifications; let them, so the next point starts
	// with an empty queue.
	err := sk.waitFor(ctx, 10*time.Minute, "certmail's posting receipts", func() bool { return sk.others >= baseO+n })
	return p, err
}

// settle waits until the sink has n notifications and receipts more than base.
func (c *certmail) settle(ctx context.Context, sk *sink, baseN, baseO, n int) error {
	return sk.waitFor(ctx, 10*time.Minute, "certmail's mail", func() bool { return sk.notifications >= baseN+n && sk.others >= baseO+n })
}

// logCount reads the log metric from /metrics; ok is false when the agent has no such metric.
func (c *certmail) logCount(ctx context.Context) (int, bool) {
	v, ok := c.readMetric(ctx, c.metric)
	c.logSeen = c.logSeen || ok
	return int(v), ok
}

// readMetric reads one metric from the agent's /metrics; ok is false when it has no such metric.
func (c *certmail) readMetric(ctx context.Context, name string) (float64, bool) {
	req, _ := http.NewRequestWithContext(ctx, "GET", "https://localhost/metrics", nil)
	resp, err := c.client.Do(req)
	if err != nil {
		return 0, false
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return metricValue(string(b), name)
}

// metricValue finds a counter in Prometheus text exposition, summed over its label sets.
func metricValue(text, name string) (float64, bool) {
	var sum float64
	found := false
	for _, line := range strings.Split(text, "\n") {
		if strings.HasPrefix(line, "#") {
			continue
		}
		series, val, ok := strings.Cut(line, " ")
		if !ok || (series != name && !strings.HasPrefix(series, name+"{")) {
			continue
		}
		if f, err := strconv.ParseFloat(strings.TrimSpace(val), 64); err == nil {
			sum += f
			found = true
		}
	}
	return sum, found
}

// notesPerMessage is what the log gets for each message to the sink: the COP, and the NTF signed
// when the notification is taken.
const notesPerMessage = 2

// waitLog waits until the log metric reaches want; at once when the agent has no log.
func (c *certmail) waitLog(ctx context.Context, want int) error {
	deadline := time.Now().Add(10 * time.Minute)
	for {
		got, ok := c.logCount(ctx)
		if !ok || got >= want {
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("bench: %s is %d, want %d, after 10 minutes", c.metric, got, want)
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(10 * time.Millisecond):
		}
	}
}

// timeToROD submits n messages to recipients that accept as soon as their notification
// arrives, four at a time, and returns the median and 99th percentile of the time from the
// start of the submission to the acceptance page, which the agent shows only once the ROD is
// signed and stored.
func (c *certmail) timeToROD(ctx context.Context, sk *sink, n int) (p50, p99 time.Duration, err error) {
	run := make([]byte, 4)
	rand.Read(run)
	times := make([]time.Duration, n)
	errs := make(chan error, n)
	next := make(chan int)
	var wg sync.WaitGroup
	for range 4 {
		wg.Go(func() {
			for i := range next {
				rcpt := fmt.Sprintf("%s%x-%d@bench.example", acceptPrefix, run, i)
				start := time.Now()
				if _, err := submit(ctx, c.smtp, rcpt, message(rcpt, 1000)); err != nil {
					errs <- err
					continue
				}
				link, err := sk.link(ctx, rcpt)
				if err == nil {
					err = c.accept(ctx, link)
				}
				if err != nil {
					errs <- err
					continue
				}
				times[i] = time.Since(start)
			}
		})
	}
	for i := range n {
		next <- i
	}
	close(next)
	wg.Wait()
	close(errs)
	if err := <-errs; err != nil {
		return 0, 0, fmt.Errorf("bench: time to ROD: %w", err)
	}
	return percentile(times, 50), percentile(times, 99), nil
}

var (
	formRE  = regexp.MustCompile(`(?s)<form[^>]*action="([^"]*/accept)"[^>]*>(.*?)</form>`)
	inputRE = regexp.MustCompile(`<input[^>]*>`)
	nameRE  = regexp.MustCompile(`name="([^"]*)"`)
	valueRE = regexp.MustCompile(`value="([^"]*)"`)
)

// accept opens a pickup link and accepts the message, as a recipient's browser would.
func (c *certmail) accept(ctx context.Context, link string) error {
	req, _ := http.NewRequestWithContext(ctx, "GET", link, nil)
	resp, err := c.client.Do(req)
	if err != nil {
		return err
	}
	page, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	m := formRE.FindSubmatch(page)
	if resp.StatusCode != 200 || m == nil {
		return fmt.Errorf("pickup page: %s, no accept form", resp.Status)
	}
	v := url.Values{}
	for _, in := range inputRE.FindAll(m[2], -1) {
		if n, val := nameRE.FindSubmatch(in), valueRE.FindSubmatch(in); n != nil && val != nil {
			v.Set(string(n[1]), string(val[1]))
		}
	}
	base, _ := url.Parse(link)
	target, _ := base.Parse(string(m[1]))
	req, _ = http.NewRequestWithContext(ctx, "POST", target.String(), strings.NewReader(v.Encode()))
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	resp, err = c.client.Do(req)
	if err != nil {
		return err
	}
	io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	if resp.StatusCode != 200 {
		return fmt.Errorf("accept: %s", resp.Status)
	}
	return nil
}

// memory measures the agent's resident memory idle, and with inflight submissions of size
// bytes each sent but for the final dot; then it lets them finish.
func (c *certmail) memory(ctx context.Context, sk *sink, inflight, size int) (idle, held int64, err error) {
	baseN, baseO := sk.counts()
	if idle, err = rss(c.cmd.Process.Pid); err != nil {
		return 0, 0, err
	}
	conns := make([]*rawConn, 0, inflight)
	defer func() {
		for _, rc := range conns {
			rc.Close()
		}
	}()
	for range inflight {
		rc, err := dialRaw(ctx, c.smtp)
		if err != nil {
			return 0, 0, err
		}
		conns = append(conns, rc)
		if err := rc.begin(benchRcpt, message(benchRcpt, size)); err != nil {
			return 0, 0, err
		}
	}
	time.Sleep(time.Second) // let the agent read what was sent
	if held, err = rss(c.cmd.Process.Pid); err != nil {
		return 0, 0, err
	}
	for _, rc := range conns {
		if _, err := rc.end(nil); err != nil {
			return 0, 0, err
		}
	}
	return idle, held, c.settle(ctx, sk, baseN, baseO, inflight)
}

// rss is a process's resident set size in bytes.
func rss(pid int) (int64, error) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return 0, fmt.Errorf("bench: memory of the agent: %w", err)
	}
	for _, line := range strings.Split(string(b), "\n") {
		if v, ok := strings.CutPrefix(line, "VmRSS:"); ok {
			kb, err := strconv.ParseInt(strings.TrimSpace(strings.TrimSuffix(strings.TrimSpace(v), "kB")), 10, 64)
			return kb * 1024, err
		}
	}
	return 0, errors.New("bench: no VmRSS in /proc/PID/status")
}

// cpuTime is the CPU time (user and system) a process has used, from /proc/PID/stat.
func cpuTime(pid int) (time.Duration, error) {
	st, err := readStat(pid)
	if err != nil {
		return 0, err
	}
	return st.utime + st.stime, nil
}

// treeCPU is the CPU time used by a process and all its descendants, the exited ones included:
// each live process's own time and that of the children it has reaped.
func treeCPU(root int) (time.Duration, error) {
	entries, err := os.ReadDir("/proc")
	if err != nil {
		return 0, err
	}
	stats := map[int]procStat{}
	for _, e := range entries {
		pid, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		if st, err := readStat(pid); err == nil {
			stats[pid] = st
		}
	}
	if _, ok := stats[root]; !ok {
		return 0, fmt.Errorf("bench: no process %d", root)
	}
	var total time.Duration
	for pid, st := range stats {
		for p := pid; p > 1; p = stats[p].ppid {
			if p == root {
				total += st.utime + st.stime + st.cutime + st.cstime
				break
			}
			if _, ok := stats[p]; !ok {
				break
			}
		}
	}
	return total, nil
}

type procStat struct {
	ppid                         int
	utime, stime, cutime, cstime time.Duration
}

// readStat reads /proc/PID/stat (proc(5)).
func readStat(pid int) (procStat, error) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return procStat{}, err
	}
	// The fields after the command name, which is in parentheses and may hold spaces: state,
	// ppid, … utime (14th field), stime, cutime, cstime.
	i := bytes.LastIndexByte(b, ')')
	f := strings.Fields(string(b[i+1:]))
	if i < 0 || len(f) < 15 {
		return procStat{}, errors.New("bench: short /proc/PID/stat")
	}
	var n [5]int64
	for j, k := range []int{1, 11, 12, 13, 14} {
		if n[j], err = strconv.ParseInt(f[k], 10, 64); err != nil {
			return procStat{}, fmt.Errorf("bench: /proc/%d/stat: %w", pid, err)
		}
	}
	const tick = time.Second / 100 // USER_HZ, 100 on every Linux architecture Go runs on
	return procStat{ppid: int(n[0]), utime: time.Duration(n[1]) * tick, stime: time.Duration(n[2]) * tick,
		cutime: time.Duration(n[3]) * tick, cstime: time.Duration(n[4]) * tick}, nil
}

// percentile is the p-th percentile of ds (nearest rank).
func percentile(ds []time.Duration, p int) time.Duration {
	if len(ds) == 0 {
		return 0
	}
	s := slices.Clone(ds)
	slices.Sort(s)
	i := (len(s)*p + 99) / 100
	return s[max(i-1, 0)]
}

// freePort returns a loopback address with a port free a moment ago.
func freePort() (string, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return "", err
	}
	defer l.Close()
	return l.Addr().String(), nil
}

// message is a message from benchUser to rcpt with a body of about size bytes in lines of 78.
func message(rcpt string, size int) []byte {
	var b bytes.Buffer
	id := make([]byte, 8)
	rand.Read(id)
	fmt.Fprintf(&b, "From: <%s>\r\nTo: <%s>\r\nSubject: bench\r\nDate: %s\r\nMessage-ID: <%x@bench.localhost>\r\n\r\n",
		benchUser, rcpt, time.Now().Format(time.RFC1123Z), id)
	line := strings.Repeat("X", 78) + "\r\n"
	for b.Len() < size {
		b.WriteString(line)
	}
	return b.Bytes()
}
