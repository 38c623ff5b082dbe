package evidence

import (
	"encoding/hex"
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"
)

// Version is the first line of every evidence body.
const Version = "certmail-evidence/1"

// Type is the kind of an evidence record or protocol token. Each step of each protocol has its
// own type, so a signature from one step or protocol is never accepted as another.
type Type string

// Records of DESIGN.md §3.
const (
	COP Type = "COP" // certificate of posting, by P1
	NAC Type = "NAC" // submission refused, by P1
	ACK Type = "ACK" // relay acceptance, by P(i+1)
	NTF Type = "NTF" // recipient notified, by Pn
	DLV Type = "DLV" // recipient authenticated and accepted, by Pn
	REJ Type = "REJ" // recipient refused, by Pn
	RET Type = "RET" // content retrieved, by Pn
	ROD Type = "ROD" // report of delivery, by Pn, countersigned by P1
	WRN Type = "WRN" // delivery delayed, by P1
	NDN Type = "NDN" // not delivered, by P1 (or the agent that gave up)
	RTR Type = "RTR" // retracted before pickup, by P1
	VIR Type = "VIR" // content refused for malware, by the agent
	PUB Type = "PUB" // key published at the public location, by the agent
	KEY Type = "KEY" // address bound to a user key from a time on, by the agent
)

// Certificates of delivery, signed by the recipient B (PROTOCOLS.md §1).
const (
	CODBasic Type = "COD"     // cem: S_B(COD: Pn, L, H(M))
	CODNSR   Type = "COD-NSR" // cem-nsr: S_B(COD-NSR: Pn, L)
	CODIP    Type = "COD-IP"  // cem-ip: S_B(COD-IP: Pn, L, H(L,M))
)

// Protocol tokens of PROTOCOLS.md §§2–4.
const (
	CMPNRO      Type = "CMP-NRO"      // S_A, CMP1 origin
	CMPREQ      Type = "CMP-REQ"      // S_B, CMP1 request (B commits)
	CMPNRD      Type = "CMP-NRD"      // S_T, CMP1 delivery
	CMP2NRO     Type = "CMP2-NRO"     // S_A, CMP2 origin
	CMP2REQ     Type = "CMP2-REQ"     // S_B, CMP2 request
	CMP2NRD     Type = "CMP2-NRD"     // S_T, CMP2 delivery
	SRREQ       Type = "SR-REQ"       // S_B, "publish the key by T at X"
	SRKEYRCPT   Type = "SR-KEYRCPT"   // S_B, optimistic key receipt
	AGHPRECEIPT Type = "AGHP-RECEIPT" // S_TTP, receipt to the sender
)

// Record is the body of one evidence note. Only the fields the type's schema lists may be set;
// Validate checks that, and Encode writes them in the schema's order.
type Record struct {
	Type        Type
	Label       Label
	Protocol    Protocol
	Agent       string    // host name of the agent that signs (or, for COD and ROD, of Pn)
	From        string    // ACK: the agent P_i that handed the item over
	Origin      string    // ROD: P1, who countersigns
	Sender      string    // address of A
	Recipient   string    // address of B
	Subject     string    // KEY: the address bound to Key
	Key         string    // KEY: signed-note verifier key
	Content     Hash      // H(M)
	Commitment  Hash      // H(L,M), cem-ip
	Ciphertext  Hash      // H(C) or H(c)
	KeyHash     Hash      // H(K)
	Request     Hash      // H(request note) in CMP receipts
	Exchange    Hash      // AGHP hS
	Secret      []byte    // PUB: the published key K (32 bytes)
	Location    string    // SR: the agent (public location X) where K is to be published
	Expectation string    // SR: optional free text
	Mode        string    // AGHP mode
	Method      string    // DLV: how B authenticated
	Client      string    // DLV, RET: B's client address
	Reason      string    // NAC, REJ, NDN: code word
	Detail      string    // NAC, VIR: free text
	Deadline    time.Time // T
	Time        time.Time // when the signer made the record
}

type fieldKind int

const (
	kindLabel fieldKind = iota
	kindProtocol
	kindHost
	kindAddress
	kindVerifierKey
	kindHash
	kindSecret
	kindToken
	kindText
	kindTime
)

type field struct {
	name string
	kind fieldKind
	get  func(*Record) string // "" when unset
	set  func(*Record, string) error
}

func hashField(name string, p func(*Record) *Hash) field {
	return field{name, kindHash,
		func(r *Record) string {
			if p(r).IsZero() {
				return ""
			}
			return p(r).String()
		},
		func(r *Record, s string) (err error) { *p(r), err = ParseHash(s); return err }}
}

