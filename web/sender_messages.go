package web

import (
	"errors"
	"fmt"
	"mime"
	"net/http"
	"strconv"
	"time"

	"certmail/agent"
	"certmail/evidence"
	"certmail/protocol"
	"certmail/store"
)

// listPageSize is how many messages one page of /messages shows.
const listPageSize = 25

type listRow struct {
	Label      string
	Recipient  string
	Subject    string
	State      string
	StateClass string
	Submitted  time.Time
	Deadline   time.Time
	Open       bool // nothing final happened yet
}

type listData struct {
	senderPage
	Rows       []listRow
	Page       int
	Prev, Next string
}

// messagesPage is GET /messages?page=N: the sender's messages, newest first.
func (s *Server) messagesPage(w http.ResponseWriter, r *http.Request) {
	c, u, ok := s.signedIn(w, r)
	if !ok {
		return
	}
	page := 1
	if p := r.URL.Query().Get("page"); p != "" {
		n, err := strconv.Atoi(p)
		if err != nil || n < 1 || n > 1<<20 {
			s.notice(w, r, http.StatusNotFound, "No such page", "The list of your messages has pages numbered from 1.")
			return
		}
		page = n
	}
	items, more, err := s.ag.Items(r.Context(), u.Address, (page-1)*listPageSize, listPageSize)
	if err != nil {
		s.senderError(w, r, err)
		return
	}
	now := s.now()
	d := listData{senderPage: s.senderPage("Your certified messages", c, u), Page: page}
	for _, it := range items {
		words, class := stateWords(it, now)
		d.Rows = append(d.Rows, listRow{Label: it.Label.String(), Recipient: it.Recipient, Subject: it.Subject, State: words,
			StateClass: class, Submitted: it.Submitted, Deadline: it.Deadline, Open: !it.State.Final()})
	}
	if page > 1 {
		d.Prev = "/messages?page=" + strconv.Itoa(page-1)
	}
	if more {
		d.Next = "/messages?page=" + strconv.Itoa(page+1)
	}
	s.render(w, r, http.StatusOK, "sender_list", d)
}

// senderLabel reads the {label} of a sender's page, answering 404 itself when it is none.
func (s *Server) senderLabel(w http.ResponseWriter, r *http.Request) (evidence.Label, bool) {
	l, err := evidence.ParseLabel(r.PathValue("label"))
	if err != nil {
		s.notFoundMessage(w, r)
		return l, false
	}
	return l, true
}

// notFoundMessage is the answer for a label that is unknown or another sender's: the same, so
// the page tells nobody which labels exist.
func (s *Server) notFoundMessage(w http.ResponseWriter, r *http.Request) {
	s.noticeLink(w, r, http.StatusNotFound, noticeData{Title: "No such message",
		Message: "None of your messages has this label. Check that the link was not cut short.",
		Link:    "/messages", LinkText: "Your messages"})
}

// senderError answers an agent error on a sender's page.
func (s *Server) senderError(w http.ResponseWriter, r *http.Request, err error) {
	var ae *agent.Error
	if !errors.As(err, &ae) {
		s.log.Error("web: sender's page failed", "route", r.Pattern, "err", err)
		s.notice(w, r, http.StatusServiceUnavailable, "Please try again in a minute",
			"The agent cannot do this right now, and nothing was changed. Reload this page in a minute.")
		return
	}
	switch ae.Kind {
	case agent.KindNotFound:
		s.notFoundMessage(w, r)
	case agent.KindGone:
		s.noticeLink(w, r, http.StatusConflict, noticeData{Title: "This can no longer be done", Message: sentence(ae.Message),
			Link: "/messages", LinkText: "Your messages"})
	case agent.KindForbidden:
		s.notice(w, r, http.StatusForbidden, "Not allowed", sentence(ae.Message))
	default:
		s.notice(w, r, http.StatusUnprocessableEntity, "This cannot be done", sentence(ae.Message))
	}
}

// ownStatus is the item of {label} with its timeline, when it is the signed-in sender's.
func (s *Server) ownStatus(w http.ResponseWriter, r *http.Request) (session, store.User, agent.Status, bool) {
	c, u, ok := s.signedIn(w, r)
	if !ok {
		return c, u, agent.Status{}, false
	}
	l, ok := s.senderLabel(w, r)
	if !ok {
		return c, u, agent.Status{}, false
	}
	st, err := s.ag.Status(r.Context(), u.Address, l)
	if err != nil {
		s.senderError(w, r, err)
		return c, u, st, false
	}
	return c, u, st, true
}

type timelineData struct {
	senderPage
	Item       store.Item
	Mode       string
	State      string
	StateClass string
	Steps      []step
	CanRetract bool
	Posted     int // recipients of the submission just made, for the banner after compose
}

// messagePage is GET /messages/{label}: the state in one sentence, then every step with its time,
// who signed it and what it proves, and the buttons.
func (s *Server) messagePage(w http.ResponseWriter, r *http.Request) {
	c, u, st, ok := s.ownStatus(w, r)
	if !ok {
		return
	}
	b, err := s.ag.Bundle(r.Context(), st.Item.Label, false)
	if err != nil {
		s.senderError(w, r, err)
		return
	}
	now := s.now()
	_, class := stateWords(st.Item, now)
	d := timelineData{senderPage: s.senderPage("Message "+st.Item.Label.String(), c, u), Item: st.Item, Mode: modeWords(st.Item.Protocol),
		State: stateSentence(st.Item, now), StateClass: class, Steps: timeline(b), CanRetract: !st.Item.State.Final()}
	if n, err := strconv.Atoi(r.URL.Query().Get("posted")); err == nil && n > 0 && n <= 1000 {
		d.Posted = n
	}
	s.render(w, r, http.StatusOK, "sender_message", d)
}

