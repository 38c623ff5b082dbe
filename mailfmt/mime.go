package mailfmt

import (
	"bytes"
	"encoding/base64"
	"fmt"
	"io"
	"mime"
	"mime/quotedprintable"
	"strconv"
	"strings"
	"unicode/utf8"

	"certmail/evidence"
)

// walker checks the MIME structure of a message (RFC 2045, 2046) and lists its attachments.
// It reads M as the agent stores it (CRLF lines), so it needs no reader of its own: boundaries
// are found line by line, strictly, and every body is decoded once to be checked.
type walker struct {
	lim   Limits
	parts int
	atts  []Attachment
}

// entity checks one entity: the message itself (path ""), a body part ("1.2") or the message
// inside a message/rfc822 part (the part's path). defaultType is RFC 2046's default for it.
func (w *walker) entity(fields []hfield, body []byte, depth int, path, defaultType string) *Error {
	w.parts++
	if w.parts > w.lim.MaxParts {
		return reject(CodeMIME, "the message has more than %d MIME parts; this agent accepts at most %d", w.lim.MaxParts, w.lim.MaxParts)
	}
	if depth > w.lim.MaxDepth {
		return reject(CodeMIME, "MIME parts are nested more than %d deep; forward fewer messages inside messages", w.lim.MaxDepth)
	}
	where := "the message"
	if path != "" {
		where = "part " + path
	}
	for _, name := range []string{"Content-Type", "Content-Transfer-Encoding", "Content-Disposition"} {
		if n := len(fieldsNamed(fields, name)); n > 1 {
			return reject(CodeMIME, "%s has %d %s fields; an entity may have only one", where, n, name)
		}
	}

	mediaType, params := defaultType, map[string]string{}
	if ct := fieldsNamed(fields, "Content-Type"); len(ct) == 1 {
		var err error
		mediaType, params, err = mime.ParseMediaType(ct[0].value)
		if err != nil || !strings.Contains(mediaType, "/") {
			return reject(CodeMIME, "%s: Content-Type %s is malformed (RFC 2045 5.1)", where, quote(ct[0].value)).with(err)
		}
	}
	cte := "7bit"
	if f := fieldsNamed(fields, "Content-Transfer-Encoding"); len(f) == 1 {
		cte = strings.ToLower(f[0].value)
	}
	switch cte {
	case "7bit", "8bit", "quoted-printable", "base64":
	case "binary":
		return reject(CodeEncoding, "%s uses Content-Transfer-Encoding binary, which mail without BINARYMIME cannot carry; encode it in base64", where)
	default:
		return reject(CodeEncoding, "%s: Content-Transfer-Encoding %s is not one of 7bit, 8bit, quoted-printable, base64 (RFC 2045 6.1)", where, quote(cte))
	}
	disposition, name, err := w.disposition(fields, params, where)
	if err != nil {
		return err
	}
	composite := strings.HasPrefix(mediaType, "multipart/") || mediaType == "message/rfc822"
	if composite && cte != "7bit" && cte != "8bit" {
		return reject(CodeMIME, "%s is %s encoded as %s; a multipart or message/rfc822 entity may not be encoded (RFC 2045 6.4)", where, mediaType, cte)
	}

	switch {
	case strings.HasPrefix(mediaType, "multipart/"):
		boundary := params["boundary"]
		if !validBoundary(boundary) {
			return reject(CodeMIME, "%s is %s but its boundary parameter %s is missing or invalid (RFC 2046 5.1.1)", where, mediaType, quote(boundary))
		}
		parts, err := splitMultipart(body, boundary, where)
		if err != nil {
			return err
		}
		childType := "text/plain"
		if mediaType == "multipart/digest" {
			childType = "message/rfc822" // RFC 2046 5.1.5
		}
		for i, p := range parts {
			sub := strconv.Itoa(i + 1)
			if path != "" {
				sub = path + "." + sub
			}
			head, pbody := splitEntity(p)
			pf, err := parseFields(head, CodeMIME, "the header of part "+sub)
			if err != nil {
				return err
			}
			if err := w.entity(pf, pbody, depth+1, sub, childType); err != nil {
				return err
			}
		}
		return nil

	case mediaType == "message/rfc822":
		if disposition == "attachment" || name != "" {
			w.attach(name, "message.eml", mediaType, body)
		}
		head, ibody := splitEntity(body)
		if len(head) == 0 {
			return reject(CodeMIME, "%s is message/rfc822 but the message in it has no header", where)
		}
		inner := where + ", the message inside it"
		if path == "" {
			inner = "the message inside the message"
		}
		f, err := parseFields(head, CodeMIME, inner)
		if err != nil {
			return err
		}
		return w.entity(f, ibody, depth+1, path, "text/plain")

	case mediaType == "message/partial" || mediaType == "message/external-body":
		// The certified content must be in the message, whole: a fragment or a pointer to
		// content kept elsewhere would make H(M) certify something other than what is read.
		return reject(CodeMIME, "%s is %s; certified mail must carry its whole content: send the message itself", where, mediaType)
	}

	data, derr := decodeBody(cte, body)
	if derr != nil {
		return reject(CodeEncoding, "%s is declared %s but its data does not decode (%v); the sending program damaged it", where, cte, derr).with(derr)
	}
	if strings.HasPrefix(mediaType, "text/") {
		switch cs := strings.ToLower(params["charset"]); cs {
		case "", "us-ascii", "ascii", "utf-8", "utf8":
			if !utf8.Valid(data) {
				if cs == "" {
					cs = "us-ascii (the default)"
				}
				return reject(CodeUTF8, "%s is text in charset %s but contains bytes that are not UTF-8 near byte %d: "+
					"the sending program mislabelled its charset", where, cs, invalidAt(data))
			}
		}
	}
	if disposition == "attachment" || name != "" || !strings.HasPrefix(mediaType, "text/") {
		w.attach(name, "", mediaType, data)
	}
	return nil
}

