package mailfmt_test

import (
	"bytes"
	"errors"
	"fmt"
	"net/mail"
	"strings"
	"testing"
	"time"

	"certmail/evidence"
	"certmail/mailfmt"
)

// msg joins lines with CRLF, ending with CRLF.
func msg(lines ...string) []byte { return []byte(strings.Join(lines, "\r\n") + "\r\n") }

var base = []string{"From: alice@a.example", "To: bob@b.example", "Subject: test"}

// with is base plus more header lines, the empty line, and body lines.
func with(header []string, body ...string) []byte {
	lines := append(append(append([]string{}, base...), header...), "")
	return msg(append(lines, body...)...)
}

func mp(boundary string, parts ...string) []string {
	var out []string
	for _, p := range parts {
		out = append(out, "--"+boundary, p)
	}
	return append(out, "--"+boundary+"--")
}

func parse(t *testing.T, raw []byte) *mailfmt.Submission {
	t.Helper()
	s, err := mailfmt.ParseSubmission(raw, mailfmt.Limits{}, now, mailfmt.Options{})
	if err != nil {
		t.Fatalf("ParseSubmission: %v\n%s", err, raw)
	}
	return s
}

func TestParseSubmissionAccepts(t *testing.T) {
	files := readFiles(t, "testdata/submissions/*.eml")
	s := parse(t, files["multipart.eml"])
	if s.From != "alice@a.example" {
		t.Errorf("From = %q", s.From)
	}
	if want := []string{"bob@b.example", "carol@c.example", "dave@d.example"}; strings.Join(s.Recipients, " ") != strings.Join(want, " ") {
		t.Errorf("Recipients = %v, want %v", s.Recipients, want)
	}
	if strings.Join(s.Bcc, " ") != "erin@e.example" {
		t.Errorf("Bcc = %v", s.Bcc)
	}
	if s.Subject != "Offerta n° 42 — caffè" {
		t.Errorf("Subject = %q", s.Subject)
	}
	o := s.Options
	if o.Mode != evidence.CEMIP || o.Receipt != mailfmt.ReceiptShort || o.Notify != mailfmt.NotifyNoWarning ||
		o.Password != "correct horse" || o.PasswordHint != "the horse we rode in München" || !o.Deadline.Equal(now.Add(7*24*time.Hour)) {
		t.Errorf("Options = %+v", o)
	}
	for _, gone := range []string{"Certmail-", "Bcc:", "erin@e.example", "correct horse"} {
		if bytes.Contains(s.Message, []byte(gone)) {
			t.Errorf("stored message still contains %q", gone)
		}
	}
	if len(s.Attachments) != 1 {
		t.Fatalf("Attachments = %v", s.Attachments)
	}
	a := s.Attachments[0]
	if a.Name != "offerta n°42.pdf" || a.ContentType != "application/pdf" || a.Size != 52 {
		t.Errorf("attachment = %v", a)
	}

	fwd := parse(t, files["forward.eml"])
	var names []string
	for _, a := range fwd.Attachments {
		names = append(names, a.Name+" "+a.ContentType)
	}
	if got, want := strings.Join(names, ", "), "minutes.eml message/rfc822, votes.csv text/csv"; got != want {
		t.Errorf("forward attachments = %s, want %s", got, want)
	}

	cs := parse(t, files["charsets.eml"])
	if cs.Subject != "Facture € réglée" {
		t.Errorf("iso-8859-15 subject = %q", cs.Subject)
	}

	cem := parse(t, files["cem.eml"])
	if cem.Options.Mode != evidence.CEM || cem.Options.Receipt != mailfmt.ReceiptSummary || cem.Options.Notify != mailfmt.NotifyNoneForSender ||
		evidence.FormatTime(cem.Options.Deadline) != "2026-11-25T17:00:00Z" {
		t.Errorf("cem options = %+v", cem.Options)
	}
}

