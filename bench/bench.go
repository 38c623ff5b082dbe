// Package bench measures certmail against plain mail: it starts a throwaway `certmail serve`
// and, when Postfix is installed, a throwaway Postfix instance on loopback, drives both with
// Postfix's smtp-source (one message per connection) at several concurrencies and message
// sizes, and reports certified messages per second beside Postfix's relayed ones (README,
// BENCHMARKS.md).
//
// A certified message counts once it is acknowledged (so stored durably with its signed COP),
// its notification has reached the bench's own mail sink, and — when the agent has the public
// evidence log — its evidence is appended to the log, as the agent's /metrics tell. A Postfix
// message counts once Postfix has relayed it to smtp-sink.
//
// Beyond the sweep it measures, with its own Go client: submission latency at 80 % of peak
// throughput (open loop), the time from submission to a signed ROD for recipients that accept
// at once, the agent's memory per 1,000 messages in flight, and the floor: the least work a
// certified message needs on this machine (receive, hash, sign, fsync, notify).
//
// It never touches the machine's own mail system: Postfix runs with a private configuration
// and queue directory under a temporary directory, on unprivileged loopback ports.
package bench

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"slices"
	"strings"
	"time"
)

// Options say what to measure.
type Options struct {
	Certmail    string // the certmail binary to run as `certmail serve`
	Dir         string // scratch directory; default a new temporary one, removed afterwards
	Concurrency []int  // default 1, 4, 16, 64
	Sizes       []int  // message sizes in bytes; default 1 KB, 10 KB, 100 KB
	Messages    int    // per measured point; default 1,000 (scaled down for 100 KB)
	Quick       bool   // a short run: fewer points and messages
	NoPostfix   bool   // skip the Postfix baseline even when Postfix is installed
	// LogMetric is the agent's /metrics counter of evidence appended to the public log; when
	// the agent exports it, a message counts only once its evidence is in the log.
	LogMetric  string
	SVG        string // where to write the throughput plot; "" for none
	JSON       string // where to write the report as JSON; "" for none
	CPUProfile string // where the agent writes its CPU profile of the sweep; "" for none
	Out        io.Writer
	Log        io.Writer // progress; default io.Discard

	keep bool // Dir was given: leave the run's files
}

// DefaultLogMetric is the counter Options.LogMetric names by default.
const DefaultLogMetric = "certmail_log_appended_total"

// Point is one measured run: Messages messages of Size bytes at Concurrency connections.
type Point struct {
	Server      string // "certmail", "postfix" or "floor"
	Size        int
	Concurrency int
	Messages    int
	Elapsed     time.Duration
	Acked       time.Duration // until the last message was acknowledged (certmail only)
	CPU         time.Duration // CPU time the server used (certmail, and Postfix's processes; not the floor)
}

// CPUPerMessage is the server's CPU time per message, 0 when not measured.
func (p Point) CPUPerMessage() time.Duration { return p.CPU / time.Duration(max(p.Messages, 1)) }

// Rate is messages per second.
func (p Point) Rate() float64 { return float64(p.Messages) / p.Elapsed.Seconds() }

// MeanLatency is the mean time a message spends in the server, by Little's law.
func (p Point) MeanLatency() time.Duration {
	return time.Duration(float64(p.Concurrency) / p.Rate() * float64(time.Second))
}

// Latency is the submission latency measured at a fixed offered rate.
type Latency struct {
	Server        string
	Size          int
	Offered, Done float64 // messages per second offered and completed
	P50, P99      time.Duration
	Errors        int
	FirstError    string // what the first failed submission got
	// Behind is how many of the acknowledged messages had not reached the sink when the last
	// submission was answered (for certmail, its notification), and CaughtUp how long after
	// that the last one did: a server that defers its deliveries answers submissions sooner
	// at a rate it cannot keep up.
	Behind   int
	CaughtUp time.Duration
}

// Report is everything one run measured.
type Report struct {
	Started   time.Time
	Machine   string
	Points    []Point
	Latencies []Latency
	ROD       struct {
		N        int
		P50, P99 time.Duration
	}
	Memory struct {
		InFlight        int
		Size            int
		Idle, Held      int64 // agent RSS in bytes
		PerThousandMsgs int64
	}
	LogCounted bool   // whether "appended to the log" was part of what counted
	Postfix    string // why Postfix was not measured, "" when it was
}

