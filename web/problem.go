package web

import (
	"encoding/json"
	"errors"
	"fmt"
	"net/http"

	"certmail/agent"
	"certmail/api"
	"certmail/evidence"
	"certmail/mailfmt"
)

// problemTitles are the titles of the problem codes (api.Problem): mailfmt's rejection codes
// (size, nul, line, header, from, recipients, mime, encoding, utf8, option) and this package's own.
var problemTitles = map[string]string{
	"auth":         "Authentication required",
	"tls":          "HTTPS required",
	"disabled":     "Account disabled",
	"rate-limited": "Too many failed logins",
	"cross-origin": "Cross-origin request refused",
	"csrf":         "Form token missing or wrong",
	"json":         "Malformed JSON submission",
	"field":        "Invalid submission field",
	"media-type":   "Unsupported media type",
	"sender":       "Not your address",
	"invalid":      "Refused by the agent",
	"forbidden":    "Not allowed",
	"not-found":    "Not found",
	"gone":         "No longer possible",
	"unavailable":  "Temporarily unavailable",
	"size":         "Message too large",
	"nul":          "NUL byte in the message",
	"line":         "Line too long",
	"header":       "Malformed header",
	"from":         "Bad sender address",
	"recipients":   "Bad recipients",
	"mime":         "Malformed MIME structure",
	"encoding":     "Bad transfer encoding",
	"utf8":         "Not UTF-8",
	"option":       "Bad Certmail option",
	"not-a-route":  "Not found",
}

// problem writes an RFC 9457 problem+json response (api.Problem).
func (s *Server) problem(w http.ResponseWriter, r *http.Request, status int, code, detail string) {
	s.problemNAC(w, r, status, code, detail, evidence.Label{})
}

// problemNAC is problem for a refused submission that the NAC labelled nac records.
func (s *Server) problemNAC(w http.ResponseWriter, r *http.Request, status int, code, detail string, nac evidence.Label) {
	title := problemTitles[code]
	if title == "" {
		title = http.StatusText(status)
	}
	note(w, code)
	doc := api.Problem{Type: api.ProblemPrefix + code, Title: title, Status: status, Detail: detail}
	if !nac.IsZero() {
		doc.NAC, doc.NACBundle = nac.String(), s.statusURL(nac)+"/bundle"
	}
	b, _ := json.Marshal(doc)
	w.Header().Set("Content-Type", "application/problem+json")
	w.WriteHeader(status)
	w.Write(append(b, '\n'))
}

// apiError answers an error from mailfmt or the agent with its status; anything else is a
// failure of the agent's own (its store, its disk): 503, the cause only in the log.
func (s *Server) apiError(w http.ResponseWriter, r *http.Request, err error) {
	var me *mailfmt.Error
	if errors.As(err, &me) {
		s.problem(w, r, me.HTTPStatus, me.Code, me.Message)
		return
	}
	var tooBig *http.MaxBytesError
	if errors.As(err, &tooBig) {
		s.problem(w, r, http.StatusRequestEntityTooLarge, mailfmt.CodeSize,
			fmt.Sprintf("the request is larger than this agent accepts (%d bytes): send fewer or smaller attachments", tooBig.Limit))
		return
	}
	var ae *agent.Error
	if errors.As(err, &ae) {
		status, code := agentStatus(ae.Kind)
		if ae.Reason != "" {
			code = ae.Reason
		}
		s.problemNAC(w, r, status, code, ae.Message, ae.NAC)
		return
	}
	s.log.Error("web: request failed", "route", r.Pattern, "err", err)
	s.problem(w, r, http.StatusServiceUnavailable, "unavailable", "the agent cannot do this right now; nothing was changed: try again in a minute")
}

// agentStatus maps the kinds of agent refusals to HTTP.
func agentStatus(k agent.ErrorKind) (int, string) {
	switch k {
	case agent.KindInvalid:
		return http.StatusUnprocessableEntity, "invalid"
	case agent.KindForbidden:
		return http.StatusForbidden, "forbidden"
	case agent.KindNotFound:
		return http.StatusNotFound, "not-found"
	case agent.KindGone:
		return http.StatusGone, "gone"
	}
	return http.StatusServiceUnavailable, "unavailable"
}

// notAccepted answers a submission of user's that the agent refuses, after recording the
// refusal with a NAC mailed to the user. When the NAC cannot be made the refusal stands without it.
func (s *Server) notAccepted(w http.ResponseWriter, r *http.Request, user, subject string, status int, code, detail string) {
	n, err := s.ag.NotAccept(r.Context(), agent.Refusal{Sender: user, Subject: subject, Reason: code, Detail: detail})
	var l evidence.Label
	if err != nil {
		s.log.Error("web: refusal: no NAC recorded", "user", user, "err", err)
	} else {
		l = n.Record.Label
	}
	s.problemNAC(w, r, status, code, detail, l)
}

func (s *Server) apiNotFound(w http.ResponseWriter, r *http.Request) {
	s.problem(w, r, http.StatusNotFound, "not-a-route", "there is no API at "+r.URL.Path+"; see /api/v1/messages")
}
