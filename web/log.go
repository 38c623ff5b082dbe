package web

import (
	"net/http"
)

// The evidence log and the agent's public facts (DESIGN.md §4, §5). Both are public, read-only
// and the same for everyone: anyone may fetch them from any site.

// wellKnown is the document at /.well-known/certmail: who this agent is, the key its evidence
// and checkpoints verify with, and where its evidence log is. A verifier or a monitor needs
// nothing else to start from.
type wellKnown struct {
	Name        string        `json:"name"`
	VerifierKey string        `json:"verifier_key"`
	Log         *wellKnownLog `json:"log,omitempty"`
}

type wellKnownLog struct {
	Origin string `json:"origin"` // the checkpoint origin line
	URL    string `json:"url"`    // the tlog-tiles prefix, ending in /
}

func (s *Server) wellKnown(w http.ResponseWriter, r *http.Request) {
	doc := wellKnown{Name: s.ag.Name(), VerifierKey: s.ag.VerifierKey()}
	if s.cfg.Log != nil {
		doc.Log = &wellKnownLog{Origin: s.cfg.LogOrigin, URL: s.cfg.PublicURL + "/log/"}
	}
	w.Header().Set("Access-Control-Allow-Origin", "*")
	w.Header().Set("Cache-Control", "public, max-age=300")
	writeJSON(w, http.StatusOK, doc)
}
