package agent

import (
	"context"
	"fmt"
	"strings"
	"unicode"
	"unicode/utf8"

	"certmail/evidence"
	"certmail/store"
)

// Refusal is a submission the agent will not certify, from a sender it authenticated: what the
// signed notice of non-acceptance (NAC; PEC's avviso di non accettazione) records.
type Refusal struct {
	Sender   string            // the authenticated user
	Subject  string            // the refused message's subject, when it could be read
	Protocol evidence.Protocol // the mode asked for; the agent's default when none or not served
	Reason   string            // a code word: mailfmt's Error codes, or from, recipients, option…
	Detail   string            // what is wrong and what to do, as the SMTP or HTTP reply says it
}

// NotAccept signs and stores a NAC under a fresh label and queues the notice of non-acceptance
// to the sender, with the NAC and its bundle, in one transaction. The caller refuses the
// submission (SMTP 5xx, HTTP 4xx) whatever NotAccept returns: the NAC is the sender's evidence of
// the refusal, not a condition of it.
func (a *Agent) NotAccept(ctx context.Context, r Refusal) (*evidence.Note, error) {
	now := evidence.CanonicalTime(a.now())
	if err := evidence.CheckAddress(r.Sender); err != nil {
		return nil, refuse(KindInvalid, "sender: %v", err)
	}
	if !r.Protocol.IsCEM() {
		r.Protocol = evidence.CEMIP
	}
	l, err := evidence.NewLabelAt(a.rand, now)
	if err != nil {
		return nil, err
	}
	rec := &evidence.Record{Type: evidence.NAC, Label: l, Protocol: r.Protocol, Agent: a.Name(), Sender: r.Sender,
		Reason: reasonWord(r.Reason), Detail: oneLineText(r.Detail, "not accepted"), Time: now}
	var n *evidence.Note
	err = a.update(ctx, func(tx store.Tx) error {
		var err error
		n, err = a.sign(tx, rec)
		if err != nil {
			return err
		}
		b, err := a.bundleIn(tx, store.Item{Label: l})
		if err != nil {
			return err
		}
		enc, err := b.Encode()
		if err != nil {
			return fmt.Errorf("agent: bundle for NAC: %w", err)
		}
		data, err := a.mails.Receipt(Receipt{Kind: ReceiptNonAcceptance, From: a.settings.Bounce, To: r.Sender, Sender: r.Sender,
			Subject: r.Subject, Label: l, Time: now, Reason: rec.Reason, Detail: rec.Detail, Note: n.Bytes(), Bundle: enc})
		if err != nil {
			return fmt.Errorf("agent: compose %s: %w", ReceiptNonAcceptance, err)
		}
		return a.enqueue(tx, l, string(ReceiptNonAcceptance), r.Sender, data, now)
	})
	if err != nil {
		return nil, err
	}
	a.queued()
	return n, nil
}

// SenderBundle is Bundle for the sender of l only: the sender its certificate of posting (or
// its NAC) names. To anyone else a label is unknown.
func (a *Agent) SenderBundle(ctx context.Context, sender string, l evidence.Label, message bool) (*evidence.Bundle, error) {
	b, err := a.Bundle(ctx, l, message)
	if err != nil {
		return nil, err
	}
	for _, n := range b.Notes {
		if t := n.Record.Type; (t == evidence.COP || t == evidence.NAC) && n.Record.Sender == sender {
			return b, nil
		}
	}
	return nil, refuse(KindNotFound, "no item with label %s", l)
}

// reasonWord makes a reason code a NAC's token: lower-case letters, digits and hyphens.
func reasonWord(s string) string {
	w := strings.Map(func(r rune) rune {
		switch {
		case r >= 'a' && r <= 'z', r >= '0' && r <= '9', r == '-':
			return r
		case r >= 'A' && r <= 'Z':
			return unicode.ToLower(r)
		}
		return '-'
	}, s)
	if len(w) > 64 {
		w = w[:64]
	}
	if w = strings.Trim(w, "-"); w == "" {
		return "refused"
	}
	return w
}

// oneLineText makes s a note's text field: one line of at most 1,000 bytes, no control
// characters, never empty (fallback then).
func oneLineText(s, fallback string) string {
	s = strings.Map(func(r rune) rune {
		if unicode.IsControl(r) || r == '\u2028' || r == '\u2029' || r == '\ufeff' || r == utf8.RuneError {
			return ' '
		}
		return r
	}, s)
	s = strings.Join(strings.Fields(s), " ")
	for len(s) > 1000 {
		_, size := utf8.DecodeLastRuneInString(s)
		s = s[:len(s)-size]
	}
	if s = strings.TrimSpace(s); s == "" {
		return fallback
	}
	return s
}
