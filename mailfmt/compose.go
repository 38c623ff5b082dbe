package mailfmt

import (
	"bytes"
	"encoding/base64"
	"errors"
	"fmt"
	"mime"
	"mime/quotedprintable"
	"net/mail"
	"net/url"
	"strings"
	"time"
	"unicode/utf8"

	"certmail/evidence"
)

// Head is what every composed mail needs from its caller.
type Head struct {
	From string    // the agent's mailbox, e.g. certmail@mail.a.example
	Name string    // display name of From; "" gives "certmail"
	To   string    // the one addressee of this mail
	Date time.Time // when the mail is composed, from the caller's clock
	// Domain is the agent's host name: the right side of the Message-ID, and the host whose
	// /.well-known/certmail publishes the key that checks the attached evidence.
	Domain string
	// ID is the left side of the Message-ID: drawn at random by the caller (e.g. 16 random bytes
	// in base32), 1 to 64 letters, digits, '-', '_' or '.'. It also seeds the MIME boundaries.
	ID string
	// InReplyTo, when set, is the Message-ID ("<...>") of the certified message, so a mail
	// program shows a receipt in the thread of the message it is about.
	InReplyTo string
}

// check validates the fields that go into header fields. Values that could end a header line
// are refused, never passed through.
func (h Head) check() error {
	if err := evidence.CheckAddress(h.From); err != nil {
		return fmt.Errorf("head: from: %w", err)
	}
	if err := evidence.CheckAddress(h.To); err != nil {
		return fmt.Errorf("head: to: %w", err)
	}
	if h.Date.IsZero() {
		return errors.New("head: no date")
	}
	if err := evidence.CheckHost(h.Domain); err != nil {
		return fmt.Errorf("head: domain: %w", err)
	}
	if !validID(h.ID) {
		return fmt.Errorf("head: id %q: want 1 to 64 letters, digits, '-', '_' or '.'", h.ID)
	}
	if h.InReplyTo != "" && !validMsgID(h.InReplyTo) {
		return fmt.Errorf("head: in-reply-to %q: want one message id \"<left@right>\"", h.InReplyTo)
	}
	if strings.ContainsFunc(h.Name, func(r rune) bool { return r < ' ' || r == 0x7f }) {
		return fmt.Errorf("head: name %q: control characters", h.Name)
	}
	return nil
}

func validID(s string) bool {
	if s == "" || len(s) > 64 || s[0] == '.' || s[len(s)-1] == '.' || strings.Contains(s, "..") {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '-' || c == '_' || c == '.') {
			return false
		}
	}
	return true
}

// validMsgID accepts "<" id-left "@" id-right ">" of printable ASCII without white space or
// further angle brackets (RFC 5322 3.6.4, leniently: real ids are not all dot-atoms).
func validMsgID(s string) bool {
	if len(s) < 5 || len(s) > 250 || s[0] != '<' || s[len(s)-1] != '>' {
		return false
	}
	inner := s[1 : len(s)-1]
	if strings.Count(inner, "@") != 1 || inner[0] == '@' || inner[len(inner)-1] == '@' {
		return false
	}
	for i := 0; i < len(inner); i++ {
		if c := inner[i]; c <= ' ' || c >= 0x7f || c == '<' || c == '>' {
			return false
		}
	}
	return true
}

// field is one header field to write: its value is ASCII or UTF-8 without line breaks, and is
// folded when written.
type field struct{ name, value string }

// part is a MIME entity being composed: a leaf with an encoded body, or a multipart.
type part struct {
	fields []field // Content-* fields; a multipart's Content-Type is written by render
	body   []byte  // a leaf's body, transfer-encoded, CRLF lines
	kind   string  // multipart subtype ("mixed", "alternative") for a multipart
	parts  []*part
}

// textPart is text/<sub> in UTF-8, quoted-printable.
func textPart(sub, text string) *part {
	var b bytes.Buffer
	w := quotedprintable.NewWriter(&b)
	w.Write([]byte(text))
	w.Close()
	return &part{
		fields: []field{
			{"Content-Type", mime.FormatMediaType("text/"+sub, map[string]string{"charset": "utf-8"})},
			{"Content-Transfer-Encoding", "quoted-printable"},
		},
		body: b.Bytes(),
	}
}

