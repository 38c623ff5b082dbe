// Package web is the HTTP face of the delivery agent (DESIGN.md §7): the JSON API senders and
// programs submit and follow their messages with, the pickup pages (and their API, for programs
// and the pages' script) where a recipient accepts or refuses a certified message and then
// reads it, /healthz and /metrics for operators, and the public facts: the evidence log at
// /log/ and the agent's key and log at /.well-known/certmail.
//
// Every decision is the agent's: this package authenticates, decodes, renders and maps errors to
// HTTP, and nothing else. It must never release content except through agent.Content (which
// signs RET), never answer 201 before agent.Submit returned, and never log a pickup token, a
// password, an Authorization header, a session cookie or a message body.
//
// Pages are server-rendered html/template and work without JavaScript; the one script,
// static/pickup.js, only adds signing in the browser to the pickup page (no inline script: the
// policy allows same-origin scripts only). Every response carries a strict
// Content-Security-Policy, and every state-changing form and pickup API request carries a CSRF
// token. The sender's pages (sign-in, compose, list, timeline, printable certificate) are in
// sender*.go, with a session cookie after sign-in (sender.go).
package web

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"io"
	"log/slog"
	"net"
	"net/http"
	"strings"
	"time"

	"certmail/account"
	"certmail/agent"
	"certmail/mailfmt"
)

// Config is what the web face needs besides the agent and the accounts.
type Config struct {
	// PublicURL is the base of the links the API returns, e.g. https://certmail.example.
	PublicURL string
	// Limits bound API submissions, as for SMTP (mailfmt.ParseSubmission).
	Limits mailfmt.Limits
	// Secret keys the HMAC of the forms' CSRF tokens: at least 16 random bytes, the same on every
	// node behind one public URL. When shorter, New draws a fresh one, good for this process only.
	Secret []byte
	// Now and Rand may be nil for the wall clock and crypto/rand.
	Now    func() time.Time
	Rand   io.Reader
	Logger *slog.Logger // nil discards
	// Log serves the evidence log's files read-only (evlog.Handler, paths relative to the log's
	// prefix) at /log/, and LogOrigin is its checkpoint origin line; nil serves no log.
	Log       http.Handler
	LogOrigin string
}

// Server serves the API, the pickup pages, /healthz and /metrics. It is an http.Handler.
type Server struct {
	cfg     Config
	ag      *agent.Agent
	acc     *account.Accounts
	log     *slog.Logger
	now     func() time.Time
	rand    io.Reader
	secret  []byte
	mux     *http.ServeMux
	pages   pages
	metrics *metrics
	origin  *http.CrossOriginProtection
}

// New returns the web face of ag, authenticating senders with acc.
func New(cfg Config, ag *agent.Agent, acc *account.Accounts) *Server {
	s := &Server{cfg: cfg, ag: ag, acc: acc, log: cfg.Logger, now: cfg.Now, rand: cfg.Rand,
		secret: cfg.Secret, mux: http.NewServeMux(), pages: loadPages(), metrics: newMetrics(),
		origin: http.NewCrossOriginProtection()}
	s.cfg.PublicURL = strings.TrimRight(cfg.PublicURL, "/")
	if s.log == nil {
		s.log = slog.New(slog.DiscardHandler)
	}
	if s.now == nil {
		s.now = time.Now
	}
	if s.rand == nil {
		s.rand = rand.Reader
	}
	if len(s.secret) < 16 {
		s.secret = make([]byte, 32)
		if _, err := io.ReadFull(rand.Reader, s.secret); err != nil {
			panic("web: no randomness for the form secret: " + err.Error())
		}
		s.log.Warn("web: no form secret configured; forms served by this process stop working when it restarts")
	}
	s.routes()
	return s
}