// retractPage is GET /messages/{label}/retract: the confirmation, with the form that retracts.
func (s *Server) retractPage(w http.ResponseWriter, r *http.Request) {
	c, u, st, ok := s.ownStatus(w, r)
	if !ok {
		return
	}
	if st.Item.State.Final() {
		s.noticeLink(w, r, http.StatusConflict, noticeData{Title: "This message can no longer be retracted",
			Message: stateSentence(st.Item, s.now()), Link: "/messages/" + st.Item.Label.String(), LinkText: "Back to the message"})
		return
	}
	s.render(w, r, http.StatusOK, "sender_retract", timelineData{senderPage: s.senderPage("Retract this message?", c, u), Item: st.Item,
		State: stateSentence(st.Item, s.now())})
}

// retract is POST /messages/{label}/retract: the agent signs RTR, and the recipient's pickup page
// says the message was retracted.
func (s *Server) retract(w http.ResponseWriter, r *http.Request) {
	c, u, ok := s.signedIn(w, r)
	if !ok {
		return
	}
	l, ok := s.senderLabel(w, r)
	if !ok {
		return
	}
	r.Body = http.MaxBytesReader(w, r.Body, maxForm)
	if err := r.ParseForm(); err != nil || !s.csrfOK(r, sessionScope(c)) {
		s.formExpired(w, r, "/messages/"+l.String())
		return
	}
	if err := s.ag.Retract(r.Context(), u.Address, l); err != nil {
		s.senderError(w, r, err)
		return
	}
	http.Redirect(w, r, "/messages/"+l.String(), http.StatusSeeOther)
}

// bundleDownload is GET /messages/{label}/bundle: the evidence with the message, or with
// ?message=no without it (to hand an arbiter the evidence alone).
func (s *Server) bundleDownload(w http.ResponseWriter, r *http.Request) {
	_, _, st, ok := s.ownStatus(w, r)
	if !ok {
		return
	}
	withMessage := r.URL.Query().Get("message") != "no"
	b, err := s.ag.Bundle(r.Context(), st.Item.Label, withMessage)
	if err != nil {
		s.senderError(w, r, err)
		return
	}
	enc, err := b.Encode()
	if err != nil {
		s.senderError(w, r, fmt.Errorf("web: encode bundle %s: %w", st.Item.Label, err))
		return
	}
	name := st.Item.Label.String() + ".bundle"
	if !withMessage {
		name = st.Item.Label.String() + "-evidence.bundle"
	}
	h := w.Header()
	h.Set("Content-Type", bundleType)
	h.Set("Content-Disposition", mime.FormatMediaType("attachment", map[string]string{"filename": name}))
	h.Set("Content-Security-Policy", downloadCSP)
	h.Set("Content-Length", strconv.Itoa(len(enc)))
	w.Write(enc)
}

type certificateData struct {
	Title   string
	Item    store.Item
	Agent   string
	Verdict *evidence.Verdict
	Notes   []certNote
	Keys    []certKey
	Weighed time.Time
	Message bool // the bundle checked carries the message, so its hash was checked too
	Bundle  string
	Command string
}

// certNote is a valid note as the verdict states it, with its leaf hash (SHA-256 of the note),
// which names it in the bundle and in the evidence log.
type certNote struct {
	evidence.Fact
	Leaf evidence.Hash
}

type certKey struct {
	Key, ID string
	Agent   bool // the agent's own key, pinned for the verdict
}

// certificate is GET /messages/{label}/certificate: the evidence as a printable page. The
// verdict is the one `certmail verify` gives (evidence.Bundle.Check, then protocol.JudgeAt), with
// the agent's own key pinned, on the bundle the sender downloads.
func (s *Server) certificate(w http.ResponseWriter, r *http.Request) {
	_, _, st, ok := s.ownStatus(w, r)
	if !ok {
		return
	}
	b, err := s.ag.Bundle(r.Context(), st.Item.Label, true)
	if err != nil {
		s.senderError(w, r, err)
		return
	}
	pinned, err := evidence.NewKeys(s.ag.VerifierKey())
	if err != nil {
		s.senderError(w, r, fmt.Errorf("web: the agent's own key: %w", err))
		return
	}
	now := s.now()
	v := protocol.JudgeAt(b.Check(pinned), now)
	name := st.Item.Label.String() + ".bundle"
	_, withMessage := b.Item(evidence.ItemMessage)
	d := certificateData{Title: "Evidence certificate " + st.Item.Label.String(), Item: st.Item, Agent: s.ag.Name(),
		Verdict: v, Weighed: now, Message: withMessage, Bundle: "/messages/" + st.Item.Label.String() + "/bundle",
		Command: "certmail verify " + name + " --key '" + s.ag.VerifierKey() + "' --at " + evidence.FormatTime(now)}
	for _, f := range v.Facts {
		d.Notes = append(d.Notes, certNote{Fact: f, Leaf: b.Notes[f.Note-1].Leaf()})
	}
	for _, k := range b.Keys {
		d.Keys = append(d.Keys, certKey{Key: k, ID: evidence.KeyID(k), Agent: k == s.ag.VerifierKey()})
	}
	s.render(w, r, http.StatusOK, "sender_certificate", d)
}
