// Package client is a Go client of the delivery agent's HTTP API (/api/v1, DESIGN.md §7): a
// sender submits messages, follows them and fetches their bundles. `certmail send` and
// `certmail status` are thin shells around it.
//
// Errors the agent answers are *Problem values (RFC 9457 problem+json), so a caller can tell a
// refusal it must act on from a transport failure, and a refused submission names its NAC.
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
	"strings"
	"time"
)

// Client talks to one agent as one sender.
type Client struct {
	base     string // e.g. https://localhost:8443, no trailing slash
	user     string
	password string
	http     *http.Client
}

// Options say where the agent is and who is asking.
type Options struct {
	Server   string // the agent's public URL
	User     string // the sender's address
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
	tr := http.DefaultTransport.(*http.Transport).Clone()
	if o.CAFile != "" {
		pem, err := os.ReadFile(o.CAFile)
		if err != nil {
			return nil, fmt.Errorf("trusted certificates: %w", err)
		}
		pool, err := x509.SystemCertPool()
		if err != nil {
			pool = x509.NewCertPool()
		}
		if !pool.AppendCertsFromPEM(pem) {
			return nil, fmt.Errorf("trusted certificates: %s holds no PEM certificate", o.CAFile)
		}
		tr.TLSClientConfig = &tls.Config{RootCAs: pool, MinVersion: tls.VersionTLS12}
	}
	timeout := o.Timeout
	if timeout == 0 {
		timeout = time.Minute
	}
	return &Client{base: strings.TrimRight(o.Server, "/"), user: o.User, password: o.Password,
		http: &http.Client{Transport: tr, Timeout: timeout}}, nil
}

