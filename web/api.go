package web

import (
	"encoding/json"
	"errors"
	"fmt"
	"mime"
	"net/http"
	"slices"
	"strings"

	"certmail/account"
	"certmail/agent"
	"certmail/api"
	"certmail/evidence"
	"certmail/mailfmt"
	"certmail/store"
)

// basicRealm is the challenge of 401 answers (RFC 7617).
const basicRealm = `Basic realm="certmail", charset="UTF-8"`

// authenticate checks the sender's HTTP Basic credentials, over TLS only (or from loopback, for
// a proxy or a local program), and answers the refusal itself when it returns false.
func (s *Server) authenticate(w http.ResponseWriter, r *http.Request) (store.User, bool) {
	ip := clientIP(r)
	if r.TLS == nil && !isLoopback(ip) {
		detail := "this API takes passwords over HTTPS only: use " + s.cfg.PublicURL
		if r.Header.Get("Authorization") != "" {
			detail += "; your password just crossed the network unencrypted, so change it"
		}
		s.problem(w, r, http.StatusForbidden, "tls", detail)
		return store.User{}, false
	}
	addr, pw, ok := r.BasicAuth()
	if !ok {
		w.Header().Set("WWW-Authenticate", basicRealm)
		s.problem(w, r, http.StatusUnauthorized, "auth", "log in with HTTP Basic authentication: your certmail address and password")
		return store.User{}, false
	}
	u, err := s.acc.Authenticate(r.Context(), addr, pw, ip)
	switch {
	case err == nil:
		if rec, ok := w.(*recorder); ok {
			rec.user = u.Address
		}
		return u, true
	case errors.Is(err, account.ErrRateLimited):
		w.Header().Set("Retry-After", "60")
		s.problem(w, r, http.StatusTooManyRequests, "rate-limited", "too many failed logins for this account or from this address; try again in a minute")
	case errors.Is(err, account.ErrBadCredentials):
		w.Header().Set("WWW-Authenticate", basicRealm)
		s.problem(w, r, http.StatusUnauthorized, "auth", "the address or the password is wrong")
	case errors.Is(err, account.ErrDisabled):
		s.problem(w, r, http.StatusForbidden, "disabled", "this account is disabled; ask the agent's administrator")
	default:
		s.apiError(w, r, err)
	}
	return store.User{}, false
}

