package pki

import (
	"bytes"
	"crypto/sha256"
	"crypto/x509"
	"encoding/hex"
	"errors"
	"fmt"
	"io/fs"
	"net"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"time"

	"golang.org/x/mod/sumdb/note"

	"certmail/durable"
	"certmail/evidence"
)

// TrustStore is the list of peer agents an agent relays to and accepts relays, ACKs and RODs
// from (DESIGN.md §5), in the shape of PEC's provider index: for each peer its name, its
// signed-note verifier key, the SMTP endpoint it takes relays on, the mail domains it serves and,
// optionally, the TLS key it must present. The operator signs it with a signed-note key, so a
// store that was altered on disk, or that someone else wrote, is refused.
//
// Its text, the body of the signed note, is canonical (one encoding per store):
//
//	certmail trust store v1
//	operator HOST
//	serial N
//	issued TIME
//
//	peer HOST
//	key VKEY
//	relay HOST:PORT
//	domains DOMAIN...
//	tls-spki sha256:HEX         optional
//
// with one blank line before each peer, peers in name order, domains in order and each domain
// served by one peer at most.
type TrustStore struct {
	Operator string // the host name of the agent whose operator signs the store
	Serial   uint64 // grows with every change, so an old store cannot pass for the current one
	Issued   time.Time
	Peers    []Peer
}

// Peer is one trusted agent.
type Peer struct {
	Name    string   // host name: the name the peer signs its evidence under
	Key     string   // its signed-note verifier key, named Name
	Relay   string   // HOST:PORT of its SMTP relay endpoint
	Domains []string // the mail domains whose recipients it serves
	// TLSSPKI, when set, pins the peer's TLS key: the SHA-256 of its certificate's
	// SubjectPublicKeyInfo, as "sha256:HEX".
	TLSSPKI string
}

const trustHeader = "certmail trust store v1"

// TrustFile is the trust store's file name in the data directory.
const TrustFile = "peers.note"

// Encode gives the store's canonical text, after checking it.
func (ts *TrustStore) Encode() ([]byte, error) {
	if err := ts.check(); err != nil {
		return nil, err
	}
	var b bytes.Buffer
	fmt.Fprintf(&b, "%s\noperator %s\nserial %d\nissued %s\n", trustHeader, ts.Operator, ts.Serial, evidence.FormatTime(ts.Issued))
	for _, p := range ts.Peers {
		fmt.Fprintf(&b, "\npeer %s\nkey %s\nrelay %s\ndomains %s\n", p.Name, p.Key, p.Relay, strings.Join(p.Domains, " "))
		if p.TLSSPKI != "" {
			fmt.Fprintf(&b, "tls-spki %s\n", p.TLSSPKI)
		}
	}
	return b.Bytes(), nil
}

// check reports the first thing that makes the store not canonical or not usable.
func (ts *TrustStore) check() error {
	if err := evidence.CheckHost(ts.Operator); err != nil {
		return fmt.Errorf("trust store: operator: %w", err)
	}
	if ts.Issued.IsZero() || !ts.Issued.Equal(evidence.CanonicalTime(ts.Issued)) {
		return errors.New("trust store: issued: want a time in whole milliseconds")
	}
	return checkPeers(ts.Peers)
}

// checkPeers checks each peer, their order, and that no domain has two.
func checkPeers(peers []Peer) error {
	served := map[string]string{}
	for i, p := range peers {
		if i > 0 && peers[i-1].Name >= p.Name {
			return fmt.Errorf("trust store: peer %s: peers must be in name order, each once", p.Name)
		}
		if err := p.check(); err != nil {
			return err
		}
		for _, d := range p.Domains {
			if other, ok := served[d]; ok {
				return fmt.Errorf("trust store: domain %s is served by both %s and %s", d, other, p.Name)
			}
			served[d] = p.Name
		}
	}
	return nil
}

