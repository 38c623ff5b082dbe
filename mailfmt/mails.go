package mailfmt

import (
	"fmt"
	"slices"
	"strconv"
	"strings"
	"time"
	"unicode/utf8"

	"certmail/evidence"
)

// Notice is the message-waiting mail to the recipient (PROTOCOLS.md §1 step 5; seed 004's
// "message waiting" e-mail). Head.To is the recipient.
type Notice struct {
	Head
	Label    evidence.Label
	Protocol evidence.Protocol // cem, cem-nsr or cem-ip
	Sender   string            // A
	// Content is H(M), for cem only: the hash the recipient's certificate of delivery signs.
	Content evidence.Hash
	// Commitment is H(L,M), for cem-ip only: what the recipient checks the fetched message
	// against before relying on it.
	Commitment   evidence.Hash
	Deadline     time.Time
	PickupURL    string // the pickup page, with its single-purpose token
	Password     bool   // the pickup needs the message password
	PasswordHint string // the sender's hint, shown as the sender's words
	// Message is M, for cem only, where the message travels with the notification; in cem-nsr
	// and cem-ip the content is released only after acceptance, and Message must be nil.
	Message []byte
}

// Notification composes the message-waiting mail: who sent it, the label, H(L,M) in cem-ip,
// the deadline, the pickup link and the password hint, with a plain statement that the content
// is not in the mail. It never carries the content or the subject, except in cem, where M is
// attached as message/rfc822 because delivering it is the protocol's step. Plain text and an
// HTML alternative, both escaped.
func Notification(n Notice) ([]byte, error) {
	fail := func(format string, args ...any) ([]byte, error) {
		return nil, fmt.Errorf("mailfmt: notification: "+format, args...)
	}
	if n.Label.IsZero() {
		return fail("no label")
	}
	if err := evidence.CheckAddress(n.Sender); err != nil {
		return fail("sender: %v", err)
	}
	if n.Deadline.IsZero() {
		return fail("no deadline")
	}
	if err := checkLink(n.PickupURL); err != nil {
		return fail("pickup %v", err)
	}
	if n.PasswordHint != "" && !n.Password {
		return fail("a password hint without a password")
	}
	switch n.Protocol {
	case evidence.CEM:
		if len(n.Message) == 0 || n.Content.IsZero() || evidence.Sum(n.Message) != n.Content {
			return fail("cem delivers M with the notice: want Message and Content = H(Message)")
		}
		if !n.Commitment.IsZero() {
			return fail("a commitment H(L,M) belongs to cem-ip only")
		}
	case evidence.CEMNSR, evidence.CEMIP:
		// The guard that keeps the content out: nothing of M but H(L,M) may go in this mail.
		if n.Message != nil || !n.Content.IsZero() {
			return fail("%s releases the content only after acceptance: Message and Content must be empty", n.Protocol)
		}
		if (n.Protocol == evidence.CEMIP) != !n.Commitment.IsZero() {
			return fail("a commitment H(L,M) is required in cem-ip and only there")
		}
	default:
		return fail("protocol %q is not of the CEM family", n.Protocol)
	}

	d := newDoc()
	hint := clip(oneLine(n.PasswordHint), maxHintRunes)
	if n.Protocol == evidence.CEM {
		d.Title = "Certified mail for you"
		d.para(n.Sender + " has sent you the attached certified message through " + n.Domain + ". Please confirm on the page below that you received it: your confirmation is signed evidence of delivery for the sender.")
		d.facts(fact{"From", n.Sender}, fact{"Label", n.Label.String()}, fact{"Content (SHA-256)", n.Content.String()},
			fact{"Confirm by", showTime(n.Deadline)})
		d.para("Confirm receipt here:")
		d.link(n.PickupURL)
	} else {
		d.Title = "Certified mail is waiting for you"
		d.para(n.Sender + " has sent you certified mail through " + n.Domain + ". The message itself is not in this e-mail. It will be released to you only after you accept it on the pickup page, and your acceptance is recorded as signed evidence for the sender.")
		d.facts(fact{"From", n.Sender}, fact{"Label", n.Label.String()}, fact{"Commitment H(L,M)", commitment(n.Commitment)},
			fact{"Accept by", showTime(n.Deadline)})
		d.para("Pick it up here:")
		d.link(n.PickupURL)
	}
	if n.Password {
		d.para("The sender protected this message with a password, which you will need on the pickup page.")
		if hint != "" {
			d.para("The sender's hint for the password: “" + hint + "”")
		}
	}
	if n.Protocol == evidence.CEMIP {
		d.para("Once you have the message, check it: the SHA-256 of the label, a line feed and the message's exact bytes must equal the commitment above (certmail pickup does this for you). If it does not, do not rely on the message; fetch it again or tell the sender.")
	}
	d.para("If nothing is done by the deadline, the sender is told that the message was not delivered. This notice never asks for the password of your mailbox; if you did not expect mail from " + n.Sender + ", make sure the link leads where you expect before you enter anything.")

	body := &part{kind: "alternative", parts: []*part{textPart(plainUTF8, d.text()), textPart(htmlUTF8, d.html())}}
	subject := "Certified mail from " + n.Sender + " is waiting for you"
	if n.Protocol == evidence.CEM {
		mp, err := messagePart(n.Message)
		if err != nil {
			return fail("%v", err)
		}
		body = &part{kind: "mixed", parts: []*part{body, mp}}
		subject = "Certified mail from " + n.Sender
	}
	return compose(n.Head, KindNotification, n.Label, subject, body)
}