// disposition reads Content-Disposition and the file name of an entity (the filename
// parameter, else Content-Type's name), decoding RFC 2231 (by mime.ParseMediaType) and the
// RFC 2047 encoded words some programs put in quoted parameters.
func (w *walker) disposition(fields []hfield, ctParams map[string]string, where string) (disposition, name string, err *Error) {
	if f := fieldsNamed(fields, "Content-Disposition"); len(f) == 1 {
		d, params, perr := mime.ParseMediaType(f[0].value)
		if perr != nil {
			return "", "", reject(CodeMIME, "%s: Content-Disposition %s is malformed (RFC 2183)", where, quote(f[0].value)).with(perr)
		}
		disposition, name = d, params["filename"]
	}
	if name == "" {
		name = ctParams["name"]
	}
	if strings.Contains(name, "=?") {
		dec, derr := newWordDecoder().DecodeHeader(name)
		if derr != nil {
			return "", "", reject(CodeUTF8, "%s: the file name: %v; name the file in UTF-8", where, derr).with(derr)
		}
		name = dec
	}
	if !utf8.ValidString(name) {
		return "", "", reject(CodeUTF8, "%s: the file name is not valid UTF-8", where)
	}
	return disposition, name, nil
}

func (w *walker) attach(name, fallback, mediaType string, data []byte) {
	if name == "" && fallback != "" {
		name = fallback
	}
	w.atts = append(w.atts, Attachment{
		Name:        SafeFilename(name),
		ContentType: mediaType,
		Size:        int64(len(data)),
		Hash:        evidence.Sum(data),
	})
}

// invalidAt gives the offset of the first byte that is not UTF-8.
func invalidAt(b []byte) int {
	for i := 0; i < len(b); {
		r, n := utf8.DecodeRune(b[i:])
		if r == utf8.RuneError && n <= 1 {
			return i
		}
		i += n
	}
	return len(b)
}