func (s *Server) routes() {
	m := s.mux
	// JSON API (api.go). Every route authenticates the sender itself.
	m.HandleFunc("POST /api/v1/messages", s.apiSubmit)
	m.HandleFunc("GET /api/v1/messages/{label}", s.apiStatus)
	m.HandleFunc("GET /api/v1/messages/{label}/bundle", s.apiBundle)
	m.HandleFunc("POST /api/v1/messages/{label}/retract", s.apiRetract)
	// The pickup API (pickup_api.go): the pickup pages for programs and the pages' script.
	m.HandleFunc("GET /api/v1/pickup/{token}", s.apiPickup)
	m.HandleFunc("POST /api/v1/pickup/{token}/key", s.apiPickupKey)
	m.HandleFunc("GET /api/v1/pickup/{token}/cod", s.apiPickupCOD)
	m.HandleFunc("POST /api/v1/pickup/{token}/accept", s.apiPickupAccept)
	m.HandleFunc("POST /api/v1/pickup/{token}/refuse", s.apiPickupRefuse)
	m.HandleFunc("GET /api/v1/pickup/{token}/message.eml", s.apiPickupMessage)
	m.HandleFunc("POST /api/v1/published", s.apiPublish)
	m.HandleFunc("GET /api/v1/published/{hash}", s.apiPublished)
	m.HandleFunc("/api/", s.apiNotFound)

	// The recipient's pickup pages (pickup.go); the token in the path is the credential.
	m.HandleFunc("GET /pickup/{token}", s.pickupPage)
	m.HandleFunc("POST /pickup/{token}/accept", s.pickupAccept)
	m.HandleFunc("POST /pickup/{token}/refuse", s.pickupRefuse)
	m.HandleFunc("GET /pickup/{token}/message.eml", s.pickupMessage)
	m.HandleFunc("GET /pickup/{token}/attachments/{n}", s.pickupAttachment)

	// The sender's pages (sender*.go); after sign-in a session cookie is the credential.
	s.loadSenderPages()
	m.HandleFunc("GET /{$}", s.home)
	m.HandleFunc("GET /login", s.loginPage)
	m.HandleFunc("POST /login", s.login)
	m.HandleFunc("POST /logout", s.logout)
	m.HandleFunc("GET /messages", s.messagesPage)
	m.HandleFunc("POST /messages", s.compose)
	m.HandleFunc("GET /messages/new", s.composePage)
	m.HandleFunc("GET /messages/{label}", s.messagePage)
	m.HandleFunc("GET /messages/{label}/retract", s.retractPage)
	m.HandleFunc("POST /messages/{label}/retract", s.retract)
	m.HandleFunc("GET /messages/{label}/bundle", s.bundleDownload)
	m.HandleFunc("GET /messages/{label}/certificate", s.certificate)

	// The public evidence log (C2SP tlog-tiles) and the agent's keys and log (log.go).
	if s.cfg.Log != nil {
		m.Handle("GET /log/", http.StripPrefix("/log", s.cfg.Log))
	}
	m.HandleFunc("GET /.well-known/certmail", s.wellKnown)

	m.Handle("GET /static/", http.StripPrefix("/static/", staticFiles()))
	m.HandleFunc("GET /healthz", s.healthz)
	m.HandleFunc("GET /metrics", func(w http.ResponseWriter, r *http.Request) { s.metrics.serve(w, r, s.ag.LogAppended()) })
	m.HandleFunc("/", s.pageNotFound)
}

// ServeHTTP sets the security headers, refuses cross-origin browser writes, and logs and counts
// every request.
func (s *Server) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	start := time.Now()
	rec := &recorder{ResponseWriter: w, status: http.StatusOK}
	h := w.Header()
	h.Set("Content-Security-Policy", pageCSP)
	h.Set("X-Frame-Options", "DENY")
	h.Set("X-Content-Type-Options", "nosniff")
	h.Set("Referrer-Policy", "no-referrer") // pickup tokens are in URLs
	h.Set("Cache-Control", "no-store")
	if err := s.origin.Check(r); err != nil {
		// A browser on another site is posting here: with Basic credentials cached, a form
		// could retract a message; with a pickup link known, accept one.
		if isAPI(r) {
			s.problem(rec, r, http.StatusForbidden, "cross-origin", "a page on another site may not post to this agent")
		} else {
			again := "Open the link in your e-mail again and use the buttons on that page."
			if !strings.HasPrefix(r.URL.Path, "/pickup/") {
				again = "Open " + s.cfg.PublicURL + " again and use the forms on its pages."
			}
			s.notice(rec, r, http.StatusForbidden, "This form did not come from this site", again)
		}
	} else {
		s.mux.ServeHTTP(rec, r)
	}
	route := r.Pattern
	if route == "" {
		route = "unmatched"
	}
	s.metrics.request(route, rec.status)
	attrs := []slog.Attr{
		slog.String("method", r.Method), slog.String("route", route), slog.String("path", logPath(r.URL.Path)),
		slog.Int("status", rec.status), slog.Int64("bytes", rec.bytes),
		slog.Duration("duration", time.Since(start)), slog.String("client", clientIP(r)),
	}
	if rec.problem != "" {
		attrs = append(attrs, slog.String("problem", rec.problem))
	}
	if rec.user != "" {
		attrs = append(attrs, slog.String("user", rec.user))
	}
	s.log.LogAttrs(r.Context(), slog.LevelInfo, "http", attrs...)
}

