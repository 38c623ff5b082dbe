package web

import (
	"crypto/hmac"
	"crypto/sha256"
	"encoding/base64"
	"errors"
	"mime"
	"net/http"
	"strconv"
	"strings"

	"certmail/agent"
	"certmail/evidence"
	"certmail/store"
)

// The recipient's pages (seed 004: the message-waiting mail links to the agent's site over TLS,
// where the recipient picks up; DESIGN.md §2 steps 4–6). The pickup token in the path is the
// recipient's credential, with the message password when the sender set one.

// maxForm bounds a pickup form's body: a CSRF token and a password.
const maxForm = 64 << 10

// csrfToken is the hidden field of the forms about one scope (a pickup token): an HMAC of the
// scope under the server's secret, so only a page this agent served for that scope carries it.
func (s *Server) csrfToken(scope string) string {
	m := hmac.New(sha256.New, s.secret)
	m.Write([]byte("certmail form\n" + scope))
	return base64.RawURLEncoding.EncodeToString(m.Sum(nil))
}

// csrfOK checks the csrf field of a posted form against scope.
func (s *Server) csrfOK(r *http.Request, scope string) bool {
	return hmac.Equal([]byte(r.PostFormValue("csrf")), []byte(s.csrfToken(scope)))
}

func pickupScope(tok string) string { return "pickup " + tok }

type pickupData struct {
	Title  string
	Token  string
	CSRF   string
	Client string
	View   agent.PickupView
	Error  string
}

func (s *Server) pickupData(r *http.Request, tok string, v agent.PickupView, errText string) pickupData {
	return pickupData{Title: "A certified message for you", Token: tok, CSRF: s.csrfToken(pickupScope(tok)),
		Client: clientIP(r), View: v, Error: errText}
}

// pickupPage is GET /pickup/{token}: what the recipient may know before deciding, and the two
// forms; once accepted, the message itself; once closed otherwise, why (410).
func (s *Server) pickupPage(w http.ResponseWriter, r *http.Request) {
	tok := r.PathValue("token")
	v, err := s.ag.Pickup(r.Context(), tok)
	switch {
	case err != nil:
		s.pageError(w, r, tok, err)
	case v.State == store.StateDelivered:
		s.showMessage(w, r, tok)
	case v.State == store.StateAccepted:
		// Relayed from another agent: the content waits for the sender's agent to countersign.
		s.notice(w, r, http.StatusOK, "Your acceptance is on record",
			"The message is released as soon as the sender's agent confirms the delivery, usually within seconds. Reload this page to read it.")
	case v.Why != "":
		s.notice(w, r, http.StatusGone, "This message can no longer be picked up", sentence(v.Why))
	default:
		s.render(w, r, http.StatusOK, "pickup", s.pickupData(r, tok, v, ""))
	}
}

// postedForm reads a pickup form and checks its CSRF token, answering 403 itself when it fails.
func (s *Server) postedForm(w http.ResponseWriter, r *http.Request, tok string) bool {
	r.Body = http.MaxBytesReader(w, r.Body, maxForm)
	if err := r.ParseForm(); err != nil || !s.csrfOK(r, pickupScope(tok)) {
		s.noticeLink(w, r, http.StatusForbidden, noticeData{Title: "This form has expired",
			Message: "The form you sent did not come from this message's page. Open the page again and decide there.",
			Link:    "/pickup/" + tok, LinkText: "Open the message's page"})
		return false
	}
	return true
}

// pickupAccept is POST /pickup/{token}/accept: the agent records the acceptance (DLV and ROD,
// with the client's address) and only then is the content released, on the page redirected to.
func (s *Server) pickupAccept(w http.ResponseWriter, r *http.Request) {
	tok := r.PathValue("token")
	if !s.postedForm(w, r, tok) {
		return
	}
	if _, err := s.ag.Accept(r.Context(), tok, agent.Acceptance{Password: r.PostFormValue("password"), Client: clientIP(r)}); err != nil {
		s.decisionError(w, r, tok, err)
		return
	}
	s.metrics.acceptances.Add(1)
	http.Redirect(w, r, "/pickup/"+tok, http.StatusSeeOther)
}

