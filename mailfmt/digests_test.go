package mailfmt_test

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"certmail/evidence"
	"certmail/mailfmt"
)

// composedMails composes mails of every kind through each of their branches (protocols, forms,
// passwords, reasons, evidence with and without a bundle) and with awkward values (long,
// non-ASCII and encoded-looking subjects, a display name, HTML in a hint), by name.
func composedMails(t *testing.T) map[string][]byte {
	t.Helper()
	rich := richSubmission(t)
	multi := parse(t, readFiles(t, "testdata/submissions/*.eml")["multipart.eml"])
	out := map[string][]byte{}
	add := func(name string, raw []byte, err error) {
		t.Helper()
		if err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		if _, dup := out[name]; dup {
			t.Fatalf("two mails named %s", name)
		}
		out[name] = raw
	}

	for _, m := range []*mailfmt.Submission{rich, multi} {
		w := newWorld(t, m.Message)
		size := fmt.Sprintf("%dB", len(m.Message))
		for _, p := range []evidence.Protocol{evidence.CEMIP, evidence.CEMNSR, evidence.CEM} {
			for _, pw := range []string{"none", "password", "hint", "html-hint"} {
				n := notice(w, p)
				n.Password, n.PasswordHint = pw != "none", ""
				switch pw {
				case "hint":
					n.PasswordHint = m.Options.PasswordHint
				case "html-hint":
					n.PasswordHint = `<b>"bold" & 'quoted'</b> 1+1 ` + strings.Repeat("long hint ", 30)
				}
				raw, err := mailfmt.Notification(n)
				add(fmt.Sprintf("notification/%s/%s/%s", size, p, pw), raw, err)
			}
			n := notice(w, p)
			n.Name, n.InReplyTo = "Posta Certificata “Ünïcode” <agent>", "<c0ffee.1@a.example>"
			n.PickupURL = "https://mail.a.example/pickup/Zq3vT0kEn?x=1&y='2'+3#%41"
			raw, err := mailfmt.Notification(n)
			add(fmt.Sprintf("notification/%s/%s/name-reply-query", size, p), raw, err)
		}

		cop := w.note(t, evidence.COP)
		subjects := map[string]string{
			"parsed":  m.Subject,
			"empty":   "",
			"ascii":   "Quarterly report",
			"encoded": "looks =?utf-8?q?encoded?= but is not",
			"long":    strings.Repeat("Präambel zum Vertrag über die Lieferung ", 12),
			"words":   strings.Repeat("word ", 100),
			"x1200":   strings.Repeat("x", 1200),
			"control": "Hello\r\nBcc: eve@e.example\r\n\r\nbody\x00\t€",
		}
		for sname, subject := range subjects {
			for _, p := range []evidence.Protocol{evidence.CEMIP, evidence.CEM} {
				for _, form := range mailfmt.ReceiptForms() {
					for _, bundle := range []bool{false, true} {
						ex := w.exchange(subject)
						ex.Protocol = p
						ev := mailfmt.Evidence{Notes: []*evidence.Note{cop}}
						if bundle {
							ev.Bundle = w.bundle(t, cop)
						}
						r := mailfmt.Receipt{Head: w.head(sender), Exchange: ex, Evidence: ev, Form: form, Accepted: now,
							Attachments: m.Attachments}
						raw, err := mailfmt.PostingReceipt(r)
						add(fmt.Sprintf("posting-receipt/%s/%s/%s/%s/bundle=%v", size, sname, p, form, bundle), raw, err)
						if form != mailfmt.ReceiptSummary && !bundle {
							r.Attachments = nil
							raw, err := mailfmt.PostingReceipt(r)
							add(fmt.Sprintf("posting-receipt/%s/%s/%s/%s/no-attachments", size, sname, p, form), raw, err)
						}
					}
				}
			}
		}
		// Two notes of one type are named cop.note and cop-2.note.
		raw, err := mailfmt.PostingReceipt(mailfmt.Receipt{Head: w.head(sender), Exchange: w.exchange(m.Subject),
			Evidence: mailfmt.Evidence{Notes: []*evidence.Note{cop, cop}, Bundle: w.bundle(t, cop)}, Form: mailfmt.ReceiptSummary, Accepted: now})
		add(fmt.Sprintf("posting-receipt/%s/two-cops", size), raw, err)

		rod, cod, dlv := w.note(t, evidence.ROD), w.note(t, evidence.CODIP), w.note(t, evidence.DLV)
		for _, form := range mailfmt.ReceiptForms() {
			for _, signed := range []bool{false, true} {
				notes := []*evidence.Note{rod, dlv}
				if signed {
					notes = []*evidence.Note{rod, cod}
				}
				raw, err := mailfmt.DeliveryReceipt(mailfmt.Delivery{Head: w.head(sender), Exchange: w.exchange(m.Subject),
					Evidence: mailfmt.Evidence{Notes: notes, Bundle: w.bundle(t, append([]*evidence.Note{cop}, notes...)...)}, Form: form,
					Delivered: now.Add(3 * time.Hour), Method: "password", Client: "192.0.2.7", Message: m.Message, Attachments: m.Attachments})
				add(fmt.Sprintf("delivery-receipt/%s/%s/signed=%v", size, form, signed), raw, err)
			}
		}
		raw, err = mailfmt.Warning(mailfmt.Delay{Head: w.head(sender), Exchange: w.exchange(m.Subject),
			Evidence: mailfmt.Evidence{Notes: []*evidence.Note{w.note(t, evidence.WRN)}}, Time: now})
		add(fmt.Sprintf("warning/%s", size), raw, err)
		for _, reason := range []string{"deadline", "not-accepted", "relay", "bounced", "refused", "other"} {
			raw, err := mailfmt.NonDelivery(mailfmt.Failure{Head: w.head(sender), Exchange: w.exchange(m.Subject),
				Evidence: mailfmt.Evidence{Notes: []*evidence.Note{w.note(t, evidence.NDN)}}, Reason: reason,
				Detail: "550 5.1.1 <bob@b.example>: mailbox unknown\r\n" + strings.Repeat("é", 600), Time: w.deadline()})
			add(fmt.Sprintf("non-delivery/%s/%s", size, reason), raw, err)
		}
		for _, reason := range []string{"refused", "", "not-mine \"quoted\"\n"} {
			raw, err := mailfmt.Refusal(mailfmt.Refused{Head: w.head(sender), Exchange: w.exchange(m.Subject),
				Evidence: mailfmt.Evidence{Notes: []*evidence.Note{w.note(t, evidence.REJ)}}, Reason: reason, Time: now})
			add(fmt.Sprintf("refusal/%s/%q", size, reason), raw, err)
		}
		raw, err = mailfmt.RetractionReceipt(mailfmt.Retracted{Head: w.head(sender), Exchange: w.exchange(m.Subject),
			Evidence: mailfmt.Evidence{Notes: []*evidence.Note{w.note(t, evidence.RTR)}}, Time: now})
		add(fmt.Sprintf("retraction/%s", size), raw, err)
		for _, code := range []string{mailfmt.CodeSize, mailfmt.CodeMIME, mailfmt.CodeFrom, mailfmt.CodeRecipients, mailfmt.CodeOption,
			"virus", "policy", "sender", "other"} {
			raw, err := mailfmt.NonAcceptance(mailfmt.NotAccepted{Head: w.head(sender), Exchange: w.exchange(m.Subject),
				Evidence: mailfmt.Evidence{Notes: []*evidence.Note{w.note(t, evidence.NAC)}}, Reason: code,
				Detail: strings.Repeat("the boundary \"zz\" never appears; ", 40), Time: now})
			add(fmt.Sprintf("non-acceptance/%s/%s", size, code), raw, err)
		}
	}
	return out
}

