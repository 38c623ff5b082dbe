package mailfmt

import (
	"fmt"
	"strconv"
	"strings"
	"time"
	"unicode"
	"unicode/utf8"

	"certmail/evidence"
)

// Limits bound what ParseSubmission accepts. A zero (or negative) field means the default of
// DefaultLimits.
type Limits struct {
	MaxBytes      int64         // the message as stored (CRLF); default 25 MiB
	MaxDepth      int           // nesting of multipart and message/rfc822 entities; default 16
	MaxParts      int           // MIME entities in all, nested ones included; default 1000
	MaxRecipients int           // To, Cc and Bcc together; default 100
	MinDeadline   time.Duration // shortest deadline from now; default 1 hour
	MaxDeadline   time.Duration // longest deadline from now; default 90 days
	// DefaultDeadline is the deadline from now when neither the message nor the caller's
	// defaults name one: the agent's configured default; default DefaultDeadline.
	DefaultDeadline time.Duration
	MinPassword     int // characters of a message password; default 8
}

// DefaultLimits returns the limits used for every zero field of a Limits.
func DefaultLimits() Limits {
	return Limits{
		MaxBytes:      25 << 20,
		MaxDepth:      16,
		MaxParts:      1000,
		MaxRecipients: 100,
		MinDeadline:   time.Hour,
		MaxDeadline:   90 * 24 * time.Hour,
		MinPassword:   8,
	}
}

func (l Limits) withDefaults() Limits {
	d := DefaultLimits()
	if l.MaxBytes <= 0 {
		l.MaxBytes = d.MaxBytes
	}
	if l.MaxDepth <= 0 {
		l.MaxDepth = d.MaxDepth
	}
	if l.MaxParts <= 0 {
		l.MaxParts = d.MaxParts
	}
	if l.MaxRecipients <= 0 {
		l.MaxRecipients = d.MaxRecipients
	}
	if l.MinDeadline <= 0 {
		l.MinDeadline = d.MinDeadline
	}
	if l.MaxDeadline <= 0 {
		l.MaxDeadline = d.MaxDeadline
	}
	if l.DefaultDeadline <= 0 {
		l.DefaultDeadline = DefaultDeadline
	}
	if l.MinPassword <= 0 {
		l.MinPassword = d.MinPassword
	}
	return l
}

// DefaultDeadline is how long the recipient has to accept when neither the message nor the
// caller's defaults name a deadline.
const DefaultDeadline = 48 * time.Hour

// Limits of the free-text options.
const (
	maxPasswordBytes = 1024
	maxHintRunes     = 200
)

// ReceiptForm is how much a receipt to the sender carries, after PEC's three forms of the
// delivery receipt (ricevuta completa, breve, sintetica). As in PEC, the posting receipt never
// carries M: in the full and short forms it lists M's attachments, in the summary form not.
// Every form carries the signed evidence (the notes and the bundle) and the content hash H(M),
// which is what an arbiter needs.
type ReceiptForm string

const (
	// ReceiptFull (PEC completa): the delivery receipt also carries the stored message M
	// itself, attached as message/rfc822 (message.eml), so the sender holds the exact bytes
	// the hash covers, as delivered.
	ReceiptFull ReceiptForm = "full"
	// ReceiptShort (PEC breve): no copy of M; instead the list of its attachments, each with its
	// size and SHA-256, so the sender can match the files it keeps against the hash-only receipt.
	// (PEC's breve also keeps the body text; certmail's short form keeps hashes only.)
	ReceiptShort ReceiptForm = "short"
	// ReceiptSummary (PEC sintetica): the certification data only — label, parties, H(M),
	// deadline and times — with the evidence attached; no message, no attachment list.
	ReceiptSummary ReceiptForm = "summary"
)

// ReceiptForms lists the receipt forms.
func ReceiptForms() []ReceiptForm { return []ReceiptForm{ReceiptFull, ReceiptShort, ReceiptSummary} }

// NotifyPolicy says which mails the sender gets about a message. The notification to the
// recipient is a step of the protocol and is sent whatever the policy. The evidence itself is
// made, stored and logged under every policy; the policy only decides what is mailed.
type NotifyPolicy string

const (
	// NotifyStandard: every receipt — posting, delivery, warning, non-delivery, refusal,
	// retraction, non-acceptance.
	NotifyStandard NotifyPolicy = "standard"
	// NotifyNoWarning: as standard, without the warning that the deadline is near.
	NotifyNoWarning NotifyPolicy = "no-warning"
	// NotifyFailuresOnly: only mails about something going wrong — warning, non-delivery,
	// refusal, non-acceptance. For senders that follow their items on the pages or the API.
	NotifyFailuresOnly NotifyPolicy = "failures-only"
	// NotifyNoneForSender: no mail to the sender at all; the evidence is on its pages and the API.
	NotifyNoneForSender NotifyPolicy = "none-for-sender"
)

// NotifyPolicies lists the notification policies.
func NotifyPolicies() []NotifyPolicy {
	return []NotifyPolicy{NotifyStandard, NotifyNoWarning, NotifyFailuresOnly, NotifyNoneForSender}
}

