package web

import (
	"bytes"
	"encoding/base64"
	"errors"
	"fmt"
	"io"
	"mime"
	"mime/multipart"
	"mime/quotedprintable"
	"net/mail"
	"net/textproto"
	"strings"
	"time"
	"unicode/utf8"

	"certmail/evidence"
	"certmail/mailfmt"
)

// shown is a stored message M as the pickup page shows it: a few header fields, the first
// plain-text part and the files. Nothing of it is ever rendered as HTML; templates escape it.
type shown struct {
	From, To, Cc, Subject, Date string
	Text                        string // the first inline text/plain part, UTF-8, LF line ends
	HasText                     bool
	Unreadable                  bool // the text's charset is one this page cannot read: shown as UTF-8
	Hidden                      bool // parts not shown (HTML, other inline text): in message.eml
	Files                       []file
}

// file is one attachment of M, decoded.
type file struct {
	Name string // mailfmt.SafeFilename of the name the message gives
	Type string // media type without parameters
	Data []byte
	Hash evidence.Hash
}

// Bounds for reading a stored message; mailfmt refused anything past its own at submission.
const (
	readMaxDepth = 32
	readMaxParts = 5000
)

// readMessage takes M apart for display. It follows the rules mailfmt's walker uses to list
// attachments (RFC 2045, 2046, 2183): a part is a file when it is disposed as an attachment,
// has a name, or is not text; message/rfc822 parts are files when disposed or named, and are
// read inside too.
func readMessage(m []byte) (*shown, error) {
	msg, err := mail.ReadMessage(bytes.NewReader(m))
	if err != nil {
		return nil, fmt.Errorf("web: read message: %w", err)
	}
	body, err := io.ReadAll(msg.Body)
	if err != nil {
		return nil, err
	}
	dec := mime.WordDecoder{}
	text := func(name string) string {
		v := msg.Header.Get(name)
		if d, err := dec.DecodeHeader(v); err == nil {
			v = d
		}
		return strings.ToValidUTF8(v, "\ufffd")
	}
	out := &shown{From: text("From"), To: text("To"), Cc: text("Cc"), Subject: text("Subject"), Date: text("Date")}
	rd := reader{out: out}
	if err := rd.entity(textproto.MIMEHeader(msg.Header), body, 0, "text/plain"); err != nil {
		return nil, err
	}
	return out, nil
}

type reader struct {
	out   *shown
	parts int
}

func (rd *reader) entity(h textproto.MIMEHeader, body []byte, depth int, defaultType string) error {
	rd.parts++
	if rd.parts > readMaxParts || depth > readMaxDepth {
		return errors.New("web: read message: too many or too deeply nested parts")
	}
	mediaType, params := defaultType, map[string]string{}
	if ct := h.Get("Content-Type"); ct != "" {
		var err error
		if mediaType, params, err = mime.ParseMediaType(ct); err != nil {
			mediaType, params = "application/octet-stream", map[string]string{}
		}
	}
	disposition, name := "", ""
	if cd := h.Get("Content-Disposition"); cd != "" {
		if d, p, err := mime.ParseMediaType(cd); err == nil {
			disposition, name = d, p["filename"]
		}
	}
	if name == "" {
		name = params["name"]
	}
	if strings.Contains(name, "=?") {
		if d, err := new(mime.WordDecoder).DecodeHeader(name); err == nil {
			name = d
		}
	}
	switch {
	case strings.HasPrefix(mediaType, "multipart/"):
		childType := "text/plain"
		if mediaType == "multipart/digest" {
			childType = "message/rfc822"
		}
		mr := multipart.NewReader(bytes.NewReader(body), params["boundary"])
		for {
			p, err := mr.NextRawPart()
			if errors.Is(err, io.EOF) {
				return nil
			}
			if err != nil {
				return fmt.Errorf("web: read message: %w", err)
			}
			data, err := io.ReadAll(p)
			if err != nil {
				return fmt.Errorf("web: read message: %w", err)
			}
			if err := rd.entity(p.Header, data, depth+1, childType); err != nil {
				return err
			}
		}
	case mediaType == "message/rfc822":
		if disposition == "attachment" || name != "" {
			rd.file(name, "message.eml", mediaType, body)
		}
		inner, err := mail.ReadMessage(bytes.NewReader(body))
		if err != nil {
			return fmt.Errorf("web: read message: inner message: %w", err)
		}
		ibody, err := io.ReadAll(inner.Body)
		if err != nil {
			return err
		}
		return rd.entity(textproto.MIMEHeader(inner.Header), ibody, depth+1, "text/plain")
	}
	data, err := decodeTransfer(strings.ToLower(strings.TrimSpace(h.Get("Content-Transfer-Encoding"))), body)
	if err != nil {
		return fmt.Errorf("web: read message: %w", err)
	}
	switch {
	case disposition == "attachment" || name != "" || !strings.HasPrefix(mediaType, "text/"):
		rd.file(name, "", mediaType, data)
	case mediaType == "text/plain" && !rd.out.HasText:
		rd.out.Text, rd.out.Unreadable = toUTF8(data, params["charset"])
		rd.out.Text = strings.ReplaceAll(rd.out.Text, "\r\n", "\n")
		rd.out.HasText = true
	default:
		rd.out.Hidden = true
	}
	return nil
}

