package api

// The public location of Schneier–Riordan (PROTOCOLS.md §3): POST /api/v1/published, by the
// sender, publishes the key of a ciphertext its recipient asked for; GET
// /api/v1/published/{hash}, by anyone, finds it by the ciphertext's hash.

// Publication is the body of POST /api/v1/published.
type Publication struct {
	// Request is the recipient's signed SR-REQ note naming the sender, this agent as the public
	// location X, the label and H(C).
	Request string `json:"request"`
	// KeyRecord is the KEY note, signed by this agent, that binds the recipient's key; needed only
	// when the recipient has no key registered at this agent.
	KeyRecord string `json:"key_record,omitempty"`
	Key       []byte `json:"key"` // K, 32 bytes, base64
}

// Published is the answer to both: the PUB record, the key it publishes, and a bundle holding
// the PUB with the log checkpoint and its inclusion proof once the log covers it.
type Published struct {
	Label      string `json:"label"`
	Ciphertext string `json:"ciphertext"` // H(C)
	Key        []byte `json:"key"`
	PUB        string `json:"pub"`    // the signed PUB note
	Bundle     string `json:"bundle"` // certmail-bundle/1 text, for certmail verify
	Logged     bool   `json:"logged"` // the bundle carries the PUB's inclusion proof
}