// TestComposedDigests pins every mail of composedMails by its SHA-256 in
// testdata/composed.sha256: where TestGolden shows one mail of a kind for review, this checks
// that a change meant to alter no byte of any mail (how they are written, not what they say)
// alters none. go test ./mailfmt -run ComposedDigests -update rewrites the file.
func TestComposedDigests(t *testing.T) {
	mails := composedMails(t)
	path := filepath.Join("testdata", "composed.sha256")
	var names []string
	for name := range mails {
		names = append(names, name)
	}
	slices.Sort(names)
	if *update {
		var b bytes.Buffer
		for _, name := range names {
			sum := sha256.Sum256(mails[name])
			fmt.Fprintf(&b, "%x  %s\n", sum, name)
		}
		if err := os.WriteFile(path, b.Bytes(), 0o644); err != nil {
			t.Fatal(err)
		}
		return
	}
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatalf("%v (run with -update to create it)", err)
	}
	want := map[string]string{}
	for _, line := range strings.Split(strings.TrimSuffix(string(data), "\n"), "\n") {
		sum, name, ok := strings.Cut(line, "  ")
		if !ok {
			t.Fatalf("%s: malformed line %q", path, line)
		}
		want[name] = sum
	}
	if len(want) != len(mails) {
		t.Errorf("%s has %d digests for %d mails", path, len(want), len(mails))
	}
	for _, name := range names {
		sum := sha256.Sum256(mails[name])
		if got := hex.EncodeToString(sum[:]); got != want[name] {
			t.Errorf("%s differs from the mail pinned in %s (run with -update if the change is intended):\n%s", name, path, mails[name])
		}
	}
}
