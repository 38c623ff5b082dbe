package mailfmt_test

import (
	"bytes"
	"flag"
	"mime"
	"net/mail"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"certmail/evidence"
	"certmail/mailfmt"
)

var update = flag.Bool("update", false, "rewrite the golden files in testdata/golden")

const (
	secretSubject = "Secret merger plan Q3"
	bodyMarker    = "BODYMARK-7f3a"
	secretFile    = "merger-terms.pdf"
	pickup        = "https://mail.a.example/pickup/Zq3vT0kEn"
)

// secretMessage is a submission whose subject, body and attachment name must never show in
// a notification.
func secretMessage(t *testing.T) *mailfmt.Submission {
	t.Helper()
	lines := []string{"From: Alice <alice@a.example>", "To: bob@b.example", "Subject: " + secretSubject,
		"MIME-Version: 1.0", "Content-Type: multipart/mixed; boundary=zz", ""}
	lines = append(lines, mp("zz", "Content-Type: text/plain\r\n\r\nThe body says "+bodyMarker+".",
		"Content-Type: application/pdf; name=\""+secretFile+"\"\r\nContent-Transfer-Encoding: base64\r\n\r\nJVBERg==")...)
	return parse(t, msg(lines...))
}

func notice(w *world, p evidence.Protocol) mailfmt.Notice {
	n := mailfmt.Notice{Head: w.head(recipient), Label: w.label, Protocol: p, Sender: sender,
		Deadline: w.deadline(), PickupURL: pickup, Password: true, PasswordHint: "our usual café"}
	switch p {
	case evidence.CEMIP:
		n.Commitment = evidence.Commitment(w.label, w.m)
	case evidence.CEM:
		n.Content, n.Message = evidence.Sum(w.m), w.m
	}
	return n
}

func TestNotificationNeverRevealsContent(t *testing.T) {
	s := secretMessage(t)
	if s.Subject != secretSubject || len(s.Attachments) != 1 {
		t.Fatalf("the secret message parsed as %+v", s)
	}
	w := newWorld(t, s.Message)
	for _, p := range []evidence.Protocol{evidence.CEMIP, evidence.CEMNSR} {
		raw, err := mailfmt.Notification(notice(w, p))
		if err != nil {
			t.Fatal(err)
		}
		text := decodedText(t, raw)
		for _, secret := range []string{secretSubject, bodyMarker, secretFile, "Secret", "merger"} {
			if bytes.Contains(raw, []byte(secret)) || strings.Contains(text, secret) {
				t.Errorf("%s notification reveals %q", p, secret)
			}
		}
		if !strings.Contains(text, "The message itself is not in this e-mail") {
			t.Errorf("%s notification does not say the content is not in it", p)
		}

		// Handing it the content is refused, not silently dropped.
		leaky := notice(w, p)
		leaky.Message = s.Message
		if _, err := mailfmt.Notification(leaky); err == nil {
			t.Errorf("%s notification accepted the message itself", p)
		}
		leaky = notice(w, p)
		leaky.Content = evidence.Sum(s.Message)
		if _, err := mailfmt.Notification(leaky); err == nil {
			t.Errorf("%s notification accepted H(M)", p)
		}
	}
}

func TestNotificationContents(t *testing.T) {
	w := newWorld(t, secretMessage(t).Message)
	n := notice(w, evidence.CEMIP)
	n.InReplyTo = "<c0ffee@a.example>"
	raw, err := mailfmt.Notification(n)
	if err != nil {
		t.Fatal(err)
	}
	h, leaves := readMail(t, raw)
	from, err := mail.ParseAddress(h.Get("From"))
	if err != nil || from.Address != "certmail@"+agentHost {
		t.Errorf("From %q: %v", h.Get("From"), err)
	}
	if h.Get("To") != recipient || h.Get("Auto-Submitted") != "auto-generated" || h.Get("MIME-Version") != "1.0" ||
		h.Get("Message-ID") != "<T3STID0000000001@mail.a.example>" || h.Get("X-Certmail-Kind") != "notification" ||
		h.Get("X-Certmail-Label") != w.label.String() || h.Get("In-Reply-To") != "<c0ffee@a.example>" {
		t.Errorf("header:\n%v", h)
	}
	if d, err := h.Date(); err != nil || !d.Equal(now) {
		t.Errorf("Date %q: %v", h.Get("Date"), err)
	}
	if mt, _, _ := mime.ParseMediaType(h.Get("Content-Type")); mt != "multipart/alternative" || len(leaves) != 2 {
		t.Fatalf("structure: %s with %d leaves", mt, len(leaves))
	}
	plain, _ := leafOfType(leaves, "text/plain")
	html, _ := leafOfType(leaves, "text/html")
	for _, want := range []string{sender, w.label.String(), evidence.Commitment(w.label, w.m).String(),
		"2026-11-25T18:00:00Z", pickup, "our usual café", "not in this e-mail", "released to you only after you accept it"} {
		if !says(plain.data, (want)) {
			t.Errorf("text does not say %q", want)
		}
		if !says(html.data, want) {
			t.Errorf("HTML does not say %q", want)
		}
	}
	if plain.params["charset"] != "utf-8" || html.params["charset"] != "utf-8" {
		t.Error("text parts are not declared UTF-8")
	}
}

