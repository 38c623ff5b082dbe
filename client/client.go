// Package client is a Go client of the delivery agent's HTTP API (/api/v1, DESIGN.md §7), in
// the documents of package api. A sender submits messages, follows them and fetches their
// bundles; a recipient picks an item up through the link of its notification (Pickup).
// `certmail send`, `certmail status` and `certmail pickup` are thin shells around it.
//
// Errors the agent answers are *api.Problem values (RFC 9457 problem+json), so a caller can tell
// a refusal it must act on from a transport failure, and a refused submission names its NAC.
package client

import (
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"mime"
	"net/http"
	"net/url"
	"os"
	"slices"
	"strings"
	"time"

	"certmail/api"
)

// Client talks to one agent, as one sender or as nobody in particular (a recipient, whose
// pickup link is the credential).
type Client struct {
	base     string // e.g. https://localhost:8443, no trailing slash
	user     string
	password string
	http     *http.Client
}

// Options say where the agent is and who is asking.
type Options struct {
	Server   string // the agent's public URL
	User     string // the sender's address; none for a recipient's pickup
	Password string
	// CAFile, when set, is a PEM file of certificates trusted besides the system's: the agent's
	// local CA (certmail-data/ca.crt) for an agent that serves with its own.
	CAFile  string
	Timeout time.Duration // per request; 0 means one minute
}

// New returns a client for the agent at o.Server.
func New(o Options) (*Client, error) {
	u, err := url.Parse(o.Server)
	if err != nil || u.Host == "" || (u.Scheme != "https" && u.Scheme != "http") {
		return nil, fmt.Errorf("server %q: want a URL such as https://localhost:8443", o.Server)
	}
	hc, err := HTTPClient(o.CAFile, o.Timeout)
	if err != nil {
		return nil, err
	}
	return &Client{base: strings.TrimRight(o.Server, "/"), user: o.User, password: o.Password, http: hc}, nil
}

// HTTPClient is an HTTP client bounded in time (0: one minute) that trusts the certificates of
// the PEM file caFile besides the system's, when caFile is given: what every certmail command
// that talks to an agent uses.
func HTTPClient(caFile string, timeout time.Duration) (*http.Client, error) {
	tr := http.DefaultTransport.(*http.Transport).Clone()
	if caFile != "" {
		pool, err := trust(caFile)
		if err != nil {
			return nil, fmt.Errorf("trusted certificates: %w", err)
		}
		tr.TLSClientConfig = &tls.Config{RootCAs: pool, MinVersion: tls.VersionTLS12}
	}
	if timeout == 0 {
		timeout = time.Minute
	}
	return &http.Client{Transport: tr, Timeout: timeout}, nil
}

// trust is the system's roots and the certificates of the PEM file caFile.
func trust(caFile string) (*x509.CertPool, error) {
	pem, err := os.ReadFile(caFile)
	if err != nil {
		return nil, err
	}
	pool, err := x509.SystemCertPool()
	if err != nil {
		pool = x509.NewCertPool()
	}
	if !pool.AppendCertsFromPEM(pem) {
		return nil, fmt.Errorf("%s holds no PEM certificate", caFile)
	}
	return pool, nil
}

// Send composes and submits m. It returns once the agent has stored the message and signed
// its certificates of posting.
func (c *Client) Send(ctx context.Context, m api.Message) (*api.Submitted, error) {
	body, err := json.Marshal(m)
	if err != nil {
		return nil, err
	}
	var out api.Submitted
	return &out, c.do(ctx, request{method: http.MethodPost, path: "/api/v1/messages", contentType: "application/json", body: body,
		auth: true, want: []int{http.StatusCreated}}, &out)
}

