package mailfmt

// The straightforward versions of the encoders that compose the mails, as they were before they
// were made cheaper: quoted-printable and base64 into buffers of their own, one buffer for each
// entity, fmt and mime.FormatMediaType for every value. They are kept as the oracle the tests
// compare the composed bytes with (encode_test.go); the HTML's oracle is docTemplate.

import (
	"bytes"
	"encoding/base64"
	"errors"
	"fmt"
	"mime"
	"mime/quotedprintable"
	"net/mail"
	"strings"
	"time"
	"unicode/utf8"

	"certmail/evidence"
)

// oldPart is a MIME entity being composed: a leaf with an encoded body, or a multipart.
type oldPart struct {
	fields []field // Content-* fields; a multipart's Content-Type is written by render
	body   []byte  // a leaf's body, transfer-encoded, CRLF lines
	kind   string  // multipart subtype ("mixed", "alternative") for a multipart
	parts  []*oldPart
}

// oldTextPart is text/<sub> in UTF-8, quoted-printable.
func oldTextPart(sub, text string) *oldPart {
	var b bytes.Buffer
	w := quotedprintable.NewWriter(&b)
	w.Write([]byte(text))
	w.Close()
	return &oldPart{
		fields: []field{
			{"Content-Type", mime.FormatMediaType("text/"+sub, map[string]string{"charset": "utf-8"})},
			{"Content-Transfer-Encoding", "quoted-printable"},
		},
		body: b.Bytes(),
	}
}

// oldFilePart is an attachment in base64, so its bytes arrive exactly (a signed note keeps its LF
// line ends and its signature).
func oldFilePart(mediaType, name string, data []byte) *oldPart {
	ct := map[string]string{}
	if strings.HasPrefix(mediaType, "text/") {
		ct["charset"] = "utf-8"
	}
	return &oldPart{
		fields: []field{
			{"Content-Type", mime.FormatMediaType(mediaType, ct)},
			{"Content-Transfer-Encoding", "base64"},
			{"Content-Disposition", mime.FormatMediaType("attachment", map[string]string{"filename": name})},
		},
		body: oldBase64Lines(data),
	}
}

// oldMessagePart attaches a stored message M as message/rfc822 (RFC 2046 5.2.1): unencoded, so a
// mail program shows it as the message it is. M must be CRLF text with lines of at most 998
// octets and no NUL, as ParseSubmission makes it.
func oldMessagePart(m []byte) (*oldPart, error) {
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
	return &oldPart{
		fields: []field{
			{"Content-Type", "message/rfc822"},
			{"Content-Transfer-Encoding", cte},
			{"Content-Disposition", mime.FormatMediaType("attachment", map[string]string{"filename": "message.eml"})},
		},
		body: m,
	}, nil
}

func oldBase64Lines(data []byte) []byte {
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
func (p *oldPart) render(id string, seq *int) ([]byte, error) {
	var b bytes.Buffer
	if p.kind == "" {
		for _, f := range p.fields {
			if err := oldWriteField(&b, f.name, f.value); err != nil {
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
	if err := oldWriteField(&b, "Content-Type", mime.FormatMediaType("multipart/"+p.kind, map[string]string{"boundary": boundary})); err != nil {
		return nil, err
	}
	b.WriteString("\r\nThis is a MIME message.\r\n")
	for _, c := range children {
		// The CRLF before a delimiter belongs to it (RFC 2046 5.1.1), so each oldPart keeps its
		// own last line end: an attached M comes out with exactly its bytes.
		b.WriteString("\r\n--" + boundary + "\r\n")
		b.Write(c)
	}
	b.WriteString("\r\n--" + boundary + "--\r\n")
	return b.Bytes(), nil
}

// oldWriteField writes "Name: value" folded at spaces to lines of about 78 characters (RFC 5322
// 2.1.1, 2.2.3). A value with a control character is refused: nothing a caller passes can end
// the line and start another field.
func oldWriteField(b *bytes.Buffer, name, value string) error {
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

// oldEncodeText makes free text (a subject) one safe header value: control characters become
// spaces, and text that is not plain printable ASCII, or that looks like an encoded word, or
// that has a word too long to fold, becomes RFC 2047 encoded words.
func oldEncodeText(s string) string {
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
	return oldQEncode(s)
}

// oldQEncode writes s as RFC 2047 "Q" encoded words in UTF-8, never splitting a character (RFC
// 2047 2, 5(3)). Each word is at most 66 characters (RFC 2047 allows 75), so that "Subject: "
// and a word fit in a line of 76.
func oldQEncode(s string) string {
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

// oldCompose writes a whole mail: the message header fields, then the body entity.
func oldCompose(h Head, kind Kind, label evidence.Label, subject string, body *oldPart) ([]byte, error) {
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
		{"Subject", oldEncodeText(subject)},
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
		if err := oldWriteField(&b, f.name, f.value); err != nil {
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

// oldText renders d as plain text: paragraphs wrapped at 72 columns, facts aligned, links alone
// on their line so that mail programs make them clickable.
func oldText(d *doc) string {
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
			b.WriteString(oldWrap(bl.Text, 72))
		}
	}
	return b.String()
}

// oldWrap breaks text into lines of at most width characters at spaces.
func oldWrap(text string, width int) string {
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
