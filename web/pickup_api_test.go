package web_test

import (
	"bytes"
	"crypto/ed25519"
	"encoding/json"
	"math/rand/v2"
	"net/http"
	"regexp"
	"strings"
	"testing"

	"certmail/api"
	"certmail/evidence"
	"certmail/protocol"
)

// pickupAPI is a program's view of one pickup link.
type pickupAPI struct {
	w    *world
	base string // https://…/api/v1/pickup/TOKEN
	tok  string
}

func (w *world) pickupAPI(t *testing.T, to string) pickupAPI {
	t.Helper()
	link := w.mails.link(t, to)
	tok := link[strings.LastIndex(link, "/")+1:]
	return pickupAPI{w: w, base: w.srv.URL + "/api/v1/pickup/" + tok, tok: tok}
}

func (p pickupAPI) view(t *testing.T) api.PickupView {
	t.Helper()
	r := p.w.get(t, p.base)
	if r.status != 200 || r.header.Get("Content-Type") != "application/json" {
		t.Fatalf("view: %s", r)
	}
	var v api.PickupView
	if err := json.Unmarshal(r.body, &v); err != nil {
		t.Fatal(err)
	}
	return v
}

func (p pickupAPI) post(t *testing.T, path string, body any) response {
	t.Helper()
	b, err := json.Marshal(body)
	if err != nil {
		t.Fatal(err)
	}
	req, _ := http.NewRequest("POST", p.base+path, bytes.NewReader(b))
	req.Header.Set("Content-Type", "application/json")
	return p.w.do(t, req)
}

// problemOf checks that r is problem+json with this status and code, and returns its detail.
func problemOf(t *testing.T, r response, status int, code string) string {
	t.Helper()
	var d api.Problem
	if r.status != status || r.header.Get("Content-Type") != "application/problem+json" || json.Unmarshal(r.body, &d) != nil ||
		d.Type != "urn:certmail:problem:"+code || d.Status != status {
		t.Fatalf("want problem %d %s, got %s", status, code, r)
	}
	return d.Detail
}

