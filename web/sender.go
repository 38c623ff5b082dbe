package web

import (
	"crypto/hmac"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"errors"
	"fmt"
	"html/template"
	"io"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"

	"certmail/account"
	"certmail/agent"
	"certmail/evidence"
	"certmail/store"
)

// The sender's pages (DESIGN.md §7): sign-in, the list of the sender's messages, compose, each
// message's timeline, its bundle and a printable evidence certificate. After sign-in the
// credential is a session cookie that the server verifies with an HMAC under its secret and
// keeps no record of; each request still reads the account, so disabling it, or changing its
// password, ends its sessions at their next request.

// sessionCookie names the cookie. It carries no secret but its MAC, and is never logged.
const sessionCookie = "certmail_session"

// sessionLifetime is how long a sign-in lasts. Signing out removes the cookie from the browser;
// as the server keeps no list of sessions, a copy taken before that stays good until it expires,
// which this bounds.
const sessionLifetime = 8 * time.Hour

// sessionVersion is the first field of the cookie value, so the format can change.
const sessionVersion = "s1"

// session is the content of the cookie: "s1.<address>.<expiry>.<id>.<mac>", with the address,
// id and MAC in unpadded base64url and the expiry in Unix seconds.
type session struct {
	Address string
	Expires time.Time // whole seconds
	ID      [16]byte  // random: scopes the CSRF tokens of this session's forms
	MAC     [32]byte
}

var cookieB64 = base64.RawURLEncoding.Strict()

// encode writes the cookie value.
func (c session) encode() string {
	return sessionVersion + "." + cookieB64.EncodeToString([]byte(c.Address)) + "." + strconv.FormatInt(c.Expires.Unix(), 10) +
		"." + cookieB64.EncodeToString(c.ID[:]) + "." + cookieB64.EncodeToString(c.MAC[:])
}

// parseSession reads a cookie value strictly: the one canonical form encode writes, so that
// parsing then encoding gives the input back. It checks the form only; verify checks the MAC.
// A hand-written parser because the format is five fields of this package's own making.
func parseSession(v string) (session, error) {
	var c session
	if strings.ContainsAny(v, "\r\n") {
		// encoding/base64 skips line ends: a cookie with one would parse as another's.
		return c, errors.New("session: a line end in the cookie")
	}
	parts := strings.Split(v, ".")
	if len(parts) != 5 || parts[0] != sessionVersion {
		return c, errors.New("session: not a session cookie of this version")
	}
	addr, err := cookieB64.DecodeString(parts[1])
	if err != nil {
		return c, fmt.Errorf("session: address: %w", err)
	}
	if err := evidence.CheckAddress(string(addr)); err != nil {
		return c, fmt.Errorf("session: address: %w", err)
	}
	exp, err := strconv.ParseInt(parts[2], 10, 64)
	if err != nil || exp <= 0 || strconv.FormatInt(exp, 10) != parts[2] {
		return c, errors.New("session: expiry is not a positive decimal number")
	}
	id, err := cookieB64.DecodeString(parts[3])
	if err != nil || len(id) != len(c.ID) {
		return c, errors.New("session: malformed id")
	}
	mac, err := cookieB64.DecodeString(parts[4])
	if err != nil || len(mac) != len(c.MAC) {
		return c, errors.New("session: malformed MAC")
	}
	c.Address, c.Expires = string(addr), time.Unix(exp, 0).UTC()
	copy(c.ID[:], id)
	copy(c.MAC[:], mac)
	return c, nil
}

// sessionMAC binds a session to the server's secret and to the account's password hash, so a
// new password ends every session signed in with the old one.
func (s *Server) sessionMAC(c session, passwordHash string) [32]byte {
	m := hmac.New(sha256.New, s.secret)
	fmt.Fprintf(m, "certmail session %s\n%s\n%d\n%x\n", sessionVersion, c.Address, c.Expires.Unix(), c.ID)
	io.WriteString(m, passwordHash)
	var out [32]byte
	m.Sum(out[:0])
	return out
}

// sessionScope is the CSRF scope of a session's forms.
func sessionScope(c session) string { return "session " + hex.EncodeToString(c.ID[:]) }

// loginScope is the CSRF scope of the sign-in form, which has no session yet: the cross-origin
// check in ServeHTTP is what stops another site's sign-in form; this token adds the same form
// check every other form has.
const loginScope = "login"

// secureForPasswords reports whether a password may travel on this request: over TLS, or from
// loopback (a local browser, or a proxy on this machine that terminated TLS).
func secureForPasswords(r *http.Request) bool {
	return r.TLS != nil || isLoopback(clientIP(r))
}

// refuseInsecure answers a request that would carry a password or a session in clear.
func (s *Server) refuseInsecure(w http.ResponseWriter, r *http.Request) {
	s.noticeLink(w, r, http.StatusForbidden, noticeData{Title: "Use the secure address",
		Message: "Passwords and sign-ins travel to this agent over HTTPS only. If you typed your password on this page, it crossed the network unencrypted: change it.",
		Link:    s.cfg.PublicURL + "/login", LinkText: "Sign in over HTTPS"})
}

