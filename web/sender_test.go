package web_test

import (
	"bytes"
	"encoding/base64"
	"html"
	"io"
	"mime"
	"mime/multipart"
	"net/http"
	"net/http/cookiejar"
	"net/http/httptest"
	"net/mail"
	"net/url"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"certmail/account"
	"certmail/evidence"
	"certmail/protocol"
	"certmail/store"
)

// browser is a person at a browser: its own cookie jar, and redirects shown rather than followed,
// so a test sees each 303 the pages answer.
type browser struct {
	w *world
	c *http.Client
}

func (w *world) browser(t *testing.T) *browser {
	t.Helper()
	jar, err := cookiejar.New(nil)
	if err != nil {
		t.Fatal(err)
	}
	c := *w.client
	c.Jar = jar
	c.CheckRedirect = func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }
	return &browser{w: w, c: &c}
}

func (b *browser) do(t *testing.T, req *http.Request) response {
	t.Helper()
	resp, err := b.c.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	return response{resp.StatusCode, resp.Header, body}
}

func (b *browser) get(t *testing.T, path string) response {
	t.Helper()
	req, err := http.NewRequest("GET", b.w.srv.URL+path, nil)
	if err != nil {
		t.Fatal(err)
	}
	return b.do(t, req)
}

func (b *browser) post(t *testing.T, path string, form url.Values) response {
	t.Helper()
	req, err := http.NewRequest("POST", b.w.srv.URL+path, strings.NewReader(form.Encode()))
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	return b.do(t, req)
}

type upload struct {
	name, contentType string
	data              []byte
}

// postMultipart sends a form as a browser sends the compose form: multipart/form-data, the fields
// in order, then the files.
func (b *browser) postMultipart(t *testing.T, path string, fields [][2]string, files []upload) response {
	t.Helper()
	var body bytes.Buffer
	mw := multipart.NewWriter(&body)
	for _, f := range fields {
		if err := mw.WriteField(f[0], f[1]); err != nil {
			t.Fatal(err)
		}
	}
	for _, f := range files {
		h := make(map[string][]string)
		h["Content-Disposition"] = []string{mime.FormatMediaType("form-data", map[string]string{"name": "attachments", "filename": f.name})}
		h["Content-Type"] = []string{f.contentType}
		pw, err := mw.CreatePart(h)
		if err != nil {
			t.Fatal(err)
		}
		pw.Write(f.data)
	}
	mw.Close()
	req, err := http.NewRequest("POST", b.w.srv.URL+path, &body)
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Content-Type", mw.FormDataContentType())
	return b.do(t, req)
}

// signIn signs in through the form and wants the redirect to next.
func (b *browser) signIn(t *testing.T, address, password, next string) {
	t.Helper()
	r := b.tryLogin(t, address, password, next)
	if r.status != http.StatusSeeOther || r.header.Get("Location") != next {
		t.Fatalf("sign-in as %s: want 303 to %s, got %s %v", address, next, r, r.header)
	}
}

func (b *browser) tryLogin(t *testing.T, address, password, next string) response {
	t.Helper()
	page := b.get(t, "/login")
	if page.status != 200 {
		t.Fatalf("sign-in page: %s", page)
	}
	return b.post(t, "/login", url.Values{"csrf": {csrf(t, page.body)}, "address": {address}, "password": {password}, "next": {next}})
}

func (b *browser) cookie() *http.Cookie {
	u, _ := url.Parse(b.w.srv.URL)
	for _, c := range b.c.Jar.Cookies(u) {
		if c.Name == "certmail_session" {
			return c
		}
	}
	return nil
}

// signedOut checks that a page needing a session sends the browser to sign in first.
func (b *browser) signedOut(t *testing.T, path string) {
	t.Helper()
	r := b.get(t, path)
	if want := "/login?next=" + url.QueryEscape(path); r.status != http.StatusSeeOther || r.header.Get("Location") != want {
		t.Fatalf("GET %s without a session: want 303 to %s, got %s %v", path, want, r, r.header.Get("Location"))
	}
}

func sessionCookieOf(t *testing.T, r response) *http.Cookie {
	t.Helper()
	for _, c := range (&http.Response{Header: r.header}).Cookies() {
		if c.Name == "certmail_session" {
			return c
		}
	}
	t.Fatalf("no session cookie set: %v", r.header)
	return nil
}

