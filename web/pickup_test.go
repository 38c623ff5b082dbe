package web_test

import (
	"bytes"
	"encoding/base64"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"testing"
	"time"

	"certmail/evidence"
)

func formWith(csrf, password string) url.Values {
	v := url.Values{}
	if csrf != "" {
		v.Set("csrf", csrf)
	}
	if password != "" {
		v.Set("password", password)
	}
	return v
}

func securityHeaders(t *testing.T, r response) {
	t.Helper()
	h := r.header
	csp := h.Get("Content-Security-Policy")
	if !strings.Contains(csp, "default-src 'self'") || !strings.Contains(csp, "frame-ancestors 'none'") {
		t.Errorf("Content-Security-Policy %q", csp)
	}
	for name, want := range map[string]string{"X-Frame-Options": "DENY", "Referrer-Policy": "no-referrer",
		"Cache-Control": "no-store", "X-Content-Type-Options": "nosniff"} {
		if got := h.Get(name); got != want {
			t.Errorf("%s: %q, want %q", name, got, want)
		}
	}
}

func downloadHeaders(t *testing.T, r response, filename string) {
	t.Helper()
	if cd := r.header.Get("Content-Disposition"); cd != "attachment; filename="+filename {
		t.Errorf("Content-Disposition %q, want attachment of %s", cd, filename)
	}
	if r.header.Get("X-Content-Type-Options") != "nosniff" || !strings.Contains(r.header.Get("Content-Security-Policy"), "sandbox") {
		t.Errorf("download headers %v", r.header)
	}
}