// filePart is an attachment in base64, so its bytes arrive exactly (a signed note keeps its LF
// line ends and its signature).
func filePart(mediaType, name string, data []byte) *part {
	ct := map[string]string{}
	if strings.HasPrefix(mediaType, "text/") {
		ct["charset"] = "utf-8"
	}
	return &part{
		fields: []field{
			{"Content-Type", mime.FormatMediaType(mediaType, ct)},
			{"Content-Transfer-Encoding", "base64"},
			{"Content-Disposition", mime.FormatMediaType("attachment", map[string]string{"filename": name})},
		},
		body: base64Lines(data),
	}
}

// messagePart attaches a stored message M as message/rfc822 (RFC 2046 5.2.1): unencoded, so a
// mail program shows it as the message it is. M must be CRLF text with lines of at most 998
// octets and no NUL, as ParseSubmission makes it.
func messagePart(m []byte) (*part, error) {
	if len(m) == 0 {
		return nil, errors.New("the message to attach is empty")
	}
	if bytes.IndexByte(m, 0) >= 0 || !bytes.Equal(normalizeCRLF(m), m) {
		return nil, errors.New("the message to attach is not CRLF text without NUL")
	}
	if n, _ := longLine(m); n > 0 {
		return nil, fmt.Errorf("the message to attach has a line longer than %d", maxLine)
	}
	cte := "7bit"
	for _, c := range m {
		if c >= 0x80 {
			cte = "8bit"
			break
		}
	}
	return &part{
		fields: []field{
			{"Content-Type", "message/rfc822"},
			{"Content-Transfer-Encoding", cte},
			{"Content-Disposition", mime.FormatMediaType("attachment", map[string]string{"filename": "message.eml"})},
		},
		body: m,
	}, nil
}

func base64Lines(data []byte) []byte {
	enc := base64.StdEncoding.EncodeToString(data)
	var b bytes.Buffer
	for len(enc) > 76 {
		b.WriteString(enc[:76] + "\r\n")
		enc = enc[76:]
	}
	if enc != "" {
		b.WriteString(enc + "\r\n")
	}
	return b.Bytes()
}

// render writes p's header fields and body. Boundaries are "=_" (which neither quoted-printable
// nor base64 output can contain), the caller's random id and a counter, and are checked against
// what they enclose, so the output is a function of the input alone.
func (p *part) render(id string, seq *int) ([]byte, error) {
	var b bytes.Buffer
	if p.kind == "" {
		for _, f := range p.fields {
			if err := writeField(&b, f.name, f.value); err != nil {
				return nil, err
			}
		}
		b.WriteString("\r\n")
		b.Write(p.body)
		return b.Bytes(), nil
	}
	*seq++
	boundary := fmt.Sprintf("=_%s_%d", id, *seq)
	var children [][]byte
	for _, c := range p.parts {
		r, err := c.render(id, seq)
		if err != nil {
			return nil, err
		}
		if bytes.Contains(r, []byte("--"+boundary)) {
			return nil, fmt.Errorf("content contains the MIME boundary %q; compose again with another id", boundary)
		}
		children = append(children, r)
	}
	if err := writeField(&b, "Content-Type", mime.FormatMediaType("multipart/"+p.kind, map[string]string{"boundary": boundary})); err != nil {
		return nil, err
	}
	b.WriteString("\r\nThis is a MIME message.\r\n")
	for _, c := range children {
		// The CRLF before a delimiter belongs to it (RFC 2046 5.1.1), so each part keeps its
		// own last line end: an attached M comes out with exactly its bytes.
		b.WriteString("\r\n--" + boundary + "\r\n")
		b.Write(c)
	}
	b.WriteString("\r\n--" + boundary + "--\r\n")
	return b.Bytes(), nil
}

// writeField writes "Name: value" folded at spaces to lines of about 78 characters (RFC 5322
// 2.1.1, 2.2.3). A value with a control character is refused: nothing a caller passes can end
// the line and start another field.
func writeField(b *bytes.Buffer, name, value string) error {
	if !validFieldName(name) {
		return fmt.Errorf("header field name %q", name)
	}
	if strings.ContainsFunc(value, func(r rune) bool { return r < ' ' || r == 0x7f }) {
		return fmt.Errorf("header field %s: value %q contains a control character", name, value)
	}
	if !utf8.ValidString(value) {
		return fmt.Errorf("header field %s: value is not UTF-8", name)
	}
	line := len(name) + 1
	b.WriteString(name + ":")
	for i, word := range strings.Split(value, " ") {
		// Fold only before a word, so no line is white space alone (RFC 5322 3.2.2).
		if i > 0 && word != "" && line+1+len(word) > 78 && line > len(name)+1 {
			b.WriteString("\r\n")
			line = 0
		}
		if line+1+len(word) > maxLine {
			return fmt.Errorf("header field %s: a word longer than a line", name)
		}
		b.WriteString(" " + word)
		line += 1 + len(word)
	}
	b.WriteString("\r\n")
	return nil
}

