package web

import (
	"crypto/hmac"
	"errors"
	"fmt"
	"mime"
	"net/http"

	"certmail/agent"
	"certmail/api"
	"certmail/evidence"
	"certmail/store"
)

// The pickup API is the pickup pages for programs: `certmail pickup` and the pickup page's own
// script. The token in the path is the credential, as on the pages; every POST carries the CSRF
// token the view gives (the same as the page's forms), and the message password when one is set.
//
//	GET  /api/v1/pickup/{token}              the view: who, what label and commitment, by when
//	POST /api/v1/pickup/{token}/key          enrol the recipient's key (agent.EnrolKey)
//	GET  /api/v1/pickup/{token}/cod          the certificate of delivery to sign (agent.CODText)
//	POST /api/v1/pickup/{token}/accept       accept: signed COD, or the agent's attestation alone
//	POST /api/v1/pickup/{token}/refuse       refuse
//	GET  /api/v1/pickup/{token}/message.eml  M, once accepted (RET)

// pickupRequest is the body of every POST of the pickup API (api.PickupRequest); each route
// reads the fields it needs and refuses the others.
type pickupRequest api.PickupRequest

// decodePickupRequest reads a pickup POST body strictly: one JSON object of known fields.
func decodePickupRequest(body []byte) (pickupRequest, error) {
	var p pickupRequest
	if err := decodeStrict(body, &p); err != nil {
		return pickupRequest{}, fmt.Errorf("the body is not a pickup request: %v", err)
	}
	// An empty key or signature is an absent one.
	if len(p.PublicKey) == 0 {
		p.PublicKey = nil
	}
	if len(p.Signature) == 0 {
		p.Signature = nil
	}
	return p, nil
}

// pickupDoc is the view of GET /api/v1/pickup/{token}.
func (s *Server) pickupDoc(tok string, v agent.PickupView) api.PickupView {
	d := api.PickupView{Label: v.Label.String(), Mode: string(v.Protocol), Sender: v.Sender, Recipient: v.Recipient,
		Commitment: v.Commitment.String(), Deadline: evidence.FormatTime(v.Deadline), State: string(v.State),
		Closed: v.Why, NeedPassword: v.NeedPassword, Hint: v.Hint, Size: v.Size, CSRF: s.csrfToken(pickupScope(tok))}
	d.KeyName, _ = evidence.KeyName(v.Recipient)
	if v.Protocol == evidence.CEM {
		d.Content = v.Content.String()
	}
	if v.State == store.StateDelivered {
		d.MessageURL = s.cfg.PublicURL + "/api/v1/pickup/" + tok + "/message.eml"
	}
	return d
}

// apiPickup is GET /api/v1/pickup/{token}.
func (s *Server) apiPickup(w http.ResponseWriter, r *http.Request) {
	tok := r.PathValue("token")
	v, err := s.ag.Pickup(r.Context(), tok)
	if err != nil {
		s.pickupAPIError(w, r, tok, err)
		return
	}
	writeJSON(w, http.StatusOK, s.pickupDoc(tok, v))
}

// pickupPost reads and checks a pickup POST: JSON, well formed, with the view's CSRF token. It
// answers the refusal itself when it returns false.
func (s *Server) pickupPost(w http.ResponseWriter, r *http.Request, tok string) (pickupRequest, bool) {
	if mt, _, _ := mime.ParseMediaType(r.Header.Get("Content-Type")); mt != "application/json" {
		w.Header().Set("Accept-Post", "application/json")
		s.problem(w, r, http.StatusUnsupportedMediaType, "media-type", "send the request as Content-Type: application/json")
		return pickupRequest{}, false
	}
	body, err := readBody(w, r, maxForm)
	if err != nil {
		s.apiError(w, r, err)
		return pickupRequest{}, false
	}
	p, err := decodePickupRequest(body)
	if err != nil {
		s.problem(w, r, http.StatusBadRequest, "json", err.Error())
		return pickupRequest{}, false
	}
	if !hmac.Equal([]byte(p.CSRF), []byte(s.csrfToken(pickupScope(tok)))) {
		s.problem(w, r, http.StatusForbidden, "csrf", "the csrf field must be the one GET /api/v1/pickup/{token} gives")
		return pickupRequest{}, false
	}
	return p, true
}

