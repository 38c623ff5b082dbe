package evidence

import (
	"bytes"
	"crypto/ed25519"
	"encoding/base64"
	"encoding/binary"
	"errors"
	"fmt"
	"slices"
	"strings"
	"unicode"
	"unicode/utf8"

	"golang.org/x/mod/sumdb/note"
)

// Note is one signed evidence note: the exact bytes, the record its body holds, and its signature
// lines. A Note from ParseNote has well-formed bytes but unchecked signatures; Verify checks them.
type Note struct {
	Record *Record
	Sigs   []note.Signature
	raw    []byte
	text   int      // raw[:text] is the signed text
	sigs   [][]byte // sigs[i] is the Ed25519 signature of Sigs[i], without its key hash
}

// Bytes returns the exact signed note, as stored, logged and bundled.
func (n *Note) Bytes() []byte { return n.raw }

// Leaf is the SHA-256 of the note bytes: the note's entry in the evidence log.
func (n *Note) Leaf() Hash { return Sum(n.raw) }

// Sign encodes r and signs it with the given signers, each of which must be one the record names
// as its signer. A ROD is signed by Pn here and countersigned by P1 with Countersign.
func Sign(r *Record, signers ...note.Signer) (*Note, error) {
	body, err := r.Encode()
	if err != nil {
		return nil, err
	}
	if len(signers) == 0 {
		return nil, errors.New("evidence: sign: no signer")
	}
	want := r.SignerNames()
	for _, s := range signers {
		if !slices.Contains(want, s.Name()) {
			return nil, fmt.Errorf("evidence: sign %s: key %q may not sign it (want %s)", r.Type, s.Name(), strings.Join(want, " and "))
		}
	}
	msg, err := note.Sign(&note.Note{Text: string(body)}, signers...)
	if err != nil {
		return nil, fmt.Errorf("evidence: sign %s: %w", r.Type, err)
	}
	return ParseNote(msg)
}

// Countersign adds the signatures of signers to n, keeping those it has.
func Countersign(n *Note, signers ...note.Signer) (*Note, error) {
	want := n.Record.SignerNames()
	for _, s := range signers {
		if !slices.Contains(want, s.Name()) {
			return nil, fmt.Errorf("evidence: countersign %s: key %q may not sign it", n.Record.Type, s.Name())
		}
		for _, sig := range n.Sigs {
			if sig.Name == s.Name() && sig.Hash == s.KeyHash() {
				return nil, fmt.Errorf("evidence: countersign %s: %q signed it already", n.Record.Type, s.Name())
			}
		}
	}
	text, _ := splitNote(n.raw)
	msg, err := note.Sign(&note.Note{Text: text, Sigs: n.Sigs}, signers...)
	if err != nil {
		return nil, fmt.Errorf("evidence: countersign %s: %w", n.Record.Type, err)
	}
	return ParseNote(msg)
}

// splitNote cuts a signed note at the blank line before its signatures.
func splitNote(msg []byte) (text string, sigs []byte) {
	i := bytes.LastIndex(msg, []byte("\n\n"))
	if i < 0 {
		return "", nil
	}
	return string(msg[:i+1]), msg[i+2:]
}

// ParseNote parses a signed note's structure and body without checking signatures: the body must
// be a canonical record, and the signature lines exactly what note.Sign writes, so that the
// bytes are the only encoding of this note. It accepts what note.Open accepts, parsing the
// note once: Verify and Bundle.Check check the signatures it splits out.
func ParseNote(msg []byte) (*Note, error) {
	split := bytes.LastIndex(msg, []byte("\n\n"))
	if split < 0 {
		return nil, malformed("note: no blank line before the signatures")
	}
	text, sigPart := msg[:split+1], msg[split+2:]
	if len(sigPart) == 0 {
		return nil, malformed("note: no signature")
	}
	sigs, raw, err := parseSignatures(msg, sigPart)
	if err != nil {
		return nil, err
	}
	rec, err := ParseRecord(text)
	if err != nil {
		return nil, err
	}
	n := &Note{Record: rec, Sigs: sigs, raw: bytes.Clone(msg), text: len(text), sigs: raw}
	return n, nil
}

// errMalformedNote is what note.Open says of a note it cannot read.
const errMalformedNote = "note: malformed note"

