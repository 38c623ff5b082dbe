package mailfmt

import (
	"bytes"
	"fmt"
	"net/mail"
	"strings"
	"time"
	"unicode"
	"unicode/utf8"

	"certmail/evidence"
)

// Submission is a message the agent accepted for certification.
type Submission struct {
	From       string   // the one sender address of From, domain in lower case
	Recipients []string // the addresses of To and Cc, in order, each once
	// Bcc holds the addresses of a Bcc field. The field itself is removed from Message
	// (RFC 5322 3.6.3), so blind recipients stay blind and every recipient gets the same M.
	Bcc         []string
	Subject     string // decoded (RFC 2047), control characters replaced by spaces; "" when none
	MessageID   string // the Message-ID field as written, "" when none
	Options     Options
	Message     []byte // M: the exact bytes to store, hash and deliver
	Attachments []Attachment
}

// Attachment describes one file in the message, for receipts and pages.
type Attachment struct {
	Name        string        // SafeFilename of the name the message gives
	ContentType string        // media type, lower case, without parameters
	Size        int64         // decoded size in bytes
	Hash        evidence.Hash // SHA-256 of the decoded bytes
}

// ParseSubmission checks a submitted message and returns what the agent certifies: the stored
// bytes M, the parties, the decoded subject, the per-message options and the attachments.
//
// M is raw with every line ending made CRLF (a lone CR or LF becomes CRLF; a missing final
// line ending is added), and with the Certmail-* and Bcc header fields removed; nothing else
// changes. Options come from the Certmail-* fields over defaults: a field the message does not
// give takes its value from defaults, and a zero default takes certmail's (cem-ip, deadline
// now+48h, full receipts, standard notifications). The caller's defaults are trusted as given.
// Parsing M again with the returned Options gives M back.
//
// A rejection is an *Error (see Error for its codes).
func ParseSubmission(raw []byte, lim Limits, now time.Time, defaults Options) (*Submission, error) {
	s, err := parseSubmission(raw, lim.withDefaults(), now, defaults)
	if err != nil {
		return nil, err
	}
	return s, nil
}

const (
	crlf     = "\r\n"
	crlfcrlf = "\r\n\r\n"
)

// maxLine is the longest line RFC 5322 2.1.1 allows, without its CRLF.
const maxLine = 998

// AttachmentsOf lists the attachments of a stored message M as ParseSubmission listed them
// when M was accepted, for a mail composed later, such as a delivery receipt in the short form.
func AttachmentsOf(m []byte) ([]Attachment, error) {
	head, body := splitHeader(m)
	fields, err := parseFields(head, CodeHeader, "the message header")
	if err == nil {
		w := walker{lim: DefaultLimits()}
		if err = w.entity(fields, body, 0, "", "text/plain"); err == nil {
			return w.atts, nil
		}
	}
	return nil, err
}

// splitHeader splits CRLF text m at its first empty line: the header with its last CRLF, and
// the body; all of m is header when it has no empty line.
func splitHeader(m []byte) (head, body []byte) {
	if i := bytes.Index(m, []byte(crlfcrlf)); i >= 0 {
		return m[:i+2], m[i+4:]
	}
	return m, nil
}