func commitment(h evidence.Hash) string {
	if h.IsZero() {
		return ""
	}
	return h.String()
}

// clip cuts s to n characters.
func clip(s string, n int) string {
	if utf8.RuneCountInString(s) <= n {
		return s
	}
	return string([]rune(s)[:n]) + "…"
}

// Exchange names the certified exchange a mail to the sender is about.
type Exchange struct {
	Label     evidence.Label
	Protocol  evidence.Protocol
	Sender    string
	Recipient string
	Subject   string        // the message's subject, shown to its sender only
	Content   evidence.Hash // H(M)
	Deadline  time.Time     // T
}

// Evidence is what a mail to the sender attaches for an arbiter: signed notes, each as
// "<type>.note" (text/plain, base64 so that its bytes arrive exactly), and the bundle as
// "evidence.bundle" (application/vnd.certmail.bundle).
type Evidence struct {
	Notes  []*evidence.Note
	Bundle []byte // an encoded evidence.Bundle; nil when there is none yet
}

// Receipt is the posting receipt to the sender (COP; PEC's accettazione). Head.To is the sender.
type Receipt struct {
	Head
	Exchange
	Evidence    // must hold the COP
	Form        ReceiptForm
	Accepted    time.Time    // when the agent accepted the message (the COP's time)
	Attachments []Attachment // the message's attachments, for the full and short forms
}

// PostingReceipt composes the posting receipt: what was accepted, for whom, under which label
// and content hash, with which deadline, when; the COP note and the bundle attached. It never
// carries M, as PEC's acceptance receipt does not: the sender sent M, and the content hash names
// it. In the full and short forms it lists M's attachments; in the full form the delivery
// receipt carries M (see ReceiptForm).
func PostingReceipt(r Receipt) ([]byte, error) {
	l, err := newLetter(KindPostingReceipt, r.Head, r.Exchange, r.Evidence, evidence.COP)
	if err != nil {
		return nil, err
	}
	d := &l.doc
	d.Title = "Accepted for certified delivery"
	d.para("Your message to " + r.Recipient + " was accepted for certified delivery by " + r.Domain + ".")
	d.facts(l.baseFacts(fact{"Accepted", showTime(r.Accepted)}, fact{"Deadline", showTime(r.Deadline)}, fact{"Receipt form", string(r.Form)})...)
	form := r.Form
	if form == ReceiptFull {
		form = ReceiptShort
	}
	if err := l.form(form, nil, r.Attachments); err != nil {
		return nil, err
	}
	if r.Form == ReceiptFull {
		d.para("The delivery receipt will carry the message as the agent stores it, the exact bytes the content hash covers.")
	}
	switch r.Protocol {
	case evidence.CEM:
		d.para("The recipient receives the message with a notice asking to confirm receipt. You will get a delivery receipt when the recipient confirms, or a non-delivery notice if the deadline passes first.")
	default:
		d.para("The recipient is told that certified mail is waiting, without its content. The content is released only once the recipient accepts it. You will get a delivery receipt when that happens, or a non-delivery notice if the deadline passes first.")
	}
	l.evidenceNote()
	return l.bytes("Accepted: " + subjectOf(r.Subject))
}

