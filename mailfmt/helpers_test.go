package mailfmt_test

import (
	"bytes"
	"crypto/sha256"
	"encoding/base64"
	"encoding/binary"
	"io"
	"mime"
	"mime/multipart"
	"mime/quotedprintable"
	"net/mail"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"golang.org/x/mod/sumdb/note"

	"certmail/evidence"
	"certmail/mailfmt"
)

// now is the clock of every test.
var now = time.Date(2026, 11, 23, 18, 0, 0, 0, time.UTC)

const (
	agentHost = "mail.a.example"
	sender    = "alice@a.example"
	recipient = "bob@b.example"
)

// seeded is a deterministic byte stream, so keys, signatures and golden files are stable.
type seeded uint64

func (s *seeded) Read(p []byte) (int, error) {
	for i := range p {
		var ctr [8]byte
		binary.BigEndian.PutUint64(ctr[:], uint64(*s)/32)
		h := sha256.Sum256(ctr[:])
		p[i] = h[*s%32]
		*s++
	}
	return len(p), nil
}

// world is an agent key and a recipient key, and one exchange's facts.
type world struct {
	agent     note.Signer
	agentVkey string
	bob       note.Signer
	bobVkey   string
	label     evidence.Label
	m         []byte
}

func newWorld(t testing.TB, m []byte) *world {
	t.Helper()
	r := seeded(1)
	skey, vkey, err := note.GenerateKey(&r, agentHost)
	if err != nil {
		t.Fatal(err)
	}
	agent, err := note.NewSigner(skey)
	if err != nil {
		t.Fatal(err)
	}
	bobName, _ := evidence.KeyName(recipient)
	bskey, bvkey, err := note.GenerateKey(&r, bobName)
	if err != nil {
		t.Fatal(err)
	}
	bob, err := note.NewSigner(bskey)
	if err != nil {
		t.Fatal(err)
	}
	l, err := evidence.NewLabel(&r)
	if err != nil {
		t.Fatal(err)
	}
	return &world{agent: agent, agentVkey: vkey, bob: bob, bobVkey: bvkey, label: l, m: m}
}

func (w *world) deadline() time.Time { return now.Add(48 * time.Hour) }

// record returns a valid record of type typ for the world's exchange.
func (w *world) record(typ evidence.Type) *evidence.Record {
	r := &evidence.Record{Type: typ, Label: w.label, Time: now}
	content := evidence.Sum(w.m)
	switch typ {
	case evidence.COP:
		r.Protocol, r.Agent, r.Sender, r.Recipient, r.Content, r.Deadline = evidence.CEMIP, agentHost, sender, recipient, content, w.deadline()
	case evidence.NAC:
		r.Protocol, r.Agent, r.Sender, r.Reason, r.Detail = evidence.CEMIP, agentHost, sender, "mime", "the boundary never appears"
	case evidence.ROD:
		r.Protocol, r.Agent, r.Origin, r.Recipient, r.Content = evidence.CEMIP, agentHost, agentHost, recipient, content
	case evidence.DLV:
		r.Protocol, r.Agent, r.Recipient, r.Content, r.Method, r.Client = evidence.CEMIP, agentHost, recipient, content, "password", "192.0.2.7"
	case evidence.CODIP:
		r.Agent, r.Recipient, r.Commitment = agentHost, recipient, evidence.Commitment(w.label, w.m)
	case evidence.WRN:
		r.Protocol, r.Agent, r.Sender, r.Recipient, r.Deadline = evidence.CEMIP, agentHost, sender, recipient, w.deadline()
	case evidence.NDN:
		r.Protocol, r.Agent, r.Sender, r.Recipient, r.Content, r.Deadline, r.Reason = evidence.CEMIP, agentHost, sender, recipient, content, w.deadline(), "deadline"
	case evidence.REJ:
		r.Protocol, r.Agent, r.Recipient, r.Reason = evidence.CEMIP, agentHost, recipient, "refused"
	case evidence.RTR:
		r.Protocol, r.Agent, r.Sender, r.Recipient, r.Content = evidence.CEMIP, agentHost, sender, recipient, content
	}
	return r
}

func (w *world) note(t testing.TB, typ evidence.Type) *evidence.Note {
	t.Helper()
	signer := w.agent
	if typ == evidence.CODIP {
		signer = w.bob
	}
	n, err := evidence.Sign(w.record(typ), signer)
	if err != nil {
		t.Fatal(err)
	}
	return n
}

func (w *world) bundle(t testing.TB, notes ...*evidence.Note) []byte {
	t.Helper()
	b := &evidence.Bundle{Label: w.label, Notes: notes}
	b.AddKey(w.agentVkey)
	b.AddKey(w.bobVkey)
	enc, err := b.Encode()
	if err != nil {
		t.Fatal(err)
	}
	return enc
}

func (w *world) head(to string) mailfmt.Head {
	return mailfmt.Head{From: "certmail@" + agentHost, To: to, Date: now, Domain: agentHost, ID: "T3STID0000000001"}
}

func (w *world) exchange(subject string) mailfmt.Exchange {
	return mailfmt.Exchange{Label: w.label, Protocol: evidence.CEMIP, Sender: sender, Recipient: recipient,
		Subject: subject, Content: evidence.Sum(w.m), Deadline: w.deadline()}
}

