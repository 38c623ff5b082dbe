package evidence

import (
	"bytes"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base32"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"strings"
	"time"
	"unicode"
	"unicode/utf8"
)

// Label names one certified exchange: 128 bits chosen by the party the protocol names, never
// reused and not to be guessed (PROTOCOLS.md, common rules) — all random (NewLabel), or the
// time they were made and 80 random bits (NewLabelAt); nothing reads the time back. Its text
// form is 26 characters of Crockford's base32, upper case, which sorts as the bytes do.
type Label [16]byte

// labelEncoding is Crockford's base32 alphabet without padding.
var labelEncoding = base32.NewEncoding("0123456789ABCDEFGHJKMNPQRSTVWXYZ").WithPadding(base32.NoPadding)

// NewLabel draws a fresh label from r (crypto/rand.Reader in production).
func NewLabel(r io.Reader) (Label, error) {
	var l Label
	if r == nil {
		r = rand.Reader
	}
	if _, err := io.ReadFull(r, l[:]); err != nil {
		return Label{}, fmt.Errorf("evidence: new label: %w", err)
	}
	if l.IsZero() {
		return Label{}, errors.New("evidence: new label: random source gave zero bits")
	}
	return l, nil
}

// NewLabelAt draws a fresh label whose first 48 bits are t in Unix milliseconds and whose
// other 80 bits are random from r (crypto/rand.Reader in production). It is a label like any
// other — nothing reads the time back — but labels a party makes one after another sort in the
// order they were made, so that a store indexing them adds each at the end of its indexes
// instead of at a random place (a random place costs a page write per label once an index
// outgrows a commit: BENCHMARKS.md). 80 random bits keep labels unguessable and, at any rate a
// party can make them, never repeated.
func NewLabelAt(r io.Reader, t time.Time) (Label, error) {
	var l Label
	if r == nil {
		r = rand.Reader
	}
	ms := uint64(t.UnixMilli())
	for i := range 6 {
		l[i] = byte(ms >> (8 * (5 - i)))
	}
	if _, err := io.ReadFull(r, l[6:]); err != nil {
		return Label{}, fmt.Errorf("evidence: new label: %w", err)
	}
	if l.IsZero() {
		return Label{}, errors.New("evidence: new label: zero time and random source gave zero bits")
	}
	return l, nil
}

// ParseLabel parses the canonical text form of a label.
func ParseLabel(s string) (Label, error) {
	var l Label
	if len(s) != 26 {
		return l, fmt.Errorf("label %q: want 26 base32 characters", s)
	}
	b, err := labelEncoding.DecodeString(s)
	if err != nil || len(b) != 16 {
		return l, fmt.Errorf("label %q: not Crockford base32", s)
	}
	copy(l[:], b)
	if l.String() != s {
		return Label{}, fmt.Errorf("label %q: non-canonical encoding", s)
	}
	if l.IsZero() {
		return Label{}, fmt.Errorf("label %q: all zero", s)
	}
	return l, nil
}

func (l Label) String() string { return labelEncoding.EncodeToString(l[:]) }

// IsZero reports whether l is unset.
func (l Label) IsZero() bool { return l == Label{} }

// Hash is a SHA-256 digest; its text form is "sha256:" and 64 lower-case hex digits.
type Hash [32]byte

// Sum returns the SHA-256 hash of b.
func Sum(b []byte) Hash { return sha256.Sum256(b) }

// Commitment is H(L,M) of cem-ip (PROTOCOLS.md §1): SHA-256 over the label's text, a line feed,
// then the exact message bytes. Binding L into the hash stops a notification for one label
// vouching for the content of another.
func Commitment(l Label, m []byte) Hash {
	h := sha256.New()
	h.Write([]byte(l.String()))
	h.Write([]byte{'\n'})
	h.Write(m)
	var out Hash
	h.Sum(out[:0])
	return out
}