// Delivery is the delivery receipt to the sender (ROD with COD or DLV; PEC's avvenuta
// consegna). Whether the recipient signed is read from the notes: a COD of any variant means
// recipient-signed, else the delivery is agent-attested.
type Delivery struct {
	Head
	Exchange
	Evidence                 // must hold the ROD, and the COD or DLV
	Form        ReceiptForm  // as in Receipt
	Delivered   time.Time    // when the recipient accepted
	Method      string       // how the recipient authenticated (DLV's method), "" when unknown
	Client      string       // the recipient's client address (DLV's client), "" when unknown
	Message     []byte       // M, for the full form
	Attachments []Attachment // for the short form
}

// DeliveryReceipt composes the delivery receipt.
func DeliveryReceipt(r Delivery) ([]byte, error) {
	l, err := newLetter(KindDeliveryReceipt, r.Head, r.Exchange, r.Evidence, evidence.ROD)
	if err != nil {
		return nil, err
	}
	signed := false
	for _, n := range r.Notes {
		switch n.Record.Type {
		case evidence.CODBasic, evidence.CODNSR, evidence.CODIP:
			signed = true
		}
	}
	attest := "attested by the agent: the recipient has no key of its own, so the agent certifies who authenticated, how and when"
	if signed {
		attest = "signed by the recipient's own key (certificate of delivery)"
	}
	d := &l.doc
	d.Title = "Delivered"
	d.para("Your certified message was delivered: " + r.Recipient + " accepted it.")
	d.facts(l.baseFacts(fact{"Accepted by recipient", showTime(r.Delivered)},
		fact{"Authenticated by", oneLine(r.Method)}, fact{"Client address", oneLine(r.Client)},
		fact{"Acceptance", attest}, fact{"Receipt form", string(r.Form)})...)
	if err := l.form(r.Form, r.Message, r.Attachments); err != nil {
		return nil, err
	}
	l.evidenceNote()
	return l.bytes("Delivered: " + subjectOf(r.Subject))
}

// Delay is the warning to the sender that the message is not accepted yet and the deadline
// is near (WRN; PEC's preavviso di mancata consegna).
type Delay struct {
	Head
	Exchange
	Evidence           // must hold the WRN
	Time     time.Time // when the warning was made
}

// Warning composes the delay warning.
func Warning(w Delay) ([]byte, error) {
	l, err := newLetter(KindWarning, w.Head, w.Exchange, w.Evidence, evidence.WRN)
	if err != nil {
		return nil, err
	}
	d := &l.doc
	d.Title = "Not accepted yet"
	d.para("Your certified message to " + w.Recipient + " has not been accepted yet. If it is not accepted by the deadline, you will receive a notice of non-delivery.")
	d.facts(l.baseFacts(fact{"Deadline", showTime(w.Deadline)}, fact{"Warned", showTime(w.Time)})...)
	d.para("You may retract the message on your pages as long as the recipient has not picked it up.")
	l.evidenceNote()
	return l.bytes("Not accepted yet: " + subjectOf(w.Subject))
}

// Failure is the non-delivery notice to the sender (NDN; PEC's mancata consegna).
type Failure struct {
	Head
	Exchange
	Evidence           // must hold the NDN
	Reason   string    // the NDN's reason code: deadline, not-accepted, relay, bounced…
	Detail   string    // optional, e.g. the remote server's reply to the notification
	Time     time.Time // when the notice was made
}

// NonDelivery composes the non-delivery notice, the reason in plain words.
func NonDelivery(f Failure) ([]byte, error) {
	l, err := newLetter(KindNonDelivery, f.Head, f.Exchange, f.Evidence, evidence.NDN)
	if err != nil {
		return nil, err
	}
	d := &l.doc
	d.Title = "Not delivered"
	d.para("Your certified message to " + f.Recipient + " was NOT delivered. " + ndnReason(f.Reason))
	d.facts(l.baseFacts(fact{"Deadline", showTime(f.Deadline)}, fact{"Reason code", oneLine(f.Reason)},
		fact{"Details", clip(oneLine(f.Detail), 500)}, fact{"Notice made", showTime(f.Time)})...)
	d.para("The recipient can no longer fetch the message. With the certificate of posting, this notice shows that you sent the message on time and that it was not delivered.")
	l.evidenceNote()
	return l.bytes("Not delivered: " + subjectOf(f.Subject))
}