func stringField(name string, kind fieldKind, p func(*Record) *string) field {
	return field{name, kind,
		func(r *Record) string { return *p(r) },
		func(r *Record, s string) error {
			if err := checkKind(kind, s); err != nil {
				return err
			}
			*p(r) = s
			return nil
		}}
}

func timeField(name string, p func(*Record) *time.Time) field {
	return field{name, kindTime,
		func(r *Record) string {
			if p(r).IsZero() {
				return ""
			}
			return FormatTime(*p(r))
		},
		func(r *Record, s string) (err error) {
			if *p(r), err = ParseTime(s); err == nil && p(r).IsZero() {
				err = fmt.Errorf("time %q: the zero time, which stands for no time", s)
			}
			return err
		}}
}

func checkKind(kind fieldKind, s string) error {
	switch kind {
	case kindHost:
		return CheckHost(s)
	case kindAddress:
		return CheckAddress(s)
	case kindToken:
		return checkToken(s)
	case kindText:
		return checkText(s)
	case kindVerifierKey:
		return checkVerifierKey(s)
	}
	return fmt.Errorf("internal: no check for kind %d", kind)
}

// fields lists every field a record can hold, each with its name on the wire.
func fields() []field {
	return []field{
		{"label", kindLabel,
			func(r *Record) string {
				if r.Label.IsZero() {
					return ""
				}
				return r.Label.String()
			},
			func(r *Record, s string) (err error) { r.Label, err = ParseLabel(s); return err }},
		{"protocol", kindProtocol,
			func(r *Record) string { return string(r.Protocol) },
			func(r *Record, s string) (err error) { r.Protocol, err = ParseProtocol(s); return err }},
		stringField("agent", kindHost, func(r *Record) *string { return &r.Agent }),
		stringField("from", kindHost, func(r *Record) *string { return &r.From }),
		stringField("origin", kindHost, func(r *Record) *string { return &r.Origin }),
		stringField("sender", kindAddress, func(r *Record) *string { return &r.Sender }),
		stringField("recipient", kindAddress, func(r *Record) *string { return &r.Recipient }),
		stringField("subject", kindAddress, func(r *Record) *string { return &r.Subject }),
		stringField("key", kindVerifierKey, func(r *Record) *string { return &r.Key }),
		hashField("content", func(r *Record) *Hash { return &r.Content }),
		hashField("commitment", func(r *Record) *Hash { return &r.Commitment }),
		hashField("ciphertext", func(r *Record) *Hash { return &r.Ciphertext }),
		hashField("keyhash", func(r *Record) *Hash { return &r.KeyHash }),
		hashField("request", func(r *Record) *Hash { return &r.Request }),
		hashField("exchange", func(r *Record) *Hash { return &r.Exchange }),
		{"secret", kindSecret,
			func(r *Record) string { return hex.EncodeToString(r.Secret) },
			func(r *Record, s string) (err error) { r.Secret, err = parseSecret(s); return err }},
		stringField("location", kindHost, func(r *Record) *string { return &r.Location }),
		stringField("expectation", kindText, func(r *Record) *string { return &r.Expectation }),
		stringField("mode", kindToken, func(r *Record) *string { return &r.Mode }),
		stringField("method", kindToken, func(r *Record) *string { return &r.Method }),
		stringField("client", kindText, func(r *Record) *string { return &r.Client }),
		stringField("reason", kindToken, func(r *Record) *string { return &r.Reason }),
		stringField("detail", kindText, func(r *Record) *string { return &r.Detail }),
		timeField("deadline", func(r *Record) *time.Time { return &r.Deadline }),
		timeField("time", func(r *Record) *time.Time { return &r.Time }),
	}
}

// schemaEntry is one line of a type's schema: a field name, and whether it may be absent.
type schemaEntry struct {
	name     string
	optional bool
}

// signerRole says which field names the key that must sign a record.
type signerRole int

const (
	byAgent          signerRole = iota // the agent named in "agent"
	byRecipient                        // B, under KeyName(recipient)
	bySender                           // A, under KeyName(sender)
	byAgentAndOrigin                   // ROD: Pn and P1
)

type schema struct {
	entries []schemaEntry
	signer  signerRole
}

func req(names ...string) []schemaEntry {
	out := make([]schemaEntry, len(names))
	for i, n := range names {
		out[i] = schemaEntry{name: n}
	}
	return out
}