// Problem is a refusal the agent answered with problem+json.
type Problem struct {
	Type   string `json:"type"` // urn:certmail:problem:CODE
	Title  string `json:"title"`
	Status int    `json:"status"`
	Detail string `json:"detail"`
	// NAC is the label of the signed notice of non-acceptance that records a refused submission,
	// and NACBundle the URL of its bundle.
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
func (p *Problem) Code() string { return strings.TrimPrefix(p.Type, "urn:certmail:problem:") }

// Message is a message to compose and submit (POST /api/v1/messages, application/json).
type Message struct {
	To          []string     `json:"to"`
	Subject     string       `json:"subject,omitempty"`
	Text        string       `json:"text,omitempty"`
	Attachments []Attachment `json:"attachments,omitempty"`
	Mode        string       `json:"mode,omitempty"`     // cem-ip (default), cem-nsr, cem
	Deadline    string       `json:"deadline,omitempty"` // RFC 3339, or a duration: 48h, 7d
	Receipt     string       `json:"receipt,omitempty"`  // full, short, summary
	Notify      string       `json:"notify,omitempty"`
	Password    string       `json:"password,omitempty"` // the message password the recipient must give
	Hint        string       `json:"hint,omitempty"`
}

// Attachment is a file sent with a Message.
type Attachment struct {
	Name        string `json:"name"`
	ContentType string `json:"content_type,omitempty"`
	Data        []byte `json:"data"`
}

// Submitted is the agent's answer to a submission: one certified item per recipient.
type Submitted struct {
	Submission string   `json:"submission"`
	Messages   []Posted `json:"messages"`
}

// Posted is one recipient's item, with its signed certificate of posting.
type Posted struct {
	Label     string `json:"label"`
	Recipient string `json:"recipient"`
	COP       string `json:"cop"`
	StatusURL string `json:"status_url"`
	BundleURL string `json:"bundle_url"`
}

// Status is an item and its timeline (GET /api/v1/messages/{label}).
type Status struct {
	Label      string  `json:"label"`
	Submission string  `json:"submission"`
	Sender     string  `json:"sender"`
	Recipient  string  `json:"recipient"`
	Subject    string  `json:"subject"`
	Mode       string  `json:"mode"`
	State      string  `json:"state"`
	Submitted  string  `json:"submitted"`
	Updated    string  `json:"updated"`
	Deadline   string  `json:"deadline"`
	Size       int64   `json:"size"`
	Content    string  `json:"content"`
	Commitment string  `json:"commitment"`
	Retrievals int     `json:"retrievals"`
	Events     []Event `json:"events"`
	BundleURL  string  `json:"bundle_url"`
}

// Event is one line of a timeline.
type Event struct {
	Time string `json:"time"`
	Type string `json:"type"`
	Says string `json:"says"`
}

// Send composes and submits m. It returns once the agent has stored the message and signed
// its certificates of posting.
func (c *Client) Send(ctx context.Context, m Message) (*Submitted, error) {
	body, err := json.Marshal(m)
	if err != nil {
		return nil, err
	}
	var out Submitted
	return &out, c.do(ctx, http.MethodPost, "/api/v1/messages", "application/json", body, http.StatusCreated, &out)
}

// SendMessage submits a whole RFC 5322 message as it is. With to, the recipients are those and
// not the message's To, Cc and Bcc.
func (c *Client) SendMessage(ctx context.Context, eml []byte, to []string) (*Submitted, error) {
	path := "/api/v1/messages"
	if len(to) > 0 {
		path += "?to=" + url.QueryEscape(strings.Join(to, ","))
	}
	var out Submitted
	return &out, c.do(ctx, http.MethodPost, path, "message/rfc822", eml, http.StatusCreated, &out)
}

// Status returns an item and its timeline.
func (c *Client) Status(ctx context.Context, label string) (*Status, error) {
	var out Status
	return &out, c.do(ctx, http.MethodGet, "/api/v1/messages/"+url.PathEscape(label), "", nil, http.StatusOK, &out)
}

// Retract withdraws an item nobody has picked up yet.
func (c *Client) Retract(ctx context.Context, label string) (*Status, error) {
	var out Status
	return &out, c.do(ctx, http.MethodPost, "/api/v1/messages/"+url.PathEscape(label)+"/retract", "", nil, http.StatusOK, &out)
}

// Bundle returns the bundle of an item (or of a NAC), with the message, as `certmail verify`
// reads it.
func (c *Client) Bundle(ctx context.Context, label string) ([]byte, error) {
	var out []byte
	return out, c.do(ctx, http.MethodGet, "/api/v1/messages/"+url.PathEscape(label)+"/bundle", "", nil, http.StatusOK, &out)
}

// maxAnswer bounds what the client reads of one answer: a bundle carries the message, which
// the agent bounds well below this.
const maxAnswer = 256 << 20

// do sends one request and decodes the answer into out: JSON into a struct, raw into *[]byte.
func (c *Client) do(ctx context.Context, method, path, contentType string, body []byte, want int, out any) error {
	req, err := http.NewRequestWithContext(ctx, method, c.base+path, bytes.NewReader(body))
	if err != nil {
		return err
	}
	if contentType != "" {
		req.Header.Set("Content-Type", contentType)
	}
	req.SetBasicAuth(c.user, c.password)
	resp, err := c.http.Do(req)
	if err != nil {
		return fmt.Errorf("%s %s: %w", method, c.base+path, err)
	}
	defer resp.Body.Close()
	data, err := io.ReadAll(io.LimitReader(resp.Body, maxAnswer))
	if err != nil {
		return fmt.Errorf("%s %s: reading the answer: %w", method, c.base+path, err)
	}
	if resp.StatusCode != want {
		return answerError(resp, data)
	}
	if raw, ok := out.(*[]byte); ok {
		*raw = data
		return nil
	}
	if err := json.Unmarshal(data, out); err != nil {
		return fmt.Errorf("%s %s: the answer is not the JSON expected: %w", method, c.base+path, err)
	}
	return nil
}

// answerError makes an unexpected answer an error: the agent's problem when it sent one.
func answerError(resp *http.Response, data []byte) error {
	mt, _, _ := mime.ParseMediaType(resp.Header.Get("Content-Type"))
	if mt == "application/problem+json" {
		var p Problem
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
	var p *Problem
	return errors.As(err, &p) && p.Code() == code
}
