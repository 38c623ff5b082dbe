package web

import (
	"strings"
	"testing"
	"time"

	"certmail/mailfmt"
)

// A session cookie reads back as written, and only the canonical form parses: parsing then
// encoding gives the input back.
func FuzzParseSession(f *testing.F) {
	good := session{Address: "alice@a.example", Expires: time.Unix(1772442000, 0).UTC(), ID: [16]byte{1, 2, 3}, MAC: [32]byte{9, 8, 7}}
	f.Add(good.encode())
	f.Add(session{Address: "ünïcode@bücher.example", Expires: time.Unix(1, 0), MAC: [32]byte{0xff}}.encode())
	f.Add("s1.YWxpY2VAYS5leGFtcGxl.01772442000.AQID.AAAA")
	f.Add("s1....")
	f.Add("s0.YWxpY2VAYS5leGFtcGxl.1.AQIDAAAAAAAAAAAAAAAAAA.CQgHAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA")
	f.Add("")
	f.Fuzz(func(t *testing.T, v string) {
		c, err := parseSession(v)
		if err != nil {
			return
		}
		if got := c.encode(); got != v {
			t.Fatalf("parse then encode:\n%q\nwant\n%q", got, v)
		}
		if c.Address == "" || strings.ContainsAny(c.Address, "\n\r") || c.Expires.Unix() <= 0 {
			t.Fatalf("parsed a session with address %q, expiry %v", c.Address, c.Expires)
		}
	})
}

func TestParseSessionRefuses(t *testing.T) {
	good := session{Address: "alice@a.example", Expires: time.Unix(1772442000, 0).UTC(), ID: [16]byte{1}, MAC: [32]byte{2}}
	enc := good.encode()
	if c, err := parseSession(enc); err != nil || c != good {
		t.Fatalf("round trip: %+v %v", c, err)
	}
	p := strings.Split(enc, ".")
	join := func(i int, v string) string {
		q := append([]string(nil), p...)
		q[i] = v
		return strings.Join(q, ".")
	}
	for name, v := range map[string]string{
		"version":         join(0, "s2"),
		"padded address":  join(1, p[1]+"="),
		"not an address":  join(1, "bm90IGFuIGFkZHJlc3M"),
		"leading zero":    join(2, "0"+p[2]),
		"negative expiry": join(2, "-5"),
		"short id":        join(3, "AQ"),
		"short mac":       join(4, p[4][:10]),
		"extra field":     enc + ".x",
		"std base64":      join(1, strings.ReplaceAll(p[1], "-", "+")+"+"),
	} {
		if _, err := parseSession(v); err == nil {
			t.Errorf("%s: %q parsed", name, v)
		}
	}
}

func TestSafeNext(t *testing.T) {
	for next, want := range map[string]string{
		"":                         "/messages",
		"/messages/new":            "/messages/new",
		"/messages?page=2":         "/messages?page=2",
		"https://evil.example/":    "/messages",
		"//evil.example/":          "/messages",
		"/\\evil.example":          "/messages",
		"javascript:alert(1)":      "/messages",
		"messages":                 "/messages",
		"/x\r\nSet-Cookie: a=b":    "/messages",
		"http:/evil.example":       "/messages",
		"/%2F%2Fevil.example/ok":   "/%2F%2Fevil.example/ok",
		"/messages/new#compose-to": "/messages/new#compose-to",
	} {
		if got := safeNext(next); got != want {
			t.Errorf("safeNext(%q) = %q, want %q", next, got, want)
		}
	}
}

// mailfmt's refusals of a composed message land beside the form's field, in the form's words.
func TestSubmissionField(t *testing.T) {
	now := time.Date(2026, 3, 2, 9, 0, 0, 0, time.UTC)
	for _, c := range []struct {
		header, value, field, says string
	}{
		{mailfmt.HeaderDeadline, "5m", "deadline", "The deadline: 5m is 5 minutes from now"},
		{mailfmt.HeaderMode, "pec", "mode", "The mode: \"pec\" is not a mode"},
		{mailfmt.HeaderNotify, "always", "notify", "The notification policy: \"always\""},
		{mailfmt.HeaderPassword, "short", "password", "The message password is 5 characters long"},
		{mailfmt.HeaderPasswordHint, "hint", "hint", "The password hint is given without the message password"},
	} {
		raw := "From: alice@a.example\r\nTo: bob@b.example\r\n" + c.header + ": " + c.value + "\r\n\r\nhi\r\n"
		_, err := mailfmt.ParseSubmission([]byte(raw), mailfmt.Limits{}, now, mailfmt.Options{})
		me, ok := err.(*mailfmt.Error)
		if !ok {
			t.Fatalf("%s: %v", c.header, err)
		}
		field, msg := submissionField(me, false)
		if field != c.field || !strings.HasPrefix(msg, c.says) || strings.Contains(msg, "Certmail-") {
			t.Errorf("%s: field %q, %q; want %q, %q…", c.header, field, msg, c.field, c.says)
		}
	}
}