func TestNotificationCEMDeliversMessage(t *testing.T) {
	s := secretMessage(t)
	w := newWorld(t, s.Message)
	raw, err := mailfmt.Notification(notice(w, evidence.CEM))
	if err != nil {
		t.Fatal(err)
	}
	h, leaves := readMail(t, raw)
	if mt, _, _ := mime.ParseMediaType(h.Get("Content-Type")); mt != "multipart/mixed" {
		t.Errorf("cem notification is %s", mt)
	}
	m, ok := leafOfType(leaves, "message/rfc822")
	if !ok || !bytes.Equal(m.data, s.Message) {
		t.Fatalf("the attached message is not M byte for byte")
	}
	plain, _ := leafOfType(leaves, "text/plain")
	if !says(plain.data, (evidence.Sum(s.Message).String())) || !says(plain.data, ("confirm")) {
		t.Errorf("cem text:\n%s", plain.data)
	}
	// cem needs M, and M must be what Content says.
	bad := notice(w, evidence.CEM)
	bad.Message = append(bytes.Clone(s.Message), "tampered\r\n"...)
	if _, err := mailfmt.Notification(bad); err == nil {
		t.Error("cem notification accepted a message that does not match its hash")
	}
}

func TestComposeRefusesInjection(t *testing.T) {
	w := newWorld(t, []byte("M\r\n"))
	for name, mutate := range map[string]func(*mailfmt.Notice){
		"To with CRLF":         func(n *mailfmt.Notice) { n.To = "bob@b.example\r\nBcc: eve@e.example" },
		"To with LF":           func(n *mailfmt.Notice) { n.To = "bob@b.example\nX: y" },
		"From with CRLF":       func(n *mailfmt.Notice) { n.From = "certmail@a.example\r\nBcc: eve@e.example" },
		"Name with CRLF":       func(n *mailfmt.Notice) { n.Name = "certmail\r\nBcc: eve@e.example" },
		"ID with CRLF":         func(n *mailfmt.Notice) { n.ID = "x\r\nBcc: eve@e.example" },
		"ID with @":            func(n *mailfmt.Notice) { n.ID = "x@evil.example" },
		"Domain with CRLF":     func(n *mailfmt.Notice) { n.Domain = "a.example\r\nBcc: eve@e.example" },
		"InReplyTo with CRLF":  func(n *mailfmt.Notice) { n.InReplyTo = "<a@b>\r\nBcc: eve@e.example" },
		"Sender with CRLF":     func(n *mailfmt.Notice) { n.Sender = "alice@a.example\r\nBcc: eve@e.example" },
		"pickup with CRLF":     func(n *mailfmt.Notice) { n.PickupURL = pickup + "\r\nBcc: eve@e.example" },
		"pickup javascript":    func(n *mailfmt.Notice) { n.PickupURL = "javascript:alert(1)" },
		"pickup with password": func(n *mailfmt.Notice) { n.PickupURL = "https://user:pw@mail.a.example/p" },
		"no date":              func(n *mailfmt.Notice) { n.Date = time.Time{} },
		"hint, no password":    func(n *mailfmt.Notice) { n.Password = false },
		"no label":             func(n *mailfmt.Notice) { n.Label = evidence.Label{} },
		"no deadline":          func(n *mailfmt.Notice) { n.Deadline = time.Time{} },
		"not CEM":              func(n *mailfmt.Notice) { n.Protocol = evidence.AGHP },
		"cem-ip without H(L,M)": func(n *mailfmt.Notice) {
			n.Commitment = evidence.Hash{}
		},
	} {
		n := notice(w, evidence.CEMIP)
		mutate(&n)
		if raw, err := mailfmt.Notification(n); err == nil {
			t.Errorf("%s: composed\n%s", name, raw)
		}
	}
}

