package web

import (
	"net/http"

	"certmail/api"
	"certmail/evidence"
)

// apiPublish is POST /api/v1/published: a sender publishes the key of a ciphertext its
// recipient asked for, with this agent as Schneier–Riordan's public location (agent.Publish).
func (s *Server) apiPublish(w http.ResponseWriter, r *http.Request) {
	u, ok := s.authenticate(w, r)
	if !ok {
		return
	}
	body, err := readBody(w, r, 64<<10)
	if err != nil {
		s.apiError(w, r, err)
		return
	}
	var p api.Publication
	if err := decodeStrict(body, &p); err != nil {
		s.problem(w, r, http.StatusBadRequest, "json", "the body is not a publication: "+err.Error())
		return
	}
	var keyRecord []byte
	if p.KeyRecord != "" {
		keyRecord = []byte(p.KeyRecord)
	}
	pub, err := s.ag.Publish(r.Context(), u.Address, []byte(p.Request), keyRecord, p.Key)
	if err != nil {
		s.apiError(w, r, err)
		return
	}
	s.writePublished(w, r, http.StatusCreated, pub.Record.Ciphertext)
}

// apiPublished is GET /api/v1/published/{hash}: anyone finds the key published for a
// ciphertext hash, with the log's proof that it was published.
func (s *Server) apiPublished(w http.ResponseWriter, r *http.Request) {
	h, err := evidence.ParseHash(r.PathValue("hash"))
	if err != nil {
		s.problem(w, r, http.StatusNotFound, "not-found", "no key is published under this name: ask for sha256:HEX, the hash of the ciphertext")
		return
	}
	s.writePublished(w, r, http.StatusOK, h)
}

func (s *Server) writePublished(w http.ResponseWriter, r *http.Request, status int, h evidence.Hash) {
	b, err := s.ag.Published(r.Context(), h)
	if err != nil {
		s.apiError(w, r, err)
		return
	}
	enc, err := b.Encode()
	if err != nil {
		s.apiError(w, r, err)
		return
	}
	pub := b.Notes[0]
	if status == http.StatusCreated {
		w.Header().Set("Location", s.cfg.PublicURL+"/api/v1/published/"+h.String())
	}
	writeJSON(w, status, api.Published{Label: pub.Record.Label.String(), Ciphertext: h.String(), Key: pub.Record.Secret,
		PUB: string(pub.Bytes()), Bundle: string(enc), Logged: len(b.Proofs) == 1})
}
