package web

import (
	"bytes"
	"errors"
	"math/rand/v2"
	"slices"
	"strings"
	"testing"
	"time"
	"unicode"

	"certmail/evidence"
	"certmail/mailfmt"
)

var composeNow = time.Date(2026, 3, 2, 9, 0, 0, 0, time.UTC)

// roundTrip decodes a JSON submission, composes it and checks the message with
// mailfmt.ParseSubmission, as POST /api/v1/messages does. A submission the decoder or the
// composer refuses is fine; one they let through must give a well-formed message that reads back
// as submitted: the recipients, the subject, the text, each file's name, type and bytes, and the
// password. It returns the submission when mailfmt accepted it.
func roundTrip(t *testing.T, body []byte) *mailfmt.Submission {
	t.Helper()
	js, err := decodeSubmission(body)
	if err != nil {
		return nil
	}
	raw, err := js.compose("alice@a.example", "certmail.test", composeNow, rand.NewChaCha8([32]byte{}))
	var fe *fieldError
	if errors.As(err, &fe) {
		return nil
	}
	if err != nil {
		t.Fatalf("compose: %v", err)
	}
	sub, err := mailfmt.ParseSubmission(raw, mailfmt.Limits{MaxBytes: 1 << 20}, composeNow, mailfmt.Options{})
	var me *mailfmt.Error
	if errors.As(err, &me) {
		switch me.Code {
		case mailfmt.CodeOption, mailfmt.CodeSize, mailfmt.CodeRecipients, mailfmt.CodeUTF8:
			return nil // the sender's values, refused for what they are
		}
		t.Fatalf("the composer wrote a message mailfmt refuses (%v):\n%s", err, raw)
	}
	if err != nil {
		t.Fatal(err)
	}
	to, _ := js.recipients()
	if sub.From != "alice@a.example" || !slices.Equal(sub.Recipients, to) || len(sub.Bcc) != 0 {
		t.Fatalf("parties: from %s to %v, want %v", sub.From, sub.Recipients, to)
	}
	if clean(js.Subject) && sub.Subject != js.Subject {
		t.Fatalf("subject %q, want %q", sub.Subject, js.Subject)
	}
	if sub.Options.Password != js.Password {
		t.Fatalf("password %q, want %q", sub.Options.Password, js.Password)
	}
	options := js.Mode + js.Deadline + js.Receipt + js.Notify + js.Password + js.Hint
	if options == "" && !bytes.Equal(sub.Message, raw) {
		t.Fatalf("mailfmt changed the composed message beyond its options:\n%q\n%q", raw, sub.Message)
	}

	sh, err := readMessage(sub.Message)
	if err != nil {
		t.Fatalf("read back: %v", err)
	}
	if want := wantText(js.Text); sh.Text != want || js.Text != "" && !sh.HasText || sh.Hidden {
		t.Fatalf("text %q (has %v), want %q", sh.Text, sh.HasText, want)
	}
	files, err := checkedFiles(sub.Message, sh, mailfmt.Limits{})
	if err != nil {
		t.Fatalf("files: %v", err)
	}
	if len(files) != len(js.Attachments) {
		t.Fatalf("%d files, want %d", len(files), len(js.Attachments))
	}
	for i, a := range js.Attachments {
		f := files[i]
		ct, _ := attachmentType("", a.ContentType)
		if !bytes.Equal(f.Data, a.Data) || f.Name != mailfmt.SafeFilename(a.Name) || !strings.HasPrefix(ct, f.Type) {
			t.Fatalf("file %d: %q %s %q, want %q %s %q", i, f.Name, f.Type, f.Data, a.Name, a.ContentType, a.Data)
		}
	}
	return sub
}

// clean reports whether mailfmt shows a subject as it is: no surrounding space, no control or
// formatting characters (which it turns into spaces for the sender's pages).
func clean(s string) bool {
	return strings.TrimSpace(s) == s && !strings.ContainsFunc(s, func(r rune) bool {
		return unicode.IsControl(r) || unicode.Is(unicode.Cf, r) || r == '\u2028' || r == '\u2029' || r == '\ufffd'
	})
}

// wantText is the text as the page shows it: line breaks as LF, ending with one.
func wantText(s string) string {
	if s == "" {
		return ""
	}
	s = strings.ReplaceAll(s, "\r\n", "\n")
	s = strings.ReplaceAll(s, "\r", "\n")
	if !strings.HasSuffix(s, "\n") {
		s += "\n"
	}
	return s
}