func TestParseSubmissionDefaults(t *testing.T) {
	s := parse(t, with(nil, "hi"))
	want := mailfmt.Options{Mode: evidence.CEMIP, Deadline: now.Add(mailfmt.DefaultDeadline), Receipt: mailfmt.ReceiptFull, Notify: mailfmt.NotifyStandard}
	if s.Options != want {
		t.Errorf("defaults = %+v, want %+v", s.Options, want)
	}

	// The agent's configured default deadline applies when the message names none.
	s, err := mailfmt.ParseSubmission(with(nil, "hi"), mailfmt.Limits{DefaultDeadline: 5 * 24 * time.Hour}, now, mailfmt.Options{})
	if err != nil || !s.Options.Deadline.Equal(now.Add(5*24*time.Hour)) {
		t.Errorf("configured default deadline: %v %v", s.Options.Deadline, err)
	}

	// The caller's defaults fill what the message leaves out; the message's headers win.
	caller := mailfmt.Options{Mode: evidence.CEMNSR, Deadline: now.Add(24 * time.Hour), Receipt: mailfmt.ReceiptSummary, Notify: mailfmt.NotifyFailuresOnly}
	s, err = mailfmt.ParseSubmission(with([]string{"Certmail-Receipt: short"}, "hi"), mailfmt.Limits{}, now, caller)
	if err != nil {
		t.Fatal(err)
	}
	caller.Receipt = mailfmt.ReceiptShort
	if s.Options != caller {
		t.Errorf("options = %+v, want %+v", s.Options, caller)
	}

	for value, want := range map[string]time.Time{
		"48h":                       now.Add(48 * time.Hour),
		"7d":                        now.Add(7 * 24 * time.Hour),
		"1d12h":                     now.Add(36 * time.Hour),
		"90m":                       now.Add(90 * time.Minute),
		"2026-11-25T18:00:00+01:00": time.Date(2026, 11, 25, 17, 0, 0, 0, time.UTC),
		"2026-11-25T18:00:00.1234Z": time.Date(2026, 11, 25, 18, 0, 0, 123e6, time.UTC), // canonical: milliseconds
	} {
		s := parse(t, with([]string{"Certmail-Deadline: " + value}, "hi"))
		if !s.Options.Deadline.Equal(want) || s.Options.Deadline.Location() != time.UTC {
			t.Errorf("Certmail-Deadline %s = %v, want %v", value, s.Options.Deadline, want)
		}
	}
	// Header names and words are case-insensitive.
	s = parse(t, with([]string{"certmail-mode: CEM-NSR", "CERTMAIL-NOTIFY: Failures-Only"}, "hi"))
	if s.Options.Mode != evidence.CEMNSR || s.Options.Notify != mailfmt.NotifyFailuresOnly {
		t.Errorf("case-insensitive options = %+v", s.Options)
	}
}

// TestParseSubmissionNormalises checks that the stored bytes M — and so H(M) — do not depend
// on the line endings the client used, nor on the option fields, and that they are CRLF.
func TestParseSubmissionNormalises(t *testing.T) {
	crlf := string(with([]string{"MIME-Version: 1.0"}, "line one", "line two", "", "end"))
	variants := map[string]string{
		"CRLF":       crlf,
		"LF":         strings.ReplaceAll(crlf, "\r\n", "\n"),
		"CR":         strings.ReplaceAll(crlf, "\r\n", "\r"),
		"mixed":      strings.Replace(strings.Replace(crlf, "\r\n", "\n", 2), "\r\n", "\r", 2),
		"no last LF": strings.TrimSuffix(strings.ReplaceAll(crlf, "\r\n", "\n"), "\n"),
		"options": strings.Replace(crlf, "Subject: test\r\n",
			"Subject: test\r\nCertmail-Mode: cem-ip\r\nCertmail-Password: a long\r\n  folded password\r\nCertmail-Deadline: 48h\r\n", 1),
	}
	want := evidence.Sum([]byte(crlf))
	for name, raw := range variants {
		s := parse(t, []byte(raw))
		if got := evidence.Sum(s.Message); got != want {
			t.Errorf("%s: H(M) = %s, want %s\n%q", name, got, want, s.Message)
		}
	}
	s := parse(t, []byte(variants["options"]))
	if s.Options.Password != "a long  folded password" {
		t.Errorf("folded password = %q", s.Options.Password)
	}

	// A header alone gains the empty line that ends it.
	s = parse(t, []byte("From: alice@a.example\nTo: bob@b.example"))
	if string(s.Message) != "From: alice@a.example\r\nTo: bob@b.example\r\n\r\n" {
		t.Errorf("header-only message stored as %q", s.Message)
	}
}