// Run measures and writes the report's tables to o.Out.
func Run(ctx context.Context, o Options) (*Report, error) {
	o.defaults()
	o.keep = o.Dir != ""
	if o.Dir == "" {
		dir, err := os.MkdirTemp("", "certmail-bench")
		if err != nil {
			return nil, err
		}
		defer os.RemoveAll(dir)
		o.Dir = dir
	}
	source, err := lookPath("smtp-source")
	if err != nil {
		return nil, errors.New("bench: smtp-source not found: install Postfix (Debian: apt-get install postfix), which brings it")
	}
	r := &Report{Started: time.Now(), Machine: machine()}
	logf := func(format string, args ...any) { fmt.Fprintf(o.Log, format+"\n", args...) }

	sink, err := newSink()
	if err != nil {
		return nil, err
	}
	defer sink.Close()
	// Memory per message in flight, first, while the agent's heap is as small as it gets. The
	// agent serves 128 submission sessions at once by default and leaves the rest unread in
	// the kernel's queue: this one, of its own, serves as many as are held open.
	inflight := 1000
	if o.Quick {
		inflight = 100
	}
	mo := o
	mo.CPUProfile = ""
	mem, err := startCertmail(ctx, mo, sink.Addr(), "certmail-memory", fmt.Sprintf("max_submission_sessions = %d", inflight))
	if err != nil {
		return nil, err
	}
	r.Memory.InFlight, r.Memory.Size = inflight, 10_000
	r.Memory.Idle, r.Memory.Held, err = mem.memory(ctx, sink, inflight, r.Memory.Size)
	mem.Stop()
	if err != nil {
		return nil, err
	}
	r.Memory.PerThousandMsgs = (r.Memory.Held - r.Memory.Idle) * 1000 / int64(inflight)

	cm, err := startCertmail(ctx, o, sink.Addr(), "certmail", "")
	if err != nil {
		return nil, err
	}
	defer cm.Stop()
	logf("certmail serving SMTP on %s", cm.smtp)

	var pf *postfix
	switch {
	case o.NoPostfix:
		r.Postfix = "not asked for (--no-postfix)"
	default:
		pf, err = startPostfix(ctx, o.keep)
		if err != nil {
			pf = nil
		}
		if err != nil {
			r.Postfix = err.Error()
			logf("no Postfix baseline: %v", err)
		} else {
			defer pf.Stop()
			logf("postfix (instance in %s) relaying on %s to smtp-sink on %s", pf.dir, pf.smtp, pf.sinkAddr)
		}
	}
	floor, err := startFloor(filepath.Join(o.Dir, "floor"), sink)
	if err != nil {
		return nil, err
	}
	defer floor.Close()

	// The sweep.
	for _, size := range o.Sizes {
		for _, c := range o.Concurrency {
			n := o.messages(size, c)
			p, err := cm.point(ctx, source, sink, size, c, n, o.LogMetric)
			if err != nil {
				return nil, err
			}
			r.LogCounted = r.LogCounted || cm.logSeen
			logf("certmail %6d B  c=%-3d %5d msgs  %8.1f msg/s (all acknowledged after %v, notified after %v; %v CPU a message)", size, c, n, p.Rate(), p.Acked.Round(time.Millisecond), p.Elapsed.Round(time.Millisecond), p.CPUPerMessage().Round(time.Microsecond))
			r.Points = append(r.Points, p)
			if pf != nil {
				p, err := pf.point(ctx, source, size, c, n)
				if err != nil {
					return nil, err
				}
				logf("postfix  %6d B  c=%-3d %5d msgs  %8.1f msg/s (%v CPU a message)", size, c, n, p.Rate(), p.CPUPerMessage().Round(time.Microsecond))
				r.Points = append(r.Points, p)
			}
			p, err = floor.point(ctx, source, sink, size, c, n)
			if err != nil {
				return nil, err
			}
			logf("floor    %6d B  c=%-3d %5d msgs  %8.1f msg/s", size, c, n, p.Rate())
			r.Points = append(r.Points, p)
		}
	}

	// Latency at 80 % of each server's peak, for 10 KB (or the middle size).
	size := o.Sizes[len(o.Sizes)/2]
	dur := 10 * time.Second
	if o.Quick {
		dur = 2 * time.Second
	}
	if peak := r.peak("certmail", size); peak.Messages > 0 {
		baseN, baseO := sink.counts()
		l, err := openLoop(ctx, cm.smtp, size, 0.8*peak.Rate(), dur,
			func(n int) int { got, _ := sink.counts(); return baseN + n - got },
			func(n int) error { return cm.settle(ctx, sink, baseN, baseO, n) })
		if err != nil {
			return nil, err
		}
		l.Server = "certmail"
		logf("certmail latency at %.0f msg/s: p50 %v p99 %v, %d notifications behind", l.Offered, l.P50, l.P99, l.Behind)
		r.Latencies = append(r.Latencies, l)
	}
	if peak := r.peak("postfix", size); pf != nil && peak.Messages > 0 {
		base := pf.count()
		l, err := openLoop(ctx, pf.smtp, size, 0.8*peak.Rate(), dur,
			func(n int) int { return base + n - pf.count() },
			func(n int) error { return pf.settle(ctx, base, n) })
		if err != nil {
			return nil, err
		}
		l.Server = "postfix"
		logf("postfix latency at %.0f msg/s: p50 %v p99 %v, %d messages behind", l.Offered, l.P50, l.P99, l.Behind)
		r.Latencies = append(r.Latencies, l)
	}

	// Time to ROD.
	n := 40
	if o.Quick {
		n = 5
	}
	r.ROD.N = n
	if r.ROD.P50, r.ROD.P99, err = cm.timeToROD(ctx, sink, n); err != nil {
		return nil, err
	}
	logf("time to ROD: p50 %v p99 %v", r.ROD.P50, r.ROD.P99)

	r.Write(o.Out)
	if o.SVG != "" {
		if err := os.WriteFile(o.SVG, []byte(r.SVG()), 0o644); err != nil {
			return nil, err
		}
	}
	if o.JSON != "" {
		b, err := json.MarshalIndent(r, "", "  ")
		if err != nil {
			return nil, err
		}
		if err := os.WriteFile(o.JSON, append(b, '\n'), 0o644); err != nil {
			return nil, err
		}
	}
	return r, nil
}