func parseSubmission(raw []byte, lim Limits, now time.Time, defaults Options) (*Submission, *Error) {
	if len(raw) == 0 {
		return nil, reject(CodeHeader, "the message is empty")
	}
	if int64(len(raw)) > lim.MaxBytes {
		return nil, tooBig(int64(len(raw)), lim)
	}
	if i := bytes.IndexByte(raw, 0); i >= 0 {
		return nil, reject(CodeNUL, "line %d contains a NUL byte, which Internet mail may not carry (RFC 2045 2.7, 2.8); "+
			"send binary data as an attachment encoded in base64", bytes.Count(raw[:i], []byte{'\n'})+1)
	}
	m := normalizeCRLF(raw)
	if int64(len(m)) > lim.MaxBytes {
		return nil, tooBig(int64(len(m)), lim)
	}
	if n, length := longLine(m); n > 0 {
		return nil, reject(CodeLine, "line %d is %d bytes long; mail allows at most %d bytes a line (RFC 5322 2.1.1): "+
			"let your mail program encode long lines (quoted-printable) or send the text as an attachment", n, length, maxLine)
	}
	if bytes.HasPrefix(m, []byte(crlf)) {
		return nil, reject(CodeHeader, "the message starts with an empty line, so it has no header: it needs at least From and To")
	}
	head, body := splitHeader(m) // no empty line: all header, and M gains the empty line
	fields, err := parseFields(head, CodeHeader, "the message header")
	if err != nil {
		return nil, err
	}

	var opts, kept, bcc []hfield
	for _, f := range fields {
		switch {
		case isOptionHeader(f.name):
			opts = append(opts, f)
		case strings.EqualFold(f.name, "Bcc"):
			bcc = append(bcc, f)
		default:
			kept = append(kept, f)
		}
	}
	if err := checkSingletons(append(kept[:len(kept):len(kept)], bcc...)); err != nil {
		return nil, err
	}
	o, err := parseOptions(opts, lim, now, defaults)
	if err != nil {
		return nil, err
	}

	s := &Submission{Options: o}
	if err := s.readAddresses(kept, bcc, lim); err != nil {
		return nil, err
	}
	if err := s.readText(kept); err != nil {
		return nil, err
	}

	w := walker{lim: lim}
	if err := w.entity(kept, body, 0, "", "text/plain"); err != nil {
		return nil, err
	}
	s.Attachments = w.atts

	var out bytes.Buffer
	out.Grow(len(m))
	for _, f := range kept {
		out.Write(f.raw)
	}
	out.WriteString(crlf)
	out.Write(body)
	s.Message = out.Bytes()
	if err := crossCheck(s.Message, len(kept)); err != nil {
		return nil, err
	}
	return s, nil
}

func tooBig(n int64, lim Limits) *Error {
	return reject(CodeSize, "the message is %s; this agent accepts at most %s: send fewer or smaller attachments",
		humanBytes(n), humanBytes(lim.MaxBytes))
}

func humanBytes(n int64) string {
	switch {
	case n >= 10<<20:
		return fmt.Sprintf("%d MiB (%d bytes)", n>>20, n)
	case n >= 10<<10:
		return fmt.Sprintf("%d KiB (%d bytes)", n>>10, n)
	}
	return fmt.Sprintf("%d bytes", n)
}

// normalizeCRLF makes every line ending CRLF: CRLF stays, a lone CR or a lone LF becomes CRLF,
// and a missing line ending at the end is added. Applying it twice changes nothing. CRLF text,
// as SMTP's DATA always is, is returned as it is, not copied.
func normalizeCRLF(b []byte) []byte {
	if crlfText(b) {
		return b
	}
	out := make([]byte, 0, len(b)+len(b)/64+2)
	for len(b) > 0 {
		i := bytes.IndexAny(b, "\r\n")
		if i < 0 {
			out = append(out, b...)
			break
		}
		out = append(out, b[:i]...)
		out = append(out, '\r', '\n')
		if b[i] == '\r' && i+1 < len(b) && b[i+1] == '\n' {
			i++
		}
		b = b[i+1:]
	}
	if !bytes.HasSuffix(out, []byte(crlf)) {
		out = append(out, crlf...)
	}
	return out
}

// longLine returns the number and length of the first line of m (CRLF text) longer than
// maxLine, or zeros.
func longLine(m []byte) (n, length int) {
	for n = 1; len(m) > 0; n++ {
		i := bytes.Index(m, []byte(crlf))
		if i < 0 {
			i = len(m)
		}
		if i > maxLine {
			return n, i
		}
		m = m[min(i+2, len(m)):]
	}
	return 0, 0
}

// hfield is one header field as it stands in a header section.
type hfield struct {
	name  string // as written
	raw   []byte // the whole field, continuation lines and CRLFs included
	value string // unfolded (RFC 5322 2.2.3) and trimmed
}