func TestSenderSignIn(t *testing.T) {
	t.Parallel()
	w := newWorld(t, options{})
	b := w.browser(t)
	b.signedOut(t, "/messages")
	b.signedOut(t, "/messages/new")
	if r := b.get(t, "/"); r.status != http.StatusSeeOther || r.header.Get("Location") != "/messages" {
		t.Fatalf("GET /: %s", r)
	}

	// A wrong password is refused, the address kept in the form, and no cookie set.
	r := b.tryLogin(t, alice, "wrong password", "/messages/new")
	if r.status != http.StatusUnauthorized || b.cookie() != nil {
		t.Fatalf("wrong password: %s", r)
	}
	contains(t, r, "The address or the password is wrong", `value="`+alice+`"`)
	lacks(t, r, "wrong password")
	securityHeaders(t, r)
	// A form without the page's token is refused.
	if r := b.post(t, "/login", url.Values{"address": {alice}, "password": {alicePW}}); r.status != http.StatusForbidden || b.cookie() != nil {
		t.Fatalf("sign-in without csrf: %s", r)
	}

	// The right password sets a session cookie the page scripts cannot read, sent over HTTPS only.
	page := b.get(t, "/login")
	r = b.post(t, "/login", url.Values{"csrf": {csrf(t, page.body)}, "address": {"alice@A.EXAMPLE"}, "password": {alicePW}, "next": {"/messages/new"}})
	if r.status != http.StatusSeeOther || r.header.Get("Location") != "/messages/new" {
		t.Fatalf("sign-in: %s %v", r, r.header)
	}
	ck := sessionCookieOf(t, r)
	if !ck.HttpOnly || !ck.Secure || ck.SameSite != http.SameSiteLaxMode || ck.Path != "/" || ck.MaxAge <= 0 || ck.MaxAge > 24*3600 {
		t.Fatalf("session cookie attributes: %+v", ck)
	}
	list := b.get(t, "/messages")
	if list.status != 200 {
		t.Fatalf("messages after sign-in: %s", list)
	}
	contains(t, list, alice, "Sign out", "You have not sent a certified message yet")
	securityHeaders(t, list)
	if r := b.get(t, "/login?next=/messages/new"); r.status != http.StatusSeeOther || r.header.Get("Location") != "/messages/new" {
		t.Fatalf("sign-in page when signed in: %s", r)
	}

	// Sign-out needs the session's form token; then the cookie is gone and the pages say sign in.
	if r := b.post(t, "/logout", nil); r.status != http.StatusForbidden {
		t.Fatalf("sign-out without csrf: %s", r)
	}
	if r := b.get(t, "/messages"); r.status != 200 {
		t.Fatalf("a refused sign-out ended the session: %s", r)
	}
	if r := b.post(t, "/logout", url.Values{"csrf": {csrf(t, list.body)}}); r.status != http.StatusSeeOther || r.header.Get("Location") != "/login" {
		t.Fatalf("sign-out: %s", r)
	}
	if b.cookie() != nil {
		t.Fatal("the cookie survived sign-out")
	}
	b.signedOut(t, "/messages")

	// After sign-in, only pages of this site: never another site.
	for _, next := range []string{"https://evil.example/", "//evil.example/x", "/\\evil.example", "javascript:alert(1)"} {
		b2 := w.browser(t)
		r := b2.tryLogin(t, alice, alicePW, next)
		if r.status != http.StatusSeeOther || r.header.Get("Location") != "/messages" {
			t.Errorf("next=%q: %s %v", next, r, r.header.Get("Location"))
		}
	}

	// The log holds neither the password nor the cookie.
	logs := w.logs.String()
	for _, secret := range []string{alicePW, ck.Value, ck.Value[strings.LastIndexByte(ck.Value, '.')+1:]} {
		if strings.Contains(logs, secret) {
			t.Errorf("the log holds %q", secret)
		}
	}
	if !strings.Contains(logs, `"route":"POST /login"`) || !strings.Contains(logs, `"user":"`+alice+`"`) {
		t.Errorf("the access log does not name the sign-in:\n%s", logs)
	}
}

func TestSenderSessionEnds(t *testing.T) {
	t.Parallel()
	w := newWorld(t, options{})

	// A session lasts hours, not days.
	b := w.browser(t)
	b.signIn(t, alice, alicePW, "/messages")
	w.clock.add(7 * time.Hour)
	if r := b.get(t, "/messages"); r.status != 200 {
		t.Fatalf("after 7 hours: %s", r)
	}
	w.clock.add(time.Hour)
	b.signedOut(t, "/messages")

	// A cookie edited by hand is no session: another address under alice's MAC, a changed MAC,
	// a later expiry.
	b.signIn(t, alice, alicePW, "/messages")
	v := b.cookie().Value
	parts := strings.Split(v, ".")
	forge := func(i int, val string) string {
		p := append([]string(nil), parts...)
		p[i] = val
		return strings.Join(p, ".")
	}
	exp, _ := strconv.ParseInt(parts[2], 10, 64)
	mac := []byte(parts[4])
	mac[0] ^= 1
	for name, forged := range map[string]string{
		"address": forge(1, b64(mallory)),
		"expiry":  forge(2, strconv.FormatInt(exp+86400, 10)),
		"mac":     forge(4, string(mac)),
		"garbage": "s1.x.y.z",
	} {
		req, _ := http.NewRequest("GET", w.srv.URL+"/messages", nil)
		req.AddCookie(&http.Cookie{Name: "certmail_session", Value: forged})
		if r := w.browser(t).do(t, req); r.status != http.StatusSeeOther {
			t.Errorf("forged %s: %s", name, r)
		}
	}

	// A new password ends the sessions signed in with the old one.
	if r := b.get(t, "/messages"); r.status != 200 {
		t.Fatalf("before the password change: %s", r)
	}
	if err := w.acc.SetPassword(t.Context(), alice, "a brand new password"); err != nil {
		t.Fatal(err)
	}
	b.signedOut(t, "/messages")

	// Disabling an account ends its sessions at their next request, and refuses its sign-in.
	m := w.browser(t)
	m.signIn(t, mallory, malPW, "/messages")
	if err := w.acc.SetDisabled(t.Context(), mallory, true); err != nil {
		t.Fatal(err)
	}
	r := m.get(t, "/messages")
	if r.status != http.StatusForbidden {
		t.Fatalf("disabled account's session: %s", r)
	}
	contains(t, r, "disabled")
	r = w.browser(t).tryLogin(t, mallory, malPW, "/messages")
	if r.status != http.StatusForbidden {
		t.Fatalf("disabled account's sign-in: %s", r)
	}
	contains(t, r, "This account is disabled")
}