// pickupRefuse is POST /pickup/{token}/refuse: the agent records the refusal (REJ) and tells the
// sender.
func (s *Server) pickupRefuse(w http.ResponseWriter, r *http.Request) {
	tok := r.PathValue("token")
	if !s.postedForm(w, r, tok) {
		return
	}
	if err := s.ag.Refuse(r.Context(), tok, r.PostFormValue("password")); err != nil {
		s.decisionError(w, r, tok, err)
		return
	}
	s.metrics.refusals.Add(1)
	s.notice(w, r, http.StatusOK, "You refused this message",
		"The sender is told, with signed evidence of your refusal. Nothing of the message was released to you.")
}

// decisionError answers a failed acceptance or refusal. A wrong password shows the page again,
// with the error, so the recipient can try again.
func (s *Server) decisionError(w http.ResponseWriter, r *http.Request, tok string, err error) {
	var ae *agent.Error
	if errors.As(err, &ae) && ae.Kind == agent.KindForbidden {
		if v, verr := s.ag.Pickup(r.Context(), tok); verr == nil && v.Why == "" {
			note(w, "forbidden")
			s.render(w, r, http.StatusForbidden, "pickup", s.pickupData(r, tok, v, sentence(ae.Message)))
			return
		}
	}
	s.pageError(w, r, tok, err)
}

// pageError answers an agent error on a pickup page.
func (s *Server) pageError(w http.ResponseWriter, r *http.Request, tok string, err error) {
	var ae *agent.Error
	if !errors.As(err, &ae) {
		s.log.Error("web: pickup failed", "route", r.Pattern, "token", tokenRef(tok), "err", err)
		s.notice(w, r, http.StatusServiceUnavailable, "Please try again in a minute",
			"The agent cannot do this right now, and nothing was recorded. Reload this page in a minute.")
		return
	}
	switch ae.Kind {
	case agent.KindNotFound:
		s.notice(w, r, http.StatusNotFound, "This pickup link is not valid",
			"Check that the link was not cut short when you copied it from the e-mail.")
	case agent.KindGone:
		d := noticeData{Title: "This message can no longer be picked up", Message: sentence(ae.Message)}
		if v, err := s.ag.Pickup(r.Context(), tok); err == nil && v.State == store.StateDelivered {
			d.Title, d.Link, d.LinkText = "You have already accepted this message", "/pickup/"+tok, "Read the message"
			d.Message = "Your acceptance is on record. You can read the message again, but not accept it twice."
		}
		s.noticeLink(w, r, http.StatusGone, d)
	case agent.KindForbidden:
		s.noticeLink(w, r, http.StatusForbidden, noticeData{Title: "Not allowed", Message: sentence(ae.Message),
			Link: "/pickup/" + tok, LinkText: "Open the message's page"})
	case agent.KindUnavailable: // the agent's own limit on wrong passwords
		s.notice(w, r, http.StatusTooManyRequests, "Too many attempts", sentence(ae.Message))
	default:
		s.notice(w, r, http.StatusUnprocessableEntity, "This cannot be done", sentence(ae.Message))
	}
}

// messageData is the page of an accepted message.
type messageData struct {
	Title         string
	Token         string
	View          agent.PickupView
	Content       evidence.Hash
	Matches       bool // H(L,M) of what is shown is the commitment the recipient was notified of
	Shown         *shown
	Files         []fileLink
	FilesWithheld bool
}

type fileLink struct {
	N          int
	Name, Type string
	Size       int64
	Hash       evidence.Hash
}

// headContent answers HEAD for a route that releases content, without releasing it: a link
// checker's HEAD is no retrieval, and must not be signed as one.
func (s *Server) headContent(w http.ResponseWriter, r *http.Request, tok string) bool {
	if r.Method != http.MethodHead {
		return false
	}
	v, err := s.ag.Pickup(r.Context(), tok)
	switch {
	case err != nil:
		s.pageError(w, r, tok, err)
	case v.State != store.StateDelivered:
		s.notice(w, r, http.StatusForbidden, "Not allowed", "The content is released only after you accept the message.")
	default:
		w.WriteHeader(http.StatusOK)
	}
	return true
}

