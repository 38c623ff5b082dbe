package config

import (
	"fmt"
	"math"
	"strconv"
	"strings"
	"time"
)

// Duration is a time.Duration written as Go writes one ("90m", "48h", "1h30m"), in whole days
// ("7d"), or both ("1d12h"). It is never negative.
type Duration time.Duration

const day = 24 * time.Hour

// ParseDuration parses a Duration.
func ParseDuration(s string) (Duration, error) {
	bad := func(why string) (Duration, error) {
		return 0, fmt.Errorf("duration %q: %s; write it like \"30m\", \"48h\" or \"7d\"", s, why)
	}
	if s == "" {
		return bad("empty")
	}
	if strings.ContainsAny(s, "+-") {
		return bad("no signs")
	}
	var days time.Duration
	if i := strings.IndexByte(s, 'd'); i >= 0 {
		n, err := strconv.ParseUint(s[:i], 10, 64)
		if err != nil {
			return bad("want whole days, a number and a unit (d, h, m, s, ms)")
		}
		if n > math.MaxInt64/uint64(day) {
			return bad("too long")
		}
		days = time.Duration(n) * day
		s = s[i+1:]
		if s == "" {
			return Duration(days), nil
		}
	}
	rest, err := time.ParseDuration(s)
	if err != nil {
		return bad("want a number and a unit (d, h, m, s, ms)")
	}
	if rest > math.MaxInt64-days {
		return bad("too long")
	}
	return Duration(days + rest), nil
}

// Duration returns d as a time.Duration.
func (d Duration) Duration() time.Duration { return time.Duration(d) }

// String writes d in the shortest form ParseDuration reads back: "7d", "48h" is "2d", "1h30m".
func (d Duration) String() string {
	t := time.Duration(d)
	switch {
	case t < 0:
		return t.String()
	case t == 0:
		return "0s"
	}
	var s string
	if t >= day {
		s = strconv.FormatInt(int64(t/day), 10) + "d"
		t %= day
		if t == 0 {
			return s
		}
	}
	rest := t.String() // "1h0m0s", "30m0s", "1h30m5.5s"
	if r, ok := strings.CutSuffix(rest, "m0s"); ok {
		rest = r + "m"
	}
	if r, ok := strings.CutSuffix(rest, "h0m"); ok {
		rest = r + "h"
	}
	return s + rest
}

// MarshalText implements encoding.TextMarshaler.
func (d Duration) MarshalText() ([]byte, error) { return []byte(d.String()), nil }

// UnmarshalText implements encoding.TextUnmarshaler.
func (d *Duration) UnmarshalText(b []byte) error {
	v, err := ParseDuration(string(b))
	if err != nil {
		return err
	}
	*d = v
	return nil
}

// UnmarshalTOML accepts strings only: a bare 48 could mean hours, seconds or nanoseconds.
func (d *Duration) UnmarshalTOML(v any) error {
	s, ok := v.(string)
	if !ok {
		return fmt.Errorf("duration %v: want a quoted string like \"30m\", \"48h\" or \"7d\"", v)
	}
	return d.UnmarshalText([]byte(s))
}
