package agent

import (
	"encoding/base32"
	"fmt"
	"io"
	"strings"
	"time"

	"certmail/evidence"
	"certmail/mailfmt"
)

// MIMEMails composes the agent's mails with package mailfmt: the Mails the running agent uses.
type MIMEMails struct {
	Domain string           // the agent's host name (Message-ID right side, key publisher)
	Now    func() time.Time // the date of each mail
	Rand   io.Reader        // Message-ID left sides
}

func (m MIMEMails) head(from, to string) (mailfmt.Head, error) {
	id := make([]byte, 15)
	if _, err := io.ReadFull(m.Rand, id); err != nil {
		return mailfmt.Head{}, fmt.Errorf("agent: message id: %w", err)
	}
	return mailfmt.Head{From: from, To: to, Date: m.Now(), Domain: m.Domain,
		ID: strings.ToLower(base32.StdEncoding.EncodeToString(id))}, nil
}

// Notification composes the message-waiting mail.
func (m MIMEMails) Notification(n Notice) ([]byte, error) {
	h, err := m.head(n.From, n.To)
	if err != nil {
		return nil, err
	}
	mn := mailfmt.Notice{Head: h, Label: n.Label, Protocol: n.Protocol, Sender: n.Sender, Deadline: n.Deadline,
		PickupURL: n.PickupURL, Password: n.Hint != "" || n.NeedPassword, PasswordHint: n.Hint}
	switch n.Protocol {
	case evidence.CEMIP:
		mn.Commitment = n.Commitment
	case evidence.CEM:
		mn.Message, mn.Content = n.Message, evidence.Sum(n.Message)
	}
	return mailfmt.Notification(mn)
}

// Receipt composes the mail that tells the sender about a step.
func (m MIMEMails) Receipt(r Receipt) ([]byte, error) {
	h, err := m.head(r.From, r.To)
	if err != nil {
		return nil, err
	}
	note, err := evidence.ParseNote(r.Note)
	if err != nil {
		return nil, fmt.Errorf("agent: receipt note: %w", err)
	}
	ex := mailfmt.Exchange{Label: r.Label, Protocol: note.Record.Protocol, Sender: r.Sender, Recipient: r.Recipient,
		Subject: r.Subject, Content: r.Content, Deadline: r.Deadline}
	if ex.Protocol == "" {
		ex.Protocol = evidence.CEMIP
	}
	ev := mailfmt.Evidence{Notes: []*evidence.Note{note}, Bundle: r.Bundle}
	form := mailfmt.ReceiptForm(r.Form)
	switch r.Kind {
	case ReceiptPosting:
		return mailfmt.PostingReceipt(mailfmt.Receipt{Head: h, Exchange: ex, Evidence: ev, Form: form, Accepted: r.Time, Attachments: r.Attachments})
	case ReceiptDelivery:
		d := mailfmt.Delivery{Head: h, Exchange: ex, Evidence: ev, Form: form, Delivered: r.Time, Message: r.Message}
		// The recipient's acceptance travels with the report: its COD, or the agent's DLV.
		if b, err := evidence.ParseBundle(r.Bundle); err == nil {
			for _, n := range b.Notes {
				switch n.Record.Type {
				case evidence.DLV:
					d.Method, d.Client = n.Record.Method, n.Record.Client
					d.Notes = append(d.Notes, n)
				case evidence.CODBasic, evidence.CODNSR, evidence.CODIP:
					d.Notes = append(d.Notes, n)
				}
			}
		}
		switch {
		case form == mailfmt.ReceiptSummary:
		case r.Message == nil:
			return nil, fmt.Errorf("agent: a %s delivery receipt needs the message", form)
		case form == mailfmt.ReceiptShort:
			if d.Attachments, err = mailfmt.AttachmentsOf(r.Message); err != nil {
				return nil, fmt.Errorf("agent: the attachments of %s: %w", r.Label, err)
			}
		}
		return mailfmt.DeliveryReceipt(d)
	case ReceiptWarning:
		return mailfmt.Warning(mailfmt.Delay{Head: h, Exchange: ex, Evidence: ev, Time: r.Time})
	case ReceiptNonDelivery:
		return mailfmt.NonDelivery(mailfmt.Failure{Head: h, Exchange: ex, Evidence: ev, Reason: r.Reason, Time: r.Time})
	case ReceiptRefusal:
		return mailfmt.Refusal(mailfmt.Refused{Head: h, Exchange: ex, Evidence: ev, Reason: r.Reason, Time: r.Time})
	case ReceiptNonAcceptance:
		return mailfmt.NonAcceptance(mailfmt.NotAccepted{Head: h, Exchange: ex, Evidence: ev, Reason: r.Reason, Detail: r.Detail, Time: r.Time})
	case ReceiptRetraction:
		return mailfmt.RetractionReceipt(mailfmt.Retracted{Head: h, Exchange: ex, Evidence: ev, Time: r.Time})
	}
	return nil, fmt.Errorf("agent: no mail for %s", r.Kind)
}
