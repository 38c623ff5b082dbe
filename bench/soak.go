package bench

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"time"
)

// SoakOptions say how long and how hard to soak the agent.
type SoakOptions struct {
	Certmail string        // the certmail binary to run as `certmail serve`
	Dir      string        // scratch directory; default a new temporary one, removed afterwards
	Duration time.Duration // default 10 minutes
	// Rate is the offered load in messages a second; 0 measures the agent's peak first and
	// offers 80 % of it.
	Rate     float64
	Size     int           // message body size; default 10 KB
	Interval time.Duration // how often to sample; default 30 s
	Out      io.Writer
	Log      io.Writer // progress; default io.Discard
	// CPUProfile is where the agent writes its CPU profile of the soak; "" for none.
	CPUProfile string
}

// SoakSample is the agent as it stood at the end of one interval.
type SoakSample struct {
	At         time.Duration
	Done       float64       // messages a second acknowledged in the interval
	P99        time.Duration // submission latency
	Errors     int
	RSS        int64 // bytes
	Goroutines int
	FDs        int // open file descriptors
	// Behind is how many acknowledged messages had no notification at the sink yet: whether
	// the deliveries keep pace with the submissions.
	Behind int
}

// SoakReport is what a soak found.
type SoakReport struct {
	Peak, Rate float64
	Size       int
	Samples    []SoakSample
	// Acked messages got 250; Notified of them had their notification at the sink at the end,
	// and Logged notes were appended to the evidence log.
	Acked, Notified, Logged int
}

// Soak offers a steady load to a throwaway agent for o.Duration, one open loop per interval,
// and samples its memory, goroutines and open files after each; at the end it waits for every
// acknowledged message's mail and evidence, so that nothing acknowledged may be missing.
func Soak(ctx context.Context, o SoakOptions) (*SoakReport, error) {
	if o.Duration <= 0 {
		o.Duration = 10 * time.Minute
	}
	if o.Size <= 0 {
		o.Size = 10_000
	}
	if o.Interval <= 0 {
		o.Interval = 30 * time.Second
	}
	o.Interval = min(o.Interval, o.Duration) // a soak shorter than one interval lasts what it says
	if o.Log == nil {
		o.Log = io.Discard
	}
	if o.Dir == "" {
		dir, err := os.MkdirTemp("", "certmail-soak")
		if err != nil {
			return nil, err
		}
		defer os.RemoveAll(dir)
		o.Dir = dir
	}
	logf := func(format string, args ...any) { fmt.Fprintf(o.Log, format+"\n", args...) }
	sink, err := newSink()
	if err != nil {
		return nil, err
	}
	defer sink.Close()
	cm, err := startCertmail(ctx, Options{Certmail: o.Certmail, Dir: o.Dir, LogMetric: DefaultLogMetric, CPUProfile: o.CPUProfile}, sink.Addr(), "certmail", "")
	if err != nil {
		return nil, err
	}
	defer cm.Stop()
	r := &SoakReport{Rate: o.Rate, Size: o.Size}
	if r.Rate <= 0 {
		source, err := lookPath("smtp-source")
		if err != nil {
			return nil, errors.New("bench: soak: give --rate, or install Postfix for smtp-source to measure the peak")
		}
		p, err := cm.point(ctx, source, sink, o.Size, 16, 1000, "")
		if err != nil {
			return nil, err
		}
		r.Peak, r.Rate = p.Rate(), 0.8*p.Rate()
		logf("peak %.0f msg/s at %d B, 16 connections; soaking at %.0f msg/s", r.Peak, o.Size, r.Rate)
	}
	baseN, _ := sink.counts()
	baseLog, _ := cm.logCount(ctx)
	pid := cm.cmd.Process.Pid
	start := time.Now()
	for time.Since(start) < o.Duration {
		var n int
		l, err := openLoop(ctx, cm.smtp, o.Size, r.Rate, o.Interval, nil, func(acked int) error { n = acked; return nil })
		if err != nil {
			return nil, err
		}
		r.Acked += n
		s := SoakSample{At: time.Since(start), Done: l.Done, P99: l.P99, Errors: l.Errors}
		if s.RSS, err = rss(pid); err != nil {
			return nil, err
		}
		s.FDs = openFiles(pid)
		s.Goroutines = goroutines(ctx, cm)
		notified, _ := sink.counts()
		s.Behind = max(baseN+r.Acked-notified, 0)
		r.Samples = append(r.Samples, s)
		logf("%6s  %6.0f msg/s  p99 %-8v  errors %d  RSS %5.1f MiB  goroutines %d  open files %d  notifications behind %d",
			s.At.Round(time.Second), s.Done, s.P99.Round(time.Millisecond), s.Errors, float64(s.RSS)/(1<<20), s.Goroutines, s.FDs, s.Behind)
	}
	// Everything acknowledged must arrive: its notification at the sink, its evidence in the log.
	waitErr := sink.waitFor(ctx, 10*time.Minute, "the soak's notifications", func() bool { return sink.notifications >= baseN+r.Acked })
	r.Notified, _ = sink.counts()
	r.Notified -= baseN
	if err := cm.waitLog(ctx, baseLog+notesPerMessage*r.Acked); err != nil && waitErr == nil {
		waitErr = err
	}
	logged, _ := cm.logCount(ctx)
	r.Logged = logged - baseLog
	r.Write(o.Out)
	return r, waitErr
}

// goroutines reads go_goroutines from the agent's /metrics; -1 when it cannot.
func goroutines(ctx context.Context, cm *certmail) int {
	v, ok := cm.readMetric(ctx, "go_goroutines")
	if !ok {
		return -1
	}
	return int(v)
}

// openFiles counts a process's open file descriptors; -1 when it cannot.
func openFiles(pid int) int {
	fds, err := os.ReadDir(filepath.Join("/proc", fmt.Sprint(pid), "fd"))
	if err != nil {
		return -1
	}
	return len(fds)
}

// Write prints the soak's samples and whether the agent stayed flat.
func (r *SoakReport) Write(w io.Writer) {
	if w == nil {
		return
	}
	fmt.Fprintf(w, "soak at %.0f msg/s of %d B", r.Rate, r.Size)
	if r.Peak > 0 {
		fmt.Fprintf(w, " (80 %% of the measured peak, %.0f msg/s)", r.Peak)
	}
	fmt.Fprintf(w, "\n\n| time | msg/s | p99 | errors | RSS MiB | goroutines | open files | notifications behind |\n|---|---|---|---|---|---|---|---|\n")
	for _, s := range r.Samples {
		fmt.Fprintf(w, "| %s | %.0f | %v | %d | %.1f | %d | %d | %d |\n", s.At.Round(time.Second), s.Done, s.P99.Round(time.Millisecond),
			s.Errors, float64(s.RSS)/(1<<20), s.Goroutines, s.FDs, s.Behind)
	}
	fmt.Fprintf(w, "\nacknowledged %d, notified %d, notes logged %d: %d notifications and %d notes lost\n", r.Acked, r.Notified, r.Logged,
		max(r.Acked-r.Notified, 0), max(notesPerMessage*r.Acked-r.Logged, 0))
	if n := len(r.Samples); n >= 3 {
		first, last := r.Samples[n/3], r.Samples[n-1]
		fmt.Fprintf(w, "from %s to the end: RSS %+.0f %%, goroutines %+d, open files %+d\n", first.At.Round(time.Second),
			100*float64(last.RSS-first.RSS)/float64(first.RSS), last.Goroutines-first.Goroutines, last.FDs-first.FDs)
	}
}
