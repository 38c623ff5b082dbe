package evidence_test

import (
	"errors"
	"strings"
	"testing"
	"time"

	"certmail/evidence"
)

func TestKeyNameEscapesPlus(t *testing.T) {
	if got := mustKeyName(t, bob); got != bobKey {
		t.Fatalf("KeyName(%q) = %q, want %q", bob, got, bobKey)
	}
	for _, bad := range []string{"", "no-at-sign", "a b@c.example", "a@", "@b.example", "a@B.example", "a@b_c.example"} {
		if _, err := evidence.KeyName(bad); err == nil {
			t.Errorf("KeyName(%q) accepted", bad)
		}
	}
}

// Every type encodes, parses back to the same bytes, and signs and verifies.
func TestEveryTypeRoundTrips(t *testing.T) {
	f := newFixture(t)
	keys := f.keys(t)
	for _, typ := range evidence.Types() {
		r := f.record(typ)
		body, err := r.Encode()
		if err != nil {
			t.Fatalf("%s: encode: %v", typ, err)
		}
		back, err := evidence.ParseRecord(body)
		if err != nil {
			t.Fatalf("%s: parse: %v\n%s", typ, err, body)
		}
		again, _ := back.Encode()
		if string(again) != string(body) {
			t.Fatalf("%s: round trip changed the body:\n%s\n%s", typ, body, again)
		}
		n := f.sign(t, r)
		if err := n.Verify(keys); err != nil {
			t.Fatalf("%s: verify: %v", typ, err)
		}
	}
}

func TestValidateRefusesForeignAndMissingFields(t *testing.T) {
	f := newFixture(t)
	r := f.record(evidence.COP)
	r.Client = "198.51.100.1"
	if err := r.Validate(); err == nil || !strings.Contains(err.Error(), `"client" does not belong`) {
		t.Fatalf("foreign field: %v", err)
	}
	r = f.record(evidence.COP)
	r.Deadline = time.Time{}
	if err := r.Validate(); err == nil || !strings.Contains(err.Error(), `missing field "deadline"`) {
		t.Fatalf("missing field: %v", err)
	}
	r = f.record(evidence.SRREQ)
	r.Expectation = ""
	if err := r.Validate(); err != nil {
		t.Fatalf("optional expectation: %v", err)
	}
	r = f.record(evidence.NAC)
	r.Detail = " padded"
	if err := r.Validate(); err == nil {
		t.Fatal("text with leading space accepted")
	}
}

// The parser refuses every body the encoder would not write, with a reason.
func TestParseRecordIsStrict(t *testing.T) {
	f := newFixture(t)
	body, err := f.record(evidence.COP).Encode()
	if err != nil {
		t.Fatal(err)
	}
	good := string(body)
	lines := strings.Split(strings.TrimSuffix(good, "\n"), "\n")
	join := func(ls ...string) string { return strings.Join(ls, "\n") + "\n" }
	swap := append([]string{}, lines...)
	swap[3], swap[4] = swap[4], swap[3]
	cases := map[string]struct{ body, want string }{
		"unknown version":    {strings.Replace(good, "certmail-evidence/1", "certmail-evidence/2", 1), "unsupported version"},
		"not evidence":       {strings.Replace(good, "certmail-evidence/1", "hello", 1), "is not certmail-evidence/1"},
		"unknown type":       {strings.Replace(good, "type COP", "type XYZ", 1), "unknown type"},
		"fields reordered":   {join(swap...), "where field"},
		"field duplicated":   {join(append(append([]string{}, lines...), lines[len(lines)-1])...), "duplicate or unknown"},
		"field missing":      {join(append(append([]string{}, lines[:5]...), lines[6:]...)...), "where field"},
		"unknown field":      {join(append(append([]string{}, lines...), "colour blue")...), "duplicate or unknown"},
		"no final newline":   {strings.TrimSuffix(good, "\n"), "does not end with a line feed"},
		"CRLF":               {strings.ReplaceAll(good, "\n", "\r\n"), ""},
		"trailing space":     {strings.Replace(good, "agent p1.example", "agent p1.example ", 1), "agent"},
		"upper-case hash":    {strings.Replace(good, "sha256:"+evidence.Sum(f.msg).String()[7:], "sha256:"+strings.ToUpper(evidence.Sum(f.msg).String()[7:]), 1), "lower case"},
		"trailing zero time": {strings.Replace(good, "time 2026-01-05T09:01:00Z", "time 2026-01-05T09:01:00.000Z", 1), "not canonical"},
		"zero time":          {strings.Replace(good, "time 2026-01-05T09:01:00Z", "time 0001-01-01T00:00:00Z", 1), "zero time"},
		"empty value":        {strings.Replace(good, "time 2026-01-05T09:01:00Z", "time ", 1), "time"},
		"local time":         {strings.Replace(good, "time 2026-01-05T09:01:00Z", "time 2026-01-05T10:01:00+01:00", 1), "not canonical"},
		"lower-case label":   {strings.Replace(good, f.label.String(), strings.ToLower(f.label.String()), 1), "label"},
		"trailing bytes":     {good + "\n", "unexpected line"},
		"unknown protocol":   {strings.Replace(good, "protocol cem-ip", "protocol pec", 1), "unknown protocol"},
		"upper-case agent":   {strings.Replace(good, "agent p1.example", "agent P1.example", 1), "lower-case"},
	}
	for name, c := range cases {
		_, err := evidence.ParseRecord([]byte(c.body))
		if err == nil {
			t.Errorf("%s: accepted:\n%s", name, c.body)
			continue
		}
		if !errors.Is(err, evidence.ErrMalformed) {
			t.Errorf("%s: error %v does not wrap ErrMalformed", name, err)
		}
		if !strings.Contains(err.Error(), c.want) {
			t.Errorf("%s: error %q does not say %q", name, err, c.want)
		}
	}
}

