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
	"strconv"
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

// part is a MIME entity being composed: a leaf with its content and the transfer encoding render
// gives it, or a multipart. Leaves are encoded straight into the mail as it is written.
type part struct {
	fields []field  // Content-* fields; a multipart's Content-Type is written by render
	data   []byte   // a leaf's content, before transfer encoding
	enc    transfer // how render encodes data
	kind   string   // multipart subtype ("mixed", "alternative") for a multipart
	parts  []*part
}

// transfer is a leaf's Content-Transfer-Encoding, as render applies it.
type transfer int

const (
	asIs            transfer = iota // 7bit or 8bit: data is CRLF text already
	quotedPrintable                 // text, in lines of at most 76
	base64Encoded                   // any bytes, in lines of 76
)

// The values of constant fields, as mime.FormatMediaType writes them (TestConstantFields).
const (
	plainUTF8  = "text/plain; charset=utf-8"
	htmlUTF8   = "text/html; charset=utf-8"
	bundleType = "application/vnd.certmail.bundle"
)

// textPart is text in UTF-8, quoted-printable; contentType is plainUTF8 or htmlUTF8.
func textPart(contentType string, text []byte) *part {
	return &part{
		fields: []field{{"Content-Type", contentType}, {"Content-Transfer-Encoding", "quoted-printable"}},
		data:   text,
		enc:    quotedPrintable,
	}
}

// filePart is an attachment in base64, so its bytes arrive exactly (a signed note keeps its LF
// line ends and its signature).
func filePart(contentType, name string, data []byte) *part {
	return &part{
		fields: []field{
			{"Content-Type", contentType},
			{"Content-Transfer-Encoding", "base64"},
			{"Content-Disposition", attachment(name)},
		},
		data: data,
		enc:  base64Encoded,
	}
}

// messagePart attaches a stored message M as message/rfc822 (RFC 2046 5.2.1): unencoded, so a
// mail program shows it as the message it is. M must be CRLF text with lines of at most 998
// octets and no NUL, as ParseSubmission makes it.
func messagePart(m []byte) (*part, error) {
	if len(m) == 0 {
		return nil, errors.New("the message to attach is empty")
	}
	if bytes.IndexByte(m, 0) >= 0 || !crlfText(m) {
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
			{"Content-Disposition", attachment("message.eml")},
		},
		data: m,
	}, nil
}

// attachment is the Content-Disposition of a file named name. The names given here (message.eml,
// evidence.bundle, cop.note) are tokens, which mime.FormatMediaType writes as they are; it is
// called for any other name.
func attachment(name string) string {
	token := name != "" && !strings.ContainsFunc(name, func(r rune) bool {
		return !(r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || r == '.' || r == '-' || r == '_')
	})
	if !token {
		return mime.FormatMediaType("attachment", map[string]string{"filename": name})
	}
	return "attachment; filename=" + name
}

// crlfText reports whether m is what normalizeCRLF leaves as it is, without copying it: every CR
// is followed by an LF, every LF follows a CR, and m ends with CRLF.
func crlfText(m []byte) bool {
	pairs := bytes.Count(m, []byte(crlf))
	return bytes.HasSuffix(m, []byte(crlf)) && bytes.Count(m, []byte("\r")) == pairs && bytes.Count(m, []byte("\n")) == pairs
}

// size is about the length of p once rendered, so that a mail is written into a buffer of the
// right size at once.
func (p *part) size() int {
	n := 0
	for _, f := range p.fields {
		n += len(f.name) + len(f.value) + 4
	}
	switch p.enc {
	case quotedPrintable:
		n += len(p.data) + len(p.data)/4 // soft line breaks, and some escapes
	case base64Encoded:
		n += (len(p.data)+2)/3*4 + (len(p.data)+56)/57*2
	default:
		n += len(p.data)
	}
	for _, c := range p.parts {
		n += 100 + c.size() // its delimiter line, and room for the Content-Type, preamble and last delimiter
	}
	return n + 2
}

