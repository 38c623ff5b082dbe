package web_test

import (
	"bytes"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"certmail/account"
	"certmail/api"
	"certmail/evidence"
)

func TestSubmitJSON(t *testing.T) {
	t.Parallel()
	w := newWorld(t, options{})
	s := w.submitJSON(t, map[string]any{
		"to": []string{bob, "carol@C.Example"}, "subject": "the lease — signed", "text": "Signed copy attached.\nRegards",
		"attachments": []map[string]any{{"name": "lease.pdf", "content_type": "application/pdf", "data": []byte("%PDF-1.7 lease")}},
		"deadline":    "72h", "receipt": "short", "notify": "failures-only",
	})
	if len(s.Messages) != 2 || s.Submission == "" {
		t.Fatalf("submission %+v", s)
	}
	if s.Messages[0].Recipient != bob || s.Messages[1].Recipient != carol {
		t.Fatalf("recipients %+v", s.Messages)
	}
	m := s.Messages[0]
	if m.StatusURL != w.srv.URL+"/api/v1/messages/"+m.Label || m.BundleURL != m.StatusURL+"/bundle" {
		t.Fatalf("links %+v", m)
	}
	cop, err := evidence.ParseNote([]byte(m.COP))
	if err != nil || cop.Record.Type != evidence.COP || cop.Record.Label.String() != m.Label || cop.Record.Sender != alice {
		t.Fatalf("cop %q: %v", m.COP, err)
	}
	if want := t0.Add(72 * time.Hour); !cop.Record.Deadline.Equal(want) {
		t.Fatalf("deadline %s, want %s", cop.Record.Deadline, want)
	}

	st := w.status(t, m.Label)
	if st.State != "posted" || st.Subject != "the lease — signed" || st.Mode != "cem-ip" || st.types() != "COP" {
		t.Fatalf("status %+v", st)
	}
	if st.Events[0].Time != evidence.FormatTime(t0) || !strings.Contains(st.Events[0].Says, "accepted a message from "+alice) {
		t.Fatalf("event %+v", st.Events[0])
	}
	// The message the agent certified is the composed one, From the user.
	v, msg := w.bundle(t, m.Label)
	if !v.Valid || v.Outcome != evidence.OutcomePosted {
		t.Fatalf("verdict:\n%s", v.Text())
	}
	if evidence.Sum(msg) != cop.Record.Content {
		t.Fatal("the bundle's message is not the one the COP certifies")
	}
	for _, want := range []string{"From: " + alice + "\r\n", "To: " + bob + ", " + carol + "\r\n", "Signed copy attached.\r\nRegards\r\n",
		"filename=lease.pdf", "Content-Type: application/pdf"} {
		if !bytes.Contains(msg, []byte(want)) {
			t.Errorf("the message lacks %q:\n%s", want, msg)
		}
	}
	if bytes.Contains(msg, []byte("Certmail-")) {
		t.Errorf("options left in the message:\n%s", msg)
	}
	if w.mails.link(t, carol) == w.mails.link(t, bob) {
		t.Fatal("two recipients share a pickup link")
	}
}

func TestSubmitRFC822(t *testing.T) {
	t.Parallel()
	w := newWorld(t, options{})
	raw := "From: Alice <alice@a.example>\nTo: bob@b.example\nBcc: carol@c.example\nSubject: =?utf-8?q?caf=C3=A9?=\n" +
		"Certmail-Mode: cem-nsr\nCertmail-Deadline: 2026-03-05T09:00:00Z\n\nSee you there.\n"
	s := w.created(t, w.api(t, "POST", "/api/v1/messages", alice, "message/rfc822", []byte(raw)))
	if len(s.Messages) != 2 || s.Messages[0].Recipient != bob || s.Messages[1].Recipient != carol {
		t.Fatalf("To and Bcc are the recipients: %+v", s.Messages)
	}
	st := w.status(t, s.Messages[0].Label)
	if st.State != "posted" || st.Mode != "cem-nsr" || st.Subject != "café" || st.Deadline != "2026-03-05T09:00:00Z" {
		t.Fatalf("status %+v", st)
	}
	_, msg := w.bundle(t, s.Messages[1].Label)
	want := "From: Alice <alice@a.example>\r\nTo: bob@b.example\r\nSubject: =?utf-8?q?caf=C3=A9?=\r\n\r\nSee you there.\r\n"
	if string(msg) != want {
		t.Fatalf("M is the message with CRLF, without Bcc and options:\n%q\nwant\n%q", msg, want)
	}

	// ?to= names the recipients, as RCPT TO does over SMTP.
	s = w.created(t, w.api(t, "POST", "/api/v1/messages?to=carol@C.example&to=dave@d.example", alice, "message/rfc822", []byte(raw)))
	if len(s.Messages) != 2 || s.Messages[0].Recipient != carol || s.Messages[1].Recipient != "dave@d.example" {
		t.Fatalf("?to= recipients: %+v", s.Messages)
	}
}

