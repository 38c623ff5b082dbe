package main

import (
	"bytes"
	"crypto/ed25519"
	"crypto/tls"
	"crypto/x509"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"mime"
	"net/http"
	"net/url"
	"os"
	"regexp"
	"strings"
	"time"

	"golang.org/x/mod/sumdb/note"

	"certmail/evidence"
)

// messageMode is the mode of a saved message: it is the recipient's private mail.
const messageMode fs.FileMode = 0o600

const pickupDescription = `
Pick up a certified message as its recipient, with the link of the notification mail: show who
sent what under which label, then accept it (the default) or refuse it (--refuse).

With --key (a private key from 'certmail keygen -user ADDRESS'), acceptance carries your own
signature: the key's verifier key is enrolled for your address through the link, and the
certificate of delivery the agent asks for is checked and signed here, so the sender's evidence
is recipient-signed. Without --key the agent attests your acceptance (agent-attested).

Once accepted, the message is fetched, checked against the commitment the notification named,
and saved to --out (default LABEL.eml, mode 0600; never overwritten).
Exit status 0 when done, 1 when the agent refused or the message does not match, 2 for a usage
error.`

// runPickup implements `certmail pickup URL [--password-file F] [--key FILE] [--refuse] [--out FILE.eml] [--ca FILE]`.
func runPickup(args []string, stdin io.Reader, stdout, stderr io.Writer) int {
	flags := newFlagSet("pickup", "URL [--password-file F] [--key FILE] [--refuse] [--out FILE.eml] [--ca FILE]", pickupDescription, stderr)
	pwFile := flags.String("password-file", "", "read the message password from the first line of `F` ('-': standard input)")
	keyFile := flags.String("key", "", "sign the certificate of delivery with the private key in `FILE`")
	refuse := flags.Bool("refuse", false, "refuse the message instead of accepting it")
	out := flags.String("out", "", "save the message to `FILE.eml` (default: LABEL.eml)")
	caFile := flags.String("ca", "", "also trust the CA certificates in PEM `FILE` (a local agent's certmail-data/ca.crt)")
	pos, code, ok := parseInterspersed(flags, args)
	if !ok {
		return code
	}
	if len(pos) != 1 {
		return usageError(stderr, "pickup", "want exactly one pickup link, got %d arguments", len(pos))
	}
	api, err := pickupAPIBase(pos[0])
	if err != nil {
		return usageError(stderr, "pickup", "%v", err)
	}
	if *refuse && (*keyFile != "" || *out != "") {
		return usageError(stderr, "pickup", "--refuse takes no --key or --out: nothing is signed or saved")
	}
	var pw string
	if *pwFile != "" {
		if pw, err = readPassword(*pwFile, stdin); err != nil {
			return usageError(stderr, "pickup", "%v", err)
		}
	}
	var key *userKey
	if *keyFile != "" {
		if key, err = readUserKey(*keyFile); err != nil {
			return usageError(stderr, "pickup", "%v", err)
		}
	}
	if *out != "" {
		if err := checkAbsent(*out); err != nil {
			return usageError(stderr, "pickup", "--out: %v", err)
		}
	}
	client, err := pickupClient(*caFile)
	if err != nil {
		return usageError(stderr, "pickup", "%v", err)
	}
	pc := &pickupCall{api: api, http: client}
	if err := pc.pickup(pickupJob{password: pw, hasPassword: *pwFile != "", key: key, refuse: *refuse, out: *out}, stdout); err != nil {
		fmt.Fprintf(stderr, "certmail pickup: %v\n", err)
		var u usageErr
		if errors.As(err, &u) {
			return exitUsage
		}
		return exitFail
	}
	return exitOK
}

// usageErr is a mistake of the caller the agent's answer reveals (a password it did not give).
type usageErr struct{ msg string }

func (e usageErr) Error() string { return e.msg }

var pickupPathRE = regexp.MustCompile(`^/pickup/([A-Za-z0-9_-]{16,128})/?$`)