func b64(s string) string { return base64.RawURLEncoding.EncodeToString([]byte(s)) }

func TestSenderSignInRateLimit(t *testing.T) {
	t.Parallel()
	w := newWorld(t, options{limits: account.Limits{PerAccount: 3, PerAddress: 100}})
	b := w.browser(t)
	for i := range 3 {
		if r := b.tryLogin(t, alice, "guess "+strconv.Itoa(i), "/messages"); r.status != http.StatusUnauthorized {
			t.Fatalf("wrong password %d: %s", i, r)
		}
	}
	// Past the limit even the right password is refused, without being checked.
	r := b.tryLogin(t, alice, alicePW, "/messages")
	if r.status != http.StatusTooManyRequests || r.header.Get("Retry-After") == "" || b.cookie() != nil {
		t.Fatalf("after three wrong passwords: %s %v", r, r.header)
	}
	contains(t, r, "Too many failed sign-ins")
	// Another account from the same address is not limited by alice's failures.
	b.signIn(t, mallory, malPW, "/messages")
	// The window passes.
	w.clock.add(2 * time.Minute)
	w.browser(t).signIn(t, alice, alicePW, "/messages")
}

// Passwords and sessions travel over TLS, or from loopback.
func TestSenderPlainHTTP(t *testing.T) {
	t.Parallel()
	w := newWorld(t, options{plain: true})
	b := w.browser(t)
	page := b.get(t, "/login")
	r := b.post(t, "/login", url.Values{"csrf": {csrf(t, page.body)}, "address": {alice}, "password": {alicePW}, "next": {"/messages"}})
	if r.status != http.StatusSeeOther {
		t.Fatalf("sign-in over loopback: %s", r)
	}
	ck := sessionCookieOf(t, r)
	if ck.Secure {
		t.Fatal("a Secure cookie on a plain-HTTP agent would never come back")
	}

	for _, req := range []*http.Request{
		httptest.NewRequest("GET", "/login", nil),
		httptest.NewRequest("POST", "/login", strings.NewReader(url.Values{"csrf": {csrf(t, page.body)}, "address": {alice}, "password": {alicePW}}.Encode())),
		httptest.NewRequest("GET", "/messages", nil),
	} {
		req.RemoteAddr = "192.0.2.7:52000"
		req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
		req.AddCookie(ck)
		rec := httptest.NewRecorder()
		w.srv.Config.Handler.ServeHTTP(rec, req)
		r := response{rec.Code, rec.Header(), rec.Body.Bytes()}
		if r.status != http.StatusForbidden || rec.Header().Get("Set-Cookie") != "" {
			t.Fatalf("%s %s from afar over plain HTTP: %s", req.Method, req.URL, r)
		}
		contains(t, r, "HTTPS")
	}
}

var labelRE = regexp.MustCompile(`^/messages/([0-9A-Z]{26})\?posted=(\d+)$`)

// compose posts the compose form as alice's browser and wants the redirect to the new message.
func (b *browser) compose(t *testing.T, fields [][2]string, files []upload) (label string, posted int) {
	t.Helper()
	r := b.postComposed(t, fields, files)
	m := labelRE.FindStringSubmatch(r.header.Get("Location"))
	if r.status != http.StatusSeeOther || m == nil {
		t.Fatalf("compose: want 303 to the message, got %s %v", r, r.header.Get("Location"))
	}
	n, _ := strconv.Atoi(m[2])
	return m[1], n
}

func (b *browser) postComposed(t *testing.T, fields [][2]string, files []upload) response {
	t.Helper()
	form := b.get(t, "/messages/new")
	if form.status != 200 {
		t.Fatalf("compose form: %s", form)
	}
	return b.postMultipart(t, "/messages", append([][2]string{{"csrf", csrf(t, form.body)}}, fields...), files)
}

