package smtpd

import (
	"errors"
	"fmt"
	"log/slog"
	"strconv"
	"strings"
	"unicode/utf8"

	"github.com/emersion/go-smtp"

	"certmail/agent"
	"certmail/evidence"
	"certmail/mailfmt"
)

// maxReplyText bounds the text of one reply line, so that with the code, the enhanced code and
// CRLF it stays within RFC 5321 4.5.3.1.5's 512 octets.
const maxReplyText = 480

// reply builds a reply for go-smtp to write. Each element of lines starts a new reply line, and
// long text is wrapped. The text is made printable US-ASCII, as RFC 5321 4.2's textstring
// requires. go-smtp puts the enhanced code on the last line only; RFC 2034 §3 wants it on every
// line, so reply writes it on the others itself.
func reply(code int, enh smtp.EnhancedCode, lines ...string) *smtp.SMTPError {
	var out []string
	for _, l := range lines {
		out = append(out, wrap(printable(l), maxReplyText)...)
	}
	if len(out) == 0 {
		out = []string{""}
	}
	prefix := fmt.Sprintf("%d.%d.%d ", enh[0], enh[1], enh[2])
	for i := range len(out) - 1 {
		out[i] = prefix + out[i]
	}
	return &smtp.SMTPError{Code: code, EnhancedCode: enh, Message: strings.Join(out, "\n")}
}

// printable replaces control characters by spaces and writes any other non-ASCII character
// as a \u escape.
func printable(s string) string {
	var b strings.Builder
	for _, r := range s {
		switch {
		case r == '\t' || r >= ' ' && r < 0x7f:
			b.WriteRune(r)
		case r < ' ' || r == 0x7f || r >= 0x80 && r < 0xa0:
			b.WriteByte(' ')
		default:
			q := strconv.QuoteRuneToASCII(r)
			b.WriteString(q[1 : len(q)-1])
		}
	}
	return b.String()
}

// wrap cuts ASCII text into lines of at most width bytes, at spaces where it can.
func wrap(s string, width int) []string {
	var lines []string
	for len(s) > width {
		cut := strings.LastIndexByte(s[:width+1], ' ')
		if cut <= 0 {
			cut = width
		}
		lines = append(lines, strings.TrimRight(s[:cut], " "))
		s = strings.TrimLeft(s[cut:], " ")
	}
	return append(lines, s)
}

// Replies of the session. RFC 4954 §6 defines the AUTH ones, RFC 3463 the enhanced codes.
var (
	errEncryptionRequired = reply(538, smtp.EnhancedCode{5, 7, 11},
		"Encryption required: say STARTTLS first, then AUTH")
	errAuthRequired = reply(530, smtp.EnhancedCode{5, 7, 0},
		"Authentication required: say STARTTLS, then AUTH with your certmail account")
	errUnknownMechanism = reply(504, smtp.EnhancedCode{5, 5, 4},
		"Unrecognized authentication type: use PLAIN or LOGIN")
	errMalformedAuth = reply(501, smtp.EnhancedCode{5, 5, 2},
		"Malformed authentication response (RFC 4954 §4)")
	errBadCredentials = reply(535, smtp.EnhancedCode{5, 7, 8},
		"Authentication credentials invalid: check your address and password")
	errDisabled = reply(535, smtp.EnhancedCode{5, 7, 8},
		"Authentication failed: account disabled; ask the agent's administrator")
	errRateLimited = reply(454, smtp.EnhancedCode{4, 7, 0},
		"Too many failed logins from this account or address: wait a few minutes, then try again")
	errAuthUnavailable = reply(454, smtp.EnhancedCode{4, 7, 0},
		"Temporary authentication failure: try again later")
	errShuttingDown = reply(421, smtp.EnhancedCode{4, 3, 2},
		"The server is shutting down: try again later")
	errNestedMail = reply(503, smtp.EnhancedCode{5, 5, 1},
		"Nested MAIL command: finish or RSET the current message first")
)

// refusal is a refusal of a message with what the log should know about it.
type refusal struct {
	reply *smtp.SMTPError
	level slog.Level // Info for the client's mistakes, Error for the agent's failures
	cause any        // for the log only: the error, or what can be said without the message's text
}

// parseRefusal turns a ParseSubmission error into its reply: mailfmt says which code fits
// (see mailfmt.Error) in words written for the sender. Those words, and the error under them,
// may quote the message (a body line taken for a header field, say), so the log gets the
// refusal's code only: it never holds message text.
func parseRefusal(err error) refusal {
	var e *mailfmt.Error
	if !errors.As(err, &e) {
		return refusal{reply(451, smtp.EnhancedCode{4, 3, 0}, "The message could not be checked: try again later"),
			slog.LevelError, err}
	}
	return refusal{reply(e.SMTPCode, smtp.EnhancedCode(e.Enhanced), e.Message), slog.LevelInfo, "mailfmt: " + e.Code}
}

// submitRefusal turns an agent.Submit error into its reply. A store or disk failure says only
// "try again later" to the client: nothing was acknowledged, and the log holds the cause.
func submitRefusal(err error) refusal {
	var e *agent.Error
	msg := ""
	if errors.As(err, &e) {
		msg = e.Message
	}
	switch agent.KindOf(err) {
	case agent.KindInvalid:
		r := reply(550, smtp.EnhancedCode{5, 6, 0}, msg)
		if !e.NAC.IsZero() {
			r = withLine(r, nacLine(e.NAC))
		}
		return refusal{r, slog.LevelInfo, err}
	case agent.KindForbidden:
		return refusal{reply(550, smtp.EnhancedCode{5, 7, 1}, msg), slog.LevelInfo, err}
	case agent.KindUnavailable:
		return refusal{reply(451, smtp.EnhancedCode{4, 3, 0},
			"The message was not certified: the agent could not store it; try again later"), slog.LevelError, err}
	}
	// RFC 5321 4.3.2: 554, transaction failed.
	return refusal{reply(554, smtp.EnhancedCode{5, 0, 0}, msg), slog.LevelInfo, err}
}

// replyLines gives back the text lines of a reply built by reply.
func replyLines(e *smtp.SMTPError) []string {
	prefix := fmt.Sprintf("%d.%d.%d ", e.EnhancedCode[0], e.EnhancedCode[1], e.EnhancedCode[2])
	var lines []string
	for _, l := range strings.Split(e.Message, "\n") {
		lines = append(lines, strings.TrimPrefix(l, prefix))
	}
	return lines
}

// withLine returns e with one more line of text.
func withLine(e *smtp.SMTPError, line string) *smtp.SMTPError {
	return reply(e.Code, e.EnhancedCode, append(replyLines(e), line)...)
}

// nacLine is the line a refusal's reply gains when a NAC records it.
func nacLine(l evidence.Label) string {
	return fmt.Sprintf("A signed notice of non-acceptance (label %s) is on its way to you", l)
}

// sizeText writes a byte count for people.
func sizeText(n int64) string {
	if n >= 10<<20 {
		return fmt.Sprintf("%d MiB (%d bytes)", n>>20, n)
	}
	return fmt.Sprintf("%d bytes", n)
}

// validASCII reports whether s is US-ASCII, as envelope addresses must be without SMTPUTF8.
func validASCII(s string) bool {
	for i := 0; i < len(s); i++ {
		if s[i] >= utf8.RuneSelf {
			return false
		}
	}
	return true
}