// pageCSP allows the agent's own stylesheet, scripts, forms and API, and nothing else: no
// inline script, no frames.
const pageCSP = "default-src 'self'; frame-ancestors 'none'; base-uri 'none'; form-action 'self'"

// downloadCSP is for files from a message: whatever they are, a browser runs nothing of them.
const downloadCSP = "default-src 'none'; frame-ancestors 'none'; sandbox"

func isAPI(r *http.Request) bool { return strings.HasPrefix(r.URL.Path, "/api/") }

// recorder remembers what a handler answered, for the access log and the metrics.
type recorder struct {
	http.ResponseWriter
	status      int
	bytes       int64
	wroteHeader bool
	problem     string // the problem code or page reason, for the log
	user        string // the authenticated sender, for the log
}

func (r *recorder) WriteHeader(code int) {
	if !r.wroteHeader {
		r.status, r.wroteHeader = code, true
	}
	r.ResponseWriter.WriteHeader(code)
}

func (r *recorder) Write(b []byte) (int, error) {
	r.wroteHeader = true
	n, err := r.ResponseWriter.Write(b)
	r.bytes += int64(n)
	return n, err
}

func (r *recorder) Unwrap() http.ResponseWriter { return r.ResponseWriter }

// note records a reason for the access log when w is the server's recorder.
func note(w http.ResponseWriter, problem string) {
	if rec, ok := w.(*recorder); ok {
		rec.problem = problem
	}
}

// logPath is the request path as it may be logged: a pickup token becomes a prefix of its hash.
func logPath(p string) string {
	for _, prefix := range []string{"/pickup/", "/api/v1/pickup/"} {
		rest, ok := strings.CutPrefix(p, prefix)
		if !ok {
			continue
		}
		tok, tail, _ := strings.Cut(rest, "/")
		if tail != "" {
			tail = "/" + tail
		}
		return prefix + tokenRef(tok) + tail
	}
	return p
}

// tokenRef names a pickup token in logs without revealing it: the last 12 hex digits of the hash
// the store keeps (agent.TokenHash, which begins with the token's time), enough to find the item.
func tokenRef(tok string) string {
	h := agent.TokenHash(tok)
	return "tok:" + hex.EncodeToString(h[len(h)-6:])
}

// clientIP is the address of the client as the connection shows it (no proxy headers are
// trusted): it goes into DLV and RET evidence and the login limits.
func clientIP(r *http.Request) string {
	host, _, err := net.SplitHostPort(r.RemoteAddr)
	if err != nil {
		return r.RemoteAddr
	}
	return host
}

func isLoopback(ip string) bool {
	a := net.ParseIP(ip)
	return a != nil && a.IsLoopback()
}

// healthToken is a pickup token no item has (the agent's tokens are 43 characters): looking it
// up is a read that must find nothing, which shows the store answers.
const healthToken = "healthz"

// healthz answers 200 "ok" when the store answers a read.
func (s *Server) healthz(w http.ResponseWriter, r *http.Request) {
	ctx, cancel := context.WithTimeout(r.Context(), 5*time.Second)
	defer cancel()
	_, err := s.ag.Pickup(ctx, healthToken)
	w.Header().Set("Content-Type", "text/plain; charset=utf-8")
	if agent.KindOf(err) != agent.KindNotFound {
		s.log.Error("web: health check: the store does not answer", "err", err)
		note(w, "store")
		w.WriteHeader(http.StatusServiceUnavailable)
		io.WriteString(w, "store unavailable\n")
		return
	}
	io.WriteString(w, "ok\n")
}

// readBody reads at most max bytes of the request body; more is a *http.MaxBytesError.
func readBody(w http.ResponseWriter, r *http.Request, max int64) ([]byte, error) {
	b, err := io.ReadAll(http.MaxBytesReader(w, r.Body, max))
	var tooBig *http.MaxBytesError
	if errors.As(err, &tooBig) {
		return nil, tooBig
	}
	return b, err
}
