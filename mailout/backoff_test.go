package mailout

import (
	"testing"
	"time"
)

func TestBackoff(t *testing.T) {
	const m = time.Minute
	for _, c := range []struct {
		attempts int
		r        float64
		want     time.Duration
	}{
		{1, 0, 5 * m},
		{2, 0, 10 * m},
		{3, 0, 20 * m},
		{4, 0, 40 * m},
		{5, 0, 60 * m}, // capped
		{60, 0, 60 * m},
		{1, 0.5, 4*m + 30*time.Second}, // less half of a fifth
		{9, 0.999, 48*m + 720*time.Millisecond},
	} {
		if got := backoff(5*m, time.Hour, c.attempts, c.r); got != c.want {
			t.Errorf("backoff after %d attempts, r %v: %s, want %s", c.attempts, c.r, got, c.want)
		}
	}
}

func TestSpan(t *testing.T) {
	for d, want := range map[time.Duration]string{
		120 * time.Hour:                             "120h",
		90 * time.Minute:                            "1h30m",
		45*time.Minute + 20*time.Second:             "45m",
		time.Hour + 59*time.Minute + 31*time.Second: "2h",
	} {
		if got := span(d); got != want {
			t.Errorf("span(%s) = %q, want %q", d, got, want)
		}
	}
}