// render writes p's header fields and body to b. Boundaries are "=_" (which neither
// quoted-printable nor base64 output can contain), the caller's random id and a counter, and are
// checked against what they enclose, so the output is a function of the input alone.
func (p *part) render(b *bytes.Buffer, id string, seq *int) error {
	if p.kind == "" {
		for _, f := range p.fields {
			if err := writeField(b, f.name, f.value); err != nil {
				return err
			}
		}
		b.WriteString("\r\n")
		switch p.enc {
		case quotedPrintable:
			w := quotedprintable.NewWriter(b)
			w.Write(p.data) // a bytes.Buffer takes every write
			w.Close()
		case base64Encoded:
			writeBase64(b, p.data)
		default:
			b.Write(p.data)
		}
		return nil
	}
	*seq++
	boundary := "=_" + id + "_" + strconv.Itoa(*seq)
	// As mime.FormatMediaType writes it: the boundary is quoted for its '=', and holds no '"' or
	// '\\' to escape (validID).
	if err := writeField(b, "Content-Type", "multipart/"+p.kind+"; boundary=\""+boundary+"\""); err != nil {
		return err
	}
	b.WriteString("\r\nThis is a MIME message.\r\n")
	delimiter := "\r\n--" + boundary
	for _, c := range p.parts {
		// The CRLF before a delimiter belongs to it (RFC 2046 5.1.1), so each part keeps its
		// own last line end: an attached M comes out with exactly its bytes.
		b.WriteString(delimiter)
		b.WriteString("\r\n")
		start := b.Len()
		if err := c.render(b, id, seq); err != nil {
			return err
		}
		if bytes.Contains(b.Bytes()[start:], []byte(delimiter[2:])) {
			return fmt.Errorf("content contains the MIME boundary %q; compose again with another id", boundary)
		}
	}
	b.WriteString(delimiter)
	b.WriteString("--\r\n")
	return nil
}