func TestSenderCompose(t *testing.T) {
	t.Parallel()
	w := newWorld(t, options{})
	b := w.browser(t)
	b.signIn(t, alice, alicePW, "/messages")
	form := b.get(t, "/messages/new")
	contains(t, form, `enctype="multipart/form-data"`, `name="attachments"`, `multiple`, `<option value="cem-ip" selected>`,
		`<option value="full" selected>`, `<option value="standard" selected>`)

	pdf := []byte("%PDF-1.7\x00\xff\xfe binary lease")
	label, posted := b.compose(t, [][2]string{{"to", bob}, {"subject", "the lease"}, {"text", "Signed copy attached.\r\nRegards"},
		{"mode", "cem-nsr"}, {"deadline", "72h"}, {"receipt", "short"}, {"notify", "failures-only"},
		{"password", msgPW}, {"hint", "our usual"}},
		[]upload{{"lease.pdf", "application/pdf", pdf}, {"notes.txt", "text/plain", []byte("plain notes\n")}})
	if posted != 1 {
		t.Fatalf("posted %d", posted)
	}

	// The page it leads to says so, and the stored message holds both files.
	page := b.get(t, "/messages/"+label+"?posted=1")
	if page.status != 200 {
		t.Fatalf("message page: %s", page)
	}
	contains(t, page, "Your message was posted", "the lease", bob, "cem-nsr", "2026-03-05T09:00:00Z", "Posted")

	bundle := b.get(t, "/messages/"+label+"/bundle")
	if bundle.status != 200 || bundle.header.Get("Content-Type") != "application/vnd.certmail.bundle" {
		t.Fatalf("bundle: %s", bundle)
	}
	downloadHeaders(t, bundle, label+".bundle")
	bd, err := evidence.ParseBundle(bundle.body)
	if err != nil {
		t.Fatal(err)
	}
	m, ok := bd.Item(evidence.ItemMessage)
	if !ok {
		t.Fatal("the bundle carries no message")
	}
	files := attachmentsOf(t, m)
	if len(files) != 2 || !bytes.Equal(files["lease.pdf"], pdf) || string(files["notes.txt"]) != "plain notes\n" {
		t.Fatalf("the stored message's files: %q\n%s", files, m)
	}
	if !bytes.Contains(m, []byte("From: "+alice+"\r\n")) || !bytes.Contains(m, []byte("To: "+bob+"\r\n")) || bytes.Contains(m, []byte(msgPW)) {
		t.Fatalf("the stored message:\n%s", m)
	}

	// Its COP is in the bundle, for this label and these very bytes.
	var cop *evidence.Record
	for _, n := range bd.Notes {
		if n.Record.Type == evidence.COP {
			cop = n.Record
		}
	}
	if cop == nil || cop.Label.String() != label || cop.Content != evidence.Sum(m) || cop.Sender != alice || cop.Recipient != bob ||
		cop.Protocol != evidence.CEMNSR || !cop.Deadline.Equal(t0.Add(72*time.Hour)) {
		t.Fatalf("COP %+v", cop)
	}
	keys, _ := evidence.NewKeys(w.id.Verifier)
	if v := protocol.JudgeAt(bd.Check(keys), w.clock.now()); !v.Valid || v.Outcome != evidence.OutcomePosted {
		t.Fatalf("verdict:\n%s", v.Text())
	}

	// The options reached the agent: the receipt form, the policy, and the password the pickup asks.
	var it store.Item
	l, _ := evidence.ParseLabel(label)
	if err := w.st.View(t.Context(), func(tx store.Tx) (err error) { it, err = tx.Item(l); return err }); err != nil {
		t.Fatal(err)
	}
	if it.Subject != "the lease" || it.Receipt != "short" || it.Notify != "failures-only" || it.PasswordHash == "" || it.PasswordHint != "our usual" {
		t.Fatalf("item %+v", it)
	}
	pickup := w.get(t, w.mails.link(t, bob))
	contains(t, pickup, `name="password"`, "our usual")

	// Without a bundle's message, the evidence alone.
	bare := b.get(t, "/messages/"+label+"/bundle?message=no")
	downloadHeaders(t, bare, label+"-evidence.bundle")
	if bb, err := evidence.ParseBundle(bare.body); err != nil || len(bb.Items) != 0 || len(bb.Notes) != len(bd.Notes) {
		t.Fatalf("bundle without the message: %v %+v", err, bb)
	}

	// Several recipients: one item each, and the page of the first says how many.
	first, posted := b.compose(t, [][2]string{{"to", "carol@c.example, dave@D.example\r\nerin@e.example"}, {"text", "to three"}}, nil)
	if posted != 3 {
		t.Fatalf("posted to %d", posted)
	}
	contains(t, b.get(t, "/messages/"+first+"?posted=3"), "to 3 recipients", "carol@c.example")
	for _, to := range []string{carol, "dave@d.example", "erin@e.example"} {
		w.mails.link(t, to)
	}
}