// SendMessage submits a whole RFC 5322 message as it is. With to, the recipients are those and
// not the message's To, Cc and Bcc.
func (c *Client) SendMessage(ctx context.Context, eml []byte, to []string) (*api.Submitted, error) {
	path := "/api/v1/messages"
	if len(to) > 0 {
		path += "?to=" + url.QueryEscape(strings.Join(to, ","))
	}
	var out api.Submitted
	return &out, c.do(ctx, request{method: http.MethodPost, path: path, contentType: "message/rfc822", body: eml,
		auth: true, want: []int{http.StatusCreated}}, &out)
}

// Status returns an item and its timeline.
func (c *Client) Status(ctx context.Context, label string) (*api.Status, error) {
	var out api.Status
	return &out, c.do(ctx, request{method: http.MethodGet, path: "/api/v1/messages/" + url.PathEscape(label), auth: true}, &out)
}

// Retract withdraws an item nobody has picked up yet.
func (c *Client) Retract(ctx context.Context, label string) (*api.Status, error) {
	var out api.Status
	return &out, c.do(ctx, request{method: http.MethodPost, path: "/api/v1/messages/" + url.PathEscape(label) + "/retract", auth: true}, &out)
}

// Bundle returns the bundle of an item (or of a NAC), with the message, as `certmail verify`
// reads it.
func (c *Client) Bundle(ctx context.Context, label string) ([]byte, error) {
	var out []byte
	return out, c.do(ctx, request{method: http.MethodGet, path: "/api/v1/messages/" + url.PathEscape(label) + "/bundle", auth: true}, &out)
}

// maxAnswer bounds what the client reads of one answer: a bundle carries the message, which
// the agent bounds well below this.
const maxAnswer = 256 << 20

// request is one call of the API.
type request struct {
	method, path string
	contentType  string // of body
	body         []byte
	auth         bool  // send the sender's credentials (HTTP Basic)
	want         []int // the statuses of success; none means 200
}

// do sends one request and decodes the answer into out: JSON into a struct, raw into *[]byte,
// nothing for nil. Any other status is an error: the agent's *api.Problem when it sent one.
func (c *Client) do(ctx context.Context, r request, out any) error {
	req, err := http.NewRequestWithContext(ctx, r.method, c.base+r.path, bytes.NewReader(r.body))
	if err != nil {
		return err
	}
	if r.contentType != "" {
		req.Header.Set("Content-Type", r.contentType)
	}
	if r.auth {
		req.SetBasicAuth(c.user, c.password)
	}
	resp, err := c.http.Do(req)
	if err != nil {
		return fmt.Errorf("cannot reach the agent: %w", err)
	}
	defer resp.Body.Close()
	data, err := io.ReadAll(io.LimitReader(resp.Body, maxAnswer))
	if err != nil {
		return fmt.Errorf("%s %s: reading the answer: %w", r.method, c.base+r.path, err)
	}
	want := r.want
	if len(want) == 0 {
		want = []int{http.StatusOK}
	}
	if !slices.Contains(want, resp.StatusCode) {
		return answerError(resp, data)
	}
	switch out := out.(type) {
	case nil:
		return nil
	case *[]byte:
		*out = data
		return nil
	}
	if err := json.Unmarshal(data, out); err != nil {
		return fmt.Errorf("%s %s: the answer is not the JSON expected: %w", r.method, c.base+r.path, err)
	}
	return nil
}

// answerError makes an unexpected answer an error: the agent's problem when it sent one.
func answerError(resp *http.Response, data []byte) error {
	mt, _, _ := mime.ParseMediaType(resp.Header.Get("Content-Type"))
	if mt == "application/problem+json" {
		var p api.Problem
		if err := json.Unmarshal(data, &p); err == nil && p.Type != "" {
			return &p
		}
	}
	text := strings.TrimSpace(string(data))
	if len(text) > 200 {
		text = text[:200] + "…"
	}
	return fmt.Errorf("the server answered %s: %s", resp.Status, text)
}

// IsProblem reports whether err is the agent's refusal with the given code.
func IsProblem(err error, code string) bool {
	var p *api.Problem
	return errors.As(err, &p) && p.Code() == code
}
