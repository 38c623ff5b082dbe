package web

import (
	"bytes"
	"encoding/base32"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"mime"
	"mime/quotedprintable"
	"net/http"
	"net/mail"
	"slices"
	"strings"
	"time"
	"unicode"
	"unicode/utf8"

	"certmail/account"
	"certmail/api"
	"certmail/evidence"
	"certmail/mailfmt"
)

// jsonSubmission is the application/json form of POST /api/v1/messages (api.Message), with the
// composer. It is composed into an RFC 5322 message From the authenticated sender, with the
// options as Certmail-* header fields, and that message is checked by mailfmt.ParseSubmission
// like any other: one gate for every way in.
type jsonSubmission api.Message

// decodeSubmission reads exactly one JSON object with no unknown fields.
func decodeSubmission(body []byte) (*jsonSubmission, error) {
	var js jsonSubmission
	if err := decodeStrict(body, &js); err != nil {
		return nil, fmt.Errorf("the body is not a JSON submission (%v); send {\"to\":[…],\"subject\":…,\"text\":…}", err)
	}
	return &js, nil
}

// decodeStrict reads exactly one JSON value of known fields into v.
func decodeStrict(body []byte, v any) error {
	dec := json.NewDecoder(bytes.NewReader(body))
	dec.DisallowUnknownFields()
	if err := dec.Decode(v); err != nil {
		return errors.New(strings.TrimPrefix(err.Error(), "json: "))
	}
	if _, err := dec.Token(); !errors.Is(err, io.EOF) {
		return errors.New("the body holds more than one JSON value; send one object")
	}
	return nil
}

// fieldError is a JSON submission field that cannot become a header or part of a message.
type fieldError struct {
	Field   string
	Message string
}

func (e *fieldError) Error() string { return e.Field + ": " + e.Message }

func (s *Server) fieldError(w http.ResponseWriter, r *http.Request, err error) {
	var fe *fieldError
	if errors.As(err, &fe) {
		s.problem(w, r, http.StatusUnprocessableEntity, "field", fe.Error())
		return
	}
	s.apiError(w, r, err)
}

// Bounds of the free-text fields, beyond which a value is refused rather than folded.
const (
	maxSubjectRunes = 1000
	maxOptionBytes  = 200
)

// recipients returns the "to" addresses with their domains in lower case, each checked to be one
// plain address: a value that would read as a list or a display name is refused, so the To field
// names exactly these recipients.
func (js *jsonSubmission) recipients() ([]string, error) {
	if len(js.To) == 0 {
		return nil, &fieldError{"to", `name at least one recipient, e.g. "to": ["bob@example.org"]`}
	}
	out := make([]string, len(js.To))
	for i, a := range js.To {
		n := account.Normalize(a)
		if p, err := mail.ParseAddress(n); err != nil || p.Address != n || p.Name != "" || evidence.CheckAddress(n) != nil {
			return nil, &fieldError{fmt.Sprintf("to[%d]", i), fmt.Sprintf("%q is not one e-mail address like bob@example.org", a)}
		}
		if slices.Contains(out[:i], n) {
			return nil, &fieldError{fmt.Sprintf("to[%d]", i), fmt.Sprintf("%s is named twice", n)}
		}
		out[i] = n
	}
	return out, nil
}

