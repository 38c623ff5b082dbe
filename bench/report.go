package bench

import (
	"fmt"
	"io"
	"math"
	"strings"
	"time"
)

// goal is the throughput goal: certmail's peak at least this many times Postfix's.
func goal(size int) float64 {
	if size == 10_000 {
		return 3
	}
	return 1.5
}

func sizeName(n int) string {
	switch {
	case n >= 1_000_000 && n%1_000_000 == 0:
		return fmt.Sprintf("%d MB", n/1_000_000)
	case n >= 1000 && n%1000 == 0:
		return fmt.Sprintf("%d KB", n/1000)
	}
	return fmt.Sprintf("%d B", n)
}

func ms(d time.Duration) string { return fmt.Sprintf("%.1f ms", float64(d)/float64(time.Millisecond)) }

func rate(p Point, ok bool) string {
	if !ok {
		return "—"
	}
	return fmt.Sprintf("%.0f", p.Rate())
}

func ratio(a, b Point, ok bool) string {
	if !ok || b.Rate() == 0 {
		return "—"
	}
	return fmt.Sprintf("%.2f", a.Rate()/b.Rate())
}

// Write prints the report as Markdown tables.
func (r *Report) Write(w io.Writer) {
	fmt.Fprintf(w, "certmail bench, %s\nmachine: %s\n", r.Started.UTC().Format("2006-01-02 15:04 MST"), r.Machine)
	counted := "acknowledged (stored, COP signed and stored) and notification delivered to the sink"
	if r.LogCounted {
		counted += ", evidence appended to the log"
	} else {
		counted += " (the agent has no evidence log yet: not counted)"
	}
	fmt.Fprintf(w, "a certified message counts when %s\n", counted)
	if r.Postfix != "" {
		fmt.Fprintf(w, "Postfix baseline: not measured: %s\n", r.Postfix)
	}
	sizes, conc := r.axes()
	for _, size := range sizes {
		fmt.Fprintf(w, "\n### %s messages (messages/s, one message per connection, smtp-source)\n\n", sizeName(size))
		fmt.Fprintf(w, "| connections | certmail | Postfix | certmail/Postfix | floor | certmail/floor | certmail mean latency | CPU a message: certmail | Postfix |\n")
		fmt.Fprintf(w, "|---:|---:|---:|---:|---:|---:|---:|---:|---:|\n")
		for _, c := range conc {
			cm, okC := r.point("certmail", size, c)
			pf, okP := r.point("postfix", size, c)
			fl, okF := r.point("floor", size, c)
			lat, cpu, pcpu := "—", "—", "—"
			if okC {
				lat, cpu = ms(cm.MeanLatency()), ms(cm.CPUPerMessage())
			}
			if okP && pf.CPU > 0 {
				pcpu = ms(pf.CPUPerMessage())
			}
			fmt.Fprintf(w, "| %d | %s | %s | %s | %s | %s | %s | %s | %s |\n", c, rate(cm, okC), rate(pf, okP), ratio(cm, pf, okC && okP),
				rate(fl, okF), ratio(cm, fl, okC && okF), lat, cpu, pcpu)
		}
	}

	fmt.Fprintf(w, "\n### Peaks (each server at the concurrency where it peaks)\n\n")
	fmt.Fprintf(w, "| size | certmail | Postfix | certmail/Postfix | goal | floor | certmail/floor (goal ≥ 0.50) |\n|---|---:|---:|---:|---:|---:|---:|\n")
	for _, size := range sizes {
		cm, pf, fl := r.peak("certmail", size), r.peak("postfix", size), r.peak("floor", size)
		pfs, rs := "—", "—"
		if pf.Messages > 0 {
			pfs = fmt.Sprintf("%.0f (c=%d)", pf.Rate(), pf.Concurrency)
			rs = fmt.Sprintf("%.2f", cm.Rate()/pf.Rate())
		}
		fmt.Fprintf(w, "| %s | %.0f (c=%d) | %s | %s | ≥ %.1f | %.0f (c=%d) | %.2f |\n", sizeName(size), cm.Rate(), cm.Concurrency,
			pfs, rs, goal(size), fl.Rate(), fl.Concurrency, cm.Rate()/fl.Rate())
	}
	if len(sizes) > 1 {
		first, last := r.peak("certmail", sizes[0]), r.peak("certmail", sizes[len(sizes)-1])
		fmt.Fprintf(w, "\ncost growth: certmail's peak falls from %.0f msg/s at %s to %.0f at %s (×%.2f for ×%.0f the bytes)\n",
			first.Rate(), sizeName(sizes[0]), last.Rate(), sizeName(sizes[len(sizes)-1]), last.Rate()/first.Rate(),
			float64(sizes[len(sizes)-1])/float64(sizes[0]))
	}

	if len(r.Latencies) > 0 {
		fmt.Fprintf(w, "\n### Submission latency at 80 %% of peak (open loop, connect to 250 after DATA)\n\n")
		fmt.Fprintf(w, "| server | size | offered msg/s | done msg/s | p50 | p99 | errors | mail behind at the end | caught up after |\n|---|---|---:|---:|---:|---:|---:|---:|---:|\n")
		for _, l := range r.Latencies {
			fmt.Fprintf(w, "| %s | %s | %.0f | %.0f | %s | %s | %d | %d | %v |\n", l.Server, sizeName(l.Size), l.Offered, l.Done, ms(l.P50), ms(l.P99), l.Errors,
				l.Behind, l.CaughtUp.Round(time.Millisecond))
		}
		for _, l := range r.Latencies {
			if l.Errors > 0 {
				fmt.Fprintf(w, "\n%s's first failed submission: %s\n", l.Server, strings.TrimSpace(l.FirstError))
			}
		}
	}
	if r.ROD.N > 0 {
		fmt.Fprintf(w, "\ntime to ROD (submission to signed acceptance, recipients accepting at once, %d messages): p50 %s, p99 %s\n",
			r.ROD.N, ms(r.ROD.P50), ms(r.ROD.P99))
	}
	if r.Memory.InFlight > 0 {
		fmt.Fprintf(w, "memory: agent RSS %.1f MiB idle, %.1f MiB with %d messages of %s in flight: %.1f MiB per 1,000 in flight\n",
			mib(r.Memory.Idle), mib(r.Memory.Held), r.Memory.InFlight, sizeName(r.Memory.Size), mib(r.Memory.PerThousandMsgs))
	}
}