// attachmentsOf reads the files of a multipart message by name.
func attachmentsOf(t *testing.T, m []byte) map[string][]byte {
	t.Helper()
	msg, err := mail.ReadMessage(bytes.NewReader(m))
	if err != nil {
		t.Fatal(err)
	}
	_, params, err := mime.ParseMediaType(msg.Header.Get("Content-Type"))
	if err != nil {
		t.Fatal(err)
	}
	out := map[string][]byte{}
	mr := multipart.NewReader(msg.Body, params["boundary"])
	for {
		p, err := mr.NextPart()
		if err == io.EOF {
			return out
		}
		if err != nil {
			t.Fatal(err)
		}
		if p.FileName() == "" {
			continue
		}
		if p.Header.Get("Content-Transfer-Encoding") != "base64" {
			t.Fatalf("attachment %s not in base64", p.FileName())
		}
		data, err := io.ReadAll(base64.NewDecoder(base64.StdEncoding, p))
		if err != nil {
			t.Fatal(err)
		}
		out[p.FileName()] = data
	}
}

func TestSenderComposeErrors(t *testing.T) {
	t.Parallel()
	w := newWorld(t, options{})
	b := w.browser(t)
	b.signIn(t, alice, alicePW, "/messages")
	base := func(extra ...[2]string) [][2]string {
		f := map[string]string{"to": bob, "subject": "kept subject", "text": "kept text", "password": msgPW, "hint": "kept hint"}
		for _, e := range extra {
			f[e[0]] = e[1]
		}
		var out [][2]string
		for _, k := range []string{"to", "subject", "text", "mode", "deadline", "receipt", "notify", "password", "hint"} {
			if v, ok := f[k]; ok {
				out = append(out, [2]string{k, v})
			}
		}
		return out
	}
	big := bytes.Repeat([]byte("x"), maxBytes)
	cases := []struct {
		name   string
		fields [][2]string
		files  []upload
		status int
		field  string // where the error shows
		says   string
	}{
		{"bad recipient", base([2]string{"to", "bob@b.example, not an address"}), nil, 422, "to", "not one e-mail address"},
		{"no recipient", base([2]string{"to", " "}), nil, 422, "to", "at least one recipient"},
		{"recipient twice", base([2]string{"to", "bob@b.example, bob@B.example"}), nil, 422, "to", "named twice"},
		{"deadline too soon", base([2]string{"deadline", "10m"}), nil, 422, "deadline", "the deadline must be at least 1 hour from now"},
		{"deadline nonsense", base([2]string{"deadline", "next tuesday"}), nil, 422, "deadline", "is neither a time"},
		{"unknown mode", base([2]string{"mode", "pec"}), nil, 422, "mode", "is not a mode"},
		{"unknown receipt", base([2]string{"receipt", "long"}), nil, 422, "receipt", "is not a receipt form"},
		{"short password", base([2]string{"password", "abc"}), nil, 422, "password", "needs at least 8"},
		{"hint without password", base([2]string{"password", ""}), nil, 422, "hint", "password hint is given without the message password"},
		{"hint gives the password away", base([2]string{"hint", "it is " + msgPW}), nil, 422, "hint", "contains the password itself"},
		{"subject on two lines", base([2]string{"subject", "hi\r\nBcc: eve@e.example"}), nil, 422, "subject", "control character"},
		{"files too large", base(), []upload{{"big.bin", "application/octet-stream", big}, {"more.bin", "", big}}, 413, "attachments", "larger than this agent accepts"},
		{"message too large", base(), []upload{{"big.bin", "application/octet-stream", big[:maxBytes*4/5]}}, 413, "attachments", "this agent accepts at most 64 KiB"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			r := b.postComposed(t, c.fields, c.files)
			if r.status != c.status {
				t.Fatalf("want %d, got %s", c.status, r)
			}
			// The error stands beside its field, and the form is filled again (but the password).
			errRE := regexp.MustCompile(`<p class="field-error" id="` + c.field + `-error" role="alert">([^<]*)</p>`)
			m := errRE.FindSubmatch(r.body)
			if m == nil || !strings.Contains(html.UnescapeString(string(m[1])), c.says) {
				t.Fatalf("no error %q beside %s:\n%s", c.says, c.field, r.body)
			}
			if c.field != "subject" {
				contains(t, r, `value="kept subject"`, ">kept text</textarea>")
			}
			if c.field != "hint" {
				contains(t, r, `value="kept hint"`)
			}
			if c.field != "hint" { // a hint is kept, even one that gives the password away
				lacks(t, r, msgPW)
			}
			if c.files != nil && c.status != 413 {
				contains(t, r, "Choose your files again")
			}
		})
	}

	// A form without the session's token changes nothing.
	r := b.postMultipart(t, "/messages", base(), nil)
	if r.status != http.StatusForbidden {
		t.Fatalf("compose without csrf: %s", r)
	}
	r = b.postMultipart(t, "/messages", append([][2]string{{"csrf", csrf(t, w.browser(t).loginPage(t).body)}}, base()...), nil)
	if r.status != http.StatusForbidden {
		t.Fatalf("compose with the sign-in form's token: %s", r)
	}
	if n := len(w.mails.notices); n != 0 {
		t.Fatalf("%d notifications after refused forms", n)
	}
	if items, _, _ := w.ag.Items(t.Context(), alice, 0, 10); len(items) != 0 {
		t.Fatalf("refused forms created %d items", len(items))
	}
}

