package mailfmt_test

import (
	"bytes"
	"errors"
	"slices"
	"strings"
	"testing"

	"certmail/mailfmt"
)

func FuzzParseSubmission(f *testing.F) {
	for _, raw := range readFiles(f, "testdata/submissions/*.eml") {
		f.Add(raw)
	}
	f.Add(with([]string{"Content-Type: multipart/mixed; boundary=zz"}, mp("zz", "Content-Type: message/rfc822\r\n\r\nFrom: x@y.example\r\n\r\nhi", "\r\nplain")...))
	f.Add(with([]string{"Certmail-Password: 12345678", "Certmail-Password-Hint: digits", "Bcc: c@d.example"}, "x"))
	f.Add([]byte("From: a@b.example\rTo: c@d.example\r\n X-Y: z\n\nbody"))
	lim := mailfmt.Limits{MaxBytes: 1 << 16, MaxParts: 50, MaxDepth: 8}
	f.Fuzz(func(t *testing.T, raw []byte) {
		s, err := mailfmt.ParseSubmission(raw, lim, now, mailfmt.Options{})
		if err != nil {
			var e *mailfmt.Error
			if !errors.As(err, &e) || e.Message == "" || e.Code == "" || e.Enhanced[0] != 5 ||
				(e.SMTPCode != 552 && e.SMTPCode != 554) || (e.HTTPStatus != 400 && e.HTTPStatus != 413 && e.HTTPStatus != 422) {
				t.Fatalf("rejection is not a complete *Error: %#v", err)
			}
			return
		}
		m := s.Message
		if bytes.IndexByte(m, 0) >= 0 || int64(len(m)) > lim.MaxBytes {
			t.Fatal("M has a NUL or is too big")
		}
		if bytes.Count(m, []byte("\n")) != bytes.Count(m, []byte("\r\n")) || bytes.Count(m, []byte("\r")) != bytes.Count(m, []byte("\r\n")) {
			t.Fatalf("M has a bare CR or LF: %q", m)
		}
		head, _, ok := bytes.Cut(m, []byte("\r\n\r\n"))
		if !ok {
			t.Fatalf("M has no empty line after its header: %q", m)
		}
		for _, line := range strings.Split(string(head), "\r\n") {
			if len(line) > 998 {
				t.Fatal("M has a line longer than 998")
			}
			if name, _, _ := strings.Cut(line, ":"); strings.HasPrefix(strings.ToLower(name), "certmail-") || strings.EqualFold(name, "bcc") {
				t.Fatalf("M keeps the field %q", line)
			}
		}
		if s.From == "" || len(s.Recipients) == 0 {
			t.Fatal("accepted without a sender or a recipient")
		}
		for _, a := range s.Attachments {
			checkSafe(t, a.Name, a.Name)
		}

		again, err := mailfmt.ParseSubmission(m, lim, now, s.Options)
		if err != nil {
			t.Fatalf("M does not parse again: %v\n%q", err, m)
		}
		if !bytes.Equal(again.Message, m) {
			t.Fatalf("parsing M again changed it:\n%q\n%q", m, again.Message)
		}
		if again.Options != s.Options || again.From != s.From || again.Subject != s.Subject ||
			!slices.Equal(again.Recipients, s.Recipients) || !slices.Equal(again.Attachments, s.Attachments) {
			t.Fatalf("parsing M again gave another result:\n%+v\n%+v", s, again)
		}
	})
}