// problem checks an RFC 9457 answer.
func problem(t *testing.T, r response, status int, code string) {
	t.Helper()
	if r.status != status {
		t.Fatalf("want %d, got %s", status, r)
	}
	if ct := r.header.Get("Content-Type"); ct != "application/problem+json" {
		t.Fatalf("Content-Type %q: %s", ct, r)
	}
	var p api.Problem
	if err := json.Unmarshal(r.body, &p); err != nil {
		t.Fatal(err)
	}
	if p.Type != "urn:certmail:problem:"+code || p.Status != status || p.Title == "" || p.Detail == "" {
		t.Fatalf("problem %+v, want code %s status %d", p, code, status)
	}
}

func TestSubmitProblems(t *testing.T) {
	t.Parallel()
	w := newWorld(t, options{})
	good := func(mod func(m map[string]any)) []byte {
		m := map[string]any{"to": []string{bob}, "subject": "hello", "text": "hi"}
		mod(m)
		b, _ := json.Marshal(m)
		return b
	}
	const js = "application/json"
	big := bytes.Repeat([]byte("0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcde\n"), maxBytes/64+1)
	cases := []struct {
		name, user, ct string
		body           []byte
		status         int
		code           string
	}{
		{"no credentials", "", js, good(func(map[string]any) {}), 401, "auth"},
		{"syntax", alice, js, []byte(`{"to": [`), 400, "json"},
		{"unknown field", alice, js, []byte(`{"to": ["bob@b.example"], "colour": "red"}`), 400, "json"},
		{"two values", alice, js, []byte(`{"to": ["bob@b.example"]} {}`), 400, "json"},
		{"bad base64", alice, js, []byte(`{"to": ["bob@b.example"], "attachments": [{"name": "x", "data": "!!!"}]}`), 400, "json"},
		{"unknown mode", alice, js, good(func(m map[string]any) { m["mode"] = "pec" }), 422, "option"},
		{"bad deadline", alice, js, good(func(m map[string]any) { m["deadline"] = "next tuesday" }), 422, "option"},
		{"deadline too soon", alice, js, good(func(m map[string]any) { m["deadline"] = "10m" }), 422, "option"},
		{"hint without password", alice, js, good(func(m map[string]any) { m["hint"] = "the usual" }), 422, "option"},
		{"no recipient", alice, js, good(func(m map[string]any) { delete(m, "to") }), 422, "field"},
		{"two addresses in one", alice, js, good(func(m map[string]any) { m["to"] = []string{"bob@b.example, eve@e.example"} }), 422, "field"},
		{"header injection in to", alice, js, good(func(m map[string]any) { m["to"] = []string{"bob@b.example\r\nBcc: eve@e.example"} }), 422, "field"},
		{"header injection in subject", alice, js, good(func(m map[string]any) { m["subject"] = "hi\r\nBcc: eve@e.example" }), 422, "field"},
		{"header injection in mode", alice, js, good(func(m map[string]any) { m["mode"] = "cem\r\nBcc: eve@e.example" }), 422, "field"},
		{"recipient twice", alice, js, good(func(m map[string]any) { m["to"] = []string{bob, "bob@B.example"} }), 422, "field"},
		{"multipart attachment", alice, js, good(func(m map[string]any) {
			m["attachments"] = []map[string]any{{"name": "x", "content_type": "multipart/mixed", "data": []byte("x")}}
		}), 422, "field"},
		{"oversized json", alice, js, good(func(m map[string]any) { m["text"] = string(big) }), 413, "size"},
		{"oversized body", alice, js, bytes.Repeat([]byte(" "), maxBytes*3), 413, "size"},
		{"oversized message", alice, "message/rfc822", append([]byte("From: alice@a.example\r\nTo: bob@b.example\r\n\r\n"), big...), 413, "size"},
		{"not a message", alice, "message/rfc822", []byte("hello\r\n"), 400, "header"},
		{"someone else's From", alice, "message/rfc822", []byte("From: bob@b.example\r\nTo: carol@c.example\r\n\r\nhi\r\n"), 403, "sender"},
		{"bad ?to", alice, "message/rfc822", nil, 422, "field"},
		{"too many ?to", alice, "message/rfc822", nil, 422, "recipients"},
		{"media type", alice, "text/plain", []byte("hi"), 415, "media-type"},
	}
	nacked := map[string]bool{"unknown mode": true, "bad deadline": true, "deadline too soon": true, "hint without password": true,
		"oversized json": true, "oversized message": true, "not a message": true, "someone else's From": true, "too many ?to": true}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			path := "/api/v1/messages"
			switch c.name {
			case "bad ?to":
				path += "?to=not-an-address"
			case "too many ?to":
				path += "?to=" + strings.Repeat("x@x.example,", 100) + "y@y.example"
			}
			if c.body == nil {
				c.body = []byte("From: alice@a.example\r\nTo: bob@b.example\r\n\r\nhi\r\n")
			}
			r := w.api(t, "POST", path, c.user, c.ct, c.body)
			problem(t, r, c.status, c.code)
			// A message the agent refuses is recorded by a NAC the sender can fetch and verify;
			// a request that never made a message is not.
			var p struct {
				NAC       string `json:"nac"`
				NACBundle string `json:"nac_bundle_url"`
			}
			json.Unmarshal(r.body, &p)
			if (p.NAC != "") != nacked[c.name] {
				t.Fatalf("NAC %q, want one: %v", p.NAC, nacked[c.name])
			}
			if p.NAC != "" {
				if p.NACBundle != w.srv.URL+"/api/v1/messages/"+p.NAC+"/bundle" {
					t.Fatalf("NAC bundle URL %q", p.NACBundle)
				}
				if v, _ := w.bundle(t, p.NAC); !v.Valid || v.Outcome != evidence.OutcomeRefusedAtPosting {
					t.Fatalf("NAC bundle judged:\n%s", v.Text())
				}
				problem(t, w.api(t, "GET", "/api/v1/messages/"+p.NAC+"/bundle", mallory, "", nil), 404, "not-found")
			}
			if c.status == 401 && r.header.Get("WWW-Authenticate") == "" {
				t.Error("401 without WWW-Authenticate")
			}
		})
	}
	// None of them was certified.
	if n := len(w.mails.notices); n != 0 {
		t.Fatalf("%d notifications after refused submissions", n)
	}
}