func TestPickupAcceptAndRetrieve(t *testing.T) {
	t.Parallel()
	w := newWorld(t, options{})
	pdf := []byte("%PDF-1.7\x00\xff binary lease")
	s := w.submitJSON(t, map[string]any{"to": []string{bob}, "subject": "the lease", "text": "Signed copy attached.",
		"attachments": []map[string]any{
			{"name": "lease.pdf", "content_type": "application/pdf", "data": pdf},
			{"name": "../../notes.txt", "content_type": "text/plain", "data": []byte("plain notes\n")},
		}})
	label := s.Messages[0].Label
	_, m := w.bundle(t, label)
	w.deliverQueue(t)
	link := w.mails.link(t, bob)

	// Before deciding: who, what label, the commitment, the time acceptance closes (a minute
	// before the 48-hour deadline, so the agent can report by it) — never the content.
	page := w.get(t, link)
	if page.status != 200 {
		t.Fatalf("pickup page: %s", page)
	}
	l, _ := evidence.ParseLabel(label)
	contains(t, page, alice, label, evidence.Commitment(l, m).String(), "2026-03-04T08:59:00Z", "Accept and sign the receipt", "Refuse")
	lacks(t, page, "Signed copy attached", "the lease", "lease.pdf", `name="password"`)
	securityHeaders(t, page)
	if got := w.get(t, link+"/message.eml"); got.status != http.StatusForbidden {
		t.Fatalf("content before acceptance: %s", got)
	}

	// Forms without the page's token, or posted from another site, change nothing.
	token := csrf(t, page.body)
	for name, r := range map[string]response{
		"no csrf":     w.post(t, link+"/accept", formWith("", "")),
		"wrong csrf":  w.post(t, link+"/accept", formWith(strings.ToUpper(token), "")),
		"other token": w.post(t, link+"/accept", formWith(csrfOf(t, w, "other"), "")),
		"cross-site":  w.postCrossSite(t, link+"/accept", formWith(token, "")),
		"refuse":      w.post(t, link+"/refuse", formWith("", "")),
	} {
		if r.status != http.StatusForbidden {
			t.Errorf("%s: want 403, got %s", name, r)
		}
	}
	if st := w.status(t, label); st.State != "notified" || st.types() != "COP NTF" {
		t.Fatalf("refused forms changed the item: %+v", st)
	}

	// Accepting records DLV and ROD; the page it leads to shows the content, a retrieval (RET).
	r := w.post(t, link+"/accept", formWith(token, ""))
	if r.status != 200 {
		t.Fatalf("accept: %s", r)
	}
	contains(t, r, "the lease", "Signed copy attached.", "this message matches it", "lease.pdf", "notes.txt", evidence.Sum(m).String())
	securityHeaders(t, r)
	if st := w.status(t, label); st.State != "delivered" || st.types() != "COP NTF DLV ROD RET" {
		t.Fatalf("after acceptance: %+v", st)
	}

	// message.eml is M, byte for byte, and its retrieval is signed too.
	w.clock.add(time.Minute)
	eml := w.get(t, link+"/message.eml")
	if eml.status != 200 || !bytes.Equal(eml.body, m) {
		t.Fatalf("message.eml is not M: %s", eml)
	}
	downloadHeaders(t, eml, label+".eml")
	if ct := eml.header.Get("Content-Type"); ct != "message/rfc822" {
		t.Errorf("message.eml Content-Type %q", ct)
	}
	// A HEAD (a link checker) releases nothing, so it is no retrieval.
	for _, u := range []string{link, link + "/message.eml", link + "/attachments/1"} {
		req, _ := http.NewRequest("HEAD", u, nil)
		if r := w.do(t, req); r.status != 200 {
			t.Fatalf("HEAD %s: %s", u, r)
		}
	}
	st := w.status(t, label)
	if st.types() != "COP NTF DLV ROD RET RET" || st.Retrievals != 2 {
		t.Fatalf("after message.eml: %+v", st)
	}
	if !strings.Contains(st.Events[len(st.Events)-1].Says, "127.0.0.1") {
		t.Fatalf("RET does not name the client address: %+v", st.Events)
	}

	att := w.get(t, link+"/attachments/1")
	if att.status != 200 || !bytes.Equal(att.body, pdf) || att.header.Get("Content-Type") != "application/pdf" {
		t.Fatalf("attachment 1: %s %v", att, att.header)
	}
	downloadHeaders(t, att, "lease.pdf")
	att = w.get(t, link+"/attachments/2")
	if att.status != 200 || string(att.body) != "plain notes\n" {
		t.Fatalf("attachment 2: %s", att)
	}
	downloadHeaders(t, att, "notes.txt")
	for _, n := range []string{"3", "0", "x"} {
		if r := w.get(t, link+"/attachments/"+n); r.status != http.StatusNotFound {
			t.Errorf("attachment %s: %s", n, r)
		}
	}

	// The sender's bundle proves delivery, and carries the M the recipient got.
	v, bm := w.bundle(t, label)
	if !v.Valid || v.Outcome != evidence.OutcomeDelivered || v.Attestation != evidence.AgentAttested {
		t.Fatalf("verdict:\n%s", v.Text())
	}
	if !bytes.Equal(bm, eml.body) {
		t.Fatal("the bundle's message is not the one the recipient downloaded")
	}

	// A second acceptance, or a refusal now, is refused with a page that says why.
	again := w.post(t, link+"/accept", formWith(token, ""))
	if again.status != http.StatusGone {
		t.Fatalf("second acceptance: %s", again)
	}
	contains(t, again, "already accepted", "Read the message")
	if r := w.post(t, link+"/refuse", formWith(token, "")); r.status != http.StatusGone {
		t.Fatalf("refusal after acceptance: %s", r)
	}
}

// csrfOf is the csrf field of another message's page: a token valid for one pickup only.
func csrfOf(t *testing.T, w *world, subject string) string {
	t.Helper()
	w.submitJSON(t, map[string]any{"to": []string{"other@o.example"}, "subject": subject})
	return csrf(t, w.get(t, w.mails.link(t, "other@o.example")).body)
}

func (w *world) postCrossSite(t *testing.T, u string, form url.Values) response {
	t.Helper()
	req, _ := http.NewRequest("POST", u, strings.NewReader(form.Encode()))
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	req.Header.Set("Sec-Fetch-Site", "cross-site")
	req.Header.Set("Origin", "https://evil.example")
	return w.do(t, req)
}

