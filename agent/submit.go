package agent

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"strings"
	"time"

	"certmail/evidence"
	"certmail/mailfmt"
	"certmail/password"
	"certmail/store"
)

// Submission is a message a sender hands in for certification, already parsed and checked by
// the interface it came through (SMTP, HTTP, CLI).
type Submission struct {
	Sender     string   // the authenticated user
	Recipients []string // where it goes (SMTP: the envelope's RCPT TO)
	Message    []byte   // M: the exact bytes stored, hashed and delivered
	Subject    string   // for the sender's own pages
	Protocol   evidence.Protocol
	Deadline   time.Time // zero: the default deadline
	Receipt    string    // full | short | summary
	Notify     string
	Password   string // message password, "" for none; only its hash is kept
	Hint       string
	Client     string // submitting client's address, for the log
	// MessageID is M's Message-ID field, "" when none. With it, the same sender handing in the
	// same message again — a client retrying after a reply it never got, or a temporary
	// error given after the step was stored — gets the items of the first time, not new ones.
	MessageID string
	// Attachments are M's attachments as mailfmt.ParseSubmission lists them: the posting
	// receipt lists them in the full and short forms.
	Attachments []mailfmt.Attachment
}

// Posting is what a sender gets back for one recipient: the label and the signed COP.
type Posting struct {
	Label     evidence.Label
	Recipient string
	COP       *evidence.Note
}

// Submit accepts a message for each recipient: in one transaction per submission it stores M
// and creates each recipient's item with a fresh label and pickup token, signs and
// stores the COP (seed 001 §4.3 steps 1–2), sets the warning and deadline timers and queues the
// notification and the posting receipt. Only when Submit returns without error may the caller
// acknowledge (SMTP 250, HTTP 201).
//
// The sender's account and the items of the same message handed in before are read in that
// transaction, on the writer, rather than in a snapshot of their own first: a read-only
// transaction after another's commit starts with an empty page cache, which cost 6 % of the
// agent's processor at the peak (BENCHMARKS.md), and in the writer the check and the write see
// the same state. A submission that fails a check before it is prepared takes the slow way,
// where the account is read first (submitRefused).
func (a *Agent) Submit(ctx context.Context, s Submission) ([]Posting, error) {
	a.submitting.Add(1)
	defer a.submitting.Add(-1)
	now := evidence.CanonicalTime(a.now())
	content := evidence.Sum(s.Message)
	key := submissionKey(s, content)
	err := a.checkSubmission(&s, now)
	if err == nil {
		err = a.takingNew()
	}
	var posts []*posting
	if err == nil {
		posts, err = a.preparePosts(s, content, key, now)
	}
	if err != nil {
		return a.submitRefused(ctx, s, key, err)
	}
	again := key == "" // true: no need to look for the items of an earlier handing-in
	for {
		var before []store.Item
		err = a.update(ctx, func(tx store.Tx) error {
			u, err := tx.User(s.Sender)
			if err := a.checkAccount(s.Sender, u, err); err != nil {
				return err
			}
			if !again {
				if before, err = tx.ItemsBySubmission(key); err != nil {
					return err
				}
				if len(before) > 0 {
					return errHandedInBefore
				}
			}
			if err := tx.PutMessage(content, now, s.Message); err != nil {
				return err
			}
			for _, p := range posts {
				if err := p.write(tx); err != nil {
					return err
				}
			}
			return nil
		})
		if !errors.Is(err, errHandedInBefore) {
			break
		}
		if postings, err := a.resubmitted(ctx, s, before); postings != nil || err != nil {
			return postings, err
		}
		again = true // the same message to other recipients: new items
	}
	if err != nil {
		return nil, err
	}
	postings := make([]Posting, len(posts))
	for i, p := range posts {
		postings[i] = Posting{Label: p.item.Label, Recipient: p.item.Recipient, COP: p.cop}
	}
	if a.settings.Outbox != nil {
		for _, p := range posts {
			a.settings.Outbox.Hand(p.mails...)
		}
	} else {
		a.queued()
	}
	return postings, nil
}

// errHandedInBefore ends a submission's transaction, writing nothing, when the same message
// from the same sender is stored already (submissionKey).
var errHandedInBefore = errors.New("agent: the message was handed in before")