// ParseHash parses the canonical text form of a hash.
func ParseHash(s string) (Hash, error) {
	var h Hash
	hexpart, ok := strings.CutPrefix(s, "sha256:")
	if !ok || len(hexpart) != 64 {
		return h, fmt.Errorf("hash %q: want sha256: and 64 hex digits", s)
	}
	if strings.ToLower(hexpart) != hexpart {
		return h, fmt.Errorf("hash %q: hex must be lower case", s)
	}
	if _, err := hex.Decode(h[:], []byte(hexpart)); err != nil {
		return Hash{}, fmt.Errorf("hash %q: %v", s, err)
	}
	if h.IsZero() {
		return Hash{}, fmt.Errorf("hash %q: all zero", s)
	}
	return h, nil
}

func (h Hash) String() string { return "sha256:" + hex.EncodeToString(h[:]) }

// IsZero reports whether h is unset.
func (h Hash) IsZero() bool { return h == Hash{} }

// Protocol names a certified-mail protocol of PROTOCOLS.md.
type Protocol string

const (
	CEM    Protocol = "cem"     // §1, basic: suffers selective receipt
	CEMNSR Protocol = "cem-nsr" // §1, no selective receipt
	CEMIP  Protocol = "cem-ip"  // §1, no selective receipt and integrity protection; the default
	CMP1   Protocol = "cmp1"    // §2, TTP sees the message
	CMP2   Protocol = "cmp2"    // §2, confidential
	SR     Protocol = "sr"      // §3, Schneier–Riordan
	AGHP   Protocol = "aghp"    // §4, light on-line TTP
)

// Protocols lists every protocol certmail implements.
func Protocols() []Protocol { return []Protocol{CEM, CEMNSR, CEMIP, CMP1, CMP2, SR, AGHP} }

// ParseProtocol parses a protocol name.
func ParseProtocol(s string) (Protocol, error) {
	for _, p := range Protocols() {
		if string(p) == s {
			return p, nil
		}
	}
	return "", fmt.Errorf("unknown protocol %q", s)
}

// IsCEM reports whether p is one of the CEM family.
func (p Protocol) IsCEM() bool { return p == CEM || p == CEMNSR || p == CEMIP }

// timeLayout is RFC 3339 in UTC with at most millisecond precision and no trailing zeros, so a
// given instant has exactly one text form.
const timeLayout = "2006-01-02T15:04:05.999Z"

// FormatTime gives the canonical text form of t, truncated to milliseconds, in UTC: timeLayout,
// written by hand for years 0 to 9999 because time.Format, which reads its layout on every call,
// cost a bundle check several microseconds (FuzzFormatTime holds the two to the same text).
func FormatTime(t time.Time) string {
	u := t.UTC().Truncate(time.Millisecond)
	year, month, day := u.Date()
	if year < 0 || year > 9999 {
		return u.Format(timeLayout)
	}
	hour, minute, sec := u.Clock()
	b := make([]byte, 0, len("2006-01-02T15:04:05.000Z"))
	b = append(b, byte('0'+year/1000), byte('0'+year/100%10), byte('0'+year/10%10), byte('0'+year%10), '-')
	two := func(n int, sep byte) { b = append(b, byte('0'+n/10), byte('0'+n%10), sep) }
	two(int(month), '-')
	two(day, 'T')
	two(hour, ':')
	two(minute, ':')
	two(sec, '.')
	if ms := u.Nanosecond() / 1e6; ms == 0 {
		b = b[:len(b)-1]
	} else {
		b = append(b, byte('0'+ms/100), byte('0'+ms/10%10), byte('0'+ms%10))
		for b[len(b)-1] == '0' {
			b = b[:len(b)-1]
		}
	}
	return string(append(b, 'Z'))
}

// CanonicalTime returns t as it reads back from its canonical text form.
func CanonicalTime(t time.Time) time.Time { return t.UTC().Truncate(time.Millisecond) }

// ParseTime parses a canonical time.
func ParseTime(s string) (time.Time, error) {
	t, err := time.Parse(time.RFC3339Nano, s)
	if err != nil {
		return time.Time{}, fmt.Errorf("time %q: not RFC 3339", s)
	}
	if FormatTime(t) != s {
		return time.Time{}, fmt.Errorf("time %q: not canonical (UTC, Z, milliseconds at most, no trailing zeros)", s)
	}
	return t.UTC(), nil
}