func (b *browser) loginPage(t *testing.T) response { t.Helper(); return b.get(t, "/login") }

func TestSenderList(t *testing.T) {
	t.Parallel()
	w := newWorld(t, options{})
	const n = 27
	for i := range n {
		w.submitJSON(t, map[string]any{"to": []string{bob}, "subject": "message " + strconv.Itoa(i), "text": "hi"})
		w.clock.add(time.Minute)
	}
	w.submitJSON(t, map[string]any{"to": []string{carol}, "text": "no subject", "deadline": "2h"})
	w.clock.add(3 * time.Hour) // past the last one's deadline; the timer has not fired yet
	if _, err := w.ag.RunTimers(t.Context()); err != nil {
		t.Fatal(err)
	}
	w.clock.add(time.Minute)
	w.submitJSON(t, map[string]any{"to": []string{bob}, "subject": "<script>alert(1)</script>", "text": "escaped"})

	b := w.browser(t)
	b.signIn(t, alice, alicePW, "/messages")
	p1 := b.get(t, "/messages")
	rows := rowsOf(p1)
	if len(rows) != 25 {
		t.Fatalf("page 1 has %d rows", len(rows))
	}
	if !strings.Contains(rows[0], "&lt;script&gt;alert(1)&lt;/script&gt;") || !strings.Contains(rows[0], "waiting for the recipient") && !strings.Contains(rows[0], "posted, notification on its way") {
		t.Fatalf("newest first, escaped, its state in words:\n%s", rows[0])
	}
	if !strings.Contains(rows[1], "(no subject)") || !strings.Contains(rows[1], carol) || !strings.Contains(rows[1], "not delivered: deadline passed") {
		t.Fatalf("the expired one:\n%s", rows[1])
	}
	if !strings.Contains(rows[2], "message 26") || !strings.Contains(rows[2], bob) || !strings.Contains(rows[2], evidence.FormatTime(t0.Add(26*time.Minute+48*time.Hour))) {
		t.Fatalf("third row: label, recipient, subject, state, deadline:\n%s", rows[2])
	}
	lacks(t, p1, "<script>", "rel=\"prev\"")
	contains(t, p1, `href="/messages?page=2" rel="next"`)

	p2 := b.get(t, "/messages?page=2")
	rows = rowsOf(p2)
	if len(rows) != n+2-25 || !strings.Contains(rows[len(rows)-1], "message 0") {
		t.Fatalf("page 2: %d rows\n%s", len(rows), p2.body)
	}
	contains(t, p2, `href="/messages?page=1" rel="prev"`)
	lacks(t, p2, `rel="next"`)
	contains(t, b.get(t, "/messages?page=3"), "There are no more messages")
	if r := b.get(t, "/messages?page=0"); r.status != http.StatusNotFound {
		t.Fatalf("page 0: %s", r)
	}

	// Another sender sees none of them.
	m := w.browser(t)
	m.signIn(t, mallory, malPW, "/messages")
	r := m.get(t, "/messages")
	if len(rowsOf(r)) != 0 {
		t.Fatalf("mallory sees alice's messages:\n%s", r.body)
	}
}

var rowRE = regexp.MustCompile(`(?s)<tr>\s*<td><a href="/messages/[0-9A-Z]{26}">.*?</tr>`)

func rowsOf(r response) []string {
	var out []string
	for _, m := range rowRE.FindAll(r.body, -1) {
		out = append(out, string(m))
	}
	return out
}

// stepsOf is the titles of a timeline, in order.
func stepsOf(r response) []string {
	var out []string
	for _, m := range regexp.MustCompile(`<p class="step"><strong>([^<]+)</strong>`).FindAllSubmatch(r.body, -1) {
		out = append(out, string(m[1]))
	}
	return out
}