// submitRefused answers a submission that failed err before its transaction, as if the
// sender's account had been checked first: a stranger or a disabled account is forbidden (and
// no NAC names it), a refused submission is recorded with a NAC, and while new items are not
// taken a message handed in before still gets its items.
func (a *Agent) submitRefused(ctx context.Context, s Submission, key string, err error) ([]Posting, error) {
	var u store.User
	var before []store.Item
	verr := a.st.View(ctx, func(tx store.Tx) (err error) {
		if u, err = tx.User(s.Sender); err != nil || key == "" {
			return err
		}
		before, err = tx.ItemsBySubmission(key)
		return err
	})
	if aerr := a.checkAccount(s.Sender, u, verr); aerr != nil {
		return nil, aerr
	}
	if e := (*Error)(nil); errors.As(err, &e) && e.Reason != "" {
		return nil, a.notAccepted(ctx, s, err)
	}
	if len(before) > 0 {
		if postings, rerr := a.resubmitted(ctx, s, before); postings != nil || rerr != nil {
			return postings, rerr
		}
	}
	return nil, err
}

// SubmissionsUnderWay is how many Submits have begun and not returned: the store's commit
// delay waits for them only when there are enough (sqlite.Store.SetCommitDelay).
func (a *Agent) SubmissionsUnderWay() int { return int(a.submitting.Load()) }

// checkAccount checks that sender may submit, from its account u (or the error reading it).
func (a *Agent) checkAccount(sender string, u store.User, err error) error {
	switch {
	case errors.Is(err, store.ErrNotFound):
		return refuse(KindForbidden, "%s has no account at %s", sender, a.Name())
	case err != nil:
		return err
	case u.Disabled:
		return refuse(KindForbidden, "the account %s is disabled", sender)
	}
	return nil
}

// checkSubmission checks s, whatever the sender's account, and fills in its defaults.
func (a *Agent) checkSubmission(s *Submission, now time.Time) error {
	if len(s.Recipients) == 0 {
		return refuseSubmission("recipients", "no recipient")
	}
	seen := map[string]bool{}
	for _, r := range s.Recipients {
		if err := evidence.CheckAddress(r); err != nil {
			return refuseSubmission("recipients", "recipient: %v", err)
		}
		if seen[strings.ToLower(r)] {
			return refuseSubmission("recipients", "recipient %s named twice", r)
		}
		seen[strings.ToLower(r)] = true
	}
	if s.Protocol == "" {
		s.Protocol = evidence.CEMIP
	}
	if !s.Protocol.IsCEM() {
		return refuseSubmission("option", "mode %s is not served by this agent (cem, cem-nsr or cem-ip)", s.Protocol)
	}
	if s.Deadline.IsZero() {
		s.Deadline = now.Add(a.settings.DefaultDeadline)
	}
	s.Deadline = evidence.CanonicalTime(s.Deadline)
	if d := s.Deadline.Sub(now); d < a.settings.MinDeadline || d > a.settings.MaxDeadline {
		return refuseSubmission("option", "deadline %s is %s away; this agent accepts between %s and %s",
			evidence.FormatTime(s.Deadline), d.Round(time.Second), a.settings.MinDeadline, a.settings.MaxDeadline)
	}
	if s.Receipt == "" {
		s.Receipt = "full"
	}
	return nil
}

// refuseSubmission is a failed check of a submission from a known, enabled sender: the agent
// records it with a NAC (code is the NAC's reason).
func refuseSubmission(code, format string, args ...any) error {
	return &Error{Kind: KindInvalid, Message: fmt.Sprintf(format, args...), Reason: code}
}

// notAccepted records err with a NAC when it is a refused submission, and returns err with the
// NAC's label; a NAC that cannot be made leaves the refusal as it was, for the sender must hear it.
func (a *Agent) notAccepted(ctx context.Context, s Submission, err error) error {
	var e *Error
	if !errors.As(err, &e) || e.Reason == "" {
		return err
	}
	n, nerr := a.NotAccept(ctx, Refusal{Sender: s.Sender, Subject: s.Subject, Protocol: s.Protocol, Reason: e.Reason, Detail: e.Message})
	if nerr != nil {
		return err
	}
	e.NAC = n.Record.Label
	return e
}