// CheckAddress accepts an e-mail address as a mailbox "local@domain": no white space, no
// control characters, no angle brackets, at most 254 bytes (RFC 5321 4.5.3.1.3).
func CheckAddress(s string) error {
	if s == "" || len(s) > 254 || !utf8.ValidString(s) {
		return fmt.Errorf("address %q: empty, too long or not UTF-8", s)
	}
	at := strings.LastIndexByte(s, '@')
	if at <= 0 || at == len(s)-1 {
		return fmt.Errorf("address %q: want local@domain", s)
	}
	for _, r := range s {
		if unicode.IsSpace(r) || unicode.IsControl(r) || r == '<' || r == '>' || r == '"' {
			return fmt.Errorf("address %q: forbidden character %q", s, r)
		}
	}
	if err := CheckHost(s[at+1:]); err != nil {
		return fmt.Errorf("address %q: %w", s, err)
	}
	return nil
}

// CheckHost accepts a lower-case DNS host name: dot-separated labels of 1 to 63 letters, digits
// and '-', not starting or ending with '-', 253 bytes at most (RFC 1123 2.1). Agents are named
// after their host name.
func CheckHost(host string) error {
	if host == "" || len(host) > 253 {
		return fmt.Errorf("host %q: empty or longer than 253 bytes", host)
	}
	for _, label := range strings.Split(host, ".") {
		if label == "" || len(label) > 63 || label[0] == '-' || label[len(label)-1] == '-' {
			return fmt.Errorf("host %q: bad DNS label %q", host, label)
		}
		for _, c := range []byte(label) {
			if !(c >= 'a' && c <= 'z' || c >= '0' && c <= '9' || c == '-') {
				return fmt.Errorf("host %q: want lower-case letters, digits, '-' and '.'", host)
			}
		}
	}
	return nil
}

// checkToken accepts a short code word: lower-case letters, digits and '-'.
func checkToken(s string) error {
	if s == "" || len(s) > 64 {
		return fmt.Errorf("code %q: empty or longer than 64", s)
	}
	if strings.Trim(s, "abcdefghijklmnopqrstuvwxyz0123456789-") != "" {
		return fmt.Errorf("code %q: want lower-case letters, digits and '-'", s)
	}
	return nil
}

// checkText accepts one line of free text: UTF-8, no control characters, no white space at either
// end, at most 1000 bytes.
func checkText(s string) error {
	if s == "" || len(s) > 1000 || !utf8.ValidString(s) {
		return fmt.Errorf("text %q: empty, longer than 1000 bytes or not UTF-8", s)
	}
	if strings.TrimSpace(s) != s {
		return fmt.Errorf("text %q: white space at an end", s)
	}
	for _, r := range s {
		if unicode.IsControl(r) || r == '\u2028' || r == '\u2029' || r == '\ufeff' {
			return fmt.Errorf("text %q: control character %U", s, r)
		}
	}
	return nil
}

// checkSecret accepts a 32-byte key in lower-case hex.
func parseSecret(s string) ([]byte, error) {
	if len(s) != 64 || strings.ToLower(s) != s {
		return nil, fmt.Errorf("secret: want 64 lower-case hex digits")
	}
	b, err := hex.DecodeString(s)
	if err != nil {
		return nil, fmt.Errorf("secret: %v", err)
	}
	if bytes.Equal(b, make([]byte, 32)) {
		return nil, fmt.Errorf("secret: all zero")
	}
	return b, nil
}

// KeyName is the signed-note key name of a user: the address with '%' written "%25" and '+'
// written "%2B", since a note key name may hold neither '+' nor white space.
func KeyName(address string) (string, error) {
	if err := CheckAddress(address); err != nil {
		return "", fmt.Errorf("evidence: key name: %w", err)
	}
	if !strings.ContainsAny(address, "%+") {
		return address, nil // most addresses; a Replacer costs microseconds to build
	}
	var b strings.Builder
	for _, c := range []byte(address) {
		switch c {
		case '%':
			b.WriteString("%25")
		case '+':
			b.WriteString("%2B")
		default:
			b.WriteByte(c)
		}
	}
	return b.String(), nil
}

// mustKeyName is KeyName for an address already checked by Record.Validate.
func mustKeyName(address string) string {
	n, err := KeyName(address)
	if err != nil {
		return "invalid-address"
	}
	return n
}