// apiPickupKey is POST /api/v1/pickup/{token}/key: the recipient enrols the key it will sign
// its certificate of delivery with (agent.EnrolKey says on what ground).
func (s *Server) apiPickupKey(w http.ResponseWriter, r *http.Request) {
	tok := r.PathValue("token")
	p, ok := s.pickupPost(w, r, tok)
	if !ok {
		return
	}
	if p.COD != "" || p.CODText != "" || p.Signature != nil {
		s.problem(w, r, http.StatusBadRequest, "field", "enrolment takes csrf, password and verifier_key or public_key; accept with /accept")
		return
	}
	vkey := p.VerifierKey
	switch {
	case (vkey == "") == (p.PublicKey == nil):
		s.problem(w, r, http.StatusBadRequest, "field", "give the key as verifier_key or as public_key, exactly one")
		return
	case vkey == "":
		v, err := s.ag.Pickup(r.Context(), tok)
		if err != nil {
			s.pickupAPIError(w, r, tok, err)
			return
		}
		if vkey, err = agent.VerifierKeyFor(v.Recipient, p.PublicKey); err != nil {
			s.pickupAPIError(w, r, tok, err)
			return
		}
	}
	e, err := s.ag.EnrolKey(r.Context(), tok, p.Password, vkey)
	if err != nil {
		s.pickupAPIError(w, r, tok, err)
		return
	}
	d := api.Enrolment{Address: e.Address, Key: e.Key, New: e.New}
	status := http.StatusOK
	if e.New {
		d.KeyRecord, status = string(e.Record.Bytes()), http.StatusCreated
	}
	writeJSON(w, status, d)
}

// apiPickupCOD is GET /api/v1/pickup/{token}/cod.
func (s *Server) apiPickupCOD(w http.ResponseWriter, r *http.Request) {
	tok := r.PathValue("token")
	text, err := s.ag.CODText(r.Context(), tok)
	if err != nil {
		s.pickupAPIError(w, r, tok, err)
		return
	}
	rec, err := evidence.ParseRecord(text)
	if err != nil {
		s.apiError(w, r, fmt.Errorf("web: the agent's COD text does not parse: %w", err))
		return
	}
	writeJSON(w, http.StatusOK, api.COD{Type: string(rec.Type), Signer: rec.SignerNames()[0], Text: string(text)})
}

// apiPickupAccept is POST /api/v1/pickup/{token}/accept. With a certificate of delivery (a whole
// note, or a text and its raw signature) the recipient's own signature is recorded beside the
// agent's DLV; without, the DLV alone. Only then may message.eml be fetched.
func (s *Server) apiPickupAccept(w http.ResponseWriter, r *http.Request) {
	tok := r.PathValue("token")
	p, ok := s.pickupPost(w, r, tok)
	if !ok {
		return
	}
	if p.VerifierKey != "" || p.PublicKey != nil {
		s.problem(w, r, http.StatusBadRequest, "field", "enrol a key with /key before accepting")
		return
	}
	var cod []byte
	switch {
	case p.COD != "" && (p.CODText != "" || p.Signature != nil):
		s.problem(w, r, http.StatusBadRequest, "field", "give cod, or cod_text and signature, not both")
		return
	case p.COD != "":
		cod = []byte(p.COD)
	case (p.CODText == "") != (p.Signature == nil):
		s.problem(w, r, http.StatusBadRequest, "field", "cod_text and signature go together")
		return
	case p.CODText != "":
		var err error
		if cod, err = s.ag.CODNote(r.Context(), tok, []byte(p.CODText), p.Signature); err != nil {
			s.pickupAPIError(w, r, tok, err)
			return
		}
	}
	v, err := s.ag.Accept(r.Context(), tok, agent.Acceptance{Password: p.Password, Client: clientIP(r), COD: cod})
	if err != nil {
		s.pickupAPIError(w, r, tok, err)
		return
	}
	s.metrics.acceptances.Add(1)
	d := api.Decision{Label: v.Label.String(), State: string(v.State), Attestation: string(evidence.AgentAttested),
		MessageURL: s.cfg.PublicURL + "/api/v1/pickup/" + tok + "/message.eml"}
	if cod != nil {
		n, _ := evidence.ParseNote(cod) // Accept parsed it
		d.Recorded, d.Attestation = append(d.Recorded, string(n.Record.Type)), string(evidence.RecipientSigned)
	}
	d.Recorded = append(d.Recorded, string(evidence.DLV), string(evidence.ROD))
	writeJSON(w, http.StatusOK, d)
}