func TestSenderTimeline(t *testing.T) {
	t.Parallel()
	w := newWorld(t, options{})
	b := w.browser(t)
	b.signIn(t, alice, alicePW, "/messages")
	accepted, _ := b.compose(t, [][2]string{{"to", bob}, {"subject", "accept me"}, {"text", "hi"}}, nil)
	refused, _ := b.compose(t, [][2]string{{"to", carol}, {"subject", "refuse me"}, {"text", "hi"}}, nil)

	page := b.get(t, "/messages/"+accepted)
	contains(t, page, "the notification to bob@b.example is on its way", "Retract this message")
	if got := strings.Join(stepsOf(page), ", "); got != "Posted" {
		t.Fatalf("timeline before anything: %s", got)
	}

	w.deliverQueue(t)
	w.clock.add(time.Minute)
	for _, who := range []string{bob, carol} {
		link := w.mails.link(t, who)
		decision := "/accept"
		if who == carol {
			decision = "/refuse"
		}
		if r := w.post(t, link+decision, formWith(csrf(t, w.get(t, link).body), "")); r.status != 200 {
			t.Fatalf("%s: %s", decision, r)
		}
	}

	page = b.get(t, "/messages/"+accepted)
	contains(t, page, "Delivered: bob@b.example accepted the message at 2026-03-02T09:01:00Z.",
		"attests that bob@b.example authenticated (by link) from 127.0.0.1 and accepted the message",
		"released the content to bob@b.example, to the address 127.0.0.1", "signed by certmail.test")
	lacks(t, page, "Retract this message")
	if got := strings.Join(stepsOf(page), ", "); got != "Posted, Recipient notified, Accepted, Delivery reported, Retrieved" {
		t.Fatalf("timeline after acceptance: %s", got)
	}

	page = b.get(t, "/messages/"+refused)
	contains(t, page, "Refused: carol@c.example refused the message at 2026-03-02T09:01:00Z without seeing its content.",
		"Nothing of its content was released to them")
	lacks(t, page, "Retract this message")
	if got := strings.Join(stepsOf(page), ", "); got != "Posted, Recipient notified, Refused" {
		t.Fatalf("timeline after refusal: %s", got)
	}
	if r := b.get(t, "/messages/"+refused+"/retract"); r.status != http.StatusConflict {
		t.Fatalf("retract page of a refused message: %s", r)
	}

	// At the deadline, the notice of non-delivery.
	late, _ := b.compose(t, [][2]string{{"to", "dave@d.example"}, {"text", "late"}, {"deadline", "2h"}}, nil)
	w.clock.add(time.Hour) // half the time: the warning
	if _, err := w.ag.RunTimers(t.Context()); err != nil {
		t.Fatal(err)
	}
	w.clock.add(time.Hour)
	contains(t, b.get(t, "/messages/"+late), "did not accept by the deadline", "the agent is about to give notice")
	if _, err := w.ag.RunTimers(t.Context()); err != nil {
		t.Fatal(err)
	}
	page = b.get(t, "/messages/"+late)
	contains(t, page, "Not delivered: dave@d.example did not accept the message by the deadline")
	if got := strings.Join(stepsOf(page), ", "); got != "Posted, Warned, Not delivered" {
		t.Fatalf("timeline after the deadline: %s", got)
	}
}

func TestSenderRetract(t *testing.T) {
	t.Parallel()
	w := newWorld(t, options{})
	b := w.browser(t)
	b.signIn(t, alice, alicePW, "/messages")
	label, _ := b.compose(t, [][2]string{{"to", bob}, {"subject", "oops"}, {"text", "wrong file"}}, nil)
	w.deliverQueue(t)
	link := w.mails.link(t, bob)

	confirm := b.get(t, "/messages/"+label+"/retract")
	if confirm.status != 200 {
		t.Fatalf("confirmation page: %s", confirm)
	}
	contains(t, confirm, "Retract this message?", "cannot be undone", `action="/messages/`+label+`/retract"`)

	// Without the session's token, or with another session's, nothing changes.
	other := w.browser(t)
	other.signIn(t, alice, alicePW, "/messages")
	for name, form := range map[string]url.Values{
		"no csrf":       nil,
		"other session": {"csrf": {csrf(t, other.get(t, "/messages").body)}},
		"sign-in token": {"csrf": {csrf(t, w.browser(t).loginPage(t).body)}},
		"mangled token": {"csrf": {strings.ToUpper(csrf(t, confirm.body))}},
	} {
		if r := b.post(t, "/messages/"+label+"/retract", form); r.status != http.StatusForbidden {
			t.Errorf("%s: want 403, got %s", name, r)
		}
	}
	if r := w.postCrossSite(t, w.srv.URL+"/messages/"+label+"/retract", url.Values{"csrf": {csrf(t, confirm.body)}}); r.status != http.StatusForbidden {
		t.Errorf("cross-site: %s", r)
	}
	if st := w.status(t, label); st.State != "notified" {
		t.Fatalf("refused forms retracted: %+v", st)
	}

	r := b.post(t, "/messages/"+label+"/retract", url.Values{"csrf": {csrf(t, confirm.body)}})
	if r.status != http.StatusSeeOther || r.header.Get("Location") != "/messages/"+label {
		t.Fatalf("retract: %s", r)
	}
	page := b.get(t, "/messages/"+label)
	contains(t, page, "Retracted: you withdrew the message at")
	if got := strings.Join(stepsOf(page), ", "); got != "Posted, Recipient notified, Retracted" {
		t.Fatalf("timeline after retraction: %s", got)
	}
	if st := w.status(t, label); st.State != "retracted" || st.types() != "COP NTF RTR" {
		t.Fatalf("status %+v", st)
	}
	if r := w.get(t, link); r.status != http.StatusGone {
		t.Fatalf("pickup after retraction: %s", r)
	}
	// Twice is refused, and says why.
	r = b.post(t, "/messages/"+label+"/retract", url.Values{"csrf": {csrf(t, confirm.body)}})
	if r.status != http.StatusConflict {
		t.Fatalf("second retraction: %s", r)
	}
	contains(t, r, "can no longer be retracted")
}