// TestComposeNeutralisesText: free text from users (a subject, a hint, a reason) cannot start
// a header line or a fake paragraph; it is made one line.
func TestComposeNeutralisesText(t *testing.T) {
	w := newWorld(t, []byte("M\r\n"))
	n := notice(w, evidence.CEMIP)
	n.PasswordHint = "hint\r\nBcc: eve@e.example\r\n\r\nFake paragraph"
	raw, err := mailfmt.Notification(n)
	if err != nil {
		t.Fatal(err)
	}
	h, leaves := readMail(t, raw)
	if len(h["Bcc"]) > 0 {
		t.Fatal("a Bcc field was injected")
	}
	plain, _ := leafOfType(leaves, "text/plain")
	if !says(plain.data, ("hint Bcc: eve@e.example Fake paragraph")) {
		t.Errorf("hint not made one line:\n%s", plain.data)
	}

	cop := w.note(t, evidence.COP)
	r := mailfmt.Receipt{Head: w.head(sender), Exchange: w.exchange("Hello\r\nBcc: eve@e.example\r\n\r\nbody"),
		Evidence: mailfmt.Evidence{Notes: []*evidence.Note{cop}}, Form: mailfmt.ReceiptSummary, Accepted: now}
	raw, err = mailfmt.PostingReceipt(r)
	if err != nil {
		t.Fatal(err)
	}
	h, _ = readMail(t, raw)
	if len(h["Bcc"]) > 0 {
		t.Fatal("a Bcc field was injected through the subject")
	}
	subject, _ := new(mime.WordDecoder).DecodeHeader(h.Get("Subject"))
	if subject != "Accepted: Hello  Bcc: eve@e.example    body" {
		t.Errorf("subject %q", subject)
	}
}

func TestNotificationEscapesHTML(t *testing.T) {
	w := newWorld(t, []byte("M\r\n"))
	n := notice(w, evidence.CEMIP)
	n.PasswordHint = `<script>alert("x")</script> "><img src=x onerror=alert(1)>`
	raw, err := mailfmt.Notification(n)
	if err != nil {
		t.Fatal(err)
	}
	_, leaves := readMail(t, raw)
	html, _ := leafOfType(leaves, "text/html")
	for _, bad := range []string{"<script", "<img", `onerror=alert(1)>`} {
		if bytes.Contains(html.data, []byte(bad)) {
			t.Errorf("HTML contains %q unescaped", bad)
		}
	}
	if !bytes.Contains(html.data, []byte("&lt;script&gt;")) {
		t.Errorf("HTML does not show the hint escaped:\n%s", html.data)
	}
}

// receiptCase composes one kind of mail to the sender.
type receiptCase struct {
	kind    mailfmt.Kind
	subject string // prefix
	types   []evidence.Type
	says    string
	make    func(h mailfmt.Head, x mailfmt.Exchange, e mailfmt.Evidence) ([]byte, error)
}