// preparePosts hashes the message password and prepares each recipient's posting. Everything
// that needs no transaction — labels, tokens, the signed COPs, the composed notifications and
// receipts — is done here, so that the writer, which commits concurrent submissions together,
// only writes rows. Nothing leaves the agent before the commit.
func (a *Agent) preparePosts(s Submission, content evidence.Hash, key string, now time.Time) ([]*posting, error) {
	var pwHash string
	if s.Password != "" {
		var err error
		if pwHash, err = password.Hash(s.Password, password.Default, a.rand); err != nil {
			return nil, refuseSubmission("option", "message password: %v", err)
		}
	}
	if key == "" {
		submission, err := evidence.NewLabelAt(a.rand, now)
		if err != nil {
			return nil, err
		}
		key = submission.String()
	}
	posts := make([]*posting, len(s.Recipients))
	var err error
	for i, rcpt := range s.Recipients {
		if posts[i], err = a.preparePost(s, rcpt, content, pwHash, key, now); err != nil {
			return nil, err
		}
	}
	return posts, nil
}

// posting is one recipient's item with everything its posting writes.
type posting struct {
	item   store.Item
	cop    *evidence.Note
	timers []store.Timer
	mails  []store.Outbound
}

// write stores the posting in tx.
func (p *posting) write(tx store.Tx) error {
	if err := tx.InsertItem(p.item); err != nil {
		return err
	}
	if _, err := tx.AddEvidence(p.item.Label, p.cop); err != nil {
		return err
	}
	for _, t := range p.timers {
		if err := tx.SetTimer(t); err != nil {
			return err
		}
	}
	for i, m := range p.mails {
		stored, err := tx.Enqueue(m) // as given, with its ID: handed over after the commit
		if err != nil {
			return err
		}
		p.mails[i] = stored
	}
	return nil
}

// preparePost makes one recipient's item, signs its COP (seed 001 §4.3 steps 1–2) and composes
// its notification and posting receipt, ready to be written.
func (a *Agent) preparePost(s Submission, rcpt string, content evidence.Hash, pwHash, submission string, now time.Time) (*posting, error) {
	l, err := evidence.NewLabelAt(a.rand, now)
	if err != nil {
		return nil, err
	}
	tok, tokHash, err := a.newToken(now)
	if err != nil {
		return nil, err
	}
	it := store.Item{
		Label: l, Submission: submission, Protocol: s.Protocol, Sender: s.Sender, Recipient: rcpt,
		Subject: s.Subject, Content: content, Commitment: evidence.Commitment(l, s.Message), Size: int64(len(s.Message)),
		Deadline: s.Deadline, Receipt: s.Receipt, Notify: s.Notify, PasswordHash: pwHash, PasswordHint: s.Hint,
		TokenHash: tokHash, State: store.StatePosted, Submitted: now, Updated: now,
	}
	cop, err := evidence.Sign(&evidence.Record{Type: evidence.COP, Label: l, Protocol: s.Protocol, Agent: a.Name(),
		Sender: s.Sender, Recipient: rcpt, Content: content, Deadline: s.Deadline, Time: now}, a.id.Signer)
	if err != nil {
		return nil, fmt.Errorf("agent: sign %s: %w", evidence.COP, err)
	}
	p := &posting{item: it, cop: cop}
	warn := now.Add(time.Duration(float64(s.Deadline.Sub(now)) * a.settings.WarnAt))
	p.timers = []store.Timer{{Label: l, Kind: timerWarn, Due: warn}, {Label: l, Kind: timerDeadline, Due: closing(now, s.Deadline)}}
	if next, ok := a.settings.Peers.route(rcpt); ok && next != a.Name() {
		// A trusted peer serves the recipient's domain: relay the item to it (seed 001 §4.3
		// step 3) rather than notify the recipient; the recipient's pickup is the peer's.
		p.item.Next, p.item.TokenHash = next, evidence.Hash{}
		p.timers = append(p.timers, store.Timer{Label: l, Kind: timerRelay, Due: relayBy(now, s.Deadline)})
		m, err := a.relayMail(p.item, []*evidence.Note{cop}, s.Message, now)
		if err != nil {
			return nil, err
		}
		p.mails = append(p.mails, m)
	} else {
		notice := Notice{From: a.settings.Bounce, To: rcpt, Sender: s.Sender, Label: l, Protocol: s.Protocol,
			Commitment: it.Commitment, Deadline: closing(now, s.Deadline), PickupURL: a.PickupURL(tok), NeedPassword: pwHash != "", Hint: s.Hint}
		if s.Protocol == evidence.CEM {
			notice.Message = s.Message // seed 001 §4.4 step 5 (cem): Pn -> B: L, M
		}
		data, err := a.mails.Notification(notice)
		if err != nil {
			return nil, fmt.Errorf("agent: compose notification: %w", err)
		}
		p.mails = append(p.mails, a.outbound(l, kindNotification, rcpt, data, now))
	}
	// The posting receipt carries the bundle as it will stand once the posting is stored: the
	// agent's key and the COP, as bundleIn would read them back.
	b := &evidence.Bundle{Label: l}
	b.AddKey(a.id.Verifier)
	b.Notes = []*evidence.Note{cop}
	rdata, err := a.composeReceipt(it, ReceiptPosting, cop, b, "", now, nil, s.Attachments)
	if err != nil {
		return nil, err
	}
	p.mails = append(p.mails, a.outbound(l, string(ReceiptPosting), it.Sender, rdata, now))
	if a.settings.Outbox != nil {
		for i, m := range p.mails {
			p.mails[i] = a.settings.Outbox.Claim(m) // handed over after the commit (Submit)
		}
	}
	return p, nil
}