// parseSignatures reads the signature lines of msg, the note's tail sigPart, by note.Open's rules
// (C2SP signed-note: UTF-8 with no control character but newline, lines "— name base64", at
// most 100), and then certmail's: one signature per key, canonical base64, and lines exactly as
// note.Sign writes them. FuzzParseNoteAgreesWithOpen holds it to note.Open.
func parseSignatures(msg, sigPart []byte) ([]note.Signature, [][]byte, error) {
	// The control characters are all single bytes, which UTF-8 never uses inside a longer
	// sequence.
	if !utf8.Valid(msg) {
		return nil, nil, malformed(errMalformedNote)
	}
	for _, c := range msg {
		if c < 0x20 && c != '\n' {
			return nil, nil, malformed(errMalformedNote)
		}
	}
	if sigPart[len(sigPart)-1] != '\n' {
		return nil, nil, malformed(errMalformedNote)
	}
	var (
		sigs []note.Signature
		raw  [][]byte
		ids  = make([]keyID, 0, 2)
	)
	for rest := sigPart; len(rest) > 0; {
		i := bytes.IndexByte(rest, '\n')
		line := rest[:i]
		rest = rest[i+1:]
		line, ok := bytes.CutPrefix(line, []byte("— "))
		if !ok {
			return nil, nil, malformed(errMalformedNote)
		}
		name, b64, _ := strings.Cut(string(line), " ")
		sig, err := base64.StdEncoding.DecodeString(b64)
		if err != nil || !validKeyName(name) || b64 == "" || len(sig) < 5 || len(sigs) == 100 {
			return nil, nil, malformed(errMalformedNote)
		}
		sigs = append(sigs, note.Signature{Name: name, Hash: binary.BigEndian.Uint32(sig), Base64: b64})
		raw = append(raw, sig[4:])
	}
	// note.Open drops a line identical to an earlier one; the checks below see what it keeps, and
	// the dropped lines make the note non-canonical.
	var kept []int
	for i, s := range sigs {
		if !slices.Contains(sigs[:i], s) {
			kept = append(kept, i)
		}
	}
	for _, i := range kept {
		id := keyID{sigs[i].Name, sigs[i].Hash}
		if slices.Contains(ids, id) {
			return nil, nil, malformed("note: key %s+%08x signed twice", sigs[i].Name, sigs[i].Hash)
		}
		ids = append(ids, id)
	}
	// Go's base64 skips line ends and accepts stray low bits in the last character; the
	// canonical form has the encoded length and no stray bits.
	for _, i := range kept {
		s := sigs[i]
		if base64.StdEncoding.EncodedLen(len(raw[i])+4) != len(s.Base64) || !noSpareBits(s.Base64, len(raw[i])+4) {
			return nil, nil, malformed("note: non-canonical base64 in the signature of %s", s.Name)
		}
	}
	if len(kept) != len(sigs) {
		return nil, nil, malformed("note: signature lines are not in canonical form")
	}
	return sigs, raw, nil
}

// noSpareBits reports whether the padded base64 text b64 of n bytes leaves the bits of its last
// character beyond the data at zero, as an encoder writes them (RFC 4648 §3.5).
func noSpareBits(b64 string, n int) bool {
	const alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/"
	var spare uint
	switch n % 3 {
	case 0:
		return true
	case 1:
		spare = 4 // "xx==": 12 bits for 8
	case 2:
		spare = 2 // "xxx=": 18 bits for 16
	}
	v := strings.IndexByte(alphabet, b64[len(b64)-1-int(3-n%3)])
	return v >= 0 && v&(1<<spare-1) == 0
}

// validKeyName is note's rule for key names: not empty, UTF-8, no space, no '+'.
func validKeyName(name string) bool {
	return name != "" && utf8.ValidString(name) && strings.IndexFunc(name, unicode.IsSpace) < 0 && !strings.Contains(name, "+")
}

// SignatureError says why a note's signatures do not stand.
type SignatureError struct {
	Type   Type
	Signer string // the key name concerned
	Reason string
}

func (e *SignatureError) Error() string {
	return fmt.Sprintf("evidence: %s: signature of %s: %s", e.Type, e.Signer, e.Reason)
}

// Verify checks that every signer the record needs has a valid signature on n by a key in keys.
// Extra signatures by unknown keys are ignored; a known key with a bad signature is an error.
//
// Verify is what a party runs when it accepts a note during an exchange, and it checks each
// signature with crypto/ed25519 (the cofactorless equation of RFC 8032 §5.1.7): what a party
// accepted passes any conforming verifier, cofactored or not. Bundle.Check, the arbiter's
// check, uses the cofactored equation in batches (see sigBatch).
func (n *Note) Verify(keys *Keys) error {
	return n.check(keys, func(pub ed25519.PublicKey, i int) bool {
		return ed25519.Verify(pub, n.raw[:n.text], n.sigs[i])
	})
}

// check checks n's signatures by the keys in keys, in the order of its lines, as note.Open does:
// the first signature by a known key that verify refuses fails the note.
func (n *Note) check(keys *Keys, verify func(pub ed25519.PublicKey, sig int) bool) error {
	var signed []string
	for i, s := range n.Sigs {
		pub, ok := keys.publicKey(s.Name, s.Hash)
		if !ok {
			continue
		}
		if !verify(pub, i) {
			return &SignatureError{n.Record.Type, s.Name, "invalid signature (the note was changed or signed by another key)"}
		}
		signed = append(signed, s.Name)
	}
	if len(signed) == 0 {
		return &SignatureError{n.Record.Type, strings.Join(n.Record.SignerNames(), " and "), "no signature by a known key"}
	}
	for _, want := range n.Record.SignerNames() {
		if !slices.Contains(signed, want) {
			return &SignatureError{n.Record.Type, want, "missing: no signature by a known key of that name"}
		}
	}
	return nil
}