func receiptCases(w *world) []receiptCase {
	return []receiptCase{
		{mailfmt.KindPostingReceipt, "Accepted: ", []evidence.Type{evidence.COP}, "was accepted for certified delivery",
			func(h mailfmt.Head, x mailfmt.Exchange, e mailfmt.Evidence) ([]byte, error) {
				return mailfmt.PostingReceipt(mailfmt.Receipt{Head: h, Exchange: x, Evidence: e, Form: mailfmt.ReceiptFull, Accepted: now})
			}},
		{mailfmt.KindDeliveryReceipt, "Delivered: ", []evidence.Type{evidence.ROD, evidence.CODIP}, "bob@b.example accepted it",
			func(h mailfmt.Head, x mailfmt.Exchange, e mailfmt.Evidence) ([]byte, error) {
				return mailfmt.DeliveryReceipt(mailfmt.Delivery{Head: h, Exchange: x, Evidence: e, Form: mailfmt.ReceiptSummary, Delivered: now, Method: "password", Client: "192.0.2.7"})
			}},
		{mailfmt.KindWarning, "Not accepted yet: ", []evidence.Type{evidence.WRN}, "has not been accepted yet",
			func(h mailfmt.Head, x mailfmt.Exchange, e mailfmt.Evidence) ([]byte, error) {
				return mailfmt.Warning(mailfmt.Delay{Head: h, Exchange: x, Evidence: e, Time: now})
			}},
		{mailfmt.KindNonDelivery, "Not delivered: ", []evidence.Type{evidence.NDN}, "did not accept it before the deadline",
			func(h mailfmt.Head, x mailfmt.Exchange, e mailfmt.Evidence) ([]byte, error) {
				return mailfmt.NonDelivery(mailfmt.Failure{Head: h, Exchange: x, Evidence: e, Reason: "deadline", Time: now})
			}},
		{mailfmt.KindRefusal, "Refused: ", []evidence.Type{evidence.REJ}, "chose not to accept it",
			func(h mailfmt.Head, x mailfmt.Exchange, e mailfmt.Evidence) ([]byte, error) {
				return mailfmt.Refusal(mailfmt.Refused{Head: h, Exchange: x, Evidence: e, Reason: "refused", Time: now})
			}},
		{mailfmt.KindRetractionReceipt, "Retracted: ", []evidence.Type{evidence.RTR}, "can no longer fetch it",
			func(h mailfmt.Head, x mailfmt.Exchange, e mailfmt.Evidence) ([]byte, error) {
				return mailfmt.RetractionReceipt(mailfmt.Retracted{Head: h, Exchange: x, Evidence: e, Time: now})
			}},
		{mailfmt.KindNonAcceptance, "Not accepted: ", []evidence.Type{evidence.NAC}, "the message is not well-formed Internet mail",
			func(h mailfmt.Head, x mailfmt.Exchange, e mailfmt.Evidence) ([]byte, error) {
				return mailfmt.NonAcceptance(mailfmt.NotAccepted{Head: h, Exchange: x, Evidence: e, Reason: mailfmt.CodeMIME,
					Detail: "the message is multipart but its boundary \"zz\" never appears in it", Time: now})
			}},
	}
}

func TestReceipts(t *testing.T) {
	s := secretMessage(t)
	w := newWorld(t, s.Message)
	for _, rc := range receiptCases(w) {
		t.Run(string(rc.kind), func(t *testing.T) {
			var notes []*evidence.Note
			for _, typ := range rc.types {
				notes = append(notes, w.note(t, typ))
			}
			bundle := w.bundle(t, notes...)
			raw, err := rc.make(w.head(sender), w.exchange(s.Subject), mailfmt.Evidence{Notes: notes, Bundle: bundle})
			if err != nil {
				t.Fatal(err)
			}
			h, leaves := readMail(t, raw)
			subject, _ := new(mime.WordDecoder).DecodeHeader(h.Get("Subject"))
			if subject != rc.subject+secretSubject || h.Get("To") != sender || h.Get("X-Certmail-Kind") != string(rc.kind) ||
				h.Get("Auto-Submitted") != "auto-generated" {
				t.Errorf("header: subject %q, %v", subject, h)
			}
			plain, _ := leafOfType(leaves, "text/plain")
			for _, want := range []string{rc.says, w.label.String(), "certmail verify evidence.bundle", "https://mail.a.example/.well-known/certmail"} {
				if !says(plain.data, (want)) {
					t.Errorf("text does not say %q:\n%s", want, plain.data)
				}
			}
			for _, n := range notes {
				name := strings.ToLower(string(n.Record.Type)) + ".note"
				f, ok := leafNamed(leaves, name)
				if !ok || !bytes.Equal(f.data, n.Bytes()) {
					t.Errorf("%s is not attached byte for byte", name)
				}
				if _, err := evidence.ParseNote(f.data); err != nil {
					t.Errorf("%s does not parse: %v", name, err)
				}
			}
			if f, ok := leafNamed(leaves, "evidence.bundle"); !ok || !bytes.Equal(f.data, bundle) || f.mediaType != "application/vnd.certmail.bundle" {
				t.Error("evidence.bundle is not attached byte for byte")
			}
			// A mail the agent composes passes the agent's own gate.
			if _, err := mailfmt.ParseSubmission(raw, mailfmt.Limits{}, now, mailfmt.Options{}); err != nil {
				t.Errorf("ParseSubmission refuses the composed mail: %v", err)
			}
		})
	}
}