func TestAuthentication(t *testing.T) {
	t.Parallel()
	w := newWorld(t, options{limits: account.Limits{PerAddress: 2}})
	s := w.submitJSON(t, map[string]any{"to": []string{bob}, "text": "hi"})
	label := s.Messages[0].Label

	// Another user's label is not found, whatever the route.
	problem(t, w.api(t, "GET", "/api/v1/messages/"+label, mallory, "", nil), 404, "not-found")
	problem(t, w.api(t, "GET", "/api/v1/messages/"+label+"/bundle", mallory, "", nil), 404, "not-found")
	problem(t, w.api(t, "POST", "/api/v1/messages/"+label+"/retract", mallory, "", nil), 404, "not-found")
	problem(t, w.api(t, "GET", "/api/v1/messages/not-a-label", alice, "", nil), 404, "not-found")
	problem(t, w.api(t, "GET", "/api/v1/nothing", alice, "", nil), 404, "not-a-route")
	if st := w.status(t, label); st.State != "posted" {
		t.Fatalf("mallory's retraction changed the item: %+v", st)
	}

	// Wrong passwords count against the client address; past the limit, 429 with Retry-After.
	for range 2 {
		req, _ := http.NewRequest("GET", w.srv.URL+"/api/v1/messages/"+label, nil)
		req.SetBasicAuth(alice, "wrong password")
		r := w.do(t, req)
		problem(t, r, 401, "auth")
		if r.header.Get("WWW-Authenticate") == "" {
			t.Fatal("401 without WWW-Authenticate")
		}
	}
	r := w.api(t, "GET", "/api/v1/messages/"+label, alice, "", nil)
	problem(t, r, 429, "rate-limited")
	if r.header.Get("Retry-After") == "" {
		t.Fatal("429 without Retry-After")
	}

	// A disabled account is told so, with the right password.
	if err := w.acc.SetDisabled(t.Context(), mallory, true); err != nil {
		t.Fatal(err)
	}
	req := httptest.NewRequest("GET", "/api/v1/messages/"+label, nil)
	req.SetBasicAuth(mallory, malPW)
	req.RemoteAddr = "127.0.0.2:4000" // another address: the limit above is per address
	rec := httptest.NewRecorder()
	w.srv.Config.Handler.ServeHTTP(rec, req)
	problem(t, response{rec.Code, rec.Header(), rec.Body.Bytes()}, 403, "disabled")
}

