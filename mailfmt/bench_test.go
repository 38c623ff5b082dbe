package mailfmt_test

import (
	"encoding/base64"
	"fmt"
	"strings"
	"testing"

	"certmail/evidence"
	"certmail/mailfmt"
)

// richSubmission is a submission like those the agent certifies: about 10 KB, a UTF-8 text
// of some paragraphs and a base64 attachment, a password with a hint.
func richSubmission(b testing.TB) *mailfmt.Submission {
	b.Helper()
	para := "Gentile Bob, in allegato trovi l’offerta per la fornitura concordata: prezzi, tempi di consegna e condizioni di pagamento. " +
		"Ti chiedo di confermare entro venerdì, così possiamo pianificare la produzione del trimestre.\r\n\r\n"
	pdf := make([]byte, 5000)
	for i := range pdf {
		pdf[i] = byte(i * 7)
	}
	enc := base64.StdEncoding.EncodeToString(pdf)
	var lines []string
	for len(enc) > 76 {
		lines = append(lines, enc[:76])
		enc = enc[76:]
	}
	lines = append(lines, enc)
	raw := msg(
		"From: Alice <alice@a.example>",
		"To: Bob <bob@b.example>",
		"Subject: =?utf-8?q?Offerta_n=C2=B0_42_=E2=80=94_caff=C3=A8?=",
		"Certmail-Mode: cem-ip",
		"Certmail-Password: correct horse",
		"Certmail-Password-Hint: =?utf-8?q?the_horse_we_rode_in_M=C3=BCnchen?=",
		"MIME-Version: 1.0",
		"Content-Type: multipart/mixed; boundary=outer",
		"",
		"--outer",
		"Content-Type: text/plain; charset=utf-8",
		"Content-Transfer-Encoding: 8bit",
		"",
		strings.Repeat(para, 12)+"Alice",
		"--outer",
		"Content-Type: application/pdf",
		"Content-Disposition: attachment; filename=offerta-42.pdf",
		"Content-Transfer-Encoding: base64",
		"",
		strings.Join(lines, "\r\n"),
		"--outer--",
	)
	s, err := mailfmt.ParseSubmission(raw, mailfmt.Limits{}, now, mailfmt.Options{})
	if err != nil {
		b.Fatal(err)
	}
	if n := len(s.Message); n < 9000 || n > 11000 {
		b.Fatalf("the rich message is %d bytes, want about 10 KB", n)
	}
	return s
}

func BenchmarkNotification(b *testing.B) {
	s := richSubmission(b)
	w := newWorld(b, s.Message)
	for _, p := range []evidence.Protocol{evidence.CEMIP, evidence.CEM} {
		n := notice(w, p)
		n.PasswordHint = s.Options.PasswordHint
		b.Run(string(p), func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				if _, err := mailfmt.Notification(n); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

func BenchmarkPostingReceipt(b *testing.B) {
	s := richSubmission(b)
	w := newWorld(b, s.Message)
	cop := w.note(b, evidence.COP)
	ev := mailfmt.Evidence{Notes: []*evidence.Note{cop}, Bundle: w.bundle(b, cop)}
	for _, form := range []mailfmt.ReceiptForm{mailfmt.ReceiptFull, mailfmt.ReceiptShort} {
		r := mailfmt.Receipt{Head: w.head(sender), Exchange: w.exchange(s.Subject), Evidence: ev,
			Form: form, Accepted: now, Attachments: s.Attachments}
		b.Run(string(form), func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				if _, err := mailfmt.PostingReceipt(r); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

// BenchmarkParseSubmission parses plain messages of 10 KB and 100 KB, as the bench submits.
func BenchmarkParseSubmission(b *testing.B) {
	for _, size := range []int{10_000, 100_000} {
		line := strings.Repeat("certified ", 7) + "mail"
		var body []string
		for n := 0; n < size; n += len(line) + 2 {
			body = append(body, line)
		}
		raw := msg(append([]string{"From: Alice <alice@a.example>", "To: Bob <bob@b.example>",
			"Subject: the lease", "Message-ID: <lease-42@a.example>", ""}, body...)...)
		b.Run(fmt.Sprintf("%dKB", size/1000), func(b *testing.B) {
			b.SetBytes(int64(len(raw)))
			for b.Loop() {
				if _, err := mailfmt.ParseSubmission(raw, mailfmt.Limits{}, now, mailfmt.Options{}); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}
