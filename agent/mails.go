package agent

import (
	"time"

	"certmail/evidence"
	"certmail/mailfmt"
)

// Mails composes the mails the agent queues (package mailfmt does the MIME). The agent decides
// what each mail must say; the composer decides how it reads.
type Mails interface {
	Notification(n Notice) ([]byte, error)
	Receipt(r Receipt) ([]byte, error)
}

// Notice is what the message-waiting mail to a recipient says. It never carries the content,
// except under mode cem, where the seed's basic protocol delivers M with the notification.
type Notice struct {
	From, To     string // the agent's address and the recipient's
	Sender       string // who sent the certified message
	Label        evidence.Label
	Protocol     evidence.Protocol
	Commitment   evidence.Hash // H(L,M): what the recipient will check the content against
	Deadline     time.Time
	PickupURL    string
	NeedPassword bool   // the pickup asks for the message password
	Hint         string // its hint, if any
	Message      []byte // only under mode cem
}

// ReceiptKind names the mails the sender receives about its message.
type ReceiptKind string

const (
	ReceiptPosting     ReceiptKind = "posting-receipt"  // COP
	ReceiptDelivery    ReceiptKind = "delivery-receipt" // ROD with COD or DLV
	ReceiptRefusal     ReceiptKind = "refusal"          // REJ
	ReceiptRetraction  ReceiptKind = "retraction"       // RTR
	ReceiptWarning     ReceiptKind = "warning"          // WRN
	ReceiptNonDelivery ReceiptKind = "non-delivery"     // NDN
	// ReceiptNonAcceptance tells the sender its submission was refused (NAC): Label is the NAC's,
	// and no item exists for it.
	ReceiptNonAcceptance ReceiptKind = "non-acceptance"
)

// Receipt is what a mail to the sender says: the step, its signed note, and the bundle so far.
type Receipt struct {
	Kind      ReceiptKind
	From, To  string // the agent's address and the sender's
	Sender    string
	Recipient string
	Subject   string // the certified message's subject: the sender's own
	Label     evidence.Label
	Content   evidence.Hash
	Deadline  time.Time
	Time      time.Time
	Reason    string // NDN, REJ and NAC reason code
	Detail    string // NAC: what is wrong, in words
	Form      string // full | short | summary (PEC's completa | breve | sintetica)
	Note      []byte // the signed note of this step
	Bundle    []byte // the bundle so far
	// Message is M, for a delivery receipt in the full form (which carries it) or the short
	// form (which lists its attachments).
	Message []byte
	// Attachments are M's attachments, for a posting receipt in the full or short form.
	Attachments []mailfmt.Attachment
}