func TestPickupAPISignedAcceptance(t *testing.T) {
	t.Parallel()
	w := newWorld(t, options{})
	s := w.submitJSON(t, map[string]any{"to": []string{bob}, "subject": "the lease", "text": "Signed copy attached.", "password": msgPW, "hint": "the usual"})
	label := s.Messages[0].Label
	w.deliverQueue(t)
	p := w.pickupAPI(t, bob)

	v := p.view(t)
	if v.Label != label || v.Sender != alice || v.Recipient != bob || v.KeyName != bob || v.Mode != "cem-ip" ||
		v.State != "notified" || !v.NeedPassword || v.Hint != "the usual" || v.CSRF == "" || v.Content != "" || v.MessageURL != "" {
		t.Fatalf("view %+v", v)
	}
	for _, method := range []string{"GET", "HEAD"} {
		req, _ := http.NewRequest(method, p.base+"/message.eml", nil)
		if r := w.do(t, req); r.status != http.StatusForbidden || bytes.Contains(r.body, []byte("Signed copy")) {
			t.Fatalf("%s content before acceptance: %s", method, r)
		}
	}

	k := ed25519.NewKeyFromSeed(bytes.Repeat([]byte{5}, 32))
	pub := k.Public().(ed25519.PublicKey)
	enrol := map[string]any{"csrf": v.CSRF, "password": msgPW, "public_key": []byte(pub)}

	// Requests a program gets wrong are refused with problem+json, and change nothing.
	if d := problemOf(t, p.post(t, "/key", map[string]any{"csrf": v.CSRF, "password": "open sesame 43", "public_key": []byte(pub)}), 403, "forbidden"); !strings.Contains(d, "wrong message password") {
		t.Fatalf("wrong password: %s", d)
	}
	problemOf(t, p.post(t, "/key", map[string]any{"password": msgPW, "public_key": []byte(pub)}), 403, "csrf")
	problemOf(t, p.post(t, "/key", map[string]any{"csrf": v.CSRF, "password": msgPW, "public_key": []byte(pub), "colour": "red"}), 400, "json")
	problemOf(t, p.post(t, "/key", map[string]any{"csrf": v.CSRF, "password": msgPW}), 400, "field")
	problemOf(t, p.post(t, "/key", map[string]any{"csrf": v.CSRF, "password": msgPW, "public_key": []byte(pub[:31])}), 422, "invalid")
	problemOf(t, p.post(t, "/key", map[string]any{"csrf": v.CSRF, "password": msgPW, "verifier_key": "alice@a.example+00000000+AQ=="}), 422, "invalid")
	req, _ := http.NewRequest("POST", p.base+"/key", strings.NewReader("csrf="+v.CSRF))
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	problemOf(t, w.do(t, req), 415, "media-type")
	if st := w.status(t, label); st.State != "notified" || st.types() != "COP NTF" {
		t.Fatalf("refused requests changed the item: %+v", st)
	}

	r := p.post(t, "/key", enrol)
	var e struct {
		Address, Key, KeyRecord string
		New                     bool
	}
	if r.status != http.StatusCreated || json.Unmarshal(r.body, &e) != nil || !e.New || e.Address != bob ||
		!strings.HasPrefix(e.Key, bob+"+") || !strings.Contains(string(r.body), "type KEY") {
		t.Fatalf("enrol: %s", r)
	}
	if r := p.post(t, "/key", enrol); r.status != 200 || !strings.Contains(string(r.body), `"new": false`) {
		t.Fatalf("enrol again: %s", r)
	}

	r = w.get(t, p.base+"/cod")
	var cod struct{ Type, Signer, Text string }
	if r.status != 200 || json.Unmarshal(r.body, &cod) != nil || cod.Type != "COD-IP" || cod.Signer != bob {
		t.Fatalf("cod: %s", r)
	}
	if rec, err := evidence.ParseRecord([]byte(cod.Text)); err != nil || rec.Label.String() != label || rec.Commitment.String() != v.Commitment {
		t.Fatalf("cod text %q: %v", cod.Text, err)
	}
	// A signature over other bytes than the text is refused, as is one without the password.
	bad := p.post(t, "/accept", map[string]any{"csrf": v.CSRF, "password": msgPW, "cod_text": cod.Text, "signature": ed25519.Sign(k, []byte(cod.Text+" "))})
	problemOf(t, bad, 403, "forbidden")
	problemOf(t, p.post(t, "/accept", map[string]any{"csrf": v.CSRF, "cod_text": cod.Text, "signature": ed25519.Sign(k, []byte(cod.Text))}), 403, "forbidden")
	problemOf(t, p.post(t, "/accept", map[string]any{"csrf": v.CSRF, "password": msgPW, "cod_text": cod.Text}), 400, "field")

	r = p.post(t, "/accept", map[string]any{"csrf": v.CSRF, "password": msgPW, "cod_text": cod.Text, "signature": ed25519.Sign(k, []byte(cod.Text))})
	var d struct {
		State, Attestation string
		Recorded           []string
		MessageURL         string `json:"message_url"`
	}
	if r.status != 200 || json.Unmarshal(r.body, &d) != nil || d.State != "delivered" || d.Attestation != "recipient-signed" ||
		strings.Join(d.Recorded, " ") != "COD-IP DLV ROD" || d.MessageURL != p.base+"/message.eml" {
		t.Fatalf("accept: %s", r)
	}
	if st := w.status(t, label); st.types() != "COP NTF COD-IP DLV ROD" {
		t.Fatalf("after acceptance: %+v", st)
	}

	head, _ := http.NewRequest("HEAD", d.MessageURL, nil)
	if r := w.do(t, head); r.status != 200 {
		t.Fatalf("HEAD message.eml: %s", r)
	}
	if st := w.status(t, label); st.Retrievals != 0 {
		t.Fatalf("a HEAD was recorded as a retrieval: %+v", st)
	}
	eml := w.get(t, d.MessageURL)
	if eml.status != 200 || !bytes.Contains(eml.body, []byte("Signed copy attached.")) || eml.header.Get("Certmail-Label") != label {
		t.Fatalf("message.eml: %s", eml)
	}
	downloadHeaders(t, eml, label+".eml")
	verdict, m := w.bundle(t, label)
	if !verdict.Valid || verdict.Outcome != evidence.OutcomeDelivered || verdict.Attestation != evidence.RecipientSigned || !bytes.Equal(m, eml.body) {
		t.Fatalf("verdict:\n%s", verdict.Text())
	}
	if v := p.view(t); v.State != "delivered" || v.Closed == "" || v.MessageURL != d.MessageURL {
		t.Fatalf("view after acceptance: %+v", v)
	}
	problemOf(t, p.post(t, "/accept", map[string]any{"csrf": v.CSRF, "password": msgPW}), 410, "gone")
	problemOf(t, w.get(t, p.base+"/cod"), 410, "gone")

	logs := w.logs.String()
	for _, secret := range []string{p.tok, msgPW} {
		if strings.Contains(logs, secret) {
			t.Errorf("the log holds %q", secret)
		}
	}
	if !strings.Contains(logs, `"path":"/api/v1/pickup/tok:`) {
		t.Errorf("the access log does not name the pickup API requests by token hash")
	}
}

