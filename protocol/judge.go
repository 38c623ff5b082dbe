package protocol

import (
	"fmt"
	"strings"
	"time"

	"certmail/evidence"
)

// Judge weighs a checked bundle with the judge of its protocol and returns the completed verdict,
// using only the times the evidence itself carries.
func Judge(c *evidence.Checked) *evidence.Verdict { return JudgeAt(c, time.Time{}) }

// JudgeAt is Judge at the arbiter's time now: with it, a certificate of posting whose deadline
// has passed with no report nor notice shows that compensation is due. `certmail verify` is this
// function behind one command.
func JudgeAt(c *evidence.Checked, now time.Time) *evidence.Verdict {
	v := c.Verdict
	p, err := protocolOf(c.Bundle)
	if err != nil {
		v.Fail(0, "", "protocol", "%v", err)
		v.Outcome = evidence.OutcomeInvalid
		v.Summary = "the bundle does not say which protocol it belongs to"
		return v
	}
	v.Protocol = p
	addFacts(c)
	refuseForeignTypes(c, p)
	switch p {
	case evidence.CEM, evidence.CEMNSR, evidence.CEMIP:
		judgeCEM(c, p, now)
	case evidence.CMP1, evidence.CMP2:
		judgeCMP(c, p)
	case evidence.SR:
		judgeSR(c)
	case evidence.AGHP:
		judgeAGHP(c)
	}
	// A bundle with a failed check proves nothing as a whole: the outcome says so, and the
	// summary keeps what the valid notes alone would show, for the person reading the problems.
	if !v.Valid && v.Outcome != evidence.OutcomeInvalid {
		what := "a problem"
		if len(v.Problems) > 1 {
			what = fmt.Sprintf("%d problems", len(v.Problems))
		}
		v.Summary = fmt.Sprintf("the evidence is not whole (%s below); the valid notes alone would read: %s", what, v.Summary)
		v.Attestation = ""
		v.Outcome = evidence.OutcomeInvalid
	}
	return v
}

// protocolOf finds the one protocol a bundle's notes belong to. Notes that name no protocol (KEY,
// certificates of delivery, some tokens) take it from their type; a mixture is an error.
func protocolOf(b *evidence.Bundle) (evidence.Protocol, error) {
	found := map[evidence.Protocol]int{}
	for i, n := range b.Notes {
		p := n.Record.Protocol
		if p == "" {
			p = protocolOfType(n.Record.Type)
		}
		if p == "" {
			continue
		}
		if _, ok := found[p]; !ok {
			found[p] = i + 1
		}
	}
	switch len(found) {
	case 0:
		return "", fmt.Errorf("no note names a protocol")
	case 1:
		for p := range found {
			return p, nil
		}
	}
	var parts []string
	for _, p := range evidence.Protocols() {
		if i, ok := found[p]; ok {
			parts = append(parts, fmt.Sprintf("%s (note %d)", p, i))
		}
	}
	return "", fmt.Errorf("notes of several protocols in one bundle: %s", strings.Join(parts, ", "))
}

// protocolOfType gives the protocol a token type belongs to, or "" for types any protocol uses.
func protocolOfType(t evidence.Type) evidence.Protocol {
	switch t {
	case evidence.CODBasic:
		return evidence.CEM
	case evidence.CODNSR:
		return evidence.CEMNSR
	case evidence.CODIP:
		return evidence.CEMIP
	case evidence.CMPNRO, evidence.CMPREQ, evidence.CMPNRD:
		return evidence.CMP1
	case evidence.CMP2NRO, evidence.CMP2REQ, evidence.CMP2NRD:
		return evidence.CMP2
	case evidence.SRREQ, evidence.SRKEYRCPT:
		return evidence.SR
	case evidence.AGHPRECEIPT:
		return evidence.AGHP
	}
	return ""
}

// refuseForeignTypes fails every valid note whose type has no place in protocol p: a token of
// one protocol is never evidence in another (PROTOCOLS.md, common rules: domain separation).
func refuseForeignTypes(c *evidence.Checked, p evidence.Protocol) {
	notes, pos := c.Good()
	for i, n := range notes {
		t := n.Record.Type
		if t == evidence.KEY {
			continue
		}
		if owner := protocolOfType(t); owner != "" && owner != p {
			c.Verdict.Fail(pos[i], t, "protocol", "a %s belongs to %s, not to this %s exchange", t, owner, p)
			continue
		}
		if owner := protocolOfType(t); owner == "" && !p.IsCEM() && !(p == evidence.SR && t == evidence.PUB) {
			c.Verdict.Fail(pos[i], t, "protocol", "a %s has no place in a %s exchange", t, p)
		}
	}
}

// addFacts records what each valid note establishes, in bundle order.
func addFacts(c *evidence.Checked) {
	notes, pos := c.Good()
	for i, n := range notes {
		r := n.Record
		f := evidence.Fact{Note: pos[i], Type: r.Type, Signer: r.Signer(), Says: r.Describe()}
		if !r.Time.IsZero() {
			f.Time = evidence.FormatTime(r.Time)
		}
		c.Verdict.Facts = append(c.Verdict.Facts, f)
	}
}

// good is a valid note with its 1-based position in the bundle, for the judges.
type good struct {
	pos int
	rec *evidence.Record
}

// goodOf returns the valid notes of type t.
func goodOf(c *evidence.Checked, t evidence.Type) []good {
	var out []good
	notes, pos := c.Good()
	for i, n := range notes {
		if n.Record.Type == t {
			out = append(out, good{pos[i], n.Record})
		}
	}
	return out
}
