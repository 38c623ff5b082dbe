package api

// The recipient's documents: the pickup API, the pickup pages for programs (`certmail pickup`,
// the pickup page's own script). The token in the path is the credential; every POST carries the
// CSRF token the view gives, and the message password when one is set.
//
//	GET  /api/v1/pickup/{token}              PickupView
//	POST /api/v1/pickup/{token}/key          PickupRequest → Enrolment
//	GET  /api/v1/pickup/{token}/cod          COD
//	POST /api/v1/pickup/{token}/accept       PickupRequest → Decision
//	POST /api/v1/pickup/{token}/refuse       PickupRequest → Decision
//	GET  /api/v1/pickup/{token}/message.eml  M, once accepted (message/rfc822)

// PickupView is the view of GET /api/v1/pickup/{token}: who, what label and commitment, by
// when. Never the content, nor H(M) except under cem, whose notification carries M itself.
type PickupView struct {
	Label        string `json:"label"`
	Mode         string `json:"mode"`
	Sender       string `json:"sender"`
	Recipient    string `json:"recipient"`
	KeyName      string `json:"key_name"` // the name a recipient key must have (evidence.KeyName)
	Commitment   string `json:"commitment"`
	Content      string `json:"content,omitempty"`
	Deadline     string `json:"deadline"`
	State        string `json:"state"`
	Closed       string `json:"closed,omitempty"` // why it can no longer be decided
	NeedPassword bool   `json:"need_password"`
	Hint         string `json:"hint,omitempty"`
	Size         int64  `json:"size"`
	CSRF         string `json:"csrf"`
	MessageURL   string `json:"message_url,omitempty"` // once accepted
}

// PickupRequest is the body of every POST of the pickup API; each route reads the fields it
// needs and refuses the others.
type PickupRequest struct {
	CSRF     string `json:"csrf"`
	Password string `json:"password,omitempty"`
	// key: the recipient's key, as a signed-note verifier key (certmail keygen's .pub) or as a
	// raw Ed25519 public key, base64 (WebCrypto's exportKey "raw").
	VerifierKey string `json:"verifier_key,omitempty"`
	PublicKey   []byte `json:"public_key,omitempty"`
	// accept: the signed certificate of delivery as a whole note, or its text (from /cod) and the
	// raw Ed25519 signature of that text, base64.
	COD       string `json:"cod,omitempty"`
	CODText   string `json:"cod_text,omitempty"`
	Signature []byte `json:"signature,omitempty"`
}

// Enrolment answers POST /api/v1/pickup/{token}/key: 201 for a key registered now, 200 for one
// registered already.
type Enrolment struct {
	Address   string `json:"address"`
	Key       string `json:"key"`
	New       bool   `json:"new"`                  // false: this key was registered already
	KeyRecord string `json:"key_record,omitempty"` // the KEY record signed now
}

// COD answers GET /api/v1/pickup/{token}/cod: the certificate of delivery to sign.
type COD struct {
	Type   string `json:"type"`
	Signer string `json:"signer"` // the key name whose signature the agent accepts
	Text   string `json:"text"`   // sign exactly these bytes (UTF-8), as the note's text
}

// Decision answers an acceptance or refusal: the item's new state and the evidence it gave.
type Decision struct {
	Label       string   `json:"label"`
	State       string   `json:"state"`
	Recorded    []string `json:"recorded"`              // evidence types signed by this decision
	Attestation string   `json:"attestation,omitempty"` // recipient-signed or agent-attested
	MessageURL  string   `json:"message_url,omitempty"`
}