// schemas gives the field order and the signer of each type. It is a read-only table.
var schemas = map[Type]schema{
	COP: {req("label", "protocol", "agent", "sender", "recipient", "content", "deadline", "time"), byAgent},
	NAC: {req("label", "protocol", "agent", "sender", "reason", "detail", "time"), byAgent},
	ACK: {req("label", "protocol", "agent", "from", "recipient", "content", "time"), byAgent},
	NTF: {req("label", "protocol", "agent", "recipient", "content", "commitment", "deadline", "time"), byAgent},
	DLV: {req("label", "protocol", "agent", "recipient", "content", "method", "client", "time"), byAgent},
	REJ: {req("label", "protocol", "agent", "recipient", "reason", "time"), byAgent},
	RET: {req("label", "agent", "recipient", "content", "client", "time"), byAgent},
	ROD: {req("label", "protocol", "agent", "origin", "recipient", "content", "time"), byAgentAndOrigin},
	WRN: {req("label", "protocol", "agent", "sender", "recipient", "deadline", "time"), byAgent},
	NDN: {req("label", "protocol", "agent", "sender", "recipient", "content", "deadline", "reason", "time"), byAgent},
	RTR: {req("label", "protocol", "agent", "sender", "recipient", "content", "time"), byAgent},
	VIR: {req("label", "agent", "sender", "content", "detail", "time"), byAgent},
	PUB: {req("label", "protocol", "agent", "ciphertext", "secret", "time"), byAgent},
	KEY: {req("agent", "subject", "key", "time"), byAgent},

	CODBasic: {req("label", "agent", "recipient", "content", "time"), byRecipient},
	CODNSR:   {req("label", "agent", "recipient", "time"), byRecipient},
	CODIP:    {req("label", "agent", "recipient", "commitment", "time"), byRecipient},

	CMPNRO:      {req("label", "sender", "recipient", "content"), bySender},
	CMPREQ:      {req("label", "agent", "sender", "recipient", "content"), byRecipient},
	CMPNRD:      {req("label", "agent", "sender", "recipient", "content", "request", "time"), byAgent},
	CMP2NRO:     {req("label", "sender", "recipient", "content", "ciphertext"), bySender},
	CMP2REQ:     {req("label", "agent", "sender", "recipient", "ciphertext"), byRecipient},
	CMP2NRD:     {req("label", "agent", "sender", "recipient", "ciphertext", "keyhash", "request", "time"), byAgent},
	SRREQ:       {append(req("label", "sender", "recipient", "ciphertext", "deadline", "location"), schemaEntry{"expectation", true}), byRecipient},
	SRKEYRCPT:   {req("label", "sender", "recipient", "ciphertext", "keyhash"), byRecipient},
	AGHPRECEIPT: {req("label", "agent", "sender", "recipient", "mode", "exchange", "keyhash", "time"), byAgent},
}

// fieldTable and fieldIndex are read-only tables built once from fields().
var (
	fieldTable = fields()
	fieldIndex = func() map[string]int {
		m := make(map[string]int, len(fieldTable))
		for i, f := range fieldTable {
			m[f.name] = i
		}
		return m
	}()
)

func schemaOf(t Type) (schema, bool) {
	s, ok := schemas[t]
	return s, ok
}

func fieldNamed(name string) field { return fieldTable[fieldIndex[name]] }

// Types lists every evidence type, records first, then certificates of delivery and tokens.
func Types() []Type {
	return []Type{COP, NAC, ACK, NTF, DLV, REJ, RET, ROD, WRN, NDN, RTR, VIR, PUB, KEY,
		CODBasic, CODNSR, CODIP,
		CMPNRO, CMPREQ, CMPNRD, CMP2NRO, CMP2REQ, CMP2NRD, SRREQ, SRKEYRCPT, AGHPRECEIPT}
}

// ErrMalformed is wrapped by every error about the bytes of a body, note or bundle.
var ErrMalformed = errors.New("evidence: malformed")

func malformed(format string, args ...any) error {
	return fmt.Errorf("%w: %s", ErrMalformed, fmt.Sprintf(format, args...))
}