// showMessage shows an accepted message. Showing it is a retrieval: agent.Content signs RET.
func (s *Server) showMessage(w http.ResponseWriter, r *http.Request, tok string) {
	if s.headContent(w, r, tok) {
		return
	}
	m, v, err := s.ag.Content(r.Context(), tok, clientIP(r))
	if err != nil {
		s.pageError(w, r, tok, err)
		return
	}
	s.metrics.retrievals.Add(1)
	d := messageData{Title: "Your certified message", Token: tok, View: v, Content: evidence.Sum(m),
		Matches: evidence.Commitment(v.Label, m) == v.Commitment}
	sh, err := readMessage(m)
	if err != nil {
		s.log.Warn("web: cannot read an accepted message for display", "label", v.Label, "err", err)
		sh = &shown{}
	}
	d.Shown = sh
	files, err := checkedFiles(m, sh, s.cfg.Limits)
	if err != nil {
		s.log.Warn("web: attachments withheld", "label", v.Label, "err", err)
		d.FilesWithheld = len(sh.Files) > 0
	}
	for i, f := range files {
		d.Files = append(d.Files, fileLink{N: i + 1, Name: f.Name, Type: f.Type, Size: int64(len(f.Data)), Hash: f.Hash})
	}
	s.render(w, r, http.StatusOK, "message", d)
}

// pickupMessage is GET /pickup/{token}/message.eml: M, the exact bytes certified.
func (s *Server) pickupMessage(w http.ResponseWriter, r *http.Request) {
	tok := r.PathValue("token")
	if s.headContent(w, r, tok) {
		return
	}
	m, v, err := s.ag.Content(r.Context(), tok, clientIP(r))
	if err != nil {
		s.pageError(w, r, tok, err)
		return
	}
	s.metrics.retrievals.Add(1)
	download(w, "message/rfc822", v.Label.String()+".eml", m)
}

// pickupAttachment is GET /pickup/{token}/attachments/{n}: the n-th file of M (from 1), when
// this package and mailfmt read the same files out of M (checkedFiles).
func (s *Server) pickupAttachment(w http.ResponseWriter, r *http.Request) {
	tok := r.PathValue("token")
	n, err := strconv.Atoi(r.PathValue("n"))
	if err != nil || n < 1 {
		s.pageNotFound(w, r)
		return
	}
	if s.headContent(w, r, tok) {
		return
	}
	m, v, err := s.ag.Content(r.Context(), tok, clientIP(r))
	if err != nil {
		s.pageError(w, r, tok, err)
		return
	}
	s.metrics.retrievals.Add(1)
	sh, err := readMessage(m)
	var files []file
	if err == nil {
		files, err = checkedFiles(m, sh, s.cfg.Limits)
	}
	if err != nil {
		s.log.Warn("web: attachments withheld", "label", v.Label, "err", err)
		s.noticeLink(w, r, http.StatusNotFound, noticeData{Title: "This attachment cannot be offered on its own",
			Message: "Download the whole message instead: it holds every attachment.",
			Link:    "/pickup/" + tok + "/message.eml", LinkText: "Download the whole message"})
		return
	}
	if n > len(files) {
		s.pageNotFound(w, r)
		return
	}
	f := files[n-1]
	download(w, f.Type, f.Name, f.Data)
}

// download sends a file to be saved, never shown: attachment disposition, no sniffing, and a
// sandbox should a browser display it anyway.
func download(w http.ResponseWriter, mediaType, name string, data []byte) {
	h := w.Header()
	if mediaType == "" || strings.ContainsAny(mediaType, "\r\n") {
		mediaType = "application/octet-stream"
	}
	h.Set("Content-Type", mediaType)
	cd := mime.FormatMediaType("attachment", map[string]string{"filename": name})
	if cd == "" {
		cd = "attachment"
	}
	h.Set("Content-Disposition", cd)
	h.Set("Content-Security-Policy", downloadCSP)
	h.Set("Content-Length", strconv.Itoa(len(data)))
	w.Write(data)
}

// sentence makes an agent's message a sentence: capital first letter, final full stop.
func sentence(s string) string {
	if s == "" {
		return s
	}
	s = strings.ToUpper(s[:1]) + s[1:]
	if !strings.HasSuffix(s, ".") {
		s += "."
	}
	return s
}
