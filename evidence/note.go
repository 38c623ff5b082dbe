package evidence

import (
	"bytes"
	"encoding/base64"
	"errors"
	"fmt"
	"slices"
	"strings"

	"golang.org/x/mod/sumdb/note"
)

// Note is one signed evidence note: the exact bytes, the record its body holds, and its signature
// lines. A Note from ParseNote has well-formed bytes but unchecked signatures; Verify checks them.
type Note struct {
	Record *Record
	Sigs   []note.Signature
	raw    []byte
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
// bytes are the only encoding of this note.
func ParseNote(msg []byte) (*Note, error) {
	text, sigPart := splitNote(msg)
	if text == "" {
		return nil, malformed("note: no blank line before the signatures")
	}
	if len(sigPart) == 0 {
		return nil, malformed("note: no signature")
	}
	// note.Open with no known keys parses the whole note and reports every signature as
	// unverified; that is the parse, without the check.
	_, err := note.Open(msg, note.VerifierList())
	var unverified *note.UnverifiedNoteError
	if !errors.As(err, &unverified) {
		return nil, malformed("note: %v", err)
	}
	sigs := unverified.Note.UnverifiedSigs
	type keyID struct {
		name string
		hash uint32
	}
	var canon bytes.Buffer
	canon.Grow(len(sigPart))
	seen := make(map[keyID]bool, len(sigs))
	for _, s := range sigs {
		id := keyID{s.Name, s.Hash}
		if seen[id] {
			return nil, malformed("note: key %s+%08x signed twice", s.Name, s.Hash)
		}
		seen[id] = true
		canon.WriteString("— " + s.Name + " " + s.Base64 + "\n")
	}
	// note.Open accepts base64 with stray low bits; only the canonical form reads back the same.
	for _, s := range sigs {
		if sig, err := base64.StdEncoding.DecodeString(s.Base64); err != nil || base64.StdEncoding.EncodeToString(sig) != s.Base64 {
			return nil, malformed("note: non-canonical base64 in the signature of %s", s.Name)
		}
	}
	if !bytes.Equal(canon.Bytes(), sigPart) {
		return nil, malformed("note: signature lines are not in canonical form")
	}
	rec, err := ParseRecord([]byte(text))
	if err != nil {
		return nil, err
	}
	return &Note{Record: rec, Sigs: sigs, raw: bytes.Clone(msg)}, nil
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
func (n *Note) Verify(keys *Keys) error {
	known, err := note.Open(n.raw, keys)
	if err != nil {
		var bad *note.InvalidSignatureError
		switch {
		case errors.As(err, &bad):
			return &SignatureError{n.Record.Type, bad.Name, "invalid signature (the note was changed or signed by another key)"}
		case errors.As(err, new(*note.UnverifiedNoteError)):
			return &SignatureError{n.Record.Type, strings.Join(n.Record.SignerNames(), " and "), "no signature by a known key"}
		}
		return &SignatureError{n.Record.Type, "?", err.Error()}
	}
	for _, want := range n.Record.SignerNames() {
		if !slices.ContainsFunc(known.Sigs, func(s note.Signature) bool { return s.Name == want }) {
			return &SignatureError{n.Record.Type, want, "missing: no signature by a known key of that name"}
		}
	}
	return nil
}