func (p *Peer) check() error {
	if err := evidence.CheckHost(p.Name); err != nil {
		return fmt.Errorf("trust store: peer: %w", err)
	}
	v, err := note.NewVerifier(p.Key)
	if err != nil || v.Name() != p.Name {
		return fmt.Errorf("trust store: peer %s: key: want a signed-note verifier key named %s", p.Name, p.Name)
	}
	host, port, err := net.SplitHostPort(p.Relay)
	n, perr := strconv.Atoi(port)
	okHost := err == nil && (evidence.CheckHost(host) == nil || net.ParseIP(host) != nil)
	if !okHost || perr != nil || n < 1 || n > 65535 || strconv.Itoa(n) != port || net.JoinHostPort(host, port) != p.Relay {
		return fmt.Errorf("trust store: peer %s: relay %q: want HOST:PORT", p.Name, p.Relay)
	}
	if len(p.Domains) == 0 {
		return fmt.Errorf("trust store: peer %s: no domain", p.Name)
	}
	for i, d := range p.Domains {
		if err := evidence.CheckHost(d); err != nil || strings.ToLower(d) != d {
			return fmt.Errorf("trust store: peer %s: domain %q: want a lower-case host name", p.Name, d)
		}
		if i > 0 && p.Domains[i-1] >= d {
			return fmt.Errorf("trust store: peer %s: domains must be in order, each once", p.Name)
		}
	}
	if p.TLSSPKI != "" {
		h, ok := strings.CutPrefix(p.TLSSPKI, "sha256:")
		if b, err := hex.DecodeString(h); !ok || err != nil || len(b) != sha256.Size || strings.ToLower(h) != h {
			return fmt.Errorf("trust store: peer %s: tls-spki %q: want sha256: and 64 lower-case hex digits", p.Name, p.TLSSPKI)
		}
	}
	return nil
}

// ParseTrustStore reads a store's text strictly: it must be exactly the canonical encoding.
func ParseTrustStore(text []byte) (*TrustStore, error) {
	blocks := strings.Split(string(text), "\n\n")
	head, err := fieldsOf(blocks[0], []string{"", "operator", "serial", "issued"}, 0)
	if err != nil {
		return nil, err
	}
	if head[""] != trustHeader {
		return nil, fmt.Errorf("trust store: want first line %q", trustHeader)
	}
	ts := &TrustStore{Operator: head["operator"]}
	if ts.Serial, err = strconv.ParseUint(head["serial"], 10, 64); err != nil {
		return nil, fmt.Errorf("trust store: serial %q: %w", head["serial"], err)
	}
	if ts.Issued, err = evidence.ParseTime(head["issued"]); err != nil {
		return nil, fmt.Errorf("trust store: issued: %w", err)
	}
	for _, blk := range blocks[1:] {
		f, err := fieldsOf(blk, []string{"peer", "key", "relay", "domains", "tls-spki"}, 1)
		if err != nil {
			return nil, err
		}
		ts.Peers = append(ts.Peers, Peer{Name: f["peer"], Key: f["key"], Relay: f["relay"],
			Domains: strings.Split(f["domains"], " "), TLSSPKI: f["tls-spki"]})
	}
	enc, err := ts.Encode()
	if err != nil {
		return nil, err
	}
	if !bytes.Equal(enc, text) {
		return nil, errors.New("trust store: not in canonical form (spacing, order or line ends)")
	}
	return ts, nil
}

// fieldsOf reads "name value" lines in the order given; the first line of the header block is
// the bare header (name ""). The last optional names may be missing.
func fieldsOf(block string, names []string, optional int) (map[string]string, error) {
	lines := strings.Split(strings.TrimSuffix(block, "\n"), "\n")
	out := map[string]string{}
	i := 0
	for _, name := range names {
		if i == len(lines) {
			break
		}
		if name == "" {
			out[""] = lines[i]
			i++
			continue
		}
		v, ok := strings.CutPrefix(lines[i], name+" ")
		if !ok {
			continue
		}
		out[name] = v
		i++
	}
	if i != len(lines) {
		return nil, fmt.Errorf("trust store: unexpected line %q", lines[i])
	}
	for _, name := range names[:len(names)-optional] {
		if _, ok := out[name]; !ok {
			return nil, fmt.Errorf("trust store: missing %q line", name)
		}
	}
	return out, nil
}

// PeerFor returns the peer that serves a mail domain.
func (ts *TrustStore) PeerFor(domain string) (Peer, bool) {
	domain = strings.ToLower(domain)
	for _, p := range ts.Peers {
		if slices.Contains(p.Domains, domain) {
			return p, true
		}
	}
	return Peer{}, false
}