// TestParseSubmissionIdempotent: M parsed again with the options it came with gives M back.
func TestParseSubmissionIdempotent(t *testing.T) {
	for name, raw := range readFiles(t, "testdata/submissions/*.eml") {
		s := parse(t, raw)
		again, err := mailfmt.ParseSubmission(s.Message, mailfmt.Limits{}, now, s.Options)
		if err != nil {
			t.Fatalf("%s: M does not parse again: %v", name, err)
		}
		if !bytes.Equal(again.Message, s.Message) || again.Options != s.Options || again.Subject != s.Subject {
			t.Errorf("%s: parsing M again changed it", name)
		}
		if _, err := mail.ReadMessage(bytes.NewReader(s.Message)); err != nil {
			t.Errorf("%s: net/mail cannot read M: %v", name, err)
		}
	}
}

// A Submission keeps nothing of the bytes it was parsed from, so that a caller may read the
// next message into the same buffer (smtpd does): CRLF input, which is not copied to be
// normalised, included.
func TestParseSubmissionKeepsNoReferenceToItsInput(t *testing.T) {
	for name, raw := range readFiles(t, "testdata/submissions/*.eml") {
		s := parse(t, raw)
		in := bytes.Clone(s.Message) // CRLF text
		again := parse(t, in)
		want := *again
		want.Message = bytes.Clone(again.Message)
		for i := range in {
			in[i] = 'x'
		}
		if !bytes.Equal(again.Message, want.Message) || again.Subject != want.Subject || again.Options != want.Options {
			t.Errorf("%s: overwriting the input changed the submission", name)
		}
	}
}