func TestPickupPasswordAndEscaping(t *testing.T) {
	t.Parallel()
	w := newWorld(t, options{})
	raw := "From: \"<b>Alice</b>\" <alice@a.example>\r\nTo: bob@b.example\r\nSubject: <img src=x onerror=alert(1)>\r\n" +
		"Certmail-Password: " + msgPW + "\r\nCertmail-Password-Hint: <script>alert('hint')</script>\r\n\r\n" +
		"<script>alert('text')</script>\r\n"
	s := w.created(t, w.api(t, "POST", "/api/v1/messages", alice, "message/rfc822", []byte(raw)))
	label := s.Messages[0].Label
	w.deliverQueue(t)
	link := w.mails.link(t, bob)

	page := w.get(t, link)
	if page.status != 200 {
		t.Fatalf("pickup page: %s", page)
	}
	contains(t, page, "&lt;script&gt;alert(&#39;hint&#39;)&lt;/script&gt;", `name="password"`)
	lacks(t, page, "<script>", "alert('text')")

	r := w.post(t, link+"/accept", formWith(csrf(t, page.body), "open sesame 43"))
	if r.status != http.StatusForbidden {
		t.Fatalf("wrong password: %s", r)
	}
	contains(t, r, "Wrong message password", "Accept and sign the receipt")
	if st := w.status(t, label); st.State != "notified" || st.types() != "COP NTF" {
		t.Fatalf("a wrong password changed the item: %+v", st)
	}

	r = w.post(t, link+"/accept", formWith(csrf(t, r.body), msgPW))
	if r.status != 200 {
		t.Fatalf("right password: %s", r)
	}
	contains(t, r, "&lt;img src=x onerror=alert(1)&gt;", "&lt;b&gt;Alice&lt;/b&gt;", "&lt;script&gt;alert(&#39;text&#39;)&lt;/script&gt;")
	lacks(t, r, "<img", "<b>Alice", "<script>")
	if st := w.status(t, label); st.State != "delivered" {
		t.Fatalf("after acceptance: %+v", st)
	}

	// The access log names the token by a hash prefix and never holds a secret.
	tok := link[strings.LastIndex(link, "/")+1:]
	logs := w.logs.String()
	for _, secret := range []string{tok, msgPW, alicePW, base64.StdEncoding.EncodeToString([]byte(alice + ":" + alicePW)), "alert('text')"} {
		if strings.Contains(logs, secret) {
			t.Errorf("the log holds %q:\n%s", secret, logs)
		}
	}
	if !strings.Contains(logs, `"path":"/pickup/tok:`) || !strings.Contains(logs, `"route":"POST /pickup/{token}/accept"`) {
		t.Errorf("the access log does not name the pickup requests:\n%s", logs)
	}
}

func TestPickupRefuse(t *testing.T) {
	t.Parallel()
	w := newWorld(t, options{})
	s := w.submitJSON(t, map[string]any{"to": []string{bob}, "text": "an offer you can refuse"})
	label := s.Messages[0].Label
	w.deliverQueue(t)
	link := w.mails.link(t, bob)
	page := w.get(t, link)
	r := w.post(t, link+"/refuse", formWith(csrf(t, page.body), ""))
	if r.status != 200 {
		t.Fatalf("refuse: %s", r)
	}
	contains(t, r, "You refused this message")
	lacks(t, r, "an offer you can refuse")

	r = w.get(t, link)
	if r.status != http.StatusGone {
		t.Fatalf("pickup after refusal: %s", r)
	}
	contains(t, r, "You refused this message")
	if r := w.get(t, link+"/message.eml"); r.status != http.StatusForbidden {
		t.Fatalf("content after refusal: %s", r)
	}
	if r := w.post(t, link+"/accept", formWith(csrf(t, page.body), "")); r.status != http.StatusGone {
		t.Fatalf("acceptance after refusal: %s", r)
	}
	if st := w.status(t, label); st.State != "refused" || st.types() != "COP NTF REJ" {
		t.Fatalf("status %+v", st)
	}
	if v, _ := w.bundle(t, label); !v.Valid || v.Outcome != evidence.OutcomeRefused {
		t.Fatalf("verdict:\n%s", v.Text())
	}
}

