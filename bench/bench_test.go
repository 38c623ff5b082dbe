package bench

import (
	"bufio"
	"fmt"
	"math"
	"strings"
	"testing"
	"time"
)

func TestSinkCount(t *testing.T) {
	sc := bufio.NewScanner(strings.NewReader("sess=0 quit=0 mesg=1\rsess=1 quit=1 mesg=2\rgarbage\r"))
	sc.Split(splitCR)
	var got []int
	for sc.Scan() {
		if n, ok := sinkCount(sc.Text()); ok {
			got = append(got, n)
		}
	}
	if fmt.Sprint(got) != "[1 2]" {
		t.Fatalf("counts %v, want [1 2]", got)
	}
}

func TestMetricValue(t *testing.T) {
	text := "# HELP certmail_log_appended_total x\n# TYPE certmail_log_appended_total counter\n" +
		"certmail_log_appended_total{kind=\"cop\"} 3\ncertmail_log_appended_total{kind=\"ntf\"} 4\ncertmail_log_appended_total_other 9\n"
	if v, ok := metricValue(text, "certmail_log_appended_total"); !ok || v != 7 {
		t.Fatalf("got %v %v, want 7 (summed over labels, not the other metric)", v, ok)
	}
	if _, ok := metricValue("certmail_web_submissions_total 5\n", "certmail_log_appended_total"); ok {
		t.Fatal("found a metric the agent does not export")
	}
}

func FuzzSinkCount(f *testing.F) {
	f.Add(uint32(2), "sess=1 quit=1 mesg=2")
	f.Add(uint32(0), "mesg=-1")
	f.Fuzz(func(t *testing.T, n uint32, line string) {
		if got, ok := sinkCount(fmt.Sprintf("sess=1 quit=1 mesg=%d", n)); !ok || got != int(n) {
			t.Fatalf("mesg=%d read as %d, %v", n, got, ok)
		}
		if got, ok := sinkCount(line); ok && got < 0 {
			t.Fatalf("%q read as %d", line, got)
		}
	})
}

func FuzzMetricValue(f *testing.F) {
	f.Add("certmail_log_appended_total 3\n", "certmail_log_appended_total")
	f.Add("x{a=\"b\"} 1e3\n# x 2\n", "x")
	f.Fuzz(func(t *testing.T, text, name string) {
		v, ok := metricValue(text, name)
		if !ok && v != 0 {
			t.Fatalf("not found but %v", v)
		}
		if name == "" || strings.ContainsAny(name, " {\n#") || math.IsNaN(v) || math.Abs(v) > 1e15 {
			return
		}
		// A counter appended on a line of its own is found, with its value added.
		if v2, ok := metricValue(text+"\n"+name+" 1\n", name); !ok || v2 != v+1 {
			t.Fatalf("%q in %q: %v, then %v, %v", name, text, v, v2, ok)
		}
	})
}

// The report compares each server at its own peak, and the plot has one line per size for
// certmail and for Postfix.
func TestReport(t *testing.T) {
	r := &Report{Started: time.Date(2026, 11, 23, 12, 0, 0, 0, time.UTC), Machine: "test"}
	r.Points = []Point{
		{"certmail", 1000, 1, 100, time.Second, 0, 0}, {"certmail", 1000, 16, 300, time.Second, 0, 0},
		{"postfix", 1000, 1, 200, time.Second, 0, 0}, {"postfix", 1000, 16, 100, time.Second, 0, 0},
		{"floor", 1000, 1, 500, time.Second, 0, 0}, {"floor", 1000, 16, 900, time.Second, 0, 0},
	}
	var b strings.Builder
	r.Write(&b)
	if !strings.Contains(b.String(), "| 1 KB | 300 (c=16) | 200 (c=1) | 1.50 | ≥ 1.5 | 900 (c=16) | 0.33 |") {
		t.Fatalf("peaks row missing:\n%s", b.String())
	}
	svg := r.SVG()
	if strings.Count(svg, "<polyline") != 2 || !strings.HasSuffix(svg, "</svg>\n") {
		t.Fatalf("plot:\n%s", svg)
	}
}

// The latency table says how far each server's mail was behind when the last submission was
// answered, and the soak's how far the notifications were at each sample.
func TestReportMailBehind(t *testing.T) {
	r := &Report{Started: time.Date(2026, 11, 24, 12, 0, 0, 0, time.UTC), Machine: "test"}
	r.Latencies = []Latency{{Server: "certmail", Size: 10_000, Offered: 1500, Done: 1498, P50: 20 * time.Millisecond,
		P99: 48 * time.Millisecond, Behind: 9321, CaughtUp: 6213 * time.Millisecond}}
	var b strings.Builder
	r.Write(&b)
	if want := "| certmail | 10 KB | 1500 | 1498 | 20.0 ms | 48.0 ms | 0 | 9321 | 6.213s |"; !strings.Contains(b.String(), want) {
		t.Fatalf("latency row %q missing:\n%s", want, b.String())
	}
	s := &SoakReport{Rate: 1150, Size: 10_000, Acked: 69000, Notified: 69000, Logged: 138000,
		Samples: []SoakSample{{At: 30 * time.Second, Done: 1150, P99: 42 * time.Millisecond, RSS: 200 << 20, Goroutines: 40, FDs: 27, Behind: 76}}}
	b.Reset()
	s.Write(&b)
	if want := "| 30s | 1150 | 42ms | 0 | 200.0 | 40 | 27 | 76 |"; !strings.Contains(b.String(), want) {
		t.Fatalf("soak row %q missing:\n%s", want, b.String())
	}
}