// compose writes the message: CRLF lines, folded headers, RFC 2047 words for text that is not
// plain ASCII, the text as quoted-printable and each attachment as base64 in multipart/mixed.
func (js *jsonSubmission) compose(from, domain string, now time.Time, random io.Reader) ([]byte, error) {
	to, err := js.recipients()
	if err != nil {
		return nil, err
	}
	if utf8.RuneCountInString(js.Subject) > maxSubjectRunes {
		return nil, &fieldError{"subject", fmt.Sprintf("longer than %d characters; shorten it", maxSubjectRunes)}
	}
	if err := oneLine("subject", js.Subject); err != nil {
		return nil, err
	}
	id := make([]byte, 15)
	if _, err := io.ReadFull(random, id); err != nil {
		return nil, fmt.Errorf("web: message id: %w", err)
	}
	idText := strings.ToLower(base32.StdEncoding.EncodeToString(id))

	var b bytes.Buffer
	writeField(&b, "From", from)
	writeField(&b, "To", strings.Join(to, ", "))
	if js.Subject != "" {
		writeField(&b, "Subject", encodeText(js.Subject))
	}
	writeField(&b, "Date", now.Format(time.RFC1123Z))
	writeField(&b, "Message-ID", "<"+idText+"@"+domain+">")
	writeField(&b, "MIME-Version", "1.0")
	for _, o := range []struct{ field, header, value string }{
		{"mode", mailfmt.HeaderMode, js.Mode}, {"deadline", mailfmt.HeaderDeadline, js.Deadline},
		{"receipt", mailfmt.HeaderReceipt, js.Receipt}, {"notify", mailfmt.HeaderNotify, js.Notify},
	} {
		if o.value == "" {
			continue
		}
		if len(o.value) > maxOptionBytes {
			return nil, &fieldError{o.field, fmt.Sprintf("longer than %d bytes", maxOptionBytes)}
		}
		if err := oneLine(o.field, o.value); err != nil {
			return nil, err
		}
		writeField(&b, o.header, o.value)
	}
	if js.Password != "" {
		if err := oneLine("password", js.Password); err != nil {
			return nil, err
		}
		if strings.TrimSpace(js.Password) != js.Password {
			return nil, &fieldError{"password", "begins or ends with a space, which the recipient would not know to type"}
		}
		writeField(&b, mailfmt.HeaderPassword, encodeWords(js.Password)) // always encoded: read back exactly
	}
	if js.Hint != "" {
		if err := oneLine("hint", js.Hint); err != nil {
			return nil, err
		}
		writeField(&b, mailfmt.HeaderPasswordHint, encodeText(js.Hint))
	}

	text := textBody(js.Text)
	if len(js.Attachments) == 0 {
		writeField(&b, "Content-Type", "text/plain; charset=utf-8")
		writeField(&b, "Content-Transfer-Encoding", "quoted-printable")
		b.WriteString("\r\n")
		b.Write(text)
		return b.Bytes(), nil
	}
	// "=_" cannot occur in quoted-printable or base64 text, so no part can hold the boundary.
	boundary := "=_" + idText
	writeField(&b, "Content-Type", mime.FormatMediaType("multipart/mixed", map[string]string{"boundary": boundary}))
	b.WriteString("\r\n")
	// Each part's body ends with CRLF; the CRLF before a delimiter belongs to the delimiter.
	if len(text) > 0 {
		b.WriteString("--" + boundary + "\r\n")
		writeField(&b, "Content-Type", "text/plain; charset=utf-8")
		writeField(&b, "Content-Transfer-Encoding", "quoted-printable")
		b.WriteString("\r\n")
		b.Write(text)
		b.WriteString("\r\n")
	}
	for i, a := range js.Attachments {
		field := fmt.Sprintf("attachments[%d]", i)
		ct, err := attachmentType(field, a.ContentType)
		if err != nil {
			return nil, err
		}
		cd := mime.FormatMediaType("attachment", map[string]string{"filename": mailfmt.SafeFilename(a.Name)})
		if cd == "" {
			return nil, &fieldError{field + ".name", "cannot be written as a file name"}
		}
		b.WriteString("--" + boundary + "\r\n")
		writeField(&b, "Content-Type", ct)
		writeField(&b, "Content-Transfer-Encoding", "base64")
		writeField(&b, "Content-Disposition", cd)
		b.WriteString("\r\n")
		b.Write(base64Lines(a.Data))
		b.WriteString("\r\n")
	}
	b.WriteString("--" + boundary + "--\r\n")
	return b.Bytes(), nil
}