// parseFields splits a header section (CRLF lines, without the empty line that ends it) into
// fields. Field names are RFC 5322 2.2 names restricted to RFC 9110 token characters, which is
// what net/textproto reads; values must be UTF-8 (RFC 6532) with no control character but tab.
// code is the Error code for a syntax error; where names the section in messages.
func parseFields(section []byte, code, where string) ([]hfield, *Error) {
	var fields []hfield
	for n := 1; len(section) > 0; n++ {
		i := bytes.Index(section, []byte(crlf))
		if i < 0 { // callers end sections with CRLF; stay safe if one does not
			section = append(bytes.Clone(section), crlf...)
			i = len(section) - 2
		}
		line := section[:i+2]
		section = section[i+2:]
		if i == 0 {
			return nil, reject(code, "%s: line %d is empty inside the header", where, n)
		}
		if line[0] == ' ' || line[0] == '\t' {
			if len(fields) == 0 {
				return nil, reject(code, "%s: line %d is indented, but there is no header field before it to continue", where, n)
			}
			f := &fields[len(fields)-1]
			f.raw = append(f.raw, line...)
			continue
		}
		colon := bytes.IndexByte(line, ':')
		if colon < 0 {
			return nil, reject(code, "%s: line %d (%s) is not a header field \"Name: value\"; "+
				"is an empty line missing between the header and the text?", where, n, quote(string(line[:len(line)-2])))
		}
		name := string(line[:colon])
		if !validFieldName(name) {
			return nil, reject(code, "%s: line %d: %s is not a valid header field name", where, n, quote(name))
		}
		fields = append(fields, hfield{name: name, raw: bytes.Clone(line)})
	}
	for i := range fields {
		f := &fields[i]
		v := f.raw[len(f.name)+1:]
		if !utf8.Valid(v) {
			return nil, reject(CodeUTF8, "%s: the %s field is not valid UTF-8; let your mail program encode it (RFC 2047)", where, f.name)
		}
		unfolded := strings.ReplaceAll(string(v), "\r\n", "")
		for _, r := range unfolded {
			if r != '\t' && (r < ' ' || r == 0x7f) {
				return nil, reject(code, "%s: the %s field contains the control character %U", where, f.name, r)
			}
		}
		f.value = strings.Trim(unfolded, " \t")
	}
	return fields, nil
}

// validFieldName accepts 1..76 token characters (RFC 9110 5.6.2).
func validFieldName(s string) bool {
	if s == "" || len(s) > 76 {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || strings.IndexByte("!#$%&'*+-.^_`|~", c) >= 0) {
			return false
		}
	}
	return true
}

// quote shows a value in a message: quoted, and cut when long.
func quote(s string) string {
	const max = 80
	if len(s) > max {
		cut := max
		for cut > 0 && !utf8.RuneStart(s[cut]) {
			cut--
		}
		s = s[:cut] + "…"
	}
	return fmt.Sprintf("%q", s)
}

// fieldsNamed returns the fields called name (case-insensitive).
func fieldsNamed(fields []hfield, name string) []hfield {
	var out []hfield
	for _, f := range fields {
		if strings.EqualFold(f.name, name) {
			out = append(out, f)
		}
	}
	return out
}

// checkSingletons refuses a second instance of a field RFC 5322 3.6 or RFC 2045 allows once:
// with two, readers would disagree about which one counts.
func checkSingletons(fields []hfield) *Error {
	for _, name := range []string{"From", "Sender", "Reply-To", "To", "Cc", "Bcc", "Subject", "Date", "Message-ID",
		"In-Reply-To", "References", "MIME-Version", "Content-Type", "Content-Transfer-Encoding", "Content-Disposition"} {
		if n := len(fieldsNamed(fields, name)); n > 1 {
			code := CodeHeader
			if name == "From" {
				code = CodeFrom
			}
			return reject(code, "the message has %d %s fields; it may have only one (RFC 5322 3.6)", n, name)
		}
	}
	return nil
}