// Kind names a mail the agent composes. The values are those of store.Outbound.Kind.
type Kind string

const (
	KindNotification      Kind = "notification"       // to the recipient: message waiting
	KindPostingReceipt    Kind = "posting-receipt"    // COP
	KindDeliveryReceipt   Kind = "delivery-receipt"   // ROD with COD or DLV
	KindWarning           Kind = "warning"            // WRN
	KindNonDelivery       Kind = "non-delivery"       // NDN
	KindRefusal           Kind = "refusal"            // REJ
	KindRetractionReceipt Kind = "retraction-receipt" // RTR
	KindNonAcceptance     Kind = "non-acceptance"     // NAC
)

// Sends reports whether a mail of kind k goes out under policy p.
func (p NotifyPolicy) Sends(k Kind) bool {
	if k == KindNotification {
		return true
	}
	switch p {
	case NotifyNoWarning:
		return k != KindWarning
	case NotifyFailuresOnly:
		return k == KindWarning || k == KindNonDelivery || k == KindRefusal || k == KindNonAcceptance
	case NotifyNoneForSender:
		return false
	}
	return true
}

// Options are the per-message choices of the sender.
type Options struct {
	Mode     evidence.Protocol // cem, cem-nsr or cem-ip
	Deadline time.Time         // T, in UTC, at millisecond precision (it goes into the COP)
	Receipt  ReceiptForm
	Notify   NotifyPolicy
	// Password is the message password in clear, for the caller to hash and forget. It is
	// taken out of the message with its header, so it is never stored in M nor hashed.
	Password     string
	PasswordHint string // shown to the recipient in the notification
}

// Names of the option header fields, in the form the user sees them.
const (
	HeaderMode         = "Certmail-Mode"
	HeaderDeadline     = "Certmail-Deadline"
	HeaderReceipt      = "Certmail-Receipt"
	HeaderNotify       = "Certmail-Notify"
	HeaderPassword     = "Certmail-Password"
	HeaderPasswordHint = "Certmail-Password-Hint"
)

func optionHeaders() []string {
	return []string{HeaderMode, HeaderDeadline, HeaderReceipt, HeaderNotify, HeaderPassword, HeaderPasswordHint}
}

// isOptionHeader reports whether a header field name is in the Certmail- namespace.
func isOptionHeader(name string) bool {
	return len(name) >= len("Certmail-") && strings.EqualFold(name[:len("Certmail-")], "Certmail-")
}

// parseOptions reads the Certmail-* fields of a submission over the defaults. Every field is
// the unfolded value; names are as written.
func parseOptions(fields []hfield, lim Limits, now time.Time, defaults Options) (Options, *Error) {
	o := defaults
	if o.Mode == "" {
		o.Mode = evidence.CEMIP
	}
	if o.Receipt == "" {
		o.Receipt = ReceiptFull
	}
	if o.Notify == "" {
		o.Notify = NotifyStandard
	}
	if o.Deadline.IsZero() {
		o.Deadline = now.Add(lim.DefaultDeadline)
	}
	o.Deadline = evidence.CanonicalTime(o.Deadline)

	seen := map[string]bool{}
	for _, f := range fields {
		canon := ""
		for _, h := range optionHeaders() {
			if strings.EqualFold(f.name, h) {
				canon = h
			}
		}
		if canon == "" {
			return o, reject(CodeOption, "unknown header %s: certmail knows %s; remove it or correct its name",
				f.name, strings.Join(optionHeaders(), ", "))
		}
		if seen[canon] {
			return o, reject(CodeOption, "header %s appears twice; give it once", canon)
		}
		seen[canon] = true
		word := strings.ToLower(f.value)
		switch canon {
		case HeaderMode:
			switch p := evidence.Protocol(word); p {
			case evidence.CEM, evidence.CEMNSR, evidence.CEMIP:
				o.Mode = p
			default:
				return o, reject(CodeOption, "%s: %q is not a mode certmail offers by mail; use cem-ip (the default), cem-nsr or cem", canon, f.value)
			}
		case HeaderReceipt:
			switch r := ReceiptForm(word); r {
			case ReceiptFull, ReceiptShort, ReceiptSummary:
				o.Receipt = r
			default:
				return o, reject(CodeOption, "%s: %q is not a receipt form; use full, short or summary", canon, f.value)
			}
		case HeaderNotify:
			ok := false
			for _, p := range NotifyPolicies() {
				if string(p) == word {
					o.Notify, ok = p, true
				}
			}
			if !ok {
				return o, reject(CodeOption, "%s: %q is not a notification policy; use standard, no-warning, failures-only or none-for-sender", canon, f.value)
			}
		case HeaderDeadline:
			t, err := parseDeadline(f.value, lim, now)
			if err != nil {
				return o, err
			}
			o.Deadline = t
		case HeaderPassword:
			pw, err := optionText(f.value, canon)
			if err != nil {
				return o, err
			}
			// Never echo the password in a message.
			if n := utf8.RuneCountInString(pw); n < lim.MinPassword {
				return o, reject(CodeOption, "%s is %d characters long; a message password needs at least %d", canon, n, lim.MinPassword)
			}
			if len(pw) > maxPasswordBytes {
				return o, reject(CodeOption, "%s is longer than %d bytes; choose a shorter one", canon, maxPasswordBytes)
			}
			o.Password = pw
		case HeaderPasswordHint:
			h, err := optionText(f.value, canon)
			if err != nil {
				return o, err
			}
			if n := utf8.RuneCountInString(h); n > maxHintRunes {
				return o, reject(CodeOption, "%s is %d characters long; keep it to %d", canon, n, maxHintRunes)
			}
			o.PasswordHint = h
		}
	}
	if o.PasswordHint != "" && o.Password == "" {
		return o, reject(CodeOption, "%s is given without %s; a hint needs a password", HeaderPasswordHint, HeaderPassword)
	}
	if o.Password != "" && o.PasswordHint != "" && strings.Contains(strings.ToLower(o.PasswordHint), strings.ToLower(o.Password)) {
		return o, reject(CodeOption, "%s contains the password itself; the recipient's mail would give it away", HeaderPasswordHint)
	}
	return o, nil
}

