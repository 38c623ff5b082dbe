package api

// The sender's documents: POST /api/v1/messages, GET /api/v1/messages/{label} and its retraction.
// A sender authenticates with HTTP Basic; times are RFC 3339 in UTC (evidence.FormatTime).

// Message is the application/json form of POST /api/v1/messages. The agent composes it into an
// RFC 5322 message From the authenticated sender, with the options as Certmail-* header fields,
// and checks that message like any other. The option fields take the values of those headers
// (mailfmt.Header*).
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
	ContentType string `json:"content_type,omitempty"` // default application/octet-stream
	Data        []byte `json:"data"`                   // base64 (RFC 4648 §4, padded)
}

// Submitted is the answer to a submission (201): one certified item per recipient.
type Submitted struct {
	Submission string   `json:"submission"`
	Messages   []Posted `json:"messages"`
}

// Posted is one recipient's item, with its signed certificate of posting.
type Posted struct {
	Label     string `json:"label"`
	Recipient string `json:"recipient"`
	COP       string `json:"cop"` // the signed certificate of posting, as a note
	StatusURL string `json:"status_url"`
	BundleURL string `json:"bundle_url"`
}

// Status is an item and its timeline, as GET /api/v1/messages/{label} and a retraction answer it.
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
	Content    string  `json:"content"`    // H(M)
	Commitment string  `json:"commitment"` // H(L,M)
	Retrievals int     `json:"retrievals"`
	Events     []Event `json:"events"`
	BundleURL  string  `json:"bundle_url"`
}

// Event is one line of a timeline.
type Event struct {
	Time string `json:"time"`
	Type string `json:"type"` // COP, NTF, DLV…, or a mail event: "notification sent"
	Says string `json:"says"`
}
