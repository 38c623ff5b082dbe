package smtpd

import (
	"bytes"
	"log/slog"
	"strings"
	"testing"

	"github.com/emersion/go-smtp"
)

// Replies go out as go-smtp writes them: every line within 512 octets with its CRLF
// (RFC 5321 4.5.3.1.5), printable US-ASCII only, the enhanced code on every line.
func TestReplyLines(t *testing.T) {
	long := strings.Repeat("word ", 300) + strings.Repeat("x", 1200) + " ünïcode \x00\r\n\x7f\u0085 end"
	r := reply(554, smtp.EnhancedCode{5, 6, 0}, "first", long, "")
	lines := strings.Split(r.Message, "\n")
	if len(lines) < 5 {
		t.Fatalf("%d lines:\n%s", len(lines), r.Message)
	}
	var text strings.Builder
	for i, l := range lines {
		// As go-smtp writes it: "554-" and the line, or "554 5.6.0 " and the last line.
		wire := "554-" + l + "\r\n"
		if i == len(lines)-1 {
			wire = "554 5.6.0 " + l + "\r\n"
		} else if !strings.HasPrefix(l, "5.6.0 ") {
			t.Errorf("line %d lacks the enhanced code: %q", i, l)
		}
		if len(wire) > 512 {
			t.Errorf("line %d is %d octets", i, len(wire))
		}
		for _, c := range []byte(strings.TrimSuffix(wire, "\r\n")) {
			if c != '\t' && (c < ' ' || c > '~') {
				t.Errorf("line %d has byte %#x: %q", i, c, l)
			}
		}
		text.WriteString(strings.TrimPrefix(l, "5.6.0 ") + " ")
	}
	// Nothing is lost but spacing: the words, the long run and the escaped characters.
	got := strings.Join(strings.Fields(text.String()), "")
	want := strings.Join(strings.Fields("first "+strings.Repeat("word ", 300)+strings.Repeat("x", 1200)+` \u00fcn\u00efcode end`), "")
	if got != want {
		t.Errorf("text changed:\n got %q\nwant %q", got, want)
	}
	if one := reply(250, smtp.EnhancedCode{2, 0, 0}, "ok"); one.Message != "ok" || one.Code != 250 {
		t.Errorf("one-line reply %+v", one)
	}
}

// A panic in certmail's code is logged with its stack; one inside go-smtp, which a client can
// provoke, with one line that says where.
func TestErrorLog(t *testing.T) {
	var buf bytes.Buffer
	e := errorLog{slog.New(slog.NewTextHandler(&buf, nil))}
	ours := "goroutine 1 [running]:\npanic({0x1, 0x2})\n\t/go/src/runtime/panic.go:860 +0x13a\n" +
		"certmail/smtpd.(*session).Data(...)\n\t/work/smtpd/session.go:170 +0x10\n"
	theirs := "goroutine 2 [running]:\npanic({0x1, 0x2})\n\t/go/src/runtime/panic.go:860 +0x13a\n" +
		"github.com/emersion/go-smtp.(*Conn).handleBdat.func1()\n\t/mod/go-smtp/conn.go:1059 +0x107\n"
	e.Printf("panic serving %v: %v\n%s", "192.0.2.1:1", "boom", ours)
	e.Printf("panic serving %v: %v\n%s", "192.0.2.1:1", "nil pointer", theirs)
	e.Println("error handling", "192.0.2.1:1", "EOF")
	logs := strings.Split(strings.TrimSpace(buf.String()), "\n")
	if len(logs) != 3 {
		t.Fatalf("%d records:\n%s", len(logs), buf.String())
	}
	for i, want := range []string{
		`level=ERROR msg="smtp: panic serving 192.0.2.1:1: boom\ngoroutine 1 [running]:\npanic(`,
		`level=WARN msg="smtp: inside go-smtp: panic serving 192.0.2.1:1: nil pointer" at="github.com/emersion/go-smtp.(*Conn).handleBdat.func1() /mod/go-smtp/conn.go:1059 +0x107"`,
		`level=WARN msg="smtp: error handling 192.0.2.1:1 EOF"`,
	} {
		if !strings.Contains(logs[i], want) {
			t.Errorf("record %d: %s\nwant …%s…", i, logs[i], want)
		}
	}
}