// Validate checks that r holds exactly the fields its type defines, each well formed.
func (r *Record) Validate() error {
	s, ok := schemaOf(r.Type)
	if !ok {
		return malformed("unknown type %q", r.Type)
	}
	for _, f := range fieldTable {
		v := f.get(r)
		i := slices.IndexFunc(s.entries, func(e schemaEntry) bool { return e.name == f.name })
		switch {
		case i < 0 && v != "":
			return malformed("%s: field %q does not belong to this type", r.Type, f.name)
		case i < 0:
		case v == "" && !s.entries[i].optional:
			return malformed("%s: missing field %q", r.Type, f.name)
		case v != "":
			// Round-trip through the parser: a value is valid iff it reads back unchanged.
			var probe Record
			if err := f.set(&probe, v); err != nil {
				return malformed("%s: field %s: %v", r.Type, f.name, err)
			}
			if f.get(&probe) != v {
				return malformed("%s: field %s: non-canonical value", r.Type, f.name)
			}
		}
	}
	return nil
}

// Encode returns the canonical body of r.
func (r *Record) Encode() ([]byte, error) {
	if err := r.Validate(); err != nil {
		return nil, err
	}
	return []byte(r.encode()), nil
}

// encode writes the fields of a record known to be valid.
func (r *Record) encode() string {
	s := schemas[r.Type]
	var b strings.Builder
	b.Grow(512)
	b.WriteString(Version + "\ntype " + string(r.Type) + "\n")
	for _, e := range s.entries {
		if v := fieldNamed(e.name).get(r); v != "" {
			b.WriteString(e.name)
			b.WriteByte(' ')
			b.WriteString(v)
			b.WriteByte('\n')
		}
	}
	return b.String()
}

// ParseRecord parses a canonical body. Anything that Encode would not have produced is an error.
func ParseRecord(body []byte) (*Record, error) {
	text := string(body)
	if !strings.HasSuffix(text, "\n") {
		return nil, malformed("body does not end with a line feed")
	}
	lines := strings.Split(strings.TrimSuffix(text, "\n"), "\n")
	if lines[0] != Version {
		if strings.HasPrefix(lines[0], "certmail-evidence/") {
			return nil, malformed("unsupported version %q (this certmail reads %s)", lines[0], Version)
		}
		return nil, malformed("first line %q is not %s", lines[0], Version)
	}
	if len(lines) < 2 {
		return nil, malformed("no type line")
	}
	t, ok := strings.CutPrefix(lines[1], "type ")
	if !ok {
		return nil, malformed("second line %q is not a type line", lines[1])
	}
	s, ok := schemaOf(Type(t))
	if !ok {
		return nil, malformed("unknown type %q", t)
	}
	r := &Record{Type: Type(t)}
	rest := lines[2:]
	for _, e := range s.entries {
		if len(rest) == 0 || !hasField(rest[0], e.name) {
			if e.optional {
				continue
			}
			if len(rest) == 0 {
				return nil, malformed("%s: missing field %q", t, e.name)
			}
			return nil, malformed("%s: line %q where field %q belongs (missing, misplaced or unknown field)", t, rest[0], e.name)
		}
		v := rest[0][len(e.name)+1:]
		f := fieldNamed(e.name)
		if err := f.set(r, v); err != nil {
			return nil, malformed("%s: field %s: %v", t, e.name, err)
		}
		// The encoder leaves out an unset value, so a line holding one is not canonical (the
		// zero time, which also means unset, is refused by the time fields).
		if v == "" {
			return nil, malformed("%s: non-canonical encoding (field %s set to nothing)", t, e.name)
		}
		rest = rest[1:]
	}
	if len(rest) > 0 {
		return nil, malformed("%s: unexpected line %q after the last field (duplicate or unknown field)", t, rest[0])
	}
	// The bytes are those the encoder writes without writing them again: the lines are in the
	// schema's order, and every value's parser accepts only the canonical text of the value
	// (ParseLabel, ParseHash, ParseTime and parseSecret refuse any other spelling; the string
	// kinds are kept as read). FuzzParseRecord holds ParseRecord to that.
	return r, nil
}

// hasField reports whether line is a line of the field name: "name value".
func hasField(line, name string) bool {
	return len(line) > len(name) && line[len(name)] == ' ' && line[:len(name)] == name
}

// SignerNames gives the key names whose signatures a record needs: the agent for agent records,
// B's for certificates of delivery and requests, A's for proofs of origin, and both Pn and P1
// for a report of delivery (one name when they are the same agent).
func (r *Record) SignerNames() []string {
	s, ok := schemaOf(r.Type)
	if !ok {
		return nil
	}
	switch s.signer {
	case byRecipient:
		return []string{mustKeyName(r.Recipient)}
	case bySender:
		return []string{mustKeyName(r.Sender)}
	case byAgentAndOrigin:
		if r.Origin == r.Agent {
			return []string{r.Agent}
		}
		return []string{r.Agent, r.Origin}
	}
	return []string{r.Agent}
}
