package mailfmt

import (
	"fmt"
	"net/http"
)

// Codes of the rejections ParseSubmission reports. They are stable: callers, logs, metrics and
// the API's problem+json "type" may rely on them.
const (
	CodeSize       = "size"       // larger than Limits.MaxBytes
	CodeNUL        = "nul"        // a NUL byte
	CodeLine       = "line"       // a line longer than 998 octets
	CodeHeader     = "header"     // the header section is not RFC 5322
	CodeFrom       = "from"       // From missing, repeated, not exactly one address, bad address
	CodeRecipients = "recipients" // no recipient in To/Cc, bad or too many recipient addresses
	CodeMIME       = "mime"       // MIME structure: Content-Type, boundaries, nesting, parts
	CodeEncoding   = "encoding"   // Content-Transfer-Encoding unknown or its data not decodable
	CodeUTF8       = "utf8"       // text that must be UTF-8 is not, or a charset this agent cannot read
	CodeOption     = "option"     // a Certmail-* header: unknown, repeated or with a bad value
)

// Error is a submission the agent refuses. Message is written for the person who sent the
// message: it says what is wrong and what to do, and never echoes a password. Err, when set, is
// the underlying cause for the log.
//
// The status codes follow one rule:
//
//	code                                    SMTP  enhanced  HTTP
//	size                                    552   5.3.4     413
//	nul, line, header, mime, encoding, utf8 554   5.6.0     400
//	from: a bad address                     554   5.1.7     422
//	recipients: a bad address               554   5.1.3     422
//	recipients: too many                    554   5.5.3     422
//	from, recipients: anything else; option 554   5.6.0     422
//
// RFC 3463 defines X.3.4 "message too big for system", X.6.0 "other or undefined media
// error", X.1.7 "bad sender's mailbox address syntax", X.1.3 "bad destination mailbox
// address syntax" and X.5.3 "too many recipients"; 552 is RFC 5321's reply for exceeded storage (4.5.3.1.10) and
// 554 its "transaction failed", the reply to the end of DATA (4.3.2). Bad UTF-8 is
// X.6.0, not X.6.7: RFC 6531 registers X.6.7 for non-ASCII addresses a system does not accept,
// which is a different failure. HTTP 400 means the bytes are not a well-formed message; 422
// means a well-formed message the agent will not certify as it stands.
type Error struct {
	Code       string // one of the Code constants
	SMTPCode   int    // RFC 5321 reply code
	Enhanced   [3]int // RFC 3463 enhanced status code (the shape of go-smtp's EnhancedCode)
	HTTPStatus int
	Message    string
	Err        error
}

func (e *Error) Error() string { return "mailfmt: " + e.Code + ": " + e.Message }

func (e *Error) Unwrap() error { return e.Err }

// EnhancedString gives the enhanced status code as text, e.g. "5.6.0".
func (e *Error) EnhancedString() string {
	return fmt.Sprintf("%d.%d.%d", e.Enhanced[0], e.Enhanced[1], e.Enhanced[2])
}

// reject builds the Error for code with the status codes of the table above.
func reject(code, format string, args ...any) *Error {
	e := &Error{Code: code, SMTPCode: 554, Enhanced: [3]int{5, 6, 0}, Message: fmt.Sprintf(format, args...)}
	switch code {
	case CodeSize:
		e.SMTPCode, e.Enhanced, e.HTTPStatus = 552, [3]int{5, 3, 4}, http.StatusRequestEntityTooLarge
	case CodeFrom, CodeRecipients, CodeOption:
		e.HTTPStatus = http.StatusUnprocessableEntity
	default:
		e.HTTPStatus = http.StatusBadRequest
	}
	return e
}

// badAddress is the Error for an address that does not parse or is not acceptable.
func badAddress(code, format string, args ...any) *Error {
	e := reject(code, format, args...)
	if code == CodeFrom {
		e.Enhanced = [3]int{5, 1, 7}
	} else {
		e.Enhanced = [3]int{5, 1, 3}
	}
	return e
}

// with attaches a cause for the log.
func (e *Error) with(err error) *Error {
	e.Err = err
	return e
}