// pickupAPIBase turns a pickup link (https://host/pickup/TOKEN) into the base of its API.
func pickupAPIBase(link string) (string, error) {
	u, err := url.Parse(link)
	if err != nil {
		return "", fmt.Errorf("the link %q is not a URL", link)
	}
	if u.Scheme != "https" || u.Host == "" {
		return "", fmt.Errorf("the link %q is not an https:// link: use the link of the notification mail", link)
	}
	m := pickupPathRE.FindStringSubmatch(u.Path)
	if m == nil {
		return "", fmt.Errorf("%q is not a pickup link (https://HOST/pickup/TOKEN): was it cut short?", link)
	}
	return "https://" + u.Host + "/api/v1/pickup/" + m[1], nil
}

// readPassword reads the first line of a file, or of stdin for "-".
func readPassword(path string, stdin io.Reader) (string, error) {
	var b []byte
	var err error
	if path == "-" {
		b, err = io.ReadAll(io.LimitReader(stdin, 64<<10))
	} else {
		b, err = os.ReadFile(path)
	}
	if err != nil {
		return "", fmt.Errorf("--password-file: %w", err)
	}
	line, _, _ := strings.Cut(string(b), "\n")
	line = strings.TrimSuffix(line, "\r")
	if line == "" {
		return "", errors.New("--password-file: the first line is empty")
	}
	return line, nil
}

// userKey is a user's signing key read from a `certmail keygen -user` private key file.
type userKey struct {
	path     string
	signer   note.Signer
	verifier string
}

// readUserKey reads a private key file and derives its verifier key, refusing a file others can
// read: a key anyone on the machine could copy proves nothing about its owner.
func readUserKey(path string) (*userKey, error) {
	info, err := os.Stat(path)
	if err != nil {
		return nil, fmt.Errorf("--key: %w", err)
	}
	if perm := info.Mode().Perm(); perm&0o077 != 0 {
		return nil, fmt.Errorf("--key: %s has mode %04o, readable by others: chmod 600 it (and consider the key exposed)", path, perm)
	}
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("--key: %w", err)
	}
	k, err := parseUserKey(b)
	if err != nil {
		return nil, fmt.Errorf("--key: %s %v", path, err)
	}
	k.path = path
	return k, nil
}

// parseUserKey reads a note private key (PRIVATE+KEY+name+hash+base64(0x01 || seed), one line)
// and derives its verifier key, which the note package has no call for.
func parseUserKey(b []byte) (*userKey, error) {
	skey := strings.TrimSpace(string(b))
	signer, err := note.NewSigner(skey)
	if err != nil {
		return nil, fmt.Errorf("is not a private key of 'certmail keygen -user ADDRESS' (%v)", err)
	}
	raw, err := base64.StdEncoding.DecodeString(strings.SplitN(skey, "+", 5)[4])
	if err != nil || len(raw) != 1+ed25519.SeedSize || raw[0] != 1 {
		return nil, errors.New("is not an Ed25519 key")
	}
	vkey, err := note.NewEd25519VerifierKey(signer.Name(), ed25519.NewKeyFromSeed(raw[1:]).Public().(ed25519.PublicKey))
	if err != nil {
		return nil, err
	}
	if v, err := note.NewVerifier(vkey); err != nil || v.KeyHash() != signer.KeyHash() {
		return nil, errors.New("is damaged: its key hash does not match the key")
	}
	return &userKey{signer: signer, verifier: vkey}, nil
}

// pickupClient trusts the system's roots and, with caFile, a local agent's CA.
func pickupClient(caFile string) (*http.Client, error) {
	pool, err := x509.SystemCertPool()
	if err != nil {
		pool = x509.NewCertPool()
	}
	if caFile != "" {
		pem, err := os.ReadFile(caFile)
		if err != nil {
			return nil, fmt.Errorf("--ca: %w", err)
		}
		if !pool.AppendCertsFromPEM(pem) {
			return nil, fmt.Errorf("--ca: %s holds no PEM certificate", caFile)
		}
	}
	return &http.Client{Timeout: 60 * time.Second, Transport: &http.Transport{
		TLSClientConfig: &tls.Config{RootCAs: pool, MinVersion: tls.VersionTLS12}}}, nil
}

// pickupJob is what the user asked for.
type pickupJob struct {
	password    string
	hasPassword bool
	key         *userKey
	refuse      bool
	out         string
}

// pickupCall talks to one pickup link's API (web/pickup_api.go).
type pickupCall struct {
	api  string
	http *http.Client
}