// apiSubmit is POST /api/v1/messages: a message/rfc822 body is the message itself; an
// application/json body is composed into one (compose.go). Either way it passes through
// mailfmt.ParseSubmission, as mail submitted over SMTP does, then agent.Submit.
func (s *Server) apiSubmit(w http.ResponseWriter, r *http.Request) {
	u, ok := s.authenticate(w, r)
	if !ok {
		return
	}
	now := s.now()
	lim := s.limits()
	mt, _, _ := mime.ParseMediaType(r.Header.Get("Content-Type"))
	var raw []byte
	var to []string   // the ?to= list; nil: the message's To and Cc (and Bcc)
	var want []string // the JSON "to", which the composed message must name exactly
	switch mt {
	case "message/rfc822":
		body, err := readBody(w, r, lim.MaxBytes)
		var tooBig *http.MaxBytesError
		if errors.As(err, &tooBig) {
			s.notAccepted(w, r, u.Address, "", http.StatusRequestEntityTooLarge, mailfmt.CodeSize,
				fmt.Sprintf("the message is larger than this agent accepts (%d bytes): send fewer or smaller attachments", tooBig.Limit))
			return
		}
		if err != nil {
			s.apiError(w, r, err)
			return
		}
		raw = body
		if q := r.URL.Query()["to"]; len(q) > 0 {
			if to, err = queryRecipients(q); err != nil {
				s.problem(w, r, http.StatusUnprocessableEntity, "field", err.Error())
				return
			}
			if len(to) > lim.MaxRecipients {
				s.notAccepted(w, r, u.Address, "", http.StatusUnprocessableEntity, mailfmt.CodeRecipients,
					fmt.Sprintf("?to= names %d recipients; this agent certifies at most %d per message: split it", len(to), lim.MaxRecipients))
				return
			}
		}
	case "application/json":
		body, err := readBody(w, r, jsonLimit(lim.MaxBytes))
		if err != nil {
			s.apiError(w, r, err)
			return
		}
		js, err := decodeSubmission(body)
		if err != nil {
			s.problem(w, r, http.StatusBadRequest, "json", err.Error())
			return
		}
		if raw, err = js.compose(u.Address, s.ag.Name(), now, s.rand); err != nil {
			s.fieldError(w, r, err)
			return
		}
		want, _ = js.recipients()
	default:
		w.Header().Set("Accept-Post", "message/rfc822, application/json")
		s.problem(w, r, http.StatusUnsupportedMediaType, "media-type",
			"send the message as Content-Type: message/rfc822, or as application/json {\"to\":[…],\"subject\":…,\"text\":…}")
		return
	}
	sub, err := mailfmt.ParseSubmission(raw, lim, now, mailfmt.Options{})
	var me *mailfmt.Error
	if errors.As(err, &me) {
		s.notAccepted(w, r, u.Address, "", me.HTTPStatus, me.Code, me.Message)
		return
	}
	if err != nil {
		s.apiError(w, r, err)
		return
	}
	if sub.From != u.Address {
		s.notAccepted(w, r, u.Address, sub.Subject, http.StatusForbidden, "sender",
			fmt.Sprintf("the message is From %s, but you are logged in as %s: certmail certifies only mail from your own address", sub.From, u.Address))
		return
	}
	if want != nil && !slices.Equal(sub.Recipients, want) {
		s.problem(w, r, http.StatusUnprocessableEntity, "field", "to: the message would not name exactly these recipients")
		return
	}
	rcpts := to
	if rcpts == nil {
		rcpts = append(append([]string(nil), sub.Recipients...), sub.Bcc...)
	}
	o := sub.Options
	postings, err := s.ag.Submit(r.Context(), agent.Submission{Sender: u.Address, Recipients: rcpts, Message: sub.Message,
		Subject: sub.Subject, Protocol: o.Mode, Deadline: o.Deadline, Receipt: string(o.Receipt), Notify: string(o.Notify),
		Password: o.Password, Hint: o.PasswordHint, Client: clientIP(r), MessageID: sub.MessageID, Attachments: sub.Attachments})
	if err != nil {
		s.apiError(w, r, err)
		return
	}
	s.metrics.submissions.Add(1)
	resp := api.Submitted{Messages: []api.Posted{}}
	// The submission id is for grouping; the postings stand without it should the read fail.
	if st, err := s.ag.Status(r.Context(), u.Address, postings[0].Label); err == nil {
		resp.Submission = st.Item.Submission
	} else {
		s.log.Warn("web: submission id after submit", "label", postings[0].Label, "err", err)
	}
	for _, p := range postings {
		resp.Messages = append(resp.Messages, api.Posted{Label: p.Label.String(), Recipient: p.Recipient, COP: string(p.COP.Bytes()),
			StatusURL: s.statusURL(p.Label), BundleURL: s.statusURL(p.Label) + "/bundle"})
	}
	w.Header().Set("Location", resp.Messages[0].StatusURL)
	writeJSON(w, http.StatusCreated, resp)
}

func (s *Server) statusURL(l evidence.Label) string {
	return s.cfg.PublicURL + "/api/v1/messages/" + l.String()
}

// limits are the configured limits with mailfmt's defaults filled in.
func (s *Server) limits() mailfmt.Limits {
	l, d := s.cfg.Limits, mailfmt.DefaultLimits()
	if l.MaxBytes <= 0 {
		l.MaxBytes = d.MaxBytes
	}
	if l.MaxRecipients <= 0 {
		l.MaxRecipients = d.MaxRecipients
	}
	return l
}

// jsonLimit bounds a JSON submission: base64 attachments take 4/3 of their size, and a message
// larger than max once composed is refused by ParseSubmission.
func jsonLimit(max int64) int64 { return max/3*4 + 64<<10 }

// queryRecipients reads ?to= values: each an address or a comma-separated list of them.
func queryRecipients(values []string) ([]string, error) {
	var out []string
	for _, v := range values {
		for _, a := range strings.Split(v, ",") {
			a = account.Normalize(strings.TrimSpace(a))
			if err := evidence.CheckAddress(a); err != nil {
				return nil, fmt.Errorf("to: %q is not an e-mail address", a)
			}
			out = append(out, a)
		}
	}
	return out, nil
}