// decodeBody undoes a Content-Transfer-Encoding. base64 must be canonical RFC 4648 text apart
// from line breaks and white space (RFC 2045 6.8 lets decoders skip other characters; an access
// point refuses them, since they mean the data was damaged).
func decodeBody(cte string, body []byte) ([]byte, error) {
	switch cte {
	case "base64":
		clean := bytes.Map(func(r rune) rune {
			if r == '\r' || r == '\n' || r == ' ' || r == '\t' {
				return -1
			}
			return r
		}, body)
		out := make([]byte, base64.StdEncoding.DecodedLen(len(clean)))
		n, err := base64.StdEncoding.Decode(out, clean)
		if err != nil {
			return nil, err
		}
		return out[:n], nil
	case "quoted-printable":
		// Go's reader is lenient where real encoders are sloppy (a '=' not followed by two
		// hex digits stays literal) and refuses what is broken (unescaped control bytes).
		return io.ReadAll(quotedprintable.NewReader(bytes.NewReader(body)))
	}
	return body, nil
}

// validBoundary checks RFC 2046 5.1.1: 1 to 70 bchars, not ending in a space.
func validBoundary(b string) bool {
	if b == "" || len(b) > 70 || b[len(b)-1] == ' ' {
		return false
	}
	for i := 0; i < len(b); i++ {
		c := b[i]
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || strings.IndexByte("'()+_,-./:=? ", c) >= 0) {
			return false
		}
	}
	return true
}

// splitMultipart cuts a multipart body (RFC 2046 5.1.1) into its parts. A delimiter is a line
// that is "--" boundary, or "--" boundary "--" for the last, followed only by white space
// (transport padding). The CRLF before a delimiter belongs to the delimiter. The preamble and
// the epilogue are ignored; there must be at least one part, and the close delimiter.
func splitMultipart(body []byte, boundary, where string) ([][]byte, *Error) {
	dash := []byte("--" + boundary)
	var parts [][]byte
	start := -1 // where the current part begins; -1 before the first delimiter
	for pos := 0; ; {
		eol := bytes.Index(body[pos:], []byte(crlf))
		line, next := body[pos:], len(body)
		if eol >= 0 {
			line, next = body[pos:pos+eol], pos+eol+2
		}
		if rest, ok := bytes.CutPrefix(line, dash); ok {
			closing := bytes.HasPrefix(rest, []byte("--"))
			if closing {
				rest = rest[2:]
			}
			if len(bytes.Trim(rest, " \t")) == 0 {
				switch {
				case start >= 0:
					parts = append(parts, body[start:max(start, pos-2)])
				case closing:
					return nil, reject(CodeMIME, "%s is multipart but closes its boundary before any part (RFC 2046 5.1.1)", where)
				}
				if closing {
					return parts, nil
				}
				start = next
			}
		}
		if eol < 0 {
			break
		}
		pos = next
	}
	if start < 0 {
		return nil, reject(CodeMIME, "%s is multipart but its boundary %s never appears in it (RFC 2046 5.1.1)", where, quote(boundary))
	}
	return nil, reject(CodeMIME, "%s is multipart but its last part is never closed (the line --%s-- is missing): "+
		"the message may have been cut short", where, boundary)
}

// splitEntity cuts a body part or an encapsulated message at the empty line after its header.
// With no empty line it is all header; with an empty first line it has no header. The header
// returned ends with CRLF.
func splitEntity(p []byte) (head, body []byte) {
	if bytes.HasPrefix(p, []byte(crlf)) {
		return nil, p[2:]
	}
	if i := bytes.Index(p, []byte(crlfcrlf)); i >= 0 {
		return p[:i+2], p[i+4:]
	}
	if len(p) > 0 && !bytes.HasSuffix(p, []byte(crlf)) {
		return append(bytes.Clone(p), crlf...), nil
	}
	return p, nil
}

// describe is used by tests and messages to name an attachment.
func (a Attachment) String() string {
	return fmt.Sprintf("%s (%s, %d bytes, %s)", a.Name, a.ContentType, a.Size, a.Hash)
}
