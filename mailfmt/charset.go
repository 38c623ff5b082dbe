package mailfmt

import (
	"bytes"
	"fmt"
	"io"
	"mime"
	"strings"
)

// newWordDecoder returns an RFC 2047 decoder that reads, besides the UTF-8, US-ASCII and
// ISO-8859-1 that mime.WordDecoder knows, the two single-byte charsets common mail clients
// still use for headers: windows-1252 and ISO-8859-15. Anything else is an error, which the
// caller turns into a rejection asking for UTF-8. (Tables of two charsets cost less than a
// dependency on golang.org/x/text.)
func newWordDecoder() *mime.WordDecoder {
	return &mime.WordDecoder{CharsetReader: charsetReader}
}

func charsetReader(charset string, r io.Reader) (io.Reader, error) {
	b, err := io.ReadAll(r)
	if err != nil {
		return nil, err
	}
	var high func(c byte) rune
	switch strings.ToLower(charset) {
	case "utf8":
		return bytes.NewReader(b), nil
	case "ascii":
		high = func(byte) rune { return '\ufffd' }
	case "latin1", "l1", "iso8859-1", "iso_8859-1", "iso-8859-1":
		high = func(c byte) rune { return rune(c) }
	case "windows-1252", "cp1252":
		table := []rune(cp1252)
		high = func(c byte) rune {
			if c >= 0x80 && c <= 0x9f {
				return table[c-0x80]
			}
			return rune(c)
		}
	case "iso-8859-15", "iso8859-15", "iso_8859-15", "latin9", "latin-9":
		high = latin9
	default:
		return nil, fmt.Errorf("charset %q is not one this agent reads", charset)
	}
	var out strings.Builder
	for _, c := range b {
		if c < 0x80 {
			out.WriteByte(c)
		} else {
			out.WriteRune(high(c))
		}
	}
	return strings.NewReader(out.String()), nil
}

// cp1252 maps windows-1252's 0x80..0x9F, one rune each; the five unassigned bytes are U+FFFD.
const cp1252 = "\u20ac\ufffd\u201a\u0192\u201e\u2026\u2020\u2021\u02c6\u2030\u0160\u2039\u0152\ufffd\u017d\ufffd" +
	"\ufffd\u2018\u2019\u201c\u201d\u2022\u2013\u2014\u02dc\u2122\u0161\u203a\u0153\ufffd\u017e\u0178"

// latin9 gives the rune of an ISO-8859-15 byte where it differs from ISO-8859-1.
func latin9(c byte) rune {
	switch c {
	case 0xa4:
		return '\u20ac'
	case 0xa6:
		return '\u0160'
	case 0xa8:
		return '\u0161'
	case 0xb4:
		return '\u017d'
	case 0xb8:
		return '\u017e'
	case 0xbc:
		return '\u0152'
	case 0xbd:
		return '\u0153'
	case 0xbe:
		return '\u0178'
	}
	return rune(c)
}