// encodeText makes free text (a subject) one safe header value: control characters become
// spaces, and text that is not plain printable ASCII, or that looks like an encoded word, or
// that has a word too long to fold, becomes RFC 2047 encoded words.
func encodeText(s string) string {
	s = oneLine(s)
	plain := !strings.Contains(s, "=?")
	for _, r := range s {
		if r < ' ' || r > '~' {
			plain = false
		}
	}
	for _, w := range strings.Fields(s) {
		if len(w) > 900 {
			plain = false
		}
	}
	if plain {
		return s
	}
	return qEncode(s)
}

// qEncode writes s as RFC 2047 "Q" encoded words in UTF-8, never splitting a character (RFC
// 2047 2, 5(3)). Each word is at most 66 characters (RFC 2047 allows 75), so that "Subject: "
// and a word fit in a line of 76.
func qEncode(s string) string {
	const head, tail, max = "=?utf-8?q?", "?=", 66
	var words []string
	var cur strings.Builder
	for _, r := range s {
		var enc strings.Builder
		var buf [utf8.UTFMax]byte
		for _, c := range buf[:utf8.EncodeRune(buf[:], r)] {
			switch {
			case c == ' ':
				enc.WriteByte('_')
			case c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || strings.IndexByte("!*+-/", c) >= 0:
				enc.WriteByte(c)
			default:
				fmt.Fprintf(&enc, "=%02X", c)
			}
		}
		if cur.Len()+enc.Len() > max-len(head)-len(tail) {
			words = append(words, head+cur.String()+tail)
			cur.Reset()
		}
		cur.WriteString(enc.String())
	}
	if cur.Len() > 0 || len(words) == 0 {
		words = append(words, head+cur.String()+tail)
	}
	return strings.Join(words, " ")
}

// compose writes a whole mail: the message header fields, then the body entity.
func compose(h Head, kind Kind, label evidence.Label, subject string, body *part) ([]byte, error) {
	if err := h.check(); err != nil {
		return nil, fmt.Errorf("mailfmt: %s: %w", kind, err)
	}
	name := h.Name
	if name == "" {
		name = "certmail"
	}
	from := (&mail.Address{Name: oneLine(name), Address: h.From}).String()
	fields := []field{
		{"From", from},
		{"To", h.To},
		{"Subject", encodeText(subject)},
		{"Date", h.Date.UTC().Format(time.RFC1123Z)},
		{"Message-ID", "<" + h.ID + "@" + h.Domain + ">"},
	}
	if h.InReplyTo != "" {
		fields = append(fields, field{"In-Reply-To", h.InReplyTo}, field{"References", h.InReplyTo})
	}
	fields = append(fields,
		field{"MIME-Version", "1.0"},
		field{"Auto-Submitted", "auto-generated"}, // RFC 3834 5: no auto-replies to this
		field{"X-Certmail-Kind", string(kind)},
	)
	if !label.IsZero() {
		fields = append(fields, field{"X-Certmail-Label", label.String()})
	}
	var b bytes.Buffer
	for _, f := range fields {
		if err := writeField(&b, f.name, f.value); err != nil {
			return nil, fmt.Errorf("mailfmt: %s: %w", kind, err)
		}
	}
	seq := 0
	r, err := body.render(h.ID, &seq)
	if err != nil {
		return nil, fmt.Errorf("mailfmt: %s: %w", kind, err)
	}
	b.Write(r)
	return b.Bytes(), nil
}

// block is one piece of a mail's text: a paragraph, a table of facts, a link or a command.
type block struct {
	Text  string
	Facts []fact
	Link  string
	Code  string
}

type fact struct{ Key, Value string }

// doc is the readable content of a mail, rendered as plain text and, for the notification, HTML.
type doc struct {
	Title  string
	Blocks []block
}

func (d *doc) para(format string, args ...any) {
	d.Blocks = append(d.Blocks, block{Text: fmt.Sprintf(format, args...)})
}

func (d *doc) facts(fs ...fact) {
	var keep []fact
	for _, f := range fs {
		if f.Value != "" {
			keep = append(keep, f)
		}
	}
	d.Blocks = append(d.Blocks, block{Facts: keep})
}

func (d *doc) link(u string) { d.Blocks = append(d.Blocks, block{Link: u}) }