// Refused is the notice to the sender that the recipient refused the message (REJ).
type Refused struct {
	Head
	Exchange
	Evidence           // must hold the REJ
	Reason   string    // the REJ's reason code
	Time     time.Time // when the recipient refused
}

// Refusal composes the refusal notice.
func Refusal(r Refused) ([]byte, error) {
	l, err := newLetter(KindRefusal, r.Head, r.Exchange, r.Evidence, evidence.REJ)
	if err != nil {
		return nil, err
	}
	d := &l.doc
	d.Title = "Refused by the recipient"
	d.para(r.Recipient + " refused your certified message. " + rejReason(r.Reason))
	d.facts(l.baseFacts(fact{"Refused", showTime(r.Time)}, fact{"Reason code", oneLine(r.Reason)})...)
	d.para("The message was not released to the recipient.")
	l.evidenceNote()
	return l.bytes("Refused: " + subjectOf(r.Subject))
}

// Retracted is the receipt for a retraction by the sender before pickup (RTR; seed 004).
type Retracted struct {
	Head
	Exchange
	Evidence           // must hold the RTR
	Time     time.Time // when it was retracted
}

// RetractionReceipt composes the retraction receipt.
func RetractionReceipt(r Retracted) ([]byte, error) {
	l, err := newLetter(KindRetractionReceipt, r.Head, r.Exchange, r.Evidence, evidence.RTR)
	if err != nil {
		return nil, err
	}
	d := &l.doc
	d.Title = "Retracted"
	d.para("You retracted your certified message to " + r.Recipient + " before it was picked up. The recipient can no longer fetch it.")
	d.facts(l.baseFacts(fact{"Retracted", showTime(r.Time)})...)
	l.evidenceNote()
	return l.bytes("Retracted: " + subjectOf(r.Subject))
}

// NotAccepted is the notice that a submission was refused (NAC; PEC's non accettazione). Its
// Exchange needs only Label, Protocol and Sender (and Subject when known).
type NotAccepted struct {
	Head
	Exchange
	Evidence           // must hold the NAC
	Reason   string    // the NAC's reason code: an Error's Code, or virus, policy, sender…
	Detail   string    // what to do, e.g. an Error's Message
	Time     time.Time // when the agent refused
}

// NonAcceptance composes the notice of non-acceptance.
func NonAcceptance(n NotAccepted) ([]byte, error) {
	l, err := newLetter(KindNonAcceptance, n.Head, n.Exchange, n.Evidence, evidence.NAC)
	if err != nil {
		return nil, err
	}
	d := &l.doc
	d.Title = "Not accepted"
	d.para("Your message was NOT accepted for certified delivery: " + nacReason(n.Reason) + ". Nothing was sent to the recipients.")
	d.facts(fact{"Subject", oneLine(n.Subject)}, fact{"Label", n.Label.String()}, fact{"Reason code", oneLine(n.Reason)},
		fact{"Details", clip(oneLine(n.Detail), 1000)}, fact{"Refused", showTime(n.Time)})
	d.para("Correct the message and send it again.")
	l.evidenceNote()
	return l.bytes("Not accepted: " + subjectOf(n.Subject))
}

func subjectOf(s string) string {
	if s = oneLine(s); s == "" {
		return "(no subject)"
	}
	return s
}

// letter is a mail to the sender being composed: text, then attached files.
type letter struct {
	kind  Kind
	head  Head
	ex    Exchange
	doc   doc
	files []*part
	names []string // attached evidence files, in order
	about []string // what each is
	hasM  bool
}