// setSession sends the cookie for a fresh session of u.
func (s *Server) setSession(w http.ResponseWriter, r *http.Request, u store.User) error {
	c := session{Address: u.Address, Expires: s.now().Add(sessionLifetime).Truncate(time.Second)}
	if _, err := io.ReadFull(s.rand, c.ID[:]); err != nil {
		return fmt.Errorf("web: session id: %w", err)
	}
	c.MAC = s.sessionMAC(c, u.PasswordHash)
	http.SetCookie(w, &http.Cookie{Name: sessionCookie, Value: c.encode(), Path: "/", Expires: c.Expires,
		MaxAge: int(sessionLifetime / time.Second), HttpOnly: true, Secure: s.secureCookie(r), SameSite: http.SameSiteLaxMode})
	return nil
}

func (s *Server) clearSession(w http.ResponseWriter, r *http.Request) {
	http.SetCookie(w, &http.Cookie{Name: sessionCookie, Value: "", Path: "/", MaxAge: -1, HttpOnly: true,
		Secure: s.secureCookie(r), SameSite: http.SameSiteLaxMode})
}

// secureCookie: the browser sends the cookie over HTTPS only when it reached this page so, either
// directly or through a proxy the public URL names.
func (s *Server) secureCookie(r *http.Request) bool {
	return r.TLS != nil || strings.HasPrefix(s.cfg.PublicURL, "https://")
}

// currentSession returns the request's valid session and its account. ok is false when there is
// none (no cookie, malformed, expired, forged, or made before a password change); err is set
// when the account may no longer act (agent.KindForbidden) or the store failed.
func (s *Server) currentSession(r *http.Request) (c session, u store.User, ok bool, err error) {
	ck, err := r.Cookie(sessionCookie)
	if err != nil {
		return c, u, false, nil
	}
	if c, err = parseSession(ck.Value); err != nil || !s.now().Before(c.Expires) {
		return c, u, false, nil
	}
	if u, err = s.ag.Sender(r.Context(), c.Address); err != nil {
		return c, u, false, err
	}
	want := s.sessionMAC(c, u.PasswordHash)
	if !hmac.Equal(c.MAC[:], want[:]) {
		return c, u, false, nil
	}
	return c, u, true, nil
}

// signedIn is the gate of every page that needs a sender. When it returns false it has answered:
// a redirect to the sign-in page, or a page saying why the account may not go on.
func (s *Server) signedIn(w http.ResponseWriter, r *http.Request) (session, store.User, bool) {
	if !secureForPasswords(r) {
		s.refuseInsecure(w, r)
		return session{}, store.User{}, false
	}
	c, u, ok, err := s.currentSession(r)
	switch {
	case ok:
		if rec, isRec := w.(*recorder); isRec {
			rec.user = u.Address
		}
		return c, u, true
	case agent.KindOf(err) == agent.KindForbidden:
		var ae *agent.Error
		errors.As(err, &ae)
		s.clearSession(w, r)
		s.noticeLink(w, r, http.StatusForbidden, noticeData{Title: "You cannot go on", Message: sentence(ae.Message) +
			" Ask the agent's administrator.", Link: "/login", LinkText: "Sign in as someone else"})
	case err != nil:
		s.log.Error("web: session check", "err", err)
		s.notice(w, r, http.StatusServiceUnavailable, "Please try again in a minute", "The agent cannot check your sign-in right now. Reload this page in a minute.")
	default:
		next := "/messages"
		if r.Method == http.MethodGet || r.Method == http.MethodHead {
			next = r.URL.RequestURI()
		}
		http.Redirect(w, r, "/login?next="+url.QueryEscape(next), http.StatusSeeOther)
	}
	return session{}, store.User{}, false
}

// safeNext is where to go after signing in: a path on this site, never another site.
func safeNext(next string) string {
	u, err := url.Parse(next)
	if next == "" || err != nil || u.Scheme != "" || u.Host != "" || u.User != nil || u.Opaque != "" ||
		!strings.HasPrefix(next, "/") || strings.HasPrefix(next, "//") || strings.ContainsAny(next, "\\\r\n\t") {
		return "/messages"
	}
	return next
}

// senderPage is what every sender's page shows around its content: who is signed in, and the
// sign-out form.
type senderPage struct {
	Title string
	User  string
	CSRF  string
}

func (s *Server) senderPage(title string, c session, u store.User) senderPage {
	return senderPage{Title: title, User: u.Address, CSRF: s.csrfToken(sessionScope(c))}
}

type loginData struct {
	senderPage
	Address string
	Next    string
	Error   string
}

// fieldRef names one field of a form with the form's errors, for the "fielderror" template.
type fieldRef struct {
	Errors map[string]string
	Name   string
}

var senderFuncs = template.FuncMap{
	"field": func(errs map[string]string, name string) fieldRef { return fieldRef{errs, name} },
}