// attachmentType checks an attachment's media type and keeps only its charset parameter. A
// multipart or message type would need a structure base64 may not carry (RFC 2045 6.4).
func attachmentType(field, ct string) (string, error) {
	if ct == "" {
		return "application/octet-stream", nil
	}
	mt, params, err := mime.ParseMediaType(ct)
	if err != nil || !strings.Contains(mt, "/") {
		return "", &fieldError{field + ".content_type", fmt.Sprintf("%q is not a media type like application/pdf", ct)}
	}
	if strings.HasPrefix(mt, "multipart/") || strings.HasPrefix(mt, "message/") {
		return "", &fieldError{field + ".content_type", mt + " cannot be sent as a file; use application/octet-stream"}
	}
	keep := map[string]string{}
	if cs, ok := params["charset"]; ok && strings.HasPrefix(mt, "text/") {
		keep["charset"] = cs
	}
	if out := mime.FormatMediaType(mt, keep); out != "" {
		return out, nil
	}
	return "", &fieldError{field + ".content_type", fmt.Sprintf("%q cannot be written in a header", ct)}
}

// oneLine refuses control characters (CR and LF above all: they would end the header field).
func oneLine(field, v string) error {
	for _, r := range v {
		if unicode.IsControl(r) || r == '\u2028' || r == '\u2029' {
			return &fieldError{field, fmt.Sprintf("contains the control character %U; write it on one line", r)}
		}
	}
	return nil
}

// textBody is the text as quoted-printable with CRLF line ends (any of CRLF, CR and LF in the
// input is a line break), ending with a line break when not empty.
func textBody(text string) []byte {
	if text == "" {
		return nil
	}
	if !strings.HasSuffix(text, "\n") && !strings.HasSuffix(text, "\r") {
		text += "\n"
	}
	var b bytes.Buffer
	w := quotedprintable.NewWriter(&b)
	w.Write([]byte(text))
	w.Close()
	return b.Bytes()
}

// encodeText leaves printable ASCII as it is when it reads back the same (no "=?", no word too
// long to fold) and writes anything else as encoded words.
func encodeText(s string) string {
	plain := !strings.Contains(s, "=?")
	for _, r := range s {
		if r < ' ' || r > '~' {
			plain = false
		}
	}
	for _, w := range strings.Split(s, " ") {
		if len(w) > 76 {
			plain = false
		}
	}
	if plain {
		return s
	}
	return encodeWords(s)
}

// encodeWords writes s as RFC 2047 "B" encoded words of at most 75 characters, split between
// runes and separated by spaces, which a decoder drops between encoded words (RFC 2047 6.2).
func encodeWords(s string) string {
	const maxRaw = 45 // 60 base64 characters, plus "=?utf-8?b?" and "?="
	var words []string
	for len(s) > 0 {
		n := min(len(s), maxRaw)
		for n < len(s) && n > 0 && !utf8.RuneStart(s[n]) {
			n--
		}
		words = append(words, "=?utf-8?b?"+base64.StdEncoding.EncodeToString([]byte(s[:n]))+"?=")
		s = s[n:]
	}
	return strings.Join(words, " ")
}

// writeField writes "Name: value" CRLF, folding before spaces to keep lines near 78 characters
// (RFC 5322 2.2.3). Unfolding removes only the CRLFs, so the value reads back as written.
func writeField(b *bytes.Buffer, name, value string) {
	b.WriteString(name + ":")
	line := len(name) + 1
	for i, w := range strings.Split(value, " ") {
		if i > 0 && w != "" && line+1+len(w) > 78 {
			b.WriteString("\r\n")
			line = 0
		}
		b.WriteByte(' ')
		b.WriteString(w)
		line += 1 + len(w)
	}
	b.WriteString("\r\n")
}

// base64Lines is data in base64 lines of 76 characters (RFC 2045 6.8), each ending with CRLF.
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