// The forms as PEC's: only the full delivery receipt carries M; the posting receipt lists the
// attachments in the full and short forms, and the delivery receipt in the short form.
func TestReceiptForms(t *testing.T) {
	s := parse(t, readFiles(t, "testdata/submissions/*.eml")["multipart.eml"])
	w := newWorld(t, s.Message)
	cop, rod, dlv := w.note(t, evidence.COP), w.note(t, evidence.ROD), w.note(t, evidence.DLV)
	for _, form := range mailfmt.ReceiptForms() {
		posting, err := mailfmt.PostingReceipt(mailfmt.Receipt{Head: w.head(sender), Exchange: w.exchange(s.Subject),
			Evidence: mailfmt.Evidence{Notes: []*evidence.Note{cop}}, Form: form, Accepted: now, Attachments: s.Attachments})
		if err != nil {
			t.Fatal(err)
		}
		delivery, err := mailfmt.DeliveryReceipt(mailfmt.Delivery{Head: w.head(sender), Exchange: w.exchange(s.Subject),
			Evidence: mailfmt.Evidence{Notes: []*evidence.Note{rod, dlv}}, Form: form, Delivered: now, Method: "password",
			Message: s.Message, Attachments: s.Attachments})
		if err != nil {
			t.Fatal(err)
		}
		for _, rc := range []struct {
			name              string
			raw               []byte
			wantM, wantListed bool
			note              string
		}{
			{"posting", posting, false, form != mailfmt.ReceiptSummary, "cop.note"},
			{"delivery", delivery, form == mailfmt.ReceiptFull, form == mailfmt.ReceiptShort, "rod.note"},
		} {
			_, leaves := readMail(t, rc.raw)
			m, hasM := leafOfType(leaves, "message/rfc822")
			plain, _ := leafOfType(leaves, "text/plain")
			listed := says(plain.data, s.Attachments[0].Hash.String())
			if hasM != rc.wantM || listed != rc.wantListed {
				t.Errorf("%s %s receipt: M attached %v (want %v), attachments listed %v (want %v)", form, rc.name, hasM, rc.wantM, listed, rc.wantListed)
			}
			if hasM && (!bytes.Equal(m.data, s.Message) || m.filename != "message.eml") {
				t.Errorf("%s %s receipt: M is not attached byte for byte", form, rc.name)
			}
			if !says(plain.data, evidence.Sum(s.Message).String()) {
				t.Errorf("%s %s receipt does not give H(M)", form, rc.name)
			}
			if _, ok := leafNamed(leaves, rc.note); !ok {
				t.Errorf("%s %s receipt has no %s", form, rc.name, rc.note)
			}
		}
	}
}

// A full delivery receipt needs the very M whose hash the evidence names.
func TestFullDeliveryReceiptNeedsM(t *testing.T) {
	w := newWorld(t, []byte("M\r\n"))
	notes := []*evidence.Note{w.note(t, evidence.ROD), w.note(t, evidence.DLV)}
	for name, m := range map[string][]byte{"no M": nil, "another M": []byte("other\r\n"), "M": w.m} {
		_, err := mailfmt.DeliveryReceipt(mailfmt.Delivery{Head: w.head(sender), Exchange: w.exchange("s"), Evidence: mailfmt.Evidence{Notes: notes},
			Form: mailfmt.ReceiptFull, Delivered: now, Method: "password", Message: m})
		if (err == nil) != (name == "M") {
			t.Errorf("%s: error %v", name, err)
		}
	}
}

func TestReceiptRefusesInconsistentEvidence(t *testing.T) {
	w := newWorld(t, []byte("M\r\n"))
	other := newWorld(t, []byte("other\r\n"))
	other.label[0] ^= 1
	cop := w.note(t, evidence.COP)
	ok := mailfmt.Receipt{Head: w.head(sender), Exchange: w.exchange("s"), Evidence: mailfmt.Evidence{Notes: []*evidence.Note{cop}, Bundle: w.bundle(t, cop)},
		Form: mailfmt.ReceiptFull, Accepted: now}
	if _, err := mailfmt.PostingReceipt(ok); err != nil {
		t.Fatal(err)
	}
	for name, mutate := range map[string]func(*mailfmt.Receipt){
		"no COP":                  func(r *mailfmt.Receipt) { r.Notes = []*evidence.Note{w.note(t, evidence.WRN)} },
		"note of another label":   func(r *mailfmt.Receipt) { r.Notes = append(r.Notes, other.note(t, evidence.WRN)) },
		"note of another content": func(r *mailfmt.Receipt) { r.Content = evidence.Sum([]byte("x")) },
		"bundle of another label": func(r *mailfmt.Receipt) { r.Bundle = other.bundle(t, other.note(t, evidence.COP)) },
		"bundle not a bundle":     func(r *mailfmt.Receipt) { r.Bundle = []byte("hello") },
		"no form":                 func(r *mailfmt.Receipt) { r.Form = "" },
		"unknown form":            func(r *mailfmt.Receipt) { r.Form = "completa" },
		"bad recipient":           func(r *mailfmt.Receipt) { r.Recipient = "bob" },
		"sender To with CRLF":     func(r *mailfmt.Receipt) { r.To = "alice@a.example\r\nBcc: eve@e.example" },
	} {
		r := ok
		r.Notes = []*evidence.Note{cop}
		mutate(&r)
		if _, err := mailfmt.PostingReceipt(r); err == nil {
			t.Errorf("%s: composed", name)
		}
	}
}