// pickupView is the part of GET /api/v1/pickup/{token} this command uses.
type pickupView struct {
	Label        string `json:"label"`
	Mode         string `json:"mode"`
	Sender       string `json:"sender"`
	Recipient    string `json:"recipient"`
	KeyName      string `json:"key_name"`
	Commitment   string `json:"commitment"`
	Content      string `json:"content"`
	Deadline     string `json:"deadline"`
	State        string `json:"state"`
	Closed       string `json:"closed"`
	NeedPassword bool   `json:"need_password"`
	Hint         string `json:"hint"`
	Size         int64  `json:"size"`
	CSRF         string `json:"csrf"`
}

func (pc *pickupCall) pickup(job pickupJob, stdout io.Writer) error {
	var v pickupView
	if err := pc.do("GET", "", nil, &v); err != nil {
		return err
	}
	fmt.Fprintf(stdout, "certified message from %s to %s\n  label      %s\n  mode       %s\n  commitment %s\n  decide by  %s\n  size       %d bytes\n",
		v.Sender, v.Recipient, v.Label, v.Mode, v.Commitment, v.Deadline, v.Size)
	switch {
	case v.State == "delivered" && !job.refuse:
		fmt.Fprintf(stdout, "already accepted; fetching the message again\n")
		return pc.fetch(v, job.out, stdout)
	case v.Closed != "":
		return fmt.Errorf("this message can no longer be picked up: %s", v.Closed)
	case v.NeedPassword && !job.hasPassword:
		hint := ""
		if v.Hint != "" {
			hint = fmt.Sprintf(" (the sender's hint: %q)", v.Hint)
		}
		return usageErr{fmt.Sprintf("the sender protected this message with a password%s: give it with --password-file", hint)}
	}
	req := map[string]any{"csrf": v.CSRF}
	if job.hasPassword {
		req["password"] = job.password
	}
	if job.refuse {
		if err := pc.do("POST", "/refuse", req, nil); err != nil {
			return err
		}
		fmt.Fprintf(stdout, "refused: the agent recorded your refusal (REJ) and tells the sender; nothing of the message was released\n")
		return nil
	}
	if job.key != nil {
		cod, err := pc.sign(v, req, job.key, stdout)
		if err != nil {
			return err
		}
		req["cod"] = string(cod)
	}
	var d struct {
		Recorded    []string `json:"recorded"`
		Attestation string   `json:"attestation"`
	}
	if err := pc.do("POST", "/accept", req, &d); err != nil {
		return err
	}
	fmt.Fprintf(stdout, "accepted: the agent recorded %s; the sender's evidence is %s\n", strings.Join(d.Recorded, ", "), d.Attestation)
	return pc.fetch(v, job.out, stdout)
}

// sign enrols the key for the recipient and signs the certificate of delivery the agent gives,
// after checking that it names this message.
func (pc *pickupCall) sign(v pickupView, req map[string]any, key *userKey, stdout io.Writer) ([]byte, error) {
	if key.signer.Name() != v.KeyName {
		return nil, fmt.Errorf("the key in %s is named %s, but this message is for %s (key name %s): use that address's key", key.path, key.signer.Name(), v.Recipient, v.KeyName)
	}
	enrol := map[string]any{"verifier_key": key.verifier}
	for k, x := range req {
		enrol[k] = x
	}
	var e struct {
		New bool `json:"new"`
	}
	if err := pc.do("POST", "/key", enrol, &e); err != nil {
		return nil, err
	}
	if e.New {
		fmt.Fprintf(stdout, "key: enrolled %s for %s (the agent signed a KEY record)\n", key.verifier, v.Recipient)
	} else {
		fmt.Fprintf(stdout, "key: %s is already registered for %s\n", key.verifier, v.Recipient)
	}
	var c struct {
		Text string `json:"text"`
	}
	if err := pc.do("GET", "/cod", nil, &c); err != nil {
		return nil, err
	}
	r, err := evidence.ParseRecord([]byte(c.Text))
	if err != nil {
		return nil, fmt.Errorf("the agent asked to sign something that is no evidence record: %v", err)
	}
	// Sign only a certificate of delivery for this very item.
	ok := r.Label.String() == v.Label && r.Recipient == v.Recipient
	switch r.Type {
	case evidence.CODIP:
		ok = ok && v.Mode == string(evidence.CEMIP) && r.Commitment.String() == v.Commitment
	case evidence.CODNSR:
		ok = ok && v.Mode == string(evidence.CEMNSR)
	case evidence.CODBasic:
		ok = ok && v.Mode == string(evidence.CEM) && r.Content.String() == v.Content
	default:
		ok = false
	}
	if !ok {
		return nil, fmt.Errorf("the agent asked to sign a certificate that does not name this message; nothing was signed:\n%s", c.Text)
	}
	n, err := evidence.Sign(r, key.signer)
	if err != nil {
		return nil, err
	}
	fmt.Fprintf(stdout, "signed: %s for label %s with %s\n", r.Type, v.Label, key.signer.Name())
	return n.Bytes(), nil
}