func mib(b int64) float64 { return float64(b) / (1 << 20) }

// SVG plots throughput against concurrency (log scale) of certmail and Postfix for each size.
// The floor, several times higher, would flatten both lines; it is in the tables.
func (r *Report) SVG() string {
	const W, H, left, right, top, bottom = 720.0, 440.0, 70.0, 170.0, 40.0, 50.0
	sizes, conc := r.axes()
	maxRate := 1.0
	for _, p := range r.Points {
		if p.Server != "floor" {
			maxRate = math.Max(maxRate, p.Rate())
		}
	}
	maxRate = niceCeil(maxRate)
	x := func(c int) float64 {
		if len(conc) < 2 {
			return left + (W-left-right)/2
		}
		lo, hi := math.Log2(float64(conc[0])), math.Log2(float64(conc[len(conc)-1]))
		return left + (math.Log2(float64(c))-lo)/(hi-lo)*(W-left-right)
	}
	y := func(v float64) float64 { return H - bottom - v/maxRate*(H-top-bottom) }
	var b strings.Builder
	fmt.Fprintf(&b, `<svg xmlns="http://www.w3.org/2000/svg" width="%.0f" height="%.0f" viewBox="0 0 %.0f %.0f" font-family="sans-serif" font-size="12">`+"\n", W, H, W, H)
	fmt.Fprintf(&b, `<rect width="100%%" height="100%%" fill="white"/>`+"\n")
	fmt.Fprintf(&b, `<text x="%.0f" y="22" font-size="14" text-anchor="middle">certmail (certified) and Postfix (plain relay), %s</text>`+"\n", W/2, r.Started.UTC().Format("2006-01-02"))
	for i := 0; i <= 5; i++ {
		v := maxRate * float64(i) / 5
		fmt.Fprintf(&b, `<line x1="%.0f" x2="%.0f" y1="%.1f" y2="%.1f" stroke="#ddd"/><text x="%.0f" y="%.1f" text-anchor="end">%.0f</text>`+"\n",
			left, W-right, y(v), y(v), left-6, y(v)+4, v)
	}
	for _, c := range conc {
		fmt.Fprintf(&b, `<text x="%.1f" y="%.0f" text-anchor="middle">%d</text>`+"\n", x(c), H-bottom+18, c)
	}
	fmt.Fprintf(&b, `<text x="%.0f" y="%.0f" text-anchor="middle">concurrent connections</text>`+"\n", (W-right+left)/2, H-12)
	fmt.Fprintf(&b, `<text transform="translate(16 %.0f) rotate(-90)" text-anchor="middle">messages/s</text>`+"\n", (H-bottom+top)/2)
	colours := []string{"#1f77b4", "#d62728", "#2ca02c", "#9467bd", "#ff7f0e"}
	dashes := map[string]string{"certmail": "", "postfix": `stroke-dasharray="6 4"`}
	legend := 0
	for si, size := range sizes {
		col := colours[si%len(colours)]
		for _, srv := range []string{"certmail", "postfix"} {
			var pts []string
			for _, c := range conc {
				if p, ok := r.point(srv, size, c); ok {
					pts = append(pts, fmt.Sprintf("%.1f,%.1f", x(c), y(p.Rate())))
				}
			}
			if len(pts) == 0 {
				continue
			}
			fmt.Fprintf(&b, `<polyline fill="none" stroke="%s" stroke-width="2" %s points="%s"/>`+"\n", col, dashes[srv], strings.Join(pts, " "))
			for _, pt := range pts {
				xy := strings.Split(pt, ",")
				fmt.Fprintf(&b, `<circle cx="%s" cy="%s" r="3" fill="%s"/>`+"\n", xy[0], xy[1], col)
			}
			ly := top + 10 + float64(legend)*18
			fmt.Fprintf(&b, `<line x1="%.0f" x2="%.0f" y1="%.0f" y2="%.0f" stroke="%s" stroke-width="2" %s/><text x="%.0f" y="%.0f">%s %s</text>`+"\n",
				W-right+10, W-right+40, ly, ly, col, dashes[srv], W-right+46, ly+4, srv, sizeName(size))
			legend++
		}
	}
	b.WriteString("</svg>\n")
	return b.String()
}

// niceCeil rounds v up to 1, 2 or 5 times a power of ten.
func niceCeil(v float64) float64 {
	p := math.Pow(10, math.Floor(math.Log10(v)))
	for _, m := range []float64{1, 2, 5, 10} {
		if v <= m*p {
			return m * p
		}
	}
	return 10 * p
}
