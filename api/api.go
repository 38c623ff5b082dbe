// Package api is the documents of the delivery agent's HTTP API, /api/v1 (DESIGN.md §7): what
// the web package writes and reads, and what package client sends and decodes, each defined
// once with its JSON form. The JSON of these types is the API: a field renamed here is a change
// of the wire format.
//
// It holds types and tiny pure helpers only; it must never do HTTP, touch a store or sign.
package api

import (
	"fmt"
	"strings"
)

// ProblemPrefix begins the type of every problem the agent answers; a code follows.
const ProblemPrefix = "urn:certmail:problem:"

// Problem is an RFC 9457 problem details object (application/problem+json), the answer to every
// request the agent refuses. Its type is ProblemPrefix and a code clients may rely on: mailfmt's
// rejection codes (size, nul, line, header, from, recipients, mime, encoding, utf8, option) and
// the web package's own (auth, tls, disabled, rate-limited, json, field, media-type, sender,
// invalid, forbidden, not-found, gone, unavailable, csrf…).
type Problem struct {
	Type   string `json:"type"`
	Title  string `json:"title"`
	Status int    `json:"status"`
	Detail string `json:"detail"`
	// A refused submission is recorded by a signed notice of non-acceptance (NAC), mailed to the
	// sender: its label, and the URL of its bundle.
	NAC       string `json:"nac,omitempty"`
	NACBundle string `json:"nac_bundle_url,omitempty"`
}

func (p *Problem) Error() string {
	s := fmt.Sprintf("%s (%d): %s", p.Title, p.Status, p.Detail)
	if p.NAC != "" {
		s += fmt.Sprintf("; the refusal is recorded by NAC %s", p.NAC)
	}
	return s
}

// Code is the problem's code: size, option, sender, auth, not-found…
func (p *Problem) Code() string { return strings.TrimPrefix(p.Type, ProblemPrefix) }