// text renders d as plain text: paragraphs wrapped at 72 columns, facts aligned, links alone
// on their line so that mail programs make them clickable.
func (d *doc) text() string {
	var b strings.Builder
	b.WriteString(d.Title + "\n")
	for _, bl := range d.Blocks {
		b.WriteString("\n")
		switch {
		case bl.Link != "":
			b.WriteString(bl.Link + "\n")
		case bl.Code != "":
			b.WriteString("    " + bl.Code + "\n")
		case bl.Facts != nil:
			width := 0
			for _, f := range bl.Facts {
				width = max(width, utf8.RuneCountInString(f.Key))
			}
			for _, f := range bl.Facts {
				pad := strings.Repeat(" ", width-utf8.RuneCountInString(f.Key))
				b.WriteString(f.Key + ":" + pad + "  " + f.Value + "\n")
			}
		default:
			b.WriteString(wrap(bl.Text, 72))
		}
	}
	return b.String()
}

// wrap breaks text into lines of at most width characters at spaces.
func wrap(text string, width int) string {
	var b strings.Builder
	line := 0
	for _, w := range strings.Fields(text) {
		n := utf8.RuneCountInString(w)
		if line > 0 && line+1+n > width {
			b.WriteString("\n")
			line = 0
		}
		if line > 0 {
			b.WriteString(" ")
			line++
		}
		b.WriteString(w)
		line += n
	}
	b.WriteString("\n")
	return b.String()
}

// html renders d as the HTML alternative of the notification. It writes what the html/template
//
//	<!DOCTYPE html>
//	<html><head><meta charset="utf-8"><title>{{.Title}}</title></head>
//	<body style="font-family: sans-serif; max-width: 40em">
//	<h1 style="font-size: 1.3em">{{.Title}}</h1>
//	{{range .Blocks}}{{if .Link}}<p><a href="{{.Link}}">{{.Link}}</a></p>
//	{{else if .Code}}<pre>{{.Code}}</pre>
//	{{else if .Facts}}<table>
//	{{range .Facts}}<tr><th style="text-align: left; padding-right: 1em; vertical-align: top">{{.Key}}</th><td><code>{{.Value}}</code></td></tr>
//	{{end}}</table>
//	{{else}}<p>{{.Text}}</p>
//	{{end}}{{end}}</body></html>
//
// would write, byte for byte, but by hand: executing the template (reflection, evalCall) was
// measured at about 4 % of the agent's CPU under load, for a document of fixed shape. It is as
// safe as the template because it escapes the same way: every value goes through escapeHTML,
// in text and in the one attribute alike, and the link through writeHref, html/template's
// treatment of a URL attribute. The template stays in the tests as the oracle that every
// output is compared with (TestDocHTML, FuzzDocHTML).
func (d *doc) html() string {
	var b strings.Builder
	b.Grow(d.htmlSize())
	b.WriteString("<!DOCTYPE html>\n<html><head><meta charset=\"utf-8\"><title>")
	escapeHTML(&b, d.Title)
	b.WriteString("</title></head>\n<body style=\"font-family: sans-serif; max-width: 40em\">\n<h1 style=\"font-size: 1.3em\">")
	escapeHTML(&b, d.Title)
	b.WriteString("</h1>\n")
	for _, bl := range d.Blocks {
		switch {
		case bl.Link != "":
			b.WriteString("<p><a href=\"")
			writeHref(&b, bl.Link)
			b.WriteString("\">")
			escapeHTML(&b, bl.Link)
			b.WriteString("</a></p>\n")
		case bl.Code != "":
			b.WriteString("<pre>")
			escapeHTML(&b, bl.Code)
			b.WriteString("</pre>\n")
		case len(bl.Facts) > 0:
			b.WriteString("<table>\n")
			for _, f := range bl.Facts {
				b.WriteString(factHead)
				escapeHTML(&b, f.Key)
				b.WriteString("</th><td><code>")
				escapeHTML(&b, f.Value)
				b.WriteString("</code></td></tr>\n")
			}
			b.WriteString("</table>\n")
		default:
			b.WriteString("<p>")
			escapeHTML(&b, bl.Text)
			b.WriteString("</p>\n")
		}
	}
	b.WriteString("</body></html>\n")
	return b.String() // textPart's quoted-printable encoding makes the line ends CRLF
}

const factHead = `<tr><th style="text-align: left; padding-right: 1em; vertical-align: top">`