func TestTimesAndLabelsAreCanonical(t *testing.T) {
	ts := time.Date(2026, 3, 1, 12, 0, 0, 123_456_789, time.FixedZone("x", 3600))
	s := evidence.FormatTime(ts)
	if s != "2026-03-01T11:00:00.123Z" {
		t.Fatalf("FormatTime = %s", s)
	}
	back, err := evidence.ParseTime(s)
	if err != nil || !back.Equal(evidence.CanonicalTime(ts)) {
		t.Fatalf("ParseTime(%s) = %v, %v", s, back, err)
	}
	l, err := evidence.NewLabel(seeded(9))
	if err != nil {
		t.Fatal(err)
	}
	if got, err := evidence.ParseLabel(l.String()); err != nil || got != l {
		t.Fatalf("label round trip: %v %v", got, err)
	}
	// The last base32 character carries two unused bits: a label with them set is refused.
	s = l.String()
	last := strings.IndexByte("0123456789ABCDEFGHJKMNPQRSTVWXYZ", s[25])
	if last%4 == 0 {
		bad := s[:25] + string("0123456789ABCDEFGHJKMNPQRSTVWXYZ"[last+1])
		if _, err := evidence.ParseLabel(bad); err == nil {
			t.Fatalf("label with padding bits set accepted: %s", bad)
		}
	}
}

// Labels made one after another sort in the order they were made, as text (the form the store
// indexes) as well as bytes; labels made in the same millisecond differ; each is a label like
// any other.
func TestLabelsAtSortByTime(t *testing.T) {
	r := seeded(11)
	t0 := time.Date(2026, 11, 24, 4, 0, 0, 0, time.UTC)
	var prev evidence.Label
	seen := map[evidence.Label]bool{}
	for i := range 2000 {
		at := t0.Add(time.Duration(i/4) * time.Millisecond) // four labels a millisecond
		l, err := evidence.NewLabelAt(r, at)
		if err != nil {
			t.Fatal(err)
		}
		if seen[l] {
			t.Fatalf("label %s made twice", l)
		}
		seen[l] = true
		if got, err := evidence.ParseLabel(l.String()); err != nil || got != l {
			t.Fatalf("label round trip: %v %v", got, err)
		}
		if i%4 == 0 && i > 0 && prev.String() >= l.String() {
			t.Fatalf("label %s of %s sorts before %s of the millisecond before", l, at, prev)
		}
		prev = l
	}
	// The time is not read back, but the first 48 bits are its milliseconds.
	l, _ := evidence.NewLabelAt(r, t0)
	var ms uint64
	for _, b := range l[:6] {
		ms = ms<<8 | uint64(b)
	}
	if ms != uint64(t0.UnixMilli()) {
		t.Fatalf("label %s starts with %d, want %d", l, ms, t0.UnixMilli())
	}
}