func TestParseSubmissionRejects(t *testing.T) {
	long := strings.Repeat("x", 999)
	// deep is a body of multiparts nested 20 deep, each properly closed.
	deep := "\r\nleaf"
	for i := 20; i >= 1; i-- {
		b := fmt.Sprintf("b%d", i)
		deep = "Content-Type: multipart/mixed; boundary=" + b + "\r\n\r\n--" + b + "\r\n" + deep + "\r\n--" + b + "--"
	}
	manyRcpt := "To: a@b.example,\r\n b@b.example,\r\n c@b.example,\r\n d@b.example"

	tests := []struct {
		name   string
		raw    []byte
		lim    mailfmt.Limits
		code   string
		status string // enhanced status code
		http   int
		says   string // part of the message for the user
	}{
		{"empty", nil, mailfmt.Limits{}, mailfmt.CodeHeader, "5.6.0", 400, "empty"},
		{"oversized", with(nil, strings.Repeat("x", 200)), mailfmt.Limits{MaxBytes: 100}, mailfmt.CodeSize, "5.3.4", 413, "at most 100 bytes"},
		{"oversized once CRLF", []byte(strings.Repeat("From: a@b.example\n", 5)), mailfmt.Limits{MaxBytes: 92}, mailfmt.CodeSize, "5.3.4", 413, "95 bytes"},
		{"NUL byte", with(nil, "a\x00b"), mailfmt.Limits{}, mailfmt.CodeNUL, "5.6.0", 400, "line 5 contains a NUL"},
		{"line too long", with(nil, "ok", long), mailfmt.Limits{}, mailfmt.CodeLine, "5.6.0", 400, "line 6 is 999 bytes long"},
		{"998 is fine, header too", with([]string{"X-Long: " + strings.Repeat("y", 990)}, strings.Repeat("x", 998), "ü"+long[:996]), mailfmt.Limits{}, "", "", 0, ""},
		{"no header", msg("", "body"), mailfmt.Limits{}, mailfmt.CodeHeader, "5.6.0", 400, "no header"},
		{"not a header line", msg("From: alice@a.example", "To: bob@b.example", "Hello Bob", "", "x"), mailfmt.Limits{}, mailfmt.CodeHeader, "5.6.0", 400, "line 3 (\"Hello Bob\") is not a header field"},
		{"continuation first", msg(" folded", "From: alice@a.example", "To: bob@b.example", "", "x"), mailfmt.Limits{}, mailfmt.CodeHeader, "5.6.0", 400, "indented"},
		{"space in field name", msg("From: alice@a.example", "To: bob@b.example", "Sub ject: x", "", "x"), mailfmt.Limits{}, mailfmt.CodeHeader, "5.6.0", 400, "not a valid header field name"},
		{"control in header", with([]string{"X-Note: a\x01b"}, "x"), mailfmt.Limits{}, mailfmt.CodeHeader, "5.6.0", 400, "control character U+0001"},
		{"missing From", msg("To: bob@b.example", "", "x"), mailfmt.Limits{}, mailfmt.CodeFrom, "5.6.0", 422, "no From field"},
		{"two From fields", msg("From: alice@a.example", "From: mallory@m.example", "To: bob@b.example", "", "x"), mailfmt.Limits{}, mailfmt.CodeFrom, "5.6.0", 422, "2 From fields"},
		{"two From addresses", msg("From: alice@a.example, mallory@m.example", "To: bob@b.example", "", "x"), mailfmt.Limits{}, mailfmt.CodeFrom, "5.6.0", 422, "exactly one sender"},
		{"bad From address", msg("From: alice at a.example", "To: bob@b.example", "", "x"), mailfmt.Limits{}, mailfmt.CodeFrom, "5.1.7", 422, "not a valid address"},
		{"From with IDN domain", msg("From: alice@bücher.example", "To: bob@b.example", "", "x"), mailfmt.Limits{}, mailfmt.CodeFrom, "5.1.7", 422, "xn--"},
		{"no recipients", msg("From: alice@a.example", "Subject: x", "", "x"), mailfmt.Limits{}, mailfmt.CodeRecipients, "5.6.0", 422, "names no recipient"},
		{"only an empty group", msg("From: alice@a.example", "To: undisclosed-recipients:;", "", "x"), mailfmt.Limits{}, mailfmt.CodeRecipients, "5.6.0", 422, "names no recipient"},
		{"bad recipient", msg("From: alice@a.example", "To: bob@", "", "x"), mailfmt.Limits{}, mailfmt.CodeRecipients, "5.1.3", 422, "To:"},
		{"too many recipients", msg("From: alice@a.example", manyRcpt, "", "x"), mailfmt.Limits{MaxRecipients: 3}, mailfmt.CodeRecipients, "5.5.3", 422, "at most 3"},
		{"two Subjects", with([]string{"Subject: again"}, "x"), mailfmt.Limits{}, mailfmt.CodeHeader, "5.6.0", 400, "2 Subject fields"},
		{"bad Reply-To", with([]string{"Reply-To: <<>>"}, "x"), mailfmt.Limits{}, mailfmt.CodeHeader, "5.6.0", 400, "Reply-To"},

		{"8-bit header not UTF-8", msg("From: alice@a.example", "To: bob@b.example", "Subject: caf\xe9", "", "x"), mailfmt.Limits{}, mailfmt.CodeUTF8, "5.6.0", 400, "Subject field is not valid UTF-8"},
		{"encoded subject not UTF-8", msg("From: alice@a.example", "To: bob@b.example", "Subject: =?utf-8?q?caf=E9?=", "", "x"), mailfmt.Limits{}, mailfmt.CodeUTF8, "5.6.0", 400, "not valid UTF-8 once decoded"},
		{"unknown charset", msg("From: alice@a.example", "To: bob@b.example", "Subject: =?koi8-r?q?=F0?=", "", "x"), mailfmt.Limits{}, mailfmt.CodeUTF8, "5.6.0", 400, "koi8-r"},
		{"body not UTF-8", with([]string{"Content-Type: text/plain; charset=utf-8", "Content-Transfer-Encoding: 8bit"}, "caf\xe9"), mailfmt.Limits{}, mailfmt.CodeUTF8, "5.6.0", 400, "charset utf-8 but contains bytes that are not UTF-8 near byte 3"},
		{"default charset body not UTF-8", with(nil, "ok", "caf\xe9"), mailfmt.Limits{}, mailfmt.CodeUTF8, "5.6.0", 400, "us-ascii (the default)"},
		{"qp text decodes to bad UTF-8", with([]string{"Content-Type: text/plain; charset=UTF-8", "Content-Transfer-Encoding: quoted-printable"}, "caf=E9"), mailfmt.Limits{}, mailfmt.CodeUTF8, "5.6.0", 400, "not UTF-8"},
		{"file name not UTF-8", with([]string{"Content-Type: application/pdf; name=\"=?utf-8?q?=FF.pdf?=\"", "Content-Transfer-Encoding: base64"}, "AAAA"), mailfmt.Limits{}, mailfmt.CodeUTF8, "5.6.0", 400, "file name"},

		{"malformed Content-Type", with([]string{"Content-Type: text/plain; charset"}, "x"), mailfmt.Limits{}, mailfmt.CodeMIME, "5.6.0", 400, "Content-Type"},
		{"Content-Type without subtype", with([]string{"Content-Type: text"}, "x"), mailfmt.Limits{}, mailfmt.CodeMIME, "5.6.0", 400, "Content-Type"},
		{"multipart without boundary", with([]string{"Content-Type: multipart/mixed"}, "x"), mailfmt.Limits{}, mailfmt.CodeMIME, "5.6.0", 400, "boundary parameter"},
		{"boundary never appears", with([]string{"Content-Type: multipart/mixed; boundary=zz"}, "--yy", "x", "--yy--"), mailfmt.Limits{}, mailfmt.CodeMIME, "5.6.0", 400, "never appears"},
		{"multipart not closed", with([]string{"Content-Type: multipart/mixed; boundary=zz"}, "--zz", "", "cut short"), mailfmt.Limits{}, mailfmt.CodeMIME, "5.6.0", 400, "never closed"},
		{"inner multipart not closed", with([]string{"Content-Type: multipart/mixed; boundary=zz"}, mp("zz", "Content-Type: multipart/alternative; boundary=yy\r\n\r\n--yy\r\n\r\ntext")...), mailfmt.Limits{}, mailfmt.CodeMIME, "5.6.0", 400, "part 1 is multipart but its last part is never closed"},
		{"closed before any part", with([]string{"Content-Type: multipart/mixed; boundary=zz"}, "--zz--"), mailfmt.Limits{}, mailfmt.CodeMIME, "5.6.0", 400, "before any part"},
		{"part header broken", with([]string{"Content-Type: multipart/mixed; boundary=zz"}, mp("zz", "no header here")...), mailfmt.Limits{}, mailfmt.CodeMIME, "5.6.0", 400, "the header of part 1"},
		{"multipart encoded", with([]string{"Content-Type: multipart/mixed; boundary=zz", "Content-Transfer-Encoding: base64"}, mp("zz", "\r\nx")...), mailfmt.Limits{}, mailfmt.CodeMIME, "5.6.0", 400, "RFC 2045 6.4"},
		{"two Content-Types in a part", with([]string{"Content-Type: multipart/mixed; boundary=zz"}, mp("zz", "Content-Type: text/plain\r\nContent-Type: text/html\r\n\r\nx")...), mailfmt.Limits{}, mailfmt.CodeMIME, "5.6.0", 400, "part 1 has 2 Content-Type"},
		{"nested too deep", with([]string{"Content-Type: multipart/mixed; boundary=top"}, mp("top", deep)...), mailfmt.Limits{MaxDepth: 5}, mailfmt.CodeMIME, "5.6.0", 400, "nested more than 5 deep"},
		{"too many parts", with([]string{"Content-Type: multipart/mixed; boundary=zz"}, mp("zz", "\r\na", "\r\nb", "\r\nc", "\r\nd")...), mailfmt.Limits{MaxParts: 4}, mailfmt.CodeMIME, "5.6.0", 400, "more than 4 MIME parts"},
		{"message/partial", with([]string{"Content-Type: message/partial; id=x; number=1; total=2"}, "x"), mailfmt.Limits{}, mailfmt.CodeMIME, "5.6.0", 400, "whole content"},
		{"external body", with([]string{"Content-Type: multipart/mixed; boundary=zz"}, mp("zz", "Content-Type: message/external-body; access-type=URL; URL=\"http://x.example/\"\r\n\r\n")...), mailfmt.Limits{}, mailfmt.CodeMIME, "5.6.0", 400, "external-body"},
		{"forwarded message without header", with([]string{"Content-Type: message/rfc822"}, "", "body only"), mailfmt.Limits{}, mailfmt.CodeMIME, "5.6.0", 400, "no header"},
		{"unknown transfer encoding", with([]string{"Content-Transfer-Encoding: x-uuencode"}, "x"), mailfmt.Limits{}, mailfmt.CodeEncoding, "5.6.0", 400, "x-uuencode"},
		{"binary transfer encoding", with([]string{"Content-Transfer-Encoding: binary"}, "x"), mailfmt.Limits{}, mailfmt.CodeEncoding, "5.6.0", 400, "base64"},
		{"bad base64", with([]string{"Content-Type: application/pdf", "Content-Transfer-Encoding: base64"}, "AAA*"), mailfmt.Limits{}, mailfmt.CodeEncoding, "5.6.0", 400, "declared base64"},
		{"truncated base64", with([]string{"Content-Type: application/pdf", "Content-Transfer-Encoding: base64"}, "AAAAA"), mailfmt.Limits{}, mailfmt.CodeEncoding, "5.6.0", 400, "declared base64"},
		{"bad quoted-printable", with([]string{"Content-Transfer-Encoding: quoted-printable"}, "a\x01b"), mailfmt.Limits{}, mailfmt.CodeEncoding, "5.6.0", 400, "quoted-printable"},
		{"bad Content-Disposition", with([]string{"Content-Disposition: attachment; filename=a b.pdf"}, "x"), mailfmt.Limits{}, mailfmt.CodeMIME, "5.6.0", 400, "Content-Disposition"},

		{"unknown mode", with([]string{"Certmail-Mode: express"}, "x"), mailfmt.Limits{}, mailfmt.CodeOption, "5.6.0", 422, "\"express\" is not a mode"},
		{"mode not by mail", with([]string{"Certmail-Mode: cmp1"}, "x"), mailfmt.Limits{}, mailfmt.CodeOption, "5.6.0", 422, "not a mode certmail offers by mail"},
		{"bad deadline", with([]string{"Certmail-Deadline: next week"}, "x"), mailfmt.Limits{}, mailfmt.CodeOption, "5.6.0", 422, "neither a time"},
		{"negative deadline", with([]string{"Certmail-Deadline: -48h"}, "x"), mailfmt.Limits{}, mailfmt.CodeOption, "5.6.0", 422, "neither a time"},
		{"deadline too soon", with([]string{"Certmail-Deadline: 30m"}, "x"), mailfmt.Limits{}, mailfmt.CodeOption, "5.6.0", 422, "30 minutes from now; the deadline must be at least 1 hour"},
		{"deadline too far", with([]string{"Certmail-Deadline: 100d"}, "x"), mailfmt.Limits{}, mailfmt.CodeOption, "5.6.0", 422, "at most 90 days"},
		{"deadline in the past", with([]string{"Certmail-Deadline: 2026-11-22T18:00:00Z"}, "x"), mailfmt.Limits{}, mailfmt.CodeOption, "5.6.0", 422, "1 day in the past"},
		{"unknown Certmail header", with([]string{"Certmail-Priority: high"}, "x"), mailfmt.Limits{}, mailfmt.CodeOption, "5.6.0", 422, "unknown header Certmail-Priority"},
		{"repeated option", with([]string{"Certmail-Mode: cem", "CERTMAIL-MODE: cem-ip"}, "x"), mailfmt.Limits{}, mailfmt.CodeOption, "5.6.0", 422, "appears twice"},
		{"unknown receipt form", with([]string{"Certmail-Receipt: complete"}, "x"), mailfmt.Limits{}, mailfmt.CodeOption, "5.6.0", 422, "full, short or summary"},
		{"unknown notify policy", with([]string{"Certmail-Notify: loud"}, "x"), mailfmt.Limits{}, mailfmt.CodeOption, "5.6.0", 422, "not a notification policy"},
		{"short password", with([]string{"Certmail-Password: abc"}, "x"), mailfmt.Limits{}, mailfmt.CodeOption, "5.6.0", 422, "at least 8"},
		{"empty password", with([]string{"Certmail-Password:  "}, "x"), mailfmt.Limits{}, mailfmt.CodeOption, "5.6.0", 422, "empty"},
		{"hint without password", with([]string{"Certmail-Password-Hint: the usual"}, "x"), mailfmt.Limits{}, mailfmt.CodeOption, "5.6.0", 422, "without Certmail-Password"},
		{"hint gives the password away", with([]string{"Certmail-Password: Sesame123", "Certmail-Password-Hint: it is sesame123"}, "x"), mailfmt.Limits{}, mailfmt.CodeOption, "5.6.0", 422, "contains the password"},
		{"hint with a control", with([]string{"Certmail-Password: Sesame123", "Certmail-Password-Hint: =?utf-8?q?a=0D=0AB?="}, "x"), mailfmt.Limits{}, mailfmt.CodeOption, "5.6.0", 422, "control"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s, err := mailfmt.ParseSubmission(tt.raw, tt.lim, now, mailfmt.Options{})
			if tt.code == "" {
				if err != nil {
					t.Fatalf("rejected: %v", err)
				}
				return
			}
			if err == nil {
				t.Fatalf("accepted, want %s error\n%q", tt.code, s.Message)
			}
			var e *mailfmt.Error
			if !errors.As(err, &e) {
				t.Fatalf("error %v is %T, not *mailfmt.Error", err, err)
			}
			if e.Code != tt.code || e.EnhancedString() != tt.status || e.HTTPStatus != tt.http {
				t.Errorf("got %s %s %d, want %s %s %d (%s)", e.Code, e.EnhancedString(), e.HTTPStatus, tt.code, tt.status, tt.http, e.Message)
			}
			wantSMTP := 554
			if tt.code == mailfmt.CodeSize {
				wantSMTP = 552
			}
			if e.SMTPCode != wantSMTP {
				t.Errorf("SMTP code %d, want %d", e.SMTPCode, wantSMTP)
			}
			if !strings.Contains(e.Message, tt.says) {
				t.Errorf("message %q does not say %q", e.Message, tt.says)
			}
			if strings.Contains(e.Message, "Sesame") {
				t.Errorf("message %q echoes the password", e.Message)
			}
		})
	}
}