// label reads the {label} of the path, answering 404 itself when it is not one.
func (s *Server) label(w http.ResponseWriter, r *http.Request) (evidence.Label, bool) {
	l, err := evidence.ParseLabel(r.PathValue("label"))
	if err != nil {
		s.problem(w, r, http.StatusNotFound, "not-found", "no message has this label: a label is 26 characters like 01JDZ4Q8X3…")
		return l, false
	}
	return l, true
}

// statusDoc is an item and its timeline, as GET /api/v1/messages/{label} returns it.
func (s *Server) statusDoc(st agent.Status) api.Status {
	it := st.Item
	d := api.Status{Label: it.Label.String(), Submission: it.Submission, Sender: it.Sender, Recipient: it.Recipient,
		Subject: it.Subject, Mode: string(it.Protocol), State: string(it.State), Submitted: evidence.FormatTime(it.Submitted),
		Updated: evidence.FormatTime(it.Updated), Deadline: evidence.FormatTime(it.Deadline), Size: it.Size,
		Content: it.Content.String(), Commitment: it.Commitment.String(), Retrievals: it.Retrievals,
		Events: []api.Event{}, BundleURL: s.statusURL(it.Label) + "/bundle"}
	for _, e := range st.Events {
		d.Events = append(d.Events, api.Event{Time: evidence.FormatTime(e.Time), Type: e.What, Says: e.Says})
	}
	return d
}

// apiStatus is GET /api/v1/messages/{label}: the item's state and timeline, to its sender.
func (s *Server) apiStatus(w http.ResponseWriter, r *http.Request) {
	u, ok := s.authenticate(w, r)
	if !ok {
		return
	}
	l, ok := s.label(w, r)
	if !ok {
		return
	}
	st, err := s.ag.Status(r.Context(), u.Address, l)
	if err != nil {
		s.apiError(w, r, err)
		return
	}
	writeJSON(w, http.StatusOK, s.statusDoc(st))
}

// bundleType is the media type of a bundle file (`certmail verify BUNDLE`).
const bundleType = "application/vnd.certmail.bundle"

// apiBundle is GET /api/v1/messages/{label}/bundle: the evidence with the message, for an arbiter.
func (s *Server) apiBundle(w http.ResponseWriter, r *http.Request) {
	u, ok := s.authenticate(w, r)
	if !ok {
		return
	}
	l, ok := s.label(w, r)
	if !ok {
		return
	}
	b, err := s.ag.SenderBundle(r.Context(), u.Address, l, true)
	if err != nil {
		s.apiError(w, r, err)
		return
	}
	enc, err := b.Encode()
	if err != nil {
		s.apiError(w, r, fmt.Errorf("web: encode bundle %s: %w", l, err))
		return
	}
	h := w.Header()
	h.Set("Content-Type", bundleType)
	h.Set("Content-Disposition", mime.FormatMediaType("attachment", map[string]string{"filename": l.String() + ".bundle"}))
	h.Set("Content-Security-Policy", downloadCSP)
	w.Write(enc)
}

// apiRetract is POST /api/v1/messages/{label}/retract: the sender withdraws an item nobody
// picked up yet (RTR); the answer is the item's status.
func (s *Server) apiRetract(w http.ResponseWriter, r *http.Request) {
	u, ok := s.authenticate(w, r)
	if !ok {
		return
	}
	l, ok := s.label(w, r)
	if !ok {
		return
	}
	if err := s.ag.Retract(r.Context(), u.Address, l); err != nil {
		s.apiError(w, r, err)
		return
	}
	st, err := s.ag.Status(r.Context(), u.Address, l)
	if err != nil {
		// The retraction stands; only the read after it failed.
		s.log.Warn("web: status after retraction", "label", l, "err", err)
		writeJSON(w, http.StatusOK, map[string]string{"label": l.String(), "state": string(store.StateRetracted)})
		return
	}
	writeJSON(w, http.StatusOK, s.statusDoc(st))
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	b, err := json.MarshalIndent(v, "", "  ")
	if err != nil {
		http.Error(w, "cannot encode the answer", http.StatusInternalServerError)
		return
	}
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	w.Write(append(b, '\n'))
}
