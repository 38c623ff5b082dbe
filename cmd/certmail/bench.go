package main

import (
	"context"
	"fmt"
	"io"
	"os"
	"os/signal"
	"strconv"
	"strings"
	"syscall"

	"certmail/bench"
)

// runBench measures a throwaway certmail against a throwaway Postfix; package bench does it.
func runBench(args []string, _ io.Reader, stdout, stderr io.Writer) int {
	flags := newFlagSet("bench", "[--quick] [--svg FILE] [--concurrency 1,4,16,64] [--sizes 1000,10000,100000] [--messages N] | --soak 10m [--rate N] [--every 30s]", `
Measure certified throughput: start a throwaway certmail serve and, when Postfix is installed
(Debian's postfix package; it needs root), a throwaway Postfix instance on loopback with its
own configuration and queue, drive both with Postfix's smtp-source, one message per
connection, and print messages/s for each size and concurrency, the certmail/Postfix ratios,
submission latency at 80 % of peak, time to ROD, and memory per 1,000 messages in flight.

A certified message counts once it is stored with its signed COP, its notification reached
the bench's mail sink, and its evidence is in the agent's log (when the agent has one). The
agent's submission from 127.0.0.0/8 is trusted for the run (submission.trusted_networks).`, stderr)
	quick := flags.Bool("quick", false, "a short run: 1 and 16 connections, 1 KB and 10 KB, 60 messages a point")
	svg := flags.String("svg", "", "write the throughput plot to `FILE` (SVG)")
	jsonOut := flags.String("json", "", "write the measurements to `FILE` as JSON")
	conc := flags.String("concurrency", "", "comma-separated connection `COUNTS` (default 1,4,16,64)")
	sizes := flags.String("sizes", "", "comma-separated message body `SIZES` in bytes (default 1000,10000,100000)")
	messages := flags.Int("messages", 0, "messages per point (default 2000; half for 100 KB)")
	noPostfix := flags.Bool("no-postfix", false, "skip the Postfix baseline")
	logMetric := flags.String("log-metric", bench.DefaultLogMetric, "the agent's `COUNTER` of evidence appended to the log")
	cpuprofile := flags.String("cpuprofile", "", "have the agent write a CPU profile of the whole run to `FILE`")
	dir := flags.String("dir", "", "keep the agent's data and log in `DIR`, and leave the Postfix instance's directory (-v names it)")
	verbose := flags.Bool("v", false, "print progress on stderr")
	agentBin := flags.String("agent", "", "run this certmail `BINARY` as the agent, to compare builds (default: this one)")
	soak := flags.Duration("soak", 0, "instead of the sweep, soak the agent for `DURATION` at --rate (default 80 % of its measured peak), sampling memory, goroutines and open files every 30 s")
	rate := flags.Float64("rate", 0, "with --soak: the offered load in `MSGS` a second")
	every := flags.Duration("every", 0, "with --soak: sample every `DURATION` instead of 30 s, for a finer view of latency")
	if code, ok := parseFlags(flags, args); !ok {
		return code
	}
	if flags.NArg() > 0 {
		return usageError(stderr, "bench", "unexpected argument %q", flags.Arg(0))
	}
	o := bench.Options{Quick: *quick, SVG: *svg, JSON: *jsonOut, Messages: *messages, NoPostfix: *noPostfix, LogMetric: *logMetric,
		CPUProfile: *cpuprofile, Dir: *dir, Out: stdout}
	var err error
	if o.Concurrency, err = intList(*conc); err != nil {
		return usageError(stderr, "bench", "--concurrency: %v", err)
	}
	if o.Sizes, err = intList(*sizes); err != nil {
		return usageError(stderr, "bench", "--sizes: %v", err)
	}
	if *messages < 0 {
		return usageError(stderr, "bench", "--messages must be positive")
	}
	if *verbose {
		o.Log = stderr
	}
	if o.Certmail = *agentBin; o.Certmail == "" {
		if o.Certmail, err = os.Executable(); err != nil {
			fmt.Fprintf(stderr, "certmail bench: %v\n", err)
			return exitFail
		}
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if *soak > 0 {
		so := bench.SoakOptions{Certmail: o.Certmail, Dir: o.Dir, Duration: *soak, Rate: *rate, Interval: *every, Out: stdout, Log: o.Log, CPUProfile: *cpuprofile}
		if len(o.Sizes) > 0 {
			so.Size = o.Sizes[0]
		}
		r, err := bench.Soak(ctx, so)
		if err != nil {
			fmt.Fprintf(stderr, "certmail bench: soak: %v\n", err)
			return exitFail
		}
		if r.Acked != r.Notified {
			fmt.Fprintf(stderr, "certmail bench: soak: %d messages acknowledged, %d notified\n", r.Acked, r.Notified)
			return exitFail
		}
		return exitOK
	}
	if *rate != 0 {
		return usageError(stderr, "bench", "--rate goes with --soak")
	}
	if _, err := bench.Run(ctx, o); err != nil {
		fmt.Fprintf(stderr, "certmail bench: %v\n", err)
		return exitFail
	}
	return exitOK
}

// intList parses "1,4,16" into positive integers; "" is nil.
func intList(s string) ([]int, error) {
	if s == "" {
		return nil, nil
	}
	var out []int
	for _, f := range strings.Split(s, ",") {
		n, err := strconv.Atoi(strings.TrimSpace(f))
		if err != nil || n < 1 {
			return nil, fmt.Errorf("%q is not a positive number", f)
		}
		out = append(out, n)
	}
	return out, nil
}
