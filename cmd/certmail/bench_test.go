package main

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"
)

// TestBenchQuick runs `certmail bench --quick` end to end, as a user would: the real binary
// starts its own certmail and Postfix, drives both with smtp-source, and prints the tables and
// the plot. It checks that every measured point is there with a positive rate, not how fast.
func TestBenchQuick(t *testing.T) {
	// Postfix's programs are in /usr/sbin, which a user's PATH may lack; the bench looks there.
	t.Setenv("PATH", os.Getenv("PATH")+string(os.PathListSeparator)+"/usr/sbin")
	need(t, "smtp-source")
	need(t, "smtp-sink")
	need(t, "postfix")
	if os.Geteuid() != 0 {
		if os.Getenv("CERTMAIL_TEST_REQUIRE_ALL") == "1" {
			t.Fatal("the Postfix baseline needs root (CERTMAIL_TEST_REQUIRE_ALL=1)")
		}
		t.Skip("the Postfix baseline needs root")
	}
	// The machine's own Postfix configuration is not touched: the instance has its own.
	etc := postfixEtc()
	bin, err := binary()
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	svg := filepath.Join(dir, "throughput.svg")
	cmd := exec.Command(bin, "bench", "--quick", "--svg", svg)
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("certmail bench --quick: %v\n%s", err, out)
	}
	report := string(out)
	if strings.Contains(report, "Postfix baseline: not measured") {
		t.Fatalf("Postfix was not measured:\n%s", report)
	}
	// Each table row: connections, then certmail, Postfix, ratio, floor, ratio, latency.
	row := regexp.MustCompile(`(?m)^\| (\d+) \| (\d+) \| (\d+) \| ([0-9.]+) \| (\d+) \|`)
	rows := row.FindAllStringSubmatch(report, -1)
	if len(rows) != 4 { // 1 KB and 10 KB, at 1 and 16 connections
		t.Fatalf("%d measured rows, want 4:\n%s", len(rows), report)
	}
	for _, r := range rows {
		for _, v := range r[2:4] {
			if n, _ := strconv.Atoi(v); n <= 0 {
				t.Errorf("a rate of %s in row %q", v, r[0])
			}
		}
	}
	for _, want := range []string{"### Peaks", "Submission latency at 80 %", "time to ROD", "per 1,000 in flight"} {
		if !strings.Contains(report, want) {
			t.Errorf("the report has no %q:\n%s", want, report)
		}
	}
	plot, err := os.ReadFile(svg)
	if err != nil {
		t.Fatal(err)
	}
	if !strings.HasPrefix(string(plot), "<svg") || strings.Count(string(plot), "<polyline") != 4 {
		t.Errorf("the plot is not an SVG with 4 lines (certmail and Postfix × 2 sizes):\n%.500s", plot)
	}
	if after := postfixEtc(); after != etc {
		t.Errorf("/etc/postfix changed during the bench:\nbefore %s\nafter  %s", etc, after)
	}
}

// postfixEtc describes the files of /etc/postfix: names, sizes and times.
func postfixEtc() string {
	var b strings.Builder
	filepath.WalkDir("/etc/postfix", func(path string, d os.DirEntry, err error) error {
		if err == nil {
			if info, err := d.Info(); err == nil {
				fmt.Fprintf(&b, "%s %d %v; ", path, info.Size(), info.ModTime().UnixNano())
			}
		}
		return nil
	})
	return b.String()
}