// Peer returns the peer named name.
func (ts *TrustStore) Peer(name string) (Peer, bool) {
	for _, p := range ts.Peers {
		if p.Name == name {
			return p, true
		}
	}
	return Peer{}, false
}

// Put adds p, or replaces the peer of the same name; domains are lower-cased and sorted.
func (ts *TrustStore) Put(p Peer) error {
	p.Domains = slices.Clone(p.Domains)
	for i, d := range p.Domains {
		p.Domains[i] = strings.ToLower(d)
	}
	slices.Sort(p.Domains)
	p.Domains = slices.Compact(p.Domains)
	if err := p.check(); err != nil {
		return err
	}
	peers := slices.DeleteFunc(slices.Clone(ts.Peers), func(q Peer) bool { return q.Name == p.Name })
	peers = append(peers, p)
	slices.SortFunc(peers, func(a, b Peer) int { return strings.Compare(a.Name, b.Name) })
	if err := checkPeers(peers); err != nil {
		return err
	}
	ts.Peers = peers
	return nil
}

// Remove drops the peer named name; it is an error when there is none.
func (ts *TrustStore) Remove(name string) error {
	n := len(ts.Peers)
	ts.Peers = slices.DeleteFunc(ts.Peers, func(p Peer) bool { return p.Name == name })
	if len(ts.Peers) == n {
		return fmt.Errorf("trust store: no peer named %s", name)
	}
	return nil
}

// SPKIPin is the TLSSPKI value that pins cert's key.
func SPKIPin(cert *x509.Certificate) string {
	sum := sha256.Sum256(cert.RawSubjectPublicKeyInfo)
	return "sha256:" + hex.EncodeToString(sum[:])
}

// SignTrustStore encodes ts and signs it with the operator's key.
func SignTrustStore(ts *TrustStore, signer note.Signer) ([]byte, error) {
	text, err := ts.Encode()
	if err != nil {
		return nil, err
	}
	return note.Sign(&note.Note{Text: string(text)}, signer)
}

// OpenTrustStore checks a signed store against the operator's verifier key and parses it.
func OpenTrustStore(signed []byte, operatorKey string) (*TrustStore, error) {
	v, err := note.NewVerifier(operatorKey)
	if err != nil {
		return nil, fmt.Errorf("trust store: operator key: %w", err)
	}
	n, err := note.Open(signed, note.VerifierList(v))
	if err != nil {
		return nil, fmt.Errorf("trust store: not signed by the operator's key %s: %w", v.Name(), err)
	}
	ts, err := ParseTrustStore([]byte(n.Text))
	if err != nil {
		return nil, err
	}
	if ts.Operator != v.Name() {
		return nil, fmt.Errorf("trust store: it names operator %s but is signed by %s", ts.Operator, v.Name())
	}
	return ts, nil
}

// LoadTrustStore reads dir/peers.note, signed by the operator key; with no file it returns an
// empty store (no peers: every recipient is served locally).
func LoadTrustStore(dir, operatorKey string) (*TrustStore, error) {
	b, err := os.ReadFile(filepath.Join(dir, TrustFile))
	if errors.Is(err, fs.ErrNotExist) {
		v, verr := note.NewVerifier(operatorKey)
		if verr != nil {
			return nil, fmt.Errorf("trust store: operator key: %w", verr)
		}
		return &TrustStore{Operator: v.Name()}, nil
	}
	if err != nil {
		return nil, fmt.Errorf("trust store: %w", err)
	}
	return OpenTrustStore(b, operatorKey)
}

// SaveTrustStore signs ts as the next version (serial + 1, issued now) and replaces
// dir/peers.note atomically.
func SaveTrustStore(dir string, ts *TrustStore, signer note.Signer, now time.Time) error {
	next := *ts
	next.Serial++
	next.Issued = evidence.CanonicalTime(now)
	signed, err := SignTrustStore(&next, signer)
	if err != nil {
		return err
	}
	if err := durable.WriteAtomic(filepath.Join(dir, TrustFile), signed, 0o644); err != nil {
		return fmt.Errorf("trust store: %w", err)
	}
	*ts = next
	return nil
}