// fetch downloads M, checks it against what the recipient was notified of (PROTOCOLS.md §1
// cem-ip: B checks the fetched M against H(L,M)), and saves it.
func (pc *pickupCall) fetch(v pickupView, out string, stdout io.Writer) error {
	resp, err := pc.http.Get(pc.api + "/message.eml")
	if err != nil {
		return fmt.Errorf("fetch the message: %v", err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return problemError(resp)
	}
	m, err := io.ReadAll(resp.Body)
	if err != nil {
		return fmt.Errorf("fetch the message: %v", err)
	}
	l, err := evidence.ParseLabel(v.Label)
	if err != nil {
		return fmt.Errorf("the agent gave label %q: %v", v.Label, err)
	}
	if out == "" {
		out = l.String() + ".eml"
	}
	if err := createFile(out, string(m), messageMode); err != nil {
		return fmt.Errorf("the message was released but not saved: %v; fetch it again with the same link", err)
	}
	match := ""
	switch v.Mode {
	case string(evidence.CEMIP):
		if evidence.Commitment(l, m).String() != v.Commitment {
			return fmt.Errorf("ALARM: the message saved to %s does not match the commitment %s of the notification; keep it and tell the sender", out, v.Commitment)
		}
		match = ", matches the commitment H(L,M)"
	case string(evidence.CEM):
		if evidence.Sum(m).String() != v.Content {
			return fmt.Errorf("ALARM: the message saved to %s does not match the content hash %s; keep it and tell the sender", out, v.Content)
		}
		match = ", matches the content hash H(M)"
	}
	fmt.Fprintf(stdout, "saved %s (%d bytes%s)\n", out, len(m), match)
	return nil
}

// do makes one API call; a 2xx JSON answer is decoded into into (when not nil), anything else
// becomes an error carrying the agent's explanation.
func (pc *pickupCall) do(method, path string, body any, into any) error {
	var rd io.Reader
	if body != nil {
		b, err := json.Marshal(body)
		if err != nil {
			return err
		}
		rd = bytes.NewReader(b)
	}
	req, err := http.NewRequest(method, pc.api+path, rd)
	if err != nil {
		return err
	}
	req.Header.Set("Accept", "application/json")
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	resp, err := pc.http.Do(req)
	if err != nil {
		return fmt.Errorf("cannot reach the agent: %v", err)
	}
	defer resp.Body.Close()
	if resp.StatusCode/100 != 2 {
		return problemError(resp)
	}
	if into == nil {
		return nil
	}
	if err := json.NewDecoder(io.LimitReader(resp.Body, 1<<20)).Decode(into); err != nil {
		return fmt.Errorf("the agent's answer to %s %s is not the JSON expected: %v", method, path, err)
	}
	return nil
}

// problemError reads an RFC 9457 answer into an error a person can act on.
func problemError(resp *http.Response) error {
	var p struct {
		Detail string `json:"detail"`
	}
	mt, _, _ := mime.ParseMediaType(resp.Header.Get("Content-Type"))
	if mt == "application/problem+json" && json.NewDecoder(io.LimitReader(resp.Body, 64<<10)).Decode(&p) == nil && p.Detail != "" {
		return fmt.Errorf("the agent refused (%d): %s", resp.StatusCode, p.Detail)
	}
	return fmt.Errorf("the agent answered %s", resp.Status)
}