func (o *Options) defaults() {
	if o.Out == nil {
		o.Out = io.Discard
	}
	if o.Log == nil {
		o.Log = io.Discard
	}
	if len(o.Concurrency) == 0 {
		o.Concurrency = []int{1, 4, 16, 64}
		if o.Quick {
			o.Concurrency = []int{1, 16}
		}
	}
	if len(o.Sizes) == 0 {
		o.Sizes = []int{1_000, 10_000, 100_000}
		if o.Quick {
			o.Sizes = []int{1_000, 10_000}
		}
	}
	if o.Messages <= 0 {
		// Enough for a point to last about a second at the peaks: each point ends with
		// waits that do not shrink with it (the log's last append, the last mails), which
		// took 8-20 % of a point of 1,000 messages at 64 connections.
		o.Messages = 2000
		if o.Quick {
			o.Messages = 60
		}
	}
	if o.LogMetric == "" {
		o.LogMetric = DefaultLogMetric
	}
}

// messages is how many messages one point sends: fewer of the large ones, and at least a few
// rounds of the connections.
func (o *Options) messages(size, c int) int {
	n := o.Messages
	if size >= 100_000 {
		n /= 2
	}
	return max(n, 4*c)
}

// peak is the best point of a server at a size.
func (r *Report) peak(server string, size int) Point {
	var best Point
	for _, p := range r.Points {
		if p.Server == server && p.Size == size && (best.Messages == 0 || p.Rate() > best.Rate()) {
			best = p
		}
	}
	return best
}

// sizes and concurrencies measured, in order.
func (r *Report) axes() (sizes, conc []int) {
	for _, p := range r.Points {
		if !slices.Contains(sizes, p.Size) {
			sizes = append(sizes, p.Size)
		}
		if !slices.Contains(conc, p.Concurrency) {
			conc = append(conc, p.Concurrency)
		}
	}
	slices.Sort(sizes)
	slices.Sort(conc)
	return sizes, conc
}

func (r *Report) point(server string, size, c int) (Point, bool) {
	i := slices.IndexFunc(r.Points, func(p Point) bool { return p.Server == server && p.Size == size && p.Concurrency == c })
	if i < 0 {
		return Point{}, false
	}
	return r.Points[i], true
}

// lookPath finds a program in PATH or, as Postfix's programs live there and a user's PATH may
// lack it, in /usr/sbin.
func lookPath(name string) (string, error) {
	if p, err := exec.LookPath(name); err == nil {
		return p, nil
	}
	return exec.LookPath(filepath.Join("/usr/sbin", name))
}

// machine describes the CPU, cores and load, for the report.
func machine() string {
	model := "unknown CPU"
	if b, err := os.ReadFile("/proc/cpuinfo"); err == nil {
		for _, line := range strings.Split(string(b), "\n") {
			if k, v, ok := strings.Cut(line, ":"); ok && strings.TrimSpace(k) == "model name" {
				model = strings.TrimSpace(v)
				break
			}
		}
	}
	load := ""
	if b, err := os.ReadFile("/proc/loadavg"); err == nil && len(b) > 0 {
		f := strings.Fields(string(b))
		if len(f) >= 3 {
			load = fmt.Sprintf(", load average %s %s %s at start", f[0], f[1], f[2])
		}
	}
	return fmt.Sprintf("%s, %d cores%s", model, runtime.NumCPU(), load)
}