func (rd *reader) file(name, fallback, mediaType string, data []byte) {
	if name == "" {
		name = fallback
	}
	rd.out.Files = append(rd.out.Files, file{Name: mailfmt.SafeFilename(name), Type: mediaType, Data: data, Hash: evidence.Sum(data)})
}

func decodeTransfer(cte string, body []byte) ([]byte, error) {
	switch cte {
	case "base64":
		clean := bytes.Map(func(r rune) rune {
			if r == '\r' || r == '\n' || r == ' ' || r == '\t' {
				return -1
			}
			return r
		}, body)
		return base64.StdEncoding.DecodeString(string(clean))
	case "quoted-printable":
		return io.ReadAll(quotedprintable.NewReader(bytes.NewReader(body)))
	}
	return body, nil
}

// toUTF8 reads text in the charsets mail still uses for plain text; unreadable reports that the
// charset was none of them and the text is shown as UTF-8 with bad bytes replaced.
func toUTF8(b []byte, charset string) (s string, unreadable bool) {
	switch strings.ToLower(charset) {
	case "", "us-ascii", "ascii", "utf-8", "utf8":
	case "iso-8859-1", "latin1", "iso8859-1", "iso_8859-1":
		r := make([]rune, len(b))
		for i, c := range b {
			r[i] = rune(c)
		}
		return string(r), false
	default:
		return strings.ToValidUTF8(string(b), "\ufffd"), !utf8.Valid(b)
	}
	return strings.ToValidUTF8(string(b), "\ufffd"), false
}

// checkedFiles returns the files of M only when they agree, one by one, with what
// mailfmt.ParseSubmission lists for M (the gate every message passed): the same count, and each
// file's bytes hashing to the hash mailfmt computed. The names are mailfmt's. When they do not
// agree, no file is offered on its own (the whole message still is), rather than a wrong one.
func checkedFiles(m []byte, sh *shown, lim mailfmt.Limits) ([]file, error) {
	lim.MaxBytes = int64(len(m)) + 1
	lim.MaxRecipients = 1 << 20
	sub, err := mailfmt.ParseSubmission(m, lim, time.Unix(0, 0), mailfmt.Options{})
	if err != nil {
		return nil, err
	}
	if len(sub.Attachments) != len(sh.Files) {
		return nil, fmt.Errorf("web: %d attachments, mailfmt lists %d", len(sh.Files), len(sub.Attachments))
	}
	out := make([]file, len(sh.Files))
	for i, a := range sub.Attachments {
		f := sh.Files[i]
		if f.Hash != a.Hash {
			return nil, fmt.Errorf("web: attachment %d: read %s, mailfmt %s", i+1, f.Hash, a.Hash)
		}
		f.Name, f.Type = a.Name, a.ContentType
		out[i] = f
	}
	return out, nil
}