func TestParseSubmissionAttachmentNames(t *testing.T) {
	raw := with([]string{"MIME-Version: 1.0", "Content-Type: multipart/mixed; boundary=zz"}, mp("zz",
		"Content-Type: text/plain\r\n\r\nbody",
		"Content-Type: application/octet-stream; name=\"../../../etc/passwd\"\r\nContent-Transfer-Encoding: base64\r\n\r\naGk=",
		"Content-Type: text/plain; name=\"C:\\\\Users\\\\a\\\\.bashrc\"\r\n\r\nx",
		"Content-Type: image/png\r\nContent-Disposition: inline; filename=\"=?utf-8?b?aW52b2ljZeKAri5mZHAuZXhl?=\"\r\nContent-Transfer-Encoding: base64\r\n\r\niVBORw==",
		"Content-Type: application/pdf\r\nContent-Transfer-Encoding: base64\r\n\r\nJVBERg==",
		"Content-Type: text/html\r\nContent-Disposition: attachment\r\n\r\n<p>x</p>",
	)...)
	s := parse(t, raw)
	var got []string
	for _, a := range s.Attachments {
		got = append(got, a.Name)
	}
	// The right-to-left override (U+202E) in "invoice\u202e.fdp.exe" is dropped, so the name
	// reads as what it is.
	want := []string{"passwd", "bashrc", "invoice.fdp.exe", "attachment", "attachment"}
	if strings.Join(got, "|") != strings.Join(want, "|") {
		t.Errorf("attachment names = %q, want %q", got, want)
	}
	if a := s.Attachments[0]; a.Size != 2 || a.Hash != evidence.Sum([]byte("hi")) {
		t.Errorf("attachment size/hash = %v", a)
	}
}

// TestParseSubmissionSubjectOneLine: a subject is shown on pages and in receipts, so the
// decoded form has no line breaks even when an encoded word hides some; M keeps the original.
func TestParseSubmissionSubjectOneLine(t *testing.T) {
	s := parse(t, msg("From: alice@a.example", "To: bob@b.example", "Subject: =?utf-8?q?Hello=0D=0ABcc:_eve@e.example?= \u202eevil", "", "x"))
	if s.Subject != "Hello  Bcc: eve@e.example  evil" {
		t.Errorf("Subject = %q", s.Subject)
	}
	if !bytes.Contains(s.Message, []byte("=?utf-8?q?Hello=0D=0ABcc:_eve@e.example?=")) {
		t.Error("M does not keep the subject as written")
	}
}

func TestErrorStrings(t *testing.T) {
	_, err := mailfmt.ParseSubmission(with([]string{"Certmail-Mode: x"}, "b"), mailfmt.Limits{}, now, mailfmt.Options{})
	var e *mailfmt.Error
	if !errors.As(err, &e) {
		t.Fatal(err)
	}
	if !strings.HasPrefix(err.Error(), "mailfmt: option: Certmail-Mode") {
		t.Errorf("Error() = %q", err.Error())
	}
}
