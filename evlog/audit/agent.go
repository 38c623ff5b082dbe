package audit

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"net/url"

	"golang.org/x/mod/sumdb/note"

	"certmail/evidence"
)

// WellKnownPath is where an agent publishes its name, key and log.
const WellKnownPath = "/.well-known/certmail"

// Agent is what an agent publishes at WellKnownPath.
type Agent struct {
	Name        string `json:"name"`
	VerifierKey string `json:"verifier_key"`
	Log         struct {
		Origin string `json:"origin"`
		URL    string `json:"url"`
	} `json:"log"`
}

// ParseAgent parses and checks an agent's well-known document fetched from base: the verifier
// key is a valid Ed25519 key named after the agent, the log's origin is the agent's log, and its
// URL (absolute, or relative to base) is http or https. It returns the log's absolute URL.
func ParseAgent(data []byte, base *url.URL) (*Agent, *url.URL, error) {
	var a Agent
	if err := json.Unmarshal(data, &a); err != nil {
		return nil, nil, fmt.Errorf("audit: agent document: %w", err)
	}
	if _, err := evidence.NewKeys(a.VerifierKey); err != nil {
		return nil, nil, fmt.Errorf("audit: agent document: %w", err)
	}
	if v, _ := note.NewVerifier(a.VerifierKey); v.Name() != a.Name {
		return nil, nil, fmt.Errorf("audit: agent document: the key %q is not named after the agent %q", a.VerifierKey, a.Name)
	}
	if a.Log.Origin != evidence.LogOrigin(a.Name) {
		return nil, nil, fmt.Errorf("audit: agent document: log origin %q, want %q", a.Log.Origin, evidence.LogOrigin(a.Name))
	}
	ref, err := url.Parse(a.Log.URL)
	if err != nil || a.Log.URL == "" {
		return nil, nil, fmt.Errorf("audit: agent document: log URL %q", a.Log.URL)
	}
	u := base.ResolveReference(ref)
	if (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		return nil, nil, fmt.Errorf("audit: agent document: log URL %q: want http or https", a.Log.URL)
	}
	return &a, u, nil
}

// Discover fetches the agent's well-known document from base (https://agent.example).
func Discover(ctx context.Context, client *http.Client, base string) (*Agent, *url.URL, error) {
	b, err := url.Parse(base)
	if err != nil || (b.Scheme != "https" && b.Scheme != "http") || b.Host == "" {
		return nil, nil, fmt.Errorf("audit: agent URL %q: want an http or https URL", base)
	}
	src := &HTTP{base: b.JoinPath("/"), client: client}
	data, err := src.ReadFile(ctx, WellKnownPath)
	if err != nil {
		return nil, nil, fmt.Errorf("audit: %w", err)
	}
	return ParseAgent(data, b)
}