// newLetter checks what every mail to the sender needs and attaches the evidence: the notes,
// which must include one of type want and all be about ex.Label, then the bundle.
func newLetter(kind Kind, h Head, ex Exchange, ev Evidence, want evidence.Type) (*letter, error) {
	fail := func(format string, args ...any) (*letter, error) {
		return nil, fmt.Errorf("mailfmt: %s: "+format, append([]any{kind}, args...)...)
	}
	if ex.Label.IsZero() {
		return fail("no label")
	}
	if err := evidence.CheckAddress(ex.Sender); err != nil {
		return fail("sender: %v", err)
	}
	if kind != KindNonAcceptance {
		if err := evidence.CheckAddress(ex.Recipient); err != nil {
			return fail("recipient: %v", err)
		}
		if ex.Content.IsZero() {
			return fail("no content hash")
		}
	}
	l := &letter{kind: kind, head: h, ex: ex, doc: newDoc()}
	found := false
	count := map[string]int{}
	for _, n := range ev.Notes {
		if n == nil || n.Record == nil {
			return fail("a nil note")
		}
		r := n.Record
		if !r.Label.IsZero() && r.Label != ex.Label {
			return fail("a %s note is about label %s, not %s", r.Type, r.Label, ex.Label)
		}
		if !r.Content.IsZero() && !ex.Content.IsZero() && r.Content != ex.Content {
			return fail("the %s note certifies content %s, not %s", r.Type, r.Content, ex.Content)
		}
		if r.Recipient != "" && ex.Recipient != "" && r.Recipient != ex.Recipient {
			return fail("the %s note is for %s, not %s", r.Type, r.Recipient, ex.Recipient)
		}
		found = found || r.Type == want
		name := strings.ToLower(string(r.Type))
		if count[name]++; count[name] > 1 {
			name = fmt.Sprintf("%s-%d", name, count[name])
		}
		name += ".note"
		l.files = append(l.files, filePart(plainUTF8, name, n.Bytes()))
		l.names = append(l.names, name)
		l.about = append(l.about, noteAbout(r.Type))
	}
	if !found {
		return fail("no %s note among the evidence", want)
	}
	if ev.Bundle != nil {
		b, err := evidence.ParseBundle(ev.Bundle)
		if err != nil {
			return fail("bundle: %v", err)
		}
		if b.Label != ex.Label {
			return fail("the bundle is about label %s, not %s", b.Label, ex.Label)
		}
		l.files = append(l.files, filePart(bundleType, "evidence.bundle", ev.Bundle))
		l.names = append(l.names, "evidence.bundle")
		l.about = append(l.about, "the evidence with the keys and log proofs an arbiter needs")
	}
	return l, nil
}

// baseFacts lists the exchange, then the given facts.
func (l *letter) baseFacts(more ...fact) []fact {
	fs := make([]fact, 0, 6+len(more))
	fs = append(fs,
		fact{"Subject", oneLine(l.ex.Subject)},
		fact{"Sender", l.ex.Sender},
		fact{"Recipient", l.ex.Recipient},
		fact{"Label", l.ex.Label.String()},
		fact{"Mode", string(l.ex.Protocol)},
		fact{"Content (SHA-256)", commitment(l.ex.Content)},
	)
	return append(fs, more...)
}

// form adds what the receipt form asks for (see ReceiptForm).
func (l *letter) form(f ReceiptForm, m []byte, atts []Attachment) error {
	switch f {
	case ReceiptFull:
		if len(m) == 0 || evidence.Sum(m) != l.ex.Content {
			return fmt.Errorf("mailfmt: %s: a full receipt needs the message whose hash is %s", l.kind, l.ex.Content)
		}
		p, err := messagePart(m)
		if err != nil {
			return fmt.Errorf("mailfmt: %s: %w", l.kind, err)
		}
		l.files = append(l.files, p)
		l.hasM = true
		l.doc.para("The message is attached as the agent stores it: what you sent, without the Certmail-* and Bcc header fields and with CRLF line ends.")
	case ReceiptShort:
		if len(atts) == 0 {
			l.doc.para("The message has no attachments.")
			break
		}
		l.doc.para("The message's attachments, each with its SHA-256, so you can match the files you keep:")
		fs := make([]fact, 0, len(atts))
		for _, a := range atts {
			fs = append(fs, fact{SafeFilename(a.Name), strconv.FormatInt(a.Size, 10) + " bytes, " + a.Hash.String()})
		}
		l.doc.facts(fs...)
	case ReceiptSummary:
	default:
		return fmt.Errorf("mailfmt: %s: receipt form %q is not full, short or summary", l.kind, f)
	}
	return nil
}