// Outbound kinds the agent queues.
const (
	kindNotification = "notification"
)

// closing is when an item posted at submitted with deadline T stops taking acceptances: a lead
// before T, so that the deadline timer fires and its NDN is signed by T even when the timer
// loop (one tick a second) runs late (seed 001 §4.6: the agent must report by T). The lead is a
// twentieth of the time allowed, at least 2 s and at most a minute, and never more than half.
func closing(submitted, deadline time.Time) time.Time {
	window := deadline.Sub(submitted)
	lead := min(max(window/20, 2*time.Second), time.Minute, window/2)
	return deadline.Add(-lead)
}

// Timer kinds.
const (
	timerWarn     = "warn"
	timerDeadline = "deadline"
)

func (a *Agent) enqueue(tx store.Tx, l evidence.Label, kind, to string, data []byte, now time.Time) error {
	_, err := tx.Enqueue(a.outbound(l, kind, to, data, now))
	return err
}

// outbound is a mail to queue, due now.
func (a *Agent) outbound(l evidence.Label, kind, to string, data []byte, now time.Time) store.Outbound {
	return store.Outbound{Label: l, Kind: kind, From: a.settings.Bounce, To: to, Data: data,
		State: store.OutQueued, NextAttempt: now, Created: now, Updated: now}
}

// receipt queues the mail that tells the sender about a step, with the step's note and the
// bundle as it stands in tx (the step's own note included). m is M for a delivery receipt
// (receiptBody), and empty for the others.
func (a *Agent) receipt(tx store.Tx, it store.Item, kind ReceiptKind, n *evidence.Note, reason string, now time.Time, m body) error {
	b, err := a.bundleIn(tx, it)
	if err != nil {
		return err
	}
	data, err := a.composeReceipt(it, kind, n, b, reason, now, m.m, nil)
	if err != nil {
		return err
	}
	out := a.outbound(it.Label, string(kind), it.Sender, data, now)
	if m.stored && len(m.m) > 0 {
		// A full receipt carries M verbatim: the store keeps it without, and puts M back
		// from the stored body when it is sent.
		if at := bytes.Index(data, m.m); at >= 0 {
			out.Message, out.MessageTime, out.MessageAt = it.Content, it.Submitted, at
		}
	}
	_, err = tx.Enqueue(out)
	return err
}

// receiptBody reads M for the delivery receipt of item it, before the step's transaction so
// that the writer, which commits concurrent steps together, does not read it: the full form
// carries M, the short form lists its attachments, and the summary form needs nothing.
func (a *Agent) receiptBody(ctx context.Context, it store.Item) (body, error) {
	if it.Receipt == string(mailfmt.ReceiptSummary) {
		return body{}, nil
	}
	b, err := a.body(ctx, it)
	if err != nil {
		return body{}, fmt.Errorf("agent: message of %s for its delivery receipt: %w", it.Label, err)
	}
	return b, nil
}