// entity is a decoded MIME leaf of a composed mail.
type entity struct {
	mediaType string
	params    map[string]string
	filename  string
	header    map[string][]string
	data      []byte // transfer-decoded
}

// readMail parses a composed mail with net/mail and mime/multipart, as a mail program would,
// and returns its header and its leaves in order.
func readMail(t testing.TB, raw []byte) (mail.Header, []entity) {
	t.Helper()
	checkWire(t, raw)
	msg, err := mail.ReadMessage(bytes.NewReader(raw))
	if err != nil {
		t.Fatalf("net/mail cannot read the mail: %v\n%s", err, raw)
	}
	body, err := io.ReadAll(msg.Body)
	if err != nil {
		t.Fatal(err)
	}
	var out []entity
	walkEntity(t, map[string][]string(msg.Header), body, &out)
	return msg.Header, out
}

func walkEntity(t testing.TB, h map[string][]string, body []byte, out *[]entity) {
	t.Helper()
	get := func(k string) string {
		if v := h[k]; len(v) > 0 {
			return v[0]
		}
		return ""
	}
	ct := get("Content-Type")
	if ct == "" {
		ct = "text/plain; charset=us-ascii"
	}
	mt, params, err := mime.ParseMediaType(ct)
	if err != nil {
		t.Fatalf("Content-Type %q: %v", ct, err)
	}
	if strings.HasPrefix(mt, "multipart/") {
		r := multipart.NewReader(bytes.NewReader(body), params["boundary"])
		for {
			p, err := r.NextRawPart()
			if err == io.EOF {
				break
			}
			if err != nil {
				t.Fatalf("multipart: %v", err)
			}
			pb, err := io.ReadAll(p)
			if err != nil {
				t.Fatalf("multipart part: %v", err)
			}
			walkEntity(t, p.Header, pb, out)
		}
		return
	}
	data := body
	switch strings.ToLower(get("Content-Transfer-Encoding")) {
	case "base64":
		data, err = io.ReadAll(base64Decoder(body))
	case "quoted-printable":
		data, err = io.ReadAll(quotedprintable.NewReader(bytes.NewReader(body)))
	}
	if err != nil {
		t.Fatalf("decode %s: %v", mt, err)
	}
	e := entity{mediaType: mt, params: params, header: h, data: data}
	if cd := get("Content-Disposition"); cd != "" {
		_, dp, err := mime.ParseMediaType(cd)
		if err != nil {
			t.Fatalf("Content-Disposition %q: %v", cd, err)
		}
		e.filename = dp["filename"]
	}
	*out = append(*out, e)
}

// checkWire checks what every composed mail must be on the wire: CRLF only, lines of at most
// 998 octets (78 in the header), no NUL.
func checkWire(t testing.TB, raw []byte) {
	t.Helper()
	if bytes.IndexByte(raw, 0) >= 0 {
		t.Fatal("NUL in a composed mail")
	}
	if bytes.Count(raw, []byte("\n")) != bytes.Count(raw, []byte("\r\n")) || bytes.Count(raw, []byte("\r")) != bytes.Count(raw, []byte("\r\n")) {
		t.Fatal("bare CR or LF in a composed mail")
	}
	head, _, _ := bytes.Cut(raw, []byte("\r\n\r\n"))
	for i, line := range strings.Split(string(head), "\r\n") {
		if len(line) > 78 {
			t.Errorf("header line %d is %d long: %q", i+1, len(line), line)
		}
	}
	for i, line := range bytes.Split(raw, []byte("\r\n")) {
		if len(line) > 998 {
			t.Fatalf("line %d is %d long", i+1, len(line))
		}
	}
}

func base64Decoder(b []byte) io.Reader {
	clean := bytes.Map(func(r rune) rune {
		if r == '\r' || r == '\n' {
			return -1
		}
		return r
	}, b)
	return base64.NewDecoder(base64.StdEncoding, bytes.NewReader(clean))
}

// decodedText is every header value (RFC 2047-decoded) and every decoded leaf of a mail, for
// searching what a mail reveals.
func decodedText(t testing.TB, raw []byte) string {
	t.Helper()
	h, leaves := readMail(t, raw)
	var b strings.Builder
	dec := new(mime.WordDecoder)
	for k, vs := range h {
		for _, v := range vs {
			d, err := dec.DecodeHeader(v)
			if err != nil {
				t.Fatal(err)
			}
			b.WriteString(k + ": " + d + "\n")
		}
	}
	for _, e := range leaves {
		b.Write(e.data)
		b.WriteString("\n")
	}
	return b.String()
}

func leafNamed(leaves []entity, name string) (entity, bool) {
	for _, e := range leaves {
		if e.filename == name {
			return e, true
		}
	}
	return entity{}, false
}

func leafOfType(leaves []entity, mt string) (entity, bool) {
	for _, e := range leaves {
		if e.mediaType == mt {
			return e, true
		}
	}
	return entity{}, false
}

// readFiles returns the files matching pattern and fails when there is none.
func readFiles(t testing.TB, pattern string) map[string][]byte {
	t.Helper()
	files, _ := filepath.Glob(pattern)
	if len(files) == 0 {
		t.Fatalf("no files match %s", pattern)
	}
	out := map[string][]byte{}
	for _, f := range files {
		b, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		out[filepath.Base(f)] = b
	}
	return out
}