func TestDeliveryAttestation(t *testing.T) {
	w := newWorld(t, []byte("M\r\n"))
	for _, tc := range []struct {
		types []evidence.Type
		says  string
	}{
		{[]evidence.Type{evidence.ROD, evidence.CODIP}, "signed by the recipient's own key"},
		{[]evidence.Type{evidence.ROD, evidence.DLV}, "attested by the agent"},
	} {
		var notes []*evidence.Note
		for _, typ := range tc.types {
			notes = append(notes, w.note(t, typ))
		}
		raw, err := mailfmt.DeliveryReceipt(mailfmt.Delivery{Head: w.head(sender), Exchange: w.exchange("s"), Evidence: mailfmt.Evidence{Notes: notes},
			Form: mailfmt.ReceiptSummary, Delivered: now, Method: "password", Client: "192.0.2.7"})
		if err != nil {
			t.Fatal(err)
		}
		_, leaves := readMail(t, raw)
		plain, _ := leafOfType(leaves, "text/plain")
		if !says(plain.data, (tc.says)) || !says(plain.data, ("192.0.2.7")) {
			t.Errorf("%v: text does not say %q:\n%s", tc.types, tc.says, plain.data)
		}
	}
}

func TestNonDeliveryReasons(t *testing.T) {
	w := newWorld(t, []byte("M\r\n"))
	ndn := w.note(t, evidence.NDN)
	for reason, want := range map[string]string{
		"deadline":     "did not accept it before the deadline",
		"not-accepted": "did not accept it in time",
		"relay":        "delivery agent did not take charge of it",
		"bounced":      "could not be delivered to the recipient's mail server",
		"other-thing":  "gave up delivering it",
	} {
		raw, err := mailfmt.NonDelivery(mailfmt.Failure{Head: w.head(sender), Exchange: w.exchange("s"), Evidence: mailfmt.Evidence{Notes: []*evidence.Note{ndn}},
			Reason: reason, Detail: "550 5.1.1 mailbox unknown\r\nInjected: yes", Time: now})
		if err != nil {
			t.Fatal(err)
		}
		_, leaves := readMail(t, raw)
		plain, _ := leafOfType(leaves, "text/plain")
		if !says(plain.data, want) || !says(plain.data, "was NOT delivered") || !says(plain.data, "550 5.1.1 mailbox unknown Injected: yes") {
			t.Errorf("%s: text does not say %q:\n%s", reason, want, plain.data)
		}
	}
}

func TestLongSubjectFolds(t *testing.T) {
	w := newWorld(t, []byte("M\r\n"))
	cop := w.note(t, evidence.COP)
	for _, subject := range []string{
		strings.Repeat("Präambel zum Vertrag über die Lieferung ", 12),
		strings.Repeat("word ", 100),
		strings.Repeat("x", 1200),
		"looks =?utf-8?q?encoded?= but is not",
		"",
	} {
		raw, err := mailfmt.PostingReceipt(mailfmt.Receipt{Head: w.head(sender), Exchange: w.exchange(subject),
			Evidence: mailfmt.Evidence{Notes: []*evidence.Note{cop}}, Form: mailfmt.ReceiptSummary, Accepted: now})
		if err != nil {
			t.Fatal(err)
		}
		h, _ := readMail(t, raw) // checks header lines <= 78
		got, err := new(mime.WordDecoder).DecodeHeader(h.Get("Subject"))
		want := "Accepted: " + strings.TrimSpace(subject)
		if subject == "" {
			want = "Accepted: (no subject)"
		}
		if err != nil || got != want {
			t.Errorf("subject round trip:\n got %q\nwant %q", got, want)
		}
	}
}

