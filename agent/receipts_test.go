package agent_test

import (
	"bytes"
	"context"
	"database/sql"
	"math/rand/v2"
	"path/filepath"
	"strings"
	"testing"

	"certmail/agent"
	"certmail/mailfmt"
	"certmail/store"
)

// withAttachment is a message with one attachment, offer.pdf, whose content is "%PDF-1.7 offer".
var withAttachment = []byte("From: alice@a.example\r\nTo: bob@b.example\r\nSubject: the offer\r\nMIME-Version: 1.0\r\n" +
	"Content-Type: multipart/mixed; boundary=b\r\n\r\n" +
	"--b\r\nContent-Type: text/plain\r\n\r\nThe offer is attached.\r\n" +
	"--b\r\nContent-Type: application/pdf\r\nContent-Disposition: attachment; filename=offer.pdf\r\nContent-Transfer-Encoding: base64\r\n\r\n" +
	"JVBERi0xLjcgb2ZmZXI=\r\n--b--\r\n")

// The receipt forms as PEC's: the posting receipt never carries M, and lists its attachments
// in the full and short forms; the delivery receipt carries M in the full form (stored once:
// the queued mail is kept without it), lists the attachments in the short form, and neither
// in the summary form.
func TestReceiptFormsOfPostingAndDelivery(t *testing.T) {
	sub, err := mailfmt.ParseSubmission(withAttachment, mailfmt.Limits{}, t0, mailfmt.Options{})
	if err != nil {
		t.Fatal(err)
	}
	if len(sub.Attachments) != 1 {
		t.Fatalf("attachments %+v", sub.Attachments)
	}
	listed := sub.Attachments[0].Hash.String()
	for _, form := range mailfmt.ReceiptForms() {
		t.Run(string(form), func(t *testing.T) {
			w := newWorld(t)
			ctx := context.Background()
			w.a = agent.New(w.id, w.st, w.blobs, agent.MIMEMails{Domain: "certmail.test", Now: w.clock.now, Rand: rand.NewChaCha8([32]byte{5})}, settings(), w.clock.now, nil)
			ps, err := w.a.Submit(ctx, agent.Submission{Sender: alice, Recipients: []string{bob}, Message: sub.Message,
				Subject: sub.Subject, Receipt: string(form), Attachments: sub.Attachments})
			if err != nil {
				t.Fatal(err)
			}
			mails := func() map[string]store.Outbound {
				var due []store.Outbound
				if err := w.st.View(ctx, func(tx store.Tx) (err error) { due, err = tx.DueOutbound(w.clock.now(), 100); return err }); err != nil {
					t.Fatal(err)
				}
				byKind := map[string]store.Outbound{}
				for _, m := range due {
					byKind[m.Kind] = m
					if err := w.a.Sent(ctx, m); err != nil {
						t.Fatal(err)
					}
				}
				return byKind
			}
			first := mails()
			posting, note := first["posting-receipt"], string(first["notification"].Data)
			if bytes.Contains(posting.Data, []byte("message/rfc822")) || bytes.Contains(posting.Data, sub.Message) {
				t.Errorf("the posting receipt carries M:\n%s", posting.Data)
			}
			if got := bytes.Contains(unwrapped(posting.Data), []byte(listed)); got != (form != mailfmt.ReceiptSummary) {
				t.Errorf("the posting receipt lists the attachment: %v", got)
			}

			i := strings.Index(note, "https://certmail.test/pickup/")
			if i < 0 {
				t.Fatalf("no pickup link:\n%s", note)
			}
			tok := note[i+len("https://certmail.test/pickup/"):][:43]
			if _, err := w.a.Accept(ctx, tok, agent.Acceptance{Client: "198.51.100.7"}); err != nil {
				t.Fatal(err)
			}
			delivery := mails()["delivery-receipt"].Data
			if got := bytes.Contains(delivery, sub.Message); got != (form == mailfmt.ReceiptFull) {
				t.Errorf("the delivery receipt carries M: %v", got)
			}
			if got := bytes.Contains(unwrapped(delivery), []byte(listed)); got != (form == mailfmt.ReceiptShort) {
				t.Errorf("the delivery receipt lists the attachment: %v", got)
			}

			// The database keeps each queued mail without the M it carries.
			db, err := sql.Open("sqlite", filepath.Join(w.dir, "certmail.db"))
			if err != nil {
				t.Fatal(err)
			}
			defer db.Close()
			var kept []byte
			if err := db.QueryRow(`SELECT d.data FROM outbound o JOIN outbound_data d ON d.id = o.id WHERE o.label = ? AND o.kind = 'delivery-receipt'`,
				ps[0].Label.String()).Scan(&kept); err != nil {
				t.Fatal(err)
			}
			if bytes.Contains(kept, sub.Message) {
				t.Error("the stored delivery receipt holds a second copy of M")
			}
		})
	}
}

// unwrapped is a mail with the soft line breaks of its quoted-printable text undone.
func unwrapped(mail []byte) []byte { return bytes.ReplaceAll(mail, []byte("=\r\n"), nil) }