// optionText decodes a free-text option (RFC 2047 encoded words allowed) and checks that it is
// one line of UTF-8 with no control characters.
func optionText(v, name string) (string, *Error) {
	s, err := newWordDecoder().DecodeHeader(v)
	if err != nil {
		return "", reject(CodeUTF8, "%s: %v; write it in UTF-8", name, err).with(err)
	}
	if !utf8.ValidString(s) {
		return "", reject(CodeUTF8, "%s is not valid UTF-8", name)
	}
	for _, r := range s {
		if unicode.IsControl(r) || unicode.Is(unicode.Cf, r) {
			return "", reject(CodeOption, "%s contains a control or formatting character (%U); use plain text", name, r)
		}
	}
	s = strings.TrimSpace(s)
	if s == "" {
		return "", reject(CodeOption, "%s is empty; give a value or leave the header out", name)
	}
	return s, nil
}

// parseDeadline reads Certmail-Deadline: an RFC 3339 time, or a duration from now written as Go
// writes durations (48h, 90m, 1h30m) optionally preceded by whole days (7d, 1d12h).
func parseDeadline(v string, lim Limits, now time.Time) (time.Time, *Error) {
	var t time.Time
	if d, ok := parseDuration(v); ok {
		t = now.Add(d)
	} else if abs, err := time.Parse(time.RFC3339, v); err == nil {
		t = abs
	} else {
		return t, reject(CodeOption, "%s: %q is neither a time like 2026-11-25T18:00:00Z nor a duration like 48h or 7d", HeaderDeadline, v)
	}
	t = evidence.CanonicalTime(t)
	switch d := t.Sub(now); {
	case d < lim.MinDeadline:
		return t, reject(CodeOption, "%s: %s is %s; the deadline must be at least %s from now", HeaderDeadline, v, fromNow(d), humanDuration(lim.MinDeadline))
	case d > lim.MaxDeadline:
		return t, reject(CodeOption, "%s: %s is %s; the deadline must be at most %s from now", HeaderDeadline, v, fromNow(d), humanDuration(lim.MaxDeadline))
	}
	return t, nil
}

// parseDuration accepts "[<days>d][<go duration>]" with at least one part, all positive.
func parseDuration(v string) (time.Duration, bool) {
	var total time.Duration
	rest := v
	if i := strings.IndexByte(v, 'd'); i >= 0 {
		n, err := strconv.Atoi(v[:i])
		if err != nil || n < 0 || n > 100000 || v[:i] != strconv.Itoa(n) {
			return 0, false
		}
		total = time.Duration(n) * 24 * time.Hour
		rest = v[i+1:]
	}
	if rest != "" {
		if rest[0] < '0' || rest[0] > '9' { // no sign, no leading dot
			return 0, false
		}
		d, err := time.ParseDuration(rest)
		if err != nil || d < 0 || total+d < total {
			return 0, false
		}
		total += d
	} else if rest == v {
		return 0, false
	}
	return total, true
}

func fromNow(d time.Duration) string {
	if d < 0 {
		return humanDuration(-d) + " in the past"
	}
	return humanDuration(d) + " from now"
}

// humanDuration writes d for people: "90 days", "1 hour", "30 minutes".
func humanDuration(d time.Duration) string {
	unit := func(n int64, one string) string {
		if n == 1 {
			return "1 " + one
		}
		return fmt.Sprintf("%d %ss", n, one)
	}
	switch {
	case d >= 24*time.Hour && d%(24*time.Hour) == 0:
		return unit(int64(d/(24*time.Hour)), "day")
	case d >= time.Hour && d%time.Hour == 0:
		return unit(int64(d/time.Hour), "hour")
	case d >= time.Minute:
		return unit(int64(d/time.Minute), "minute")
	}
	return unit(int64(d/time.Second), "second")
}