// evidenceNote lists the attached files and says how to check them.
func (l *letter) evidenceNote() {
	if len(l.files) == 0 {
		return
	}
	d := &l.doc
	fs := make([]fact, 0, len(l.names)+1)
	for i, name := range l.names {
		fs = append(fs, fact{name, l.about[i]})
	}
	if l.hasM {
		fs = append(fs, fact{"message.eml", "the message as the agent stores it; its SHA-256 is the content hash above"})
	}
	d.para("Attached:")
	d.facts(fs...)
	if slices.Contains(l.names, "evidence.bundle") {
		cmd := "certmail verify evidence.bundle"
		if l.hasM {
			cmd += " --message message.eml"
		}
		d.para("Anyone can check the evidence offline, with no account and no server, by running:")
		d.Blocks = append(d.Blocks, block{Code: cmd})
	}
	if len(l.names) > 0 {
		d.para("Each .note file is a signed note that verifies with golang.org/x/mod/sumdb/note and the agent's key, published at https://" + l.head.Domain + "/.well-known/certmail.")
	}
}

// noteAbout says what a note of type t is, for the list of attached files.
func noteAbout(t evidence.Type) string {
	switch t {
	case evidence.COP:
		return "the agent's signed certificate of posting"
	case evidence.NAC:
		return "the agent's signed record that it refused the submission"
	case evidence.ACK:
		return "the next agent's signed acceptance of the relay"
	case evidence.NTF:
		return "the agent's signed record that the recipient was notified"
	case evidence.DLV:
		return "the agent's signed attestation that the recipient authenticated and accepted"
	case evidence.CODBasic, evidence.CODNSR, evidence.CODIP:
		return "the recipient's own signed certificate of delivery"
	case evidence.ROD:
		return "the signed report of delivery"
	case evidence.RET:
		return "the agent's signed record that the content was fetched"
	case evidence.WRN:
		return "the agent's signed warning"
	case evidence.NDN:
		return "the agent's signed notice of non-delivery"
	case evidence.REJ:
		return "the agent's signed record of the refusal"
	case evidence.RTR:
		return "the agent's signed record of the retraction"
	}
	return "a signed " + string(t) + " note"
}

// bytes composes the mail: the text, then the files, in multipart/mixed when there are any.
func (l *letter) bytes(subject string) ([]byte, error) {
	text := textPart(plainUTF8, l.doc.text())
	body := text
	if len(l.files) > 0 {
		body = &part{kind: "mixed", parts: append([]*part{text}, l.files...)}
	}
	return compose(l.head, l.kind, l.ex.Label, subject, body)
}

// ndnReason says an NDN reason code in plain words.
func ndnReason(code string) string {
	switch code {
	case "deadline":
		return "The recipient did not accept it before the deadline."
	case "not-accepted":
		return "The recipient was told it was waiting but did not accept it in time."
	case "relay":
		return "The recipient's delivery agent did not take charge of it in time."
	case "bounced":
		return "The notice to the recipient could not be delivered to the recipient's mail server."
	case "refused":
		return "The recipient refused it."
	}
	return "The agent gave up delivering it."
}

// rejReason says a REJ reason code in plain words.
func rejReason(code string) string {
	if code == "refused" || code == "" {
		return "The recipient chose not to accept it."
	}
	return fmt.Sprintf("The recipient gave the reason %q.", oneLine(code))
}

// nacReason says a NAC reason code in plain words: the Error codes of ParseSubmission, and
// the agent's own.
func nacReason(code string) string {
	switch code {
	case CodeSize:
		return "the message is too large"
	case CodeNUL, CodeLine, CodeHeader, CodeMIME, CodeEncoding, CodeUTF8:
		return "the message is not well-formed Internet mail"
	case CodeFrom:
		return "the sender address is missing or not valid"
	case CodeRecipients:
		return "the recipients are missing or not valid"
	case CodeOption:
		return "a Certmail option of the message is not valid"
	case "virus":
		return "the message contains malware"
	case "policy":
		return "the message is against this agent's policy"
	case "sender":
		return "you may not send from this address"
	}
	return "the agent refused it"
}