var composeSeeds = []string{
	`{"to":["bob@b.example"],"subject":"hello","text":"hi"}`,
	`{"to":["bob@B.Example","carol@c.example"],"subject":"the lease — signé 📄","text":"line one\r\nline two\rline three\n\n"}`,
	`{"to":["bob@b.example"],"subject":"=?utf-8?q?not_an_encoded_word?=","text":"` + strings.Repeat("long line ", 200) + `"}`,
	`{"to":["bob@b.example"],"subject":"` + strings.Repeat("x", 300) + `","text":"trailing spaces   \nand =3D signs"}`,
	`{"to":["bob@b.example"],"attachments":[{"name":"a.pdf","content_type":"application/pdf","data":"JVBERi0xLjcK/w=="}]}`,
	`{"to":["bob@b.example"],"text":"with files","attachments":[{"name":"../../etc/passwd","data":""},{"name":"Über.txt","content_type":"text/plain; charset=iso-8859-1; format=flowed","data":"/Gxs"}]}`,
	`{"to":["bob@b.example"],"text":"x","mode":"cem-nsr","deadline":"7d","receipt":"summary","notify":"none-for-sender","password":"open sesame 42","hint":"the usual ☕"}`,
	`{"to":["bob@b.example"],"text":"x","password":"=?utf-8?b?c2VjcmV0?= and more","hint":"not that"}`,
	`{"to":["bob@b.example"],"subject":"a\u200bb","text":"\u0000nul"}`,
	`{"to":["bob@b.example"],"mode":"pec"}`,
	`{"to":["bob@b.example\r\nBcc: eve@e.example"]}`,
	`{"to":[]}`,
	`[]`,
}

func TestComposeRoundTrip(t *testing.T) {
	accepted := 0
	for _, s := range composeSeeds {
		if roundTrip(t, []byte(s)) != nil {
			accepted++
		}
	}
	if accepted < 8 {
		t.Fatalf("only %d of the seeds were certifiable; the round trip checks too little", accepted)
	}
	// The options travel as Certmail-* fields: mailfmt reads them, and takes them out of M.
	sub := roundTrip(t, []byte(composeSeeds[6]))
	o := sub.Options
	if o.Mode != evidence.CEMNSR || o.Receipt != mailfmt.ReceiptSummary || o.Notify != mailfmt.NotifyNoneForSender ||
		o.PasswordHint != "the usual ☕" || !o.Deadline.Equal(composeNow.Add(7*24*time.Hour)) {
		t.Fatalf("options %+v", o)
	}
}

func TestComposeRefusals(t *testing.T) {
	for _, c := range []struct{ body, field string }{
		{`{"to":["bob@b.example\r\nBcc: eve@e.example"]}`, "to[0]"},
		{`{"to":["Bob <bob@b.example>"]}`, "to[0]"},
		{`{"to":["bob@b.example","BOB@b.example"]}`, ""},
		{`{"to":["bob@b.example","bob@B.example"]}`, "to[1]"},
		{`{"to":["bob@b.example"],"subject":"a\nb"}`, "subject"},
		{`{"to":["bob@b.example"],"deadline":"48h\r\nX: y"}`, "deadline"},
		{`{"to":["bob@b.example"],"password":" padded password "}`, "password"},
		{`{"to":["bob@b.example"],"attachments":[{"content_type":"message/rfc822","data":""}]}`, "attachments[0].content_type"},
		{`{"to":["bob@b.example"],"attachments":[{"content_type":"not a type","data":""}]}`, "attachments[0].content_type"},
	} {
		js, err := decodeSubmission([]byte(c.body))
		if err != nil {
			t.Fatal(err)
		}
		_, err = js.compose("alice@a.example", "certmail.test", composeNow, rand.NewChaCha8([32]byte{}))
		var fe *fieldError
		switch {
		case c.field == "" && err != nil:
			t.Errorf("%s: %v", c.body, err)
		case c.field != "" && (!errors.As(err, &fe) || fe.Field != c.field):
			t.Errorf("%s: %v, want a refusal of %s", c.body, err, c.field)
		}
	}
}

func FuzzJSONSubmission(f *testing.F) {
	for _, s := range composeSeeds {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, body []byte) {
		roundTrip(t, body)
	})
}