// A program with a signed-note key (certmail keygen) enrols its verifier key and posts the whole
// signed note it made itself.
func TestPickupAPIWholeNoteAndRefusal(t *testing.T) {
	t.Parallel()
	w := newWorld(t, options{})
	first := w.submitJSON(t, map[string]any{"to": []string{bob}, "text": "one", "mode": "cem-nsr"})
	w.deliverQueue(t)
	p := w.pickupAPI(t, bob)
	v := p.view(t)
	id, err := protocol.NewIdentity(bob, rand.NewChaCha8([32]byte{9}))
	if err != nil {
		t.Fatal(err)
	}
	if r := p.post(t, "/key", map[string]any{"csrf": v.CSRF, "verifier_key": id.Verifier}); r.status != http.StatusCreated {
		t.Fatalf("enrol: %s", r)
	}
	r := w.get(t, p.base+"/cod")
	var cod struct{ Type, Text string }
	json.Unmarshal(r.body, &cod)
	rec, err := evidence.ParseRecord([]byte(cod.Text))
	if err != nil || cod.Type != "COD-NSR" {
		t.Fatalf("cod: %s", r)
	}
	n, err := evidence.Sign(rec, id.Signer)
	if err != nil {
		t.Fatal(err)
	}
	problemOf(t, p.post(t, "/accept", map[string]any{"csrf": v.CSRF, "cod": string(n.Bytes()), "signature": []byte{1}}), 400, "field")
	if r := p.post(t, "/accept", map[string]any{"csrf": v.CSRF, "cod": string(n.Bytes())}); r.status != 200 || !strings.Contains(string(r.body), `"recipient-signed"`) {
		t.Fatalf("accept: %s", r)
	}
	if v, _ := w.bundle(t, first.Messages[0].Label); !v.Valid || v.Attestation != evidence.RecipientSigned {
		t.Fatalf("verdict:\n%s", v.Text())
	}

	// Another message to bob: refused through the API, the content stays closed.
	second := w.submitJSON(t, map[string]any{"to": []string{bob}, "text": "two"})
	w.deliverQueue(t)
	p2 := w.pickupAPI(t, bob)
	v2 := p2.view(t)
	problemOf(t, p2.post(t, "/refuse", map[string]any{"csrf": v2.CSRF, "cod": string(n.Bytes())}), 400, "field")
	problemOf(t, p2.post(t, "/refuse", map[string]any{"csrf": v.CSRF}), 403, "csrf") // the other message's token
	if r := p2.post(t, "/refuse", map[string]any{"csrf": v2.CSRF}); r.status != 200 || !strings.Contains(string(r.body), `"refused"`) {
		t.Fatalf("refuse: %s", r)
	}
	if r := w.get(t, p2.base+"/message.eml"); r.status != http.StatusForbidden || bytes.Contains(r.body, []byte("two")) {
		t.Fatalf("content after refusal: %s", r)
	}
	if st := w.status(t, second.Messages[0].Label); st.types() != "COP NTF REJ" {
		t.Fatalf("after refusal: %+v", st)
	}
	problemOf(t, w.get(t, w.srv.URL+"/api/v1/pickup/"+strings.Repeat("A", 43)), 404, "not-found")
}

// Wrong passwords through the API count in the item's limit; then the answer is 429.
func TestPickupAPIPasswordLimit(t *testing.T) {
	t.Parallel()
	w := newWorld(t, options{})
	w.submitJSON(t, map[string]any{"to": []string{bob}, "text": "guarded", "password": msgPW})
	w.deliverQueue(t)
	p := w.pickupAPI(t, bob)
	v := p.view(t)
	for range 5 {
		problemOf(t, p.post(t, "/accept", map[string]any{"csrf": v.CSRF, "password": "guess"}), 403, "forbidden")
	}
	problemOf(t, p.post(t, "/accept", map[string]any{"csrf": v.CSRF, "password": msgPW}), 429, "rate-limited")
}

var scriptRE = regexp.MustCompile(`(?s)<script([^>]*)>(.*?)</script>`)

// The page offers signing in the browser through one same-origin script and no inline script;
// without the script the button stays hidden and the plain form works (TestPickupAcceptAndRetrieve).
func TestPickupPageScript(t *testing.T) {
	t.Parallel()
	w := newWorld(t, options{})
	w.submitJSON(t, map[string]any{"to": []string{bob}, "text": "scripted"})
	page := w.get(t, w.mails.link(t, bob))
	scripts := scriptRE.FindAllStringSubmatch(string(page.body), -1)
	if len(scripts) != 1 || strings.TrimSpace(scripts[0][2]) != "" || !strings.Contains(scripts[0][1], `src="/static/pickup.js"`) {
		t.Fatalf("scripts on the page: %q", scripts)
	}
	contains(t, page, `id="sign-in-browser" class="sign" hidden`, "Accept and sign with a key kept in this browser", `data-recipient="bob@b.example"`)
	if csp := page.header.Get("Content-Security-Policy"); strings.Contains(csp, "unsafe-inline") || !strings.Contains(csp, "default-src 'self'") {
		t.Fatalf("CSP %q", csp)
	}
	js := w.get(t, w.srv.URL+"/static/pickup.js")
	if js.status != 200 || !strings.HasPrefix(js.header.Get("Content-Type"), "text/javascript") || !bytes.Contains(js.body, []byte("/api/v1/pickup/")) {
		t.Fatalf("pickup.js: %d %v", js.status, js.header)
	}
}