func TestSenderCertificate(t *testing.T) {
	t.Parallel()
	w := newWorld(t, options{})
	b := w.browser(t)
	b.signIn(t, alice, alicePW, "/messages")
	label, _ := b.compose(t, [][2]string{{"to", bob}, {"subject", "<b>the lease</b>"}, {"text", "hi"}},
		[]upload{{"lease.pdf", "application/pdf", []byte("%PDF lease")}})
	w.deliverQueue(t)
	w.clock.add(time.Minute)
	link := w.mails.link(t, bob)
	if r := w.post(t, link+"/accept", formWith(csrf(t, w.get(t, link).body), "")); r.status != 200 {
		t.Fatalf("accept: %s", r)
	}
	w.clock.add(time.Minute)

	// What `certmail verify BUNDLE --key AGENT --at NOW` says of the bundle the sender downloads.
	bundle := b.get(t, "/messages/"+label+"/bundle")
	bd, err := evidence.ParseBundle(bundle.body)
	if err != nil {
		t.Fatal(err)
	}
	keys, _ := evidence.NewKeys(w.id.Verifier)
	v := protocol.JudgeAt(bd.Check(keys), w.clock.now())
	if !v.Valid || v.Outcome != evidence.OutcomeDelivered {
		t.Fatalf("verdict:\n%s", v.Text())
	}

	cert := b.get(t, "/messages/"+label+"/certificate")
	if cert.status != 200 || !strings.HasPrefix(cert.header.Get("Content-Type"), "text/html") {
		t.Fatalf("certificate: %s", cert)
	}
	securityHeaders(t, cert)
	contains(t, cert, `href="/static/certificate.css"`, "&lt;b&gt;the lease&lt;/b&gt;")
	// The rest is compared as the text a reader sees.
	wants := []string{"Verdict: VALID", v.Summary, "Outcome <strong>delivered</strong> (agent-attested), protocol cem-ip",
		alice, bob, label, bd.Notes[0].Record.Content.String(),
		w.id.Verifier + "</code> — the key of certmail.test, pinned",
		"certmail verify " + label + ".bundle --key '" + w.id.Verifier + "' --at " + evidence.FormatTime(w.clock.now())}
	for _, f := range v.Facts {
		wants = append(wants, "<td>"+strconv.Itoa(f.Note)+"</td>\n<td>"+string(f.Type)+"</td>\n<td>"+f.Signer+"</td>\n<td>"+f.Time+"</td>\n<td>"+f.Says,
			bd.Notes[f.Note-1].Leaf().String())
	}
	wants = append(wants, v.Notices...)
	contains(t, response{cert.status, cert.header, []byte(html.UnescapeString(string(cert.body)))}, wants...)
	if len(v.Facts) != len(bd.Notes) {
		t.Fatalf("%d facts for %d notes", len(v.Facts), len(bd.Notes))
	}
	lacks(t, cert, "<script", "<b>the lease")

	// The print stylesheet prints on A4 and leaves the screen's links off the paper.
	css := w.get(t, w.srv.URL+"/static/certificate.css")
	contains(t, css, "size: A4", "@media print", ".screen-only { display: none; }")
}

// Another sender's label is not found, exactly as a label nobody has.
func TestSenderForeignLabel(t *testing.T) {
	t.Parallel()
	w := newWorld(t, options{})
	s := w.submitJSON(t, map[string]any{"to": []string{bob}, "subject": "alice's secret", "text": "hi"})
	label := s.Messages[0].Label
	unknown := "01JDZ4Q8X3ABCDEFGHJKMNPQR0"

	m := w.browser(t)
	m.signIn(t, mallory, malPW, "/messages")
	token := csrf(t, m.get(t, "/messages").body)
	for _, path := range []string{"", "/bundle", "/bundle?message=no", "/certificate", "/retract"} {
		foreign, none := m.get(t, "/messages/"+label+path), m.get(t, "/messages/"+unknown+path)
		if foreign.status != http.StatusNotFound || none.status != http.StatusNotFound || !bytes.Equal(foreign.body, none.body) {
			t.Errorf("%s: foreign %d, unknown %d; the pages differ: %v", path, foreign.status, none.status, !bytes.Equal(foreign.body, none.body))
		}
		lacks(t, foreign, "alice's secret", bob)
	}
	if r := m.get(t, "/messages/not-a-label"); r.status != http.StatusNotFound {
		t.Errorf("not a label: %s", r)
	}
	if r := m.post(t, "/messages/"+label+"/retract", url.Values{"csrf": {token}}); r.status != http.StatusNotFound {
		t.Fatalf("mallory's retraction: %s", r)
	}
	if st := w.status(t, label); st.State != "posted" {
		t.Fatalf("mallory changed alice's item: %+v", st)
	}
}