func TestForgedToken(t *testing.T) {
	t.Parallel()
	w := newWorld(t, options{})
	w.submitJSON(t, map[string]any{"to": []string{bob}, "text": "real"})
	forged := w.srv.URL + "/pickup/" + strings.Repeat("A", 43)
	for _, u := range []string{forged, forged + "/message.eml", forged + "/attachments/1"} {
		r := w.get(t, u)
		if r.status != http.StatusNotFound {
			t.Errorf("%s: %s", u, r)
		}
		contains(t, r, "not valid")
		securityHeaders(t, r)
	}
	if r := w.post(t, forged+"/accept", formWith("x", "")); r.status != http.StatusForbidden {
		t.Errorf("accept with a forged token: %s", r)
	}
}

func TestHealthAndMetrics(t *testing.T) {
	t.Parallel()
	w := newWorld(t, options{})
	if r := w.get(t, w.srv.URL+"/healthz"); r.status != 200 || string(r.body) != "ok\n" {
		t.Fatalf("healthz: %s", r)
	}
	w.submitJSON(t, map[string]any{"to": []string{bob}, "text": "counted"})
	link := w.mails.link(t, bob)
	page := w.get(t, link)
	if r := w.post(t, link+"/accept", formWith(csrf(t, page.body), "")); r.status != 200 {
		t.Fatalf("accept: %s", r)
	}
	w.get(t, link+"/message.eml")
	w.api(t, "POST", "/api/v1/messages", "", "application/json", nil)

	r := w.get(t, w.srv.URL+"/metrics")
	if r.status != 200 || !strings.HasPrefix(r.header.Get("Content-Type"), "text/plain; version=0.0.4") {
		t.Fatalf("metrics: %s", r)
	}
	contains(t, r,
		"certmail_web_submissions_total 1\n", "certmail_web_acceptances_total 1\n", "certmail_web_refusals_total 0\n",
		"certmail_web_retrievals_total 2\n", // the page after acceptance, then message.eml
		`certmail_http_requests_total{route="POST /api/v1/messages",code="201"} 1`+"\n",
		`certmail_http_requests_total{route="POST /api/v1/messages",code="401"} 1`+"\n",
		`certmail_http_requests_total{route="POST /pickup/{token}/accept",code="303"} 1`+"\n",
		`certmail_http_requests_total{route="GET /healthz",code="200"} 1`+"\n",
	)
	lacks(t, r, strings.TrimPrefix(link, w.srv.URL))

	// With the store gone, the agent is not healthy.
	w.st.Close()
	if r := w.get(t, w.srv.URL+"/healthz"); r.status != http.StatusServiceUnavailable {
		t.Fatalf("healthz without a store: %s", r)
	}
}

// The agent stops password guessing per message; the page says so with 429.
func TestPickupPasswordLimit(t *testing.T) {
	t.Parallel()
	w := newWorld(t, options{})
	s := w.submitJSON(t, map[string]any{"to": []string{bob}, "text": "guarded", "password": msgPW})
	w.deliverQueue(t)
	link := w.mails.link(t, bob)
	token := csrf(t, w.get(t, link).body)
	for i := range 5 {
		if r := w.post(t, link+"/accept", formWith(token, "guess "+strconv.Itoa(i))); r.status != http.StatusForbidden {
			t.Fatalf("wrong password %d: %s", i, r)
		}
	}
	r := w.post(t, link+"/accept", formWith(token, msgPW))
	if r.status != http.StatusTooManyRequests {
		t.Fatalf("after five wrong passwords: %s", r)
	}
	contains(t, r, "Too many wrong passwords")
	lacks(t, r, "guarded")
	if st := w.status(t, s.Messages[0].Label); st.State != "notified" {
		t.Fatalf("status %+v", st)
	}
}

func TestPickupAfterDeadline(t *testing.T) {
	t.Parallel()
	w := newWorld(t, options{})
	w.submitJSON(t, map[string]any{"to": []string{bob}, "text": "too late", "deadline": "2h"})
	link := w.mails.link(t, bob)
	token := csrf(t, w.get(t, link).body)
	w.clock.add(2 * time.Hour)
	for _, r := range []response{w.get(t, link), w.post(t, link+"/accept", formWith(token, ""))} {
		if r.status != http.StatusGone {
			t.Fatalf("after the deadline: %s", r)
		}
		contains(t, r, "The deadline for picking up this message has passed")
		lacks(t, r, "too late")
	}
}
