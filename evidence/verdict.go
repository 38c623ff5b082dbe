package evidence

import (
	"encoding/json"
	"fmt"
	"strings"
)

// Outcome is what a body of evidence proves about one exchange.
type Outcome string

const (
	OutcomeInvalid          Outcome = "invalid"            // the bundle proves nothing: it is not whole or not valid
	OutcomeRefusedAtPosting Outcome = "not-accepted"       // the agent refused the submission (NAC)
	OutcomePosted           Outcome = "posted"             // accepted for delivery; no outcome yet
	OutcomeDelivered        Outcome = "delivered"          // the recipient took delivery and committed to it
	OutcomeRefused          Outcome = "refused"            // the recipient refused the item (REJ)
	OutcomeNotDelivered     Outcome = "not-delivered"      // a non-delivery notice stands (NDN)
	OutcomeRetracted        Outcome = "retracted"          // the sender withdrew it before pickup (RTR)
	OutcomeCompensation     Outcome = "compensation-due"   // COP held, no report nor notice by the deadline
	OutcomeReceiptProven    Outcome = "receipt-proven"     // CMP, SR, AGHP: the sender proves receipt
	OutcomeReceiptUnproven  Outcome = "receipt-not-proven" // genuine evidence that falls short of proving receipt
	OutcomeOriginProven     Outcome = "origin-proven"      // CMP: the recipient proves who sent the message
)

// Attestation says whose word a delivery rests on.
type Attestation string

const (
	RecipientSigned Attestation = "recipient-signed" // B's own key signed the certificate of delivery
	AgentAttested   Attestation = "agent-attested"   // the agent's DLV stands where B's COD would
)

// Verdict is what a judge finds: the outcome in plain words and as JSON, each fact a valid note
// establishes, and each problem, naming the note and the check that failed.
type Verdict struct {
	Valid       bool        `json:"valid"` // whole and every check passed
	Label       string      `json:"label"`
	Protocol    Protocol    `json:"protocol,omitempty"`
	Outcome     Outcome     `json:"outcome"`
	Attestation Attestation `json:"attestation,omitempty"`
	Summary     string      `json:"summary"`
	Facts       []Fact      `json:"facts"`
	Problems    []Problem   `json:"problems"`
	Notices     []string    `json:"notices,omitempty"` // true and worth knowing, not failures (e.g. no log proofs yet)
}

// Fact is what one valid note establishes, or (Note 0) what the bundle's log checkpoint and
// proofs establish.
type Fact struct {
	Note   int    `json:"note"` // 1-based position in the bundle; 0 for the log
	Type   Type   `json:"type,omitempty"`
	Signer string `json:"signer"`
	Time   string `json:"time,omitempty"`
	Says   string `json:"says"`
}

// Problem is one failed check. Note is the 1-based note position, or 0 for the bundle as a whole.
type Problem struct {
	Note   int    `json:"note"`
	Type   Type   `json:"type,omitempty"`
	Check  string `json:"check"`
	Reason string `json:"reason"`
}

// Where names the place of the problem for people: "bundle", or "note N TYPE".
func (p Problem) Where() string {
	if p.Note <= 0 {
		return "bundle"
	}
	if p.Type == "" {
		return fmt.Sprintf("note %d", p.Note)
	}
	return fmt.Sprintf("note %d %s", p.Note, p.Type)
}

// Fail records a problem and marks the verdict invalid.
func (v *Verdict) Fail(note int, t Type, check, format string, args ...any) {
	v.Valid = false
	v.Problems = append(v.Problems, Problem{Note: note, Type: t, Check: check, Reason: fmt.Sprintf(format, args...)})
}

// JSON renders the verdict for programs.
func (v *Verdict) JSON() []byte {
	if v.Facts == nil {
		v.Facts = []Fact{}
	}
	if v.Problems == nil {
		v.Problems = []Problem{}
	}
	b, _ := json.MarshalIndent(v, "", "  ")
	return append(b, '\n')
}

// Text renders the verdict for people.
func (v *Verdict) Text() string {
	var b strings.Builder
	status := "VALID"
	if !v.Valid {
		status = "NOT VALID"
	}
	fmt.Fprintf(&b, "%s: %s\n", status, v.Summary)
	fmt.Fprintf(&b, "label %s", v.Label)
	if v.Protocol != "" {
		fmt.Fprintf(&b, ", protocol %s", v.Protocol)
	}
	fmt.Fprintf(&b, ", outcome %s", v.Outcome)
	if v.Attestation != "" {
		fmt.Fprintf(&b, " (%s)", v.Attestation)
	}
	b.WriteString("\n")
	if len(v.Facts) > 0 {
		b.WriteString("\nevidence:\n")
		for _, f := range v.Facts {
			if f.Note == 0 {
				continue
			}
			when := ""
			if f.Time != "" {
				when = " at " + f.Time
			}
			fmt.Fprintf(&b, "  note %d %s, signed by %s%s: %s\n", f.Note, f.Type, f.Signer, when, f.Says)
		}
		for _, f := range v.Facts {
			if f.Note == 0 {
				fmt.Fprintf(&b, "  log checkpoint signed by %s: %s\n", f.Signer, f.Says)
			}
		}
	}
	if len(v.Problems) > 0 {
		b.WriteString("\nproblems:\n")
		for _, p := range v.Problems {
			fmt.Fprintf(&b, "  %s: %s check failed: %s\n", p.Where(), p.Check, p.Reason)
		}
	}
	if len(v.Notices) > 0 {
		b.WriteString("\nnotices:\n")
		for _, n := range v.Notices {
			fmt.Fprintf(&b, "  %s\n", n)
		}
	}
	return b.String()
}