// htmlSize is about the length of d's HTML, so that html allocates once: the markup, and the
// values with some room for their escapes.
func (d *doc) htmlSize() int {
	n := 250 + 2*len(d.Title)
	for _, bl := range d.Blocks {
		n += 40 + 2*len(bl.Link) + len(bl.Code) + len(bl.Text)
		for _, f := range bl.Facts {
			n += len(factHead) + 40 + len(f.Key) + len(f.Value)
		}
	}
	return n + n/16
}

// escapeHTML writes s escaped as html/template escapes a string in HTML text and in a quoted
// attribute value: the five HTML specials and '+' (against UTF-7 sniffing) as character
// references, NUL as U+FFFD, every other byte as it is. html/template goes by character and
// passes invalid UTF-8 through; going by byte is the same, as the escaped bytes are ASCII and no
// byte of a multi-byte UTF-8 sequence is ASCII.
func escapeHTML(b *strings.Builder, s string) {
	last := 0
	for i := 0; i < len(s); i++ {
		var esc string
		switch s[i] {
		case 0:
			esc = "\uFFFD"
		case '"':
			esc = "&#34;"
		case '&':
			esc = "&amp;"
		case '\'':
			esc = "&#39;"
		case '+':
			esc = "&#43;"
		case '<':
			esc = "&lt;"
		case '>':
			esc = "&gt;"
		default:
			continue
		}
		b.WriteString(s[last:i])
		b.WriteString(esc)
		last = i + 1
	}
	b.WriteString(s[last:])
}

// writeHref writes u as html/template writes a value into a double-quoted URL attribute such as
// href (its urlFilter, urlNormalizer and attrEscaper, in html/template's url.go and html.go):
//   - a scheme other than http, https or mailto makes the whole URL "#ZgotmplZ";
//   - a byte that is not unreserved or reserved in RFC 3986 (or is \' ( ) ) is percent-encoded in
//     lower-case hex, except a '%' that already starts an escape;
//   - of what is left, '&' and '+' are escaped for the attribute; no other HTML special is left.
//
// Composition passes only links that checkLink accepted, so the filter never strikes here; it is
// kept so that this function alone is as safe as the template.
func writeHref(b *strings.Builder, u string) {
	if scheme, _, ok := strings.Cut(u, ":"); ok && !strings.Contains(scheme, "/") &&
		!strings.EqualFold(scheme, "http") && !strings.EqualFold(scheme, "https") && !strings.EqualFold(scheme, "mailto") {
		u = "#ZgotmplZ"
	}
	const hex = "0123456789abcdef"
	for i := 0; i < len(u); i++ {
		switch c := u[i]; {
		case c == '&':
			b.WriteString("&amp;")
		case c == '+':
			b.WriteString("&#43;")
		case urlByte(c) || c == '%' && i+2 < len(u) && isHex(u[i+1]) && isHex(u[i+2]):
			b.WriteByte(c)
		default:
			b.WriteByte('%')
			b.WriteByte(hex[c>>4])
			b.WriteByte(hex[c&0xf])
		}
	}
}

// urlByte reports whether html/template keeps c as it is when it normalises a URL: the
// unreserved characters and the reserved ones but \' ( ) of RFC 3986 2.2, 2.3.
func urlByte(c byte) bool {
	return 'a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || '0' <= c && c <= '9' || strings.IndexByte("-._~!#$&*+,/:;=?@[]", c) >= 0
}

func isHex(c byte) bool {
	return '0' <= c && c <= '9' || 'a' <= c && c <= 'f' || 'A' <= c && c <= 'F'
}

// checkLink accepts an absolute http(s) URL without white space or control characters.
func checkLink(s string) error {
	if s == "" || strings.ContainsFunc(s, func(r rune) bool { return r <= ' ' || r == 0x7f || r >= utf8.RuneSelf }) {
		return fmt.Errorf("link %q: empty, or has white space, control or non-ASCII characters", s)
	}
	u, err := url.Parse(s)
	if err != nil {
		return fmt.Errorf("link %q: %w", s, err)
	}
	if (u.Scheme != "https" && u.Scheme != "http") || u.Host == "" || u.User != nil {
		return fmt.Errorf("link %q: want an http or https URL with a host and no user", s)
	}
	return nil
}

// showTime writes a time as evidence records do, and for people.
func showTime(t time.Time) string {
	if t.IsZero() {
		return ""
	}
	return evidence.FormatTime(t) + " (" + t.UTC().Format("Mon, 2 Jan 2006 15:04 MST") + ")"
}