func TestNotifyPolicySends(t *testing.T) {
	all := []mailfmt.Kind{mailfmt.KindNotification, mailfmt.KindPostingReceipt, mailfmt.KindDeliveryReceipt, mailfmt.KindWarning,
		mailfmt.KindNonDelivery, mailfmt.KindRefusal, mailfmt.KindRetractionReceipt, mailfmt.KindNonAcceptance}
	want := map[mailfmt.NotifyPolicy]string{
		mailfmt.NotifyStandard:      "notification posting-receipt delivery-receipt warning non-delivery refusal retraction-receipt non-acceptance",
		mailfmt.NotifyNoWarning:     "notification posting-receipt delivery-receipt non-delivery refusal retraction-receipt non-acceptance",
		mailfmt.NotifyFailuresOnly:  "notification warning non-delivery refusal non-acceptance",
		mailfmt.NotifyNoneForSender: "notification",
	}
	for _, p := range mailfmt.NotifyPolicies() {
		var got []string
		for _, k := range all {
			if p.Sends(k) {
				got = append(got, string(k))
			}
		}
		if strings.Join(got, " ") != want[p] {
			t.Errorf("%s sends %v, want %s", p, got, want[p])
		}
	}
}

// TestGolden keeps one composed mail of each kind in testdata/golden, so a change to what
// people receive shows in review. go test ./mailfmt -run Golden -update rewrites them.
func TestGolden(t *testing.T) {
	s := parse(t, readFiles(t, "testdata/submissions/*.eml")["multipart.eml"])
	w := newWorld(t, s.Message)
	mails := map[string][]byte{}
	add := func(name string, raw []byte, err error) {
		t.Helper()
		if err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		mails[name] = raw
	}
	n := notice(w, evidence.CEMIP)
	n.PasswordHint = s.Options.PasswordHint
	raw, err := mailfmt.Notification(n)
	add("notification-cem-ip.eml", raw, err)
	raw, err = mailfmt.Notification(notice(w, evidence.CEM))
	add("notification-cem.eml", raw, err)
	cop := w.note(t, evidence.COP)
	raw, err = mailfmt.PostingReceipt(mailfmt.Receipt{Head: w.head(sender), Exchange: w.exchange(s.Subject),
		Evidence: mailfmt.Evidence{Notes: []*evidence.Note{cop}, Bundle: w.bundle(t, cop)}, Form: mailfmt.ReceiptShort, Accepted: now, Attachments: s.Attachments})
	add("posting-receipt-short.eml", raw, err)
	rod, cod := w.note(t, evidence.ROD), w.note(t, evidence.CODIP)
	raw, err = mailfmt.DeliveryReceipt(mailfmt.Delivery{Head: w.head(sender), Exchange: w.exchange(s.Subject),
		Evidence: mailfmt.Evidence{Notes: []*evidence.Note{rod, cod}, Bundle: w.bundle(t, cop, rod, cod)}, Form: mailfmt.ReceiptFull,
		Delivered: now.Add(3 * time.Hour), Method: "password", Client: "192.0.2.7", Message: s.Message})
	add("delivery-receipt-full.eml", raw, err)
	ndn := w.note(t, evidence.NDN)
	raw, err = mailfmt.NonDelivery(mailfmt.Failure{Head: w.head(sender), Exchange: w.exchange(s.Subject),
		Evidence: mailfmt.Evidence{Notes: []*evidence.Note{ndn}}, Reason: "deadline", Time: w.deadline()})
	add("non-delivery.eml", raw, err)

	for name, raw := range mails {
		path := filepath.Join("testdata", "golden", name)
		if *update {
			if err := os.WriteFile(path, raw, 0o644); err != nil {
				t.Fatal(err)
			}
			continue
		}
		want, err := os.ReadFile(path)
		if err != nil {
			t.Fatalf("%v (run with -update to create it)", err)
		}
		if !bytes.Equal(raw, want) {
			t.Errorf("%s differs from the golden file (run with -update if the change is intended)", name)
		}
	}
}

// says reports whether text contains want, white space of either taken as one space: the text
// of a mail is wrapped.
func says(text []byte, want string) bool {
	return strings.Contains(strings.Join(strings.Fields(string(text)), " "), strings.Join(strings.Fields(want), " "))
}
