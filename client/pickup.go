package client

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"regexp"

	"golang.org/x/mod/sumdb/note"

	"certmail/api"
	"certmail/evidence"
)

// Pickup is the recipient's side of one item: the pickup API behind the link of its
// notification (web/pickup_api.go). The token in the link is the credential; no password of an
// account is ever sent.
type Pickup struct {
	c    *Client
	path string // /api/v1/pickup/TOKEN
}

var pickupPathRE = regexp.MustCompile(`^/pickup/([A-Za-z0-9_-]{16,128})/?$`)

// ParsePickupLink splits a pickup link (https://HOST/pickup/TOKEN) into the agent's URL
// (https://HOST), for Options.Server, and the token, for Client.Pickup.
func ParsePickupLink(link string) (server, token string, err error) {
	u, err := url.Parse(link)
	if err != nil {
		return "", "", fmt.Errorf("the link %q is not a URL", link)
	}
	if u.Scheme != "https" || u.Host == "" {
		return "", "", fmt.Errorf("the link %q is not an https:// link: use the link of the notification mail", link)
	}
	m := pickupPathRE.FindStringSubmatch(u.Path)
	if m == nil {
		return "", "", fmt.Errorf("%q is not a pickup link (https://HOST/pickup/TOKEN): was it cut short?", link)
	}
	return "https://" + u.Host, m[1], nil
}

// Pickup returns the recipient's side of the item whose pickup token is token.
func (c *Client) Pickup(token string) *Pickup {
	return &Pickup{c: c, path: "/api/v1/pickup/" + url.PathEscape(token)}
}

// View returns who sent what under which label and commitment, and by when to decide.
func (p *Pickup) View(ctx context.Context) (*api.PickupView, error) {
	var v api.PickupView
	return &v, p.c.do(ctx, request{method: http.MethodGet, path: p.path}, &v)
}

// EnrolKey registers r.VerifierKey (or r.PublicKey) as the recipient's key, to sign the
// certificate of delivery with. r carries the view's CSRF token and the message password.
func (p *Pickup) EnrolKey(ctx context.Context, r api.PickupRequest) (*api.Enrolment, error) {
	var e api.Enrolment
	return &e, p.post(ctx, "/key", r, []int{http.StatusOK, http.StatusCreated}, &e)
}

// COD returns the certificate of delivery the agent asks the recipient to sign. SignCOD checks
// and signs it.
func (p *Pickup) COD(ctx context.Context) (*api.COD, error) {
	var c api.COD
	return &c, p.c.do(ctx, request{method: http.MethodGet, path: p.path + "/cod"}, &c)
}

// Accept accepts the item: with r.COD (or r.CODText and r.Signature) the recipient's own
// signature is recorded, recipient-signed; without, the agent attests the acceptance.
func (p *Pickup) Accept(ctx context.Context, r api.PickupRequest) (*api.Decision, error) {
	var d api.Decision
	return &d, p.post(ctx, "/accept", r, nil, &d)
}

// Refuse refuses the item; nothing of the message is released.
func (p *Pickup) Refuse(ctx context.Context, r api.PickupRequest) (*api.Decision, error) {
	var d api.Decision
	return &d, p.post(ctx, "/refuse", r, nil, &d)
}

func (p *Pickup) post(ctx context.Context, path string, r api.PickupRequest, want []int, out any) error {
	body, err := json.Marshal(r)
	if err != nil {
		return err
	}
	return p.c.do(ctx, request{method: http.MethodPost, path: p.path + path, contentType: "application/json", body: body, want: want}, out)
}

// SignCOD fetches the certificate of delivery the agent asks for and signs it with signer, but
// only when it is one for the very item of v (codFor). The signed note goes in
// api.PickupRequest.COD.
func (p *Pickup) SignCOD(ctx context.Context, v *api.PickupView, signer note.Signer) (*evidence.Note, error) {
	c, err := p.COD(ctx)
	if err != nil {
		return nil, err
	}
	r, err := codFor(v, c.Text)
	if err != nil {
		return nil, err
	}
	return evidence.Sign(r, signer)
}

// codFor reads the text of a certificate of delivery and checks that it certifies the item of v:
// the type v's mode requires, v's label and recipient, and v's commitment (cem-ip) or content
// hash (cem). A recipient signs nothing else.
func codFor(v *api.PickupView, text string) (*evidence.Record, error) {
	r, err := evidence.ParseRecord([]byte(text))
	if err != nil {
		return nil, fmt.Errorf("the agent asked to sign something that is no evidence record: %v", err)
	}
	ok := r.Label.String() == v.Label && r.Recipient == v.Recipient
	switch r.Type {
	case evidence.CODIP:
		ok = ok && v.Mode == string(evidence.CEMIP) && r.Commitment.String() == v.Commitment
	case evidence.CODNSR:
		ok = ok && v.Mode == string(evidence.CEMNSR)
	case evidence.CODBasic:
		ok = ok && v.Mode == string(evidence.CEM) && r.Content.String() == v.Content
	default:
		ok = false
	}
	if !ok {
		return nil, fmt.Errorf("the agent asked to sign a certificate that does not name this message; nothing was signed:\n%s", text)
	}
	return r, nil
}

// MismatchError is a downloaded message that is not the one the notification committed to.
// The message comes with it, to be kept: it is the recipient's proof of what was released.
type MismatchError struct {
	Want string // "the commitment H of the notification" or "the content hash H"
}

func (e *MismatchError) Error() string { return "the message does not match " + e.Want }

// Message downloads M once accepted and checks it against what the recipient was notified of
// (PROTOCOLS.md §1 cem-ip: B checks the fetched M against H(L,M); cem: against H(M)). checked
// names what it was checked against, "" under cem-nsr, which commits to nothing the recipient
// sees. A message that does not match is returned with a *MismatchError.
func (p *Pickup) Message(ctx context.Context, v *api.PickupView) (m []byte, checked string, err error) {
	if err := p.c.do(ctx, request{method: http.MethodGet, path: p.path + "/message.eml"}, &m); err != nil {
		return nil, "", err
	}
	checked, err = checkMessage(v, m)
	var mismatch *MismatchError
	if err != nil && !errors.As(err, &mismatch) {
		return nil, "", err
	}
	return m, checked, err
}

// checkMessage checks m against the commitment or content hash of v.
func checkMessage(v *api.PickupView, m []byte) (checked string, err error) {
	l, err := evidence.ParseLabel(v.Label)
	if err != nil {
		return "", fmt.Errorf("the agent gave label %q: %v", v.Label, err)
	}
	switch v.Mode {
	case string(evidence.CEMIP):
		if evidence.Commitment(l, m).String() != v.Commitment {
			return "", &MismatchError{Want: fmt.Sprintf("the commitment %s of the notification", v.Commitment)}
		}
		return "the commitment H(L,M)", nil
	case string(evidence.CEM):
		if evidence.Sum(m).String() != v.Content {
			return "", &MismatchError{Want: fmt.Sprintf("the content hash %s", v.Content)}
		}
		return "the content hash H(M)", nil
	}
	return "", nil
}