// apiPickupRefuse is POST /api/v1/pickup/{token}/refuse.
func (s *Server) apiPickupRefuse(w http.ResponseWriter, r *http.Request) {
	tok := r.PathValue("token")
	p, ok := s.pickupPost(w, r, tok)
	if !ok {
		return
	}
	if p.VerifierKey != "" || p.PublicKey != nil || p.COD != "" || p.CODText != "" || p.Signature != nil {
		s.problem(w, r, http.StatusBadRequest, "field", "a refusal takes csrf and password only")
		return
	}
	if err := s.ag.Refuse(r.Context(), tok, p.Password); err != nil {
		s.pickupAPIError(w, r, tok, err)
		return
	}
	s.metrics.refusals.Add(1)
	v, err := s.ag.Pickup(r.Context(), tok)
	if err != nil {
		s.pickupAPIError(w, r, tok, err)
		return
	}
	writeJSON(w, http.StatusOK, api.Decision{Label: v.Label.String(), State: string(v.State), Recorded: []string{string(evidence.REJ)}})
}

// apiPickupMessage is GET /api/v1/pickup/{token}/message.eml: M, byte for byte, once accepted.
func (s *Server) apiPickupMessage(w http.ResponseWriter, r *http.Request) {
	tok := r.PathValue("token")
	if r.Method == http.MethodHead {
		// A HEAD releases nothing, so it is no retrieval and must not be signed as one.
		v, err := s.ag.Pickup(r.Context(), tok)
		switch {
		case err != nil:
			s.pickupAPIError(w, r, tok, err)
		case v.State != store.StateDelivered:
			s.problem(w, r, http.StatusForbidden, "forbidden", "the content is released only after you accept the message")
		default:
			w.WriteHeader(http.StatusOK)
		}
		return
	}
	m, v, err := s.ag.Content(r.Context(), tok, clientIP(r))
	if err != nil {
		s.pickupAPIError(w, r, tok, err)
		return
	}
	s.metrics.retrievals.Add(1)
	w.Header().Set("Certmail-Label", v.Label.String())
	download(w, "message/rfc822", v.Label.String()+".eml", m)
}

// pickupAPIError is apiError for the pickup routes: the agent's own limit on wrong passwords is
// 429, not a failure of the agent, and the log names the token only by its hash.
func (s *Server) pickupAPIError(w http.ResponseWriter, r *http.Request, tok string, err error) {
	var ae *agent.Error
	if errors.As(err, &ae) && ae.Kind == agent.KindUnavailable {
		s.problem(w, r, http.StatusTooManyRequests, "rate-limited", ae.Message)
		return
	}
	if ae == nil {
		s.log.Error("web: pickup API failed", "route", r.Pattern, "token", tokenRef(tok), "err", err)
		s.problem(w, r, http.StatusServiceUnavailable, "unavailable", "the agent cannot do this right now; nothing was changed: try again in a minute")
		return
	}
	s.apiError(w, r, err)
}