// Passwords travel over TLS only, except from loopback (a local program, a local proxy).
func TestPlainHTTP(t *testing.T) {
	t.Parallel()
	w := newWorld(t, options{plain: true})
	w.submitJSON(t, map[string]any{"to": []string{bob}, "text": "over loopback"})

	req := httptest.NewRequest("POST", "/api/v1/messages", strings.NewReader(`{"to":["bob@b.example"],"text":"hi"}`))
	req.Header.Set("Content-Type", "application/json")
	req.SetBasicAuth(alice, alicePW)
	req.RemoteAddr = "192.0.2.7:52000"
	rec := httptest.NewRecorder()
	w.srv.Config.Handler.ServeHTTP(rec, req)
	r := response{rec.Code, rec.Header(), rec.Body.Bytes()}
	problem(t, r, 403, "tls")
	contains(t, r, "change it")
	if n := len(w.mails.notices); n != 1 {
		t.Fatalf("%d notifications; the plain-HTTP submission must not be certified", n)
	}
}

func TestRetract(t *testing.T) {
	t.Parallel()
	w := newWorld(t, options{})
	s := w.submitJSON(t, map[string]any{"to": []string{bob}, "subject": "oops", "text": "wrong file"})
	label := s.Messages[0].Label
	w.deliverQueue(t)
	link := w.mails.link(t, bob)
	page := w.get(t, link)
	r := w.api(t, "POST", "/api/v1/messages/"+label+"/retract", alice, "", nil)
	if r.status != 200 {
		t.Fatalf("retract: %s", r)
	}
	var st status
	if err := json.Unmarshal(r.body, &st); err != nil || st.State != "retracted" || !strings.HasSuffix(st.types(), "RTR") {
		t.Fatalf("retract answer %+v %v", st, err)
	}
	problem(t, w.api(t, "POST", "/api/v1/messages/"+label+"/retract", alice, "", nil), 410, "gone")

	r = w.get(t, link)
	if r.status != http.StatusGone {
		t.Fatalf("pickup after retraction: %s", r)
	}
	contains(t, r, "retracted")
	r = w.post(t, link+"/accept", formWith(csrf(t, page.body), ""))
	if r.status != http.StatusGone {
		t.Fatalf("acceptance after retraction: %s", r)
	}
	if v, _ := w.bundle(t, label); !v.Valid || v.Outcome != evidence.OutcomeRetracted {
		t.Fatalf("verdict:\n%s", v.Text())
	}
}