// readAddresses fills From, Recipients and Bcc, and checks Sender and Reply-To.
func (s *Submission) readAddresses(kept, bcc []hfield, lim Limits) *Error {
	parser := mail.AddressParser{WordDecoder: newWordDecoder()}
	list := func(f hfield, code string) ([]string, *Error) {
		as, err := parser.ParseList(f.value)
		if err != nil {
			return nil, badAddress(code, "%s: %s is not a valid address list (%v)", f.name, quote(f.value), err).with(err)
		}
		var out []string
		for _, a := range as {
			if !utf8.ValidString(a.Name) {
				return nil, reject(CodeUTF8, "%s: the name of %s is not valid UTF-8", f.name, a.Address)
			}
			addr, err := normAddress(a.Address)
			if err != nil {
				return nil, badAddress(code, "%s: %v", f.name, err)
			}
			out = append(out, addr)
		}
		return out, nil
	}

	from := fieldsNamed(kept, "From")
	if len(from) == 0 {
		return reject(CodeFrom, "the message has no From field; add From: with your address")
	}
	addrs, err := list(from[0], CodeFrom)
	if err != nil {
		return err
	}
	if len(addrs) != 1 {
		return reject(CodeFrom, "From names %d addresses; a certified message has exactly one sender", len(addrs))
	}
	s.From = addrs[0]

	for _, name := range []string{"Sender", "Reply-To"} {
		for _, f := range fieldsNamed(kept, name) {
			if _, err := list(f, CodeHeader); err != nil {
				err.Code, err.Enhanced, err.HTTPStatus = CodeHeader, [3]int{5, 6, 0}, 400
				return err
			}
		}
	}

	seen := map[string]bool{}
	for _, name := range []string{"To", "Cc"} {
		for _, f := range fieldsNamed(kept, name) {
			addrs, err := list(f, CodeRecipients)
			if err != nil {
				return err
			}
			for _, a := range addrs {
				if !seen[a] {
					seen[a] = true
					s.Recipients = append(s.Recipients, a)
				}
			}
		}
	}
	if len(s.Recipients) == 0 {
		return reject(CodeRecipients, "the message names no recipient: put the recipient's address in To (or Cc)")
	}
	for _, f := range bcc {
		addrs, err := list(f, CodeRecipients)
		if err != nil {
			return err
		}
		for _, a := range addrs {
			if !seen[a] {
				seen[a] = true
				s.Bcc = append(s.Bcc, a)
			}
		}
	}
	if n := len(s.Recipients) + len(s.Bcc); n > lim.MaxRecipients {
		e := reject(CodeRecipients, "the message has %d recipients; this agent certifies at most %d per message: split it", n, lim.MaxRecipients)
		e.Enhanced = [3]int{5, 5, 3}
		return e
	}
	return nil
}

// normAddress lower-cases the domain of an addr-spec (domains are case-insensitive; local parts
// are not) and checks it as evidence records will.
func normAddress(a string) (string, error) {
	at := strings.LastIndexByte(a, '@')
	if at < 0 {
		return "", fmt.Errorf("%s has no domain", quote(a))
	}
	domain := a[at+1:]
	for _, r := range domain {
		if r >= utf8.RuneSelf {
			return "", fmt.Errorf("the domain of %s is not ASCII; write it in its xn-- form (IDNA)", quote(a))
		}
	}
	a = a[:at+1] + strings.ToLower(domain)
	if err := evidence.CheckAddress(a); err != nil {
		return "", fmt.Errorf("%s is not an address certmail can certify (%v)", quote(a), err)
	}
	return a, nil
}

// readText decodes the subject and checks the other fields a mail program shows as text.
func (s *Submission) readText(kept []hfield) *Error {
	dec := newWordDecoder()
	for _, name := range []string{"Subject", "Comments", "Keywords"} {
		for _, f := range fieldsNamed(kept, name) {
			v, err := dec.DecodeHeader(f.value)
			if err != nil {
				return reject(CodeUTF8, "%s: %v; write it in UTF-8", f.name, err).with(err)
			}
			if !utf8.ValidString(v) {
				return reject(CodeUTF8, "%s is not valid UTF-8 once decoded (RFC 2047); your mail program mislabelled its charset", f.name)
			}
			if strings.EqualFold(name, "Subject") {
				s.Subject = oneLine(v)
			}
		}
	}
	if ids := fieldsNamed(kept, "Message-ID"); len(ids) == 1 {
		s.MessageID = ids[0].value
	}
	return nil
}

// oneLine replaces control and formatting characters by spaces and trims the ends: text that
// came from a message, made safe to show on one line.
func oneLine(s string) string {
	s = strings.ToValidUTF8(s, "\ufffd")
	s = strings.Map(func(r rune) rune {
		if unicode.IsControl(r) || unicode.Is(unicode.Cf, r) || r == '\u2028' || r == '\u2029' {
			return ' '
		}
		return r
	}, s)
	return strings.TrimSpace(s)
}

// crossCheck reads M's header with net/mail, the reader the rest of certmail uses, and refuses
// M when it sees a different header than parseFields did: a parser differential must not let
// a field (a Certmail-Password, say) survive into M or hide from the checks.
func crossCheck(m []byte, fields int) *Error {
	msg, err := mail.ReadMessage(bytes.NewReader(m))
	if err != nil {
		return reject(CodeHeader, "the header cannot be read (%v)", err).with(err)
	}
	n := 0
	for k, vs := range msg.Header {
		if isOptionHeader(k) || strings.EqualFold(k, "Bcc") {
			n = -1 // a field that must not be in M
			break
		}
		n += len(vs)
	}
	if n != fields {
		return reject(CodeHeader, "the header cannot be read unambiguously; check its syntax (RFC 5322 2.2)")
	}
	return nil
}