// loadSenderPages adds the sender's pages to the server's: each with layout.html and the
// sender's navigation, but the certificate, which is a document of its own made for print.
func (s *Server) loadSenderPages() {
	for _, name := range []string{"sender_login", "sender_list", "sender_compose", "sender_message", "sender_retract"} {
		s.pages[name] = template.Must(template.New(name).Funcs(pageFuncs).Funcs(senderFuncs).ParseFS(templateFiles,
			"templates/layout.html", "templates/sender_nav.html", "templates/"+name+".html"))
	}
	s.pages["sender_certificate"] = template.Must(template.New("sender_certificate").Funcs(pageFuncs).Funcs(senderFuncs).ParseFS(templateFiles,
		"templates/sender_certificate.html"))
}

// home is GET /: a sender's messages, or the sign-in page on the way there.
func (s *Server) home(w http.ResponseWriter, r *http.Request) {
	http.Redirect(w, r, "/messages", http.StatusSeeOther)
}

// loginPage is GET /login: the sign-in form, or straight on when already signed in.
func (s *Server) loginPage(w http.ResponseWriter, r *http.Request) {
	if !secureForPasswords(r) {
		s.refuseInsecure(w, r)
		return
	}
	next := safeNext(r.URL.Query().Get("next"))
	if _, _, ok, _ := s.currentSession(r); ok {
		http.Redirect(w, r, next, http.StatusSeeOther)
		return
	}
	s.render(w, r, http.StatusOK, "sender_login", loginData{senderPage: senderPage{Title: "Sign in", CSRF: s.csrfToken(loginScope)}, Next: next})
}

// login is POST /login: the address and password go through account.Authenticate, whose limits
// count failures per account and per client address; success sets the session cookie.
func (s *Server) login(w http.ResponseWriter, r *http.Request) {
	if !secureForPasswords(r) {
		s.refuseInsecure(w, r)
		return
	}
	r.Body = http.MaxBytesReader(w, r.Body, maxForm)
	if err := r.ParseForm(); err != nil || !s.csrfOK(r, loginScope) {
		s.noticeLink(w, r, http.StatusForbidden, noticeData{Title: "This form has expired",
			Message: "The sign-in form you sent did not come from this agent's page. Open the page again.",
			Link:    "/login", LinkText: "Sign in"})
		return
	}
	address := strings.TrimSpace(r.PostFormValue("address"))
	d := loginData{senderPage: senderPage{Title: "Sign in", CSRF: s.csrfToken(loginScope)}, Address: address,
		Next: safeNext(r.PostFormValue("next"))}
	u, err := s.acc.Authenticate(r.Context(), address, r.PostFormValue("password"), clientIP(r))
	switch {
	case err == nil:
		if err := s.setSession(w, r, u); err != nil {
			s.log.Error("web: sign-in", "err", err)
			s.notice(w, r, http.StatusServiceUnavailable, "Please try again in a minute", "The agent cannot sign you in right now.")
			return
		}
		if rec, ok := w.(*recorder); ok {
			rec.user = u.Address
		}
		http.Redirect(w, r, d.Next, http.StatusSeeOther)
		return
	case errors.Is(err, account.ErrRateLimited):
		w.Header().Set("Retry-After", "60")
		note(w, "rate-limited")
		d.Error = "Too many failed sign-ins for this account or from your address. Wait a minute, then try again."
		s.render(w, r, http.StatusTooManyRequests, "sender_login", d)
	case errors.Is(err, account.ErrBadCredentials):
		note(w, "auth")
		d.Error = "The address or the password is wrong."
		s.render(w, r, http.StatusUnauthorized, "sender_login", d)
	case errors.Is(err, account.ErrDisabled):
		note(w, "disabled")
		d.Error = "This account is disabled. Ask the agent's administrator."
		s.render(w, r, http.StatusForbidden, "sender_login", d)
	default:
		s.log.Error("web: sign-in", "err", err)
		s.notice(w, r, http.StatusServiceUnavailable, "Please try again in a minute", "The agent cannot sign you in right now.")
	}
}

// logout is POST /logout: the cookie goes, and the browser to the sign-in page.
func (s *Server) logout(w http.ResponseWriter, r *http.Request) {
	r.Body = http.MaxBytesReader(w, r.Body, maxForm)
	c, _, ok, _ := s.currentSession(r)
	if ok && (r.ParseForm() != nil || !s.csrfOK(r, sessionScope(c))) {
		s.formExpired(w, r, "/messages")
		return
	}
	s.clearSession(w, r)
	http.Redirect(w, r, "/login", http.StatusSeeOther)
}

// formExpired answers a sender's form without this session's CSRF token: nothing was changed.
func (s *Server) formExpired(w http.ResponseWriter, r *http.Request, back string) {
	s.noticeLink(w, r, http.StatusForbidden, noticeData{Title: "This form has expired",
		Message: "The form you sent did not come from a page of your current sign-in, so nothing was changed. Open the page again and use it there.",
		Link:    back, LinkText: "Open the page again"})
}