// writeBase64 writes data in base64 (RFC 2045 6.8) in lines of 76 characters: each line is 57
// bytes encoded, a multiple of 3, so the lines are the encoding of data cut every 76 characters.
func writeBase64(b *bytes.Buffer, data []byte) {
	for len(data) > 0 {
		n := min(len(data), 57)
		b.Write(base64.StdEncoding.AppendEncode(b.AvailableBuffer(), data[:n]))
		b.WriteString("\r\n")
		data = data[n:]
	}
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
	b.WriteString(name)
	b.WriteByte(':')
	first := true
	for word := range strings.SplitSeq(value, " ") {
		// Fold only before a word, so no line is white space alone (RFC 5322 3.2.2).
		if !first && word != "" && line+1+len(word) > 78 && line > len(name)+1 {
			b.WriteString("\r\n")
			line = 0
		}
		if line+1+len(word) > maxLine {
			return fmt.Errorf("header field %s: a word longer than a line", name)
		}
		b.WriteByte(' ')
		b.WriteString(word)
		line += 1 + len(word)
		first = false
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
	for w := range strings.FieldsSeq(s) {
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
	const head, tail, max, hex = "=?utf-8?q?", "?=", 66, "0123456789ABCDEF"
	var b strings.Builder
	b.Grow(len(head) + 3*len(s) + len(s)/8 + len(tail))
	b.WriteString(head)
	n := 0 // the encoded text in the current word
	for _, r := range s {
		var buf [utf8.UTFMax]byte
		var enc [3 * utf8.UTFMax]byte
		e := enc[:0]
		for _, c := range buf[:utf8.EncodeRune(buf[:], r)] {
			switch {
			case c == ' ':
				e = append(e, '_')
			case c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || strings.IndexByte("!*+-/", c) >= 0:
				e = append(e, c)
			default:
				e = append(e, '=', hex[c>>4], hex[c&0xf])
			}
		}
		if n+len(e) > max-len(head)-len(tail) {
			b.WriteString(tail + " " + head)
			n = 0
		}
		b.Write(e)
		n += len(e)
	}
	b.WriteString(tail)
	return b.String()
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
	fields := make([]field, 0, 12)
	fields = append(fields,
		field{"From", from},
		field{"To", h.To},
		field{"Subject", encodeText(subject)},
		field{"Date", h.Date.UTC().Format(time.RFC1123Z)},
		field{"Message-ID", "<" + h.ID + "@" + h.Domain + ">"},
	)
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
	size := body.size()
	for _, f := range fields {
		size += len(f.name) + len(f.value) + len(f.value)/32 + 4 // folded lines add CRLFs
	}
	var b bytes.Buffer
	b.Grow(size)
	for _, f := range fields {
		if err := writeField(&b, f.name, f.value); err != nil {
			return nil, fmt.Errorf("mailfmt: %s: %w", kind, err)
		}
	}
	seq := 0
	if err := body.render(&b, h.ID, &seq); err != nil {
		return nil, fmt.Errorf("mailfmt: %s: %w", kind, err)
	}
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

// newDoc makes room for the blocks of the longest mail.
func newDoc() doc { return doc{Blocks: make([]block, 0, 12)} }

func (d *doc) para(text string) { d.Blocks = append(d.Blocks, block{Text: text}) }

// facts adds the facts that have a value.
func (d *doc) facts(fs ...fact) {
	var keep []fact // nil when no fact has a value: text renders an empty line then
	for _, f := range fs {
		if f.Value != "" {
			if keep == nil {
				keep = make([]fact, 0, len(fs))
			}
			keep = append(keep, f)
		}
	}
	d.Blocks = append(d.Blocks, block{Facts: keep})
}

func (d *doc) link(u string) { d.Blocks = append(d.Blocks, block{Link: u}) }

// text renders d as plain text: paragraphs wrapped at 72 columns, facts aligned, links alone
// on their line so that mail programs make them clickable.
func (d *doc) text() []byte {
	size := len(d.Title) + 1
	for _, bl := range d.Blocks {
		size += 6 + len(bl.Link) + len(bl.Code) + len(bl.Text) + len(bl.Text)/64
		for _, f := range bl.Facts {
			size += 24 + len(f.Key) + len(f.Value)
		}
	}
	var b bytes.Buffer
	b.Grow(size)
	b.WriteString(d.Title)
	b.WriteByte('\n')
	for _, bl := range d.Blocks {
		b.WriteByte('\n')
		switch {
		case bl.Link != "":
			b.WriteString(bl.Link)
			b.WriteByte('\n')
		case bl.Code != "":
			b.WriteString("    ")
			b.WriteString(bl.Code)
			b.WriteByte('\n')
		case bl.Facts != nil:
			width := 0
			for _, f := range bl.Facts {
				width = max(width, utf8.RuneCountInString(f.Key))
			}
			for _, f := range bl.Facts {
				b.WriteString(f.Key)
				b.WriteByte(':')
				for range width - utf8.RuneCountInString(f.Key) + 2 {
					b.WriteByte(' ')
				}
				b.WriteString(f.Value)
				b.WriteByte('\n')
			}
		default:
			wrap(&b, bl.Text, 72)
		}
	}
	return b.Bytes()
}

// wrap writes text in lines of at most width characters, broken at spaces.
func wrap(b *bytes.Buffer, text string, width int) {
	line := 0
	for w := range strings.FieldsSeq(text) {
		n := utf8.RuneCountInString(w)
		if line > 0 && line+1+n > width {
			b.WriteByte('\n')
			line = 0
		}
		if line > 0 {
			b.WriteByte(' ')
			line++
		}
		b.WriteString(w)
		line += n
	}
	b.WriteByte('\n')
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
// output is compared with (TestDocHTMLMatchesTemplate, FuzzDocHTML).
func (d *doc) html() []byte {
	var b bytes.Buffer
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
	return b.Bytes() // textPart's quoted-printable encoding makes the line ends CRLF
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
func escapeHTML(b *bytes.Buffer, s string) {
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
func writeHref(b *bytes.Buffer, u string) {
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