// composeReceipt composes the mail that tells the sender about a step, with bundle b: message
// is M for a delivery receipt, atts M's attachments for a posting receipt (see Receipt).
func (a *Agent) composeReceipt(it store.Item, kind ReceiptKind, n *evidence.Note, b *evidence.Bundle, reason string, now time.Time, message []byte, atts []mailfmt.Attachment) ([]byte, error) {
	enc, err := b.Encode()
	if err != nil {
		return nil, fmt.Errorf("agent: bundle for receipt: %w", err)
	}
	r := Receipt{Kind: kind, From: a.settings.Bounce, To: it.Sender, Sender: it.Sender, Recipient: it.Recipient, Subject: it.Subject,
		Label: it.Label, Content: it.Content, Deadline: it.Deadline, Time: now, Reason: reason, Form: it.Receipt,
		Note: n.Bytes(), Bundle: enc, Message: message, Attachments: atts}
	data, err := a.mails.Receipt(r)
	if err != nil {
		return nil, fmt.Errorf("agent: compose %s: %w", kind, err)
	}
	return data, nil
}

// bundleIn builds the bundle of an item from what tx sees (without the message), with the keys
// of the agents that signed its notes. When the recipient signed a certificate of delivery here,
// the KEY record that bound its key comes first; one that came with a peer's report is among
// the item's notes.
func (a *Agent) bundleIn(tx store.Tx, it store.Item) (*evidence.Bundle, error) {
	evs, err := tx.Evidence(it.Label)
	if err != nil {
		return nil, err
	}
	b := &evidence.Bundle{Label: it.Label}
	b.AddKey(a.id.Verifier)
	for _, e := range evs {
		n, err := evidence.ParseNote(e.Note)
		if err != nil {
			return nil, fmt.Errorf("agent: stored note %d: %w", e.Seq, err)
		}
		b.Notes = append(b.Notes, n)
		for _, name := range n.Record.SignerNames() {
			if k, ok := a.settings.Peers.Key(name); ok && name != a.Name() {
				b.AddKey(k)
			}
		}
		if n.Record.Type == evidence.KEY {
			b.AddKey(n.Record.Key)
			continue
		}
		if t := n.Record.Type; (t == evidence.CODBasic || t == evidence.CODNSR || t == evidence.CODIP) && it.Next == "" {
			if err := addKeyRecord(tx, b, it.Recipient); err != nil {
				return nil, err
			}
		}
	}
	return b, nil
}

// addKeyRecord puts the KEY records binding the recipient's keys at the front of b.
func addKeyRecord(tx store.Tx, b *evidence.Bundle, recipient string) error {
	keys, err := tx.Evidence(evidence.Label{})
	if err != nil {
		return err
	}
	var found []*evidence.Note
	for _, e := range keys {
		n, err := evidence.ParseNote(e.Note)
		if err != nil {
			return fmt.Errorf("agent: stored key record %d: %w", e.Seq, err)
		}
		if n.Record.Type == evidence.KEY && n.Record.Subject == recipient {
			found = append(found, n)
			b.AddKey(n.Record.Key)
		}
	}
	b.Notes = append(found, b.Notes...)
	return nil
}

// submissionKey names a submission by its sender, Message-ID and content, "" without a
// Message-ID: the same key is the same message handed in again.
func submissionKey(s Submission, content evidence.Hash) string {
	if s.MessageID == "" {
		return ""
	}
	h := sha256.Sum256([]byte("certmail submission\n" + strings.ToLower(s.Sender) + "\n" + s.MessageID + "\n" + content.String()))
	return "msg-" + hex.EncodeToString(h[:16])
}

// resubmitted answers a submission made before, whose items are items, with the postings made
// then (their notes reach the log as every stored note does). It returns nil postings when that
// submission named other recipients.
func (a *Agent) resubmitted(ctx context.Context, s Submission, items []store.Item) ([]Posting, error) {
	if len(items) != len(s.Recipients) {
		return nil, nil
	}
	for i, it := range items {
		if !strings.EqualFold(it.Recipient, s.Recipients[i]) || it.Sender != s.Sender {
			return nil, nil
		}
	}
	var postings []Posting
	err := a.st.View(ctx, func(tx store.Tx) error {
		for _, it := range items {
			evs, err := tx.Evidence(it.Label)
			if err != nil {
				return err
			}
			var cop *evidence.Note
			for _, e := range evs {
				if e.Type == evidence.COP && cop == nil {
					if cop, err = evidence.ParseNote(e.Note); err != nil {
						return err
					}
				}
			}
			if cop == nil {
				return fmt.Errorf("agent: item %s has no COP", it.Label)
			}
			postings = append(postings, Posting{Label: it.Label, Recipient: it.Recipient, COP: cop})
		}
		return nil
	})
	if err != nil {
		return nil, err
	}
	a.logger().Info("agent: a submission made before, answered with its items", "items", len(postings))
	return postings, nil
}
