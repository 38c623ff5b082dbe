package web

import (
	"fmt"
	"time"

	"certmail/evidence"
	"certmail/store"
)

// The words of the sender's pages: what state an item is in, and what each piece of its
// evidence proves, for a person reading at a glance. The evidence itself says it in
// evidence.Record.Describe; these say it to the sender, in the second person.

// step is one line of a timeline: one signed note.
type step struct {
	N      int // 1-based position in the bundle, as `certmail verify` numbers notes
	Type   evidence.Type
	Time   time.Time
	Title  string // "Accepted"
	Who    string // who signed it
	Proves string // what it proves, in plain words
	Class  string // good, bad or "" (for the page's colours)
	Leaf   evidence.Hash
}

// timeline is the item's evidence in the order it was signed.
func timeline(b *evidence.Bundle) []step {
	var out []step
	for i, n := range b.Notes {
		r := n.Record
		title, proves, class := stepWords(r)
		out = append(out, step{N: i + 1, Type: r.Type, Time: r.Time, Title: title, Who: r.Signer(), Proves: proves, Class: class, Leaf: n.Leaf()})
	}
	return out
}

// stepWords says what one record proves to the sender.
func stepWords(r *evidence.Record) (title, proves, class string) {
	switch r.Type {
	case evidence.COP:
		return "Posted", fmt.Sprintf("%s took your message for %s: the content with fingerprint %s, to be delivered or reported by %s. This is your proof of sending.",
			r.Agent, r.Recipient, shortHash(r.Content), evidence.FormatTime(r.Deadline)), ""
	case evidence.NTF:
		return "Recipient notified", fmt.Sprintf("%s handed the message-waiting mail for %s to their mail server. It carried the label and the commitment %s, not the content.",
			r.Agent, r.Recipient, shortHash(r.Commitment)), ""
	case evidence.DLV:
		return "Accepted", fmt.Sprintf("%s attests that %s authenticated (by %s) from %s and accepted the message. Only then was the content released.",
			r.Agent, r.Recipient, r.Method, r.Client), "good"
	case evidence.CODBasic, evidence.CODNSR, evidence.CODIP:
		return "Signed for delivery", fmt.Sprintf("%s signed for the message with their own key: a certificate of delivery that does not rest on the agent's word.",
			r.Recipient), "good"
	case evidence.ROD:
		return "Delivery reported", fmt.Sprintf("%s reports the delivery to %s, with the content fingerprint %s. With the acceptance, this proves delivery.",
			r.Agent, r.Recipient, shortHash(r.Content)), "good"
	case evidence.REJ:
		return "Refused", fmt.Sprintf("%s attests that %s refused the message (%s). Nothing of its content was released to them.",
			r.Agent, r.Recipient, r.Reason), "bad"
	case evidence.RET:
		return "Retrieved", fmt.Sprintf("%s released the content to %s, to the address %s.", r.Agent, r.Recipient, r.Client), "good"
	case evidence.WRN:
		return "Warned", fmt.Sprintf("%s had not accepted yet; %s warned you that the deadline %s was approaching.",
			r.Recipient, r.Agent, evidence.FormatTime(r.Deadline)), ""
	case evidence.NDN:
		why := fmt.Sprintf("the reason given is %q", r.Reason)
		switch r.Reason {
		case "deadline":
			why = fmt.Sprintf("%s did not accept it by the deadline %s", r.Recipient, evidence.FormatTime(r.Deadline))
		case "bounced":
			why = fmt.Sprintf("the notification to %s could not be delivered", r.Recipient)
		case "relay":
			why = "the next agent did not take charge of it in time"
		case "not-accepted":
			why = fmt.Sprintf("%s did not accept it in time at its own agent", r.Recipient)
		}
		return "Not delivered", fmt.Sprintf("%s gives notice that the message was not delivered: %s.", r.Agent, why), "bad"
	case evidence.RTR:
		return "Retracted", fmt.Sprintf("You withdrew the message before %s picked it up; %s can no longer accept it.", r.Recipient, r.Recipient), "bad"
	case evidence.KEY:
		return "Recipient's key", fmt.Sprintf("%s binds the key %s to %s, from this time on: it checks the recipient's own signature.",
			r.Agent, evidence.KeyID(r.Key), r.Subject), ""
	case evidence.ACK:
		return "Relayed", fmt.Sprintf("%s took charge of the message for %s from %s.", r.Agent, r.Recipient, r.From), ""
	}
	return string(r.Type), sentence(r.Describe()), ""
}

// shortHash is a hash as a person compares it at a glance; the page lists the whole one.
func shortHash(h evidence.Hash) string { return h.String()[:len("sha256:")+12] + "…" }

// stateWords is an item's state in a few words, for the list.
func stateWords(it store.Item, now time.Time) (words, class string) {
	switch it.State {
	case store.StatePosted:
		if !now.Before(it.Deadline) {
			return "deadline passed", "bad"
		}
		return "posted, notification on its way", ""
	case store.StateNotified:
		if !now.Before(it.Deadline) {
			return "deadline passed", "bad"
		}
		return "waiting for the recipient", ""
	case store.StateRelayed:
		if !now.Before(it.Deadline) {
			return "deadline passed", "bad"
		}
		return "relayed to " + it.Next + ", waiting for the recipient", ""
	case store.StateDelivered:
		return "accepted", "ok"
	case store.StateRefused:
		return "refused", "bad"
	case store.StateRetracted:
		return "retracted", "bad"
	case store.StateExpired:
		return "not delivered: deadline passed", "bad"
	case store.StateBounced:
		return "not delivered: notification bounced", "bad"
	}
	return string(it.State), ""
}

// stateSentence is the item's state in one sentence, for the top of its page.
func stateSentence(it store.Item, now time.Time) string {
	t := func(x time.Time) string { return evidence.FormatTime(x) }
	switch it.State {
	case store.StatePosted, store.StateNotified:
		if !now.Before(it.Deadline) {
			return fmt.Sprintf("%s did not accept by the deadline %s; the agent is about to give notice of non-delivery.", it.Recipient, t(it.Deadline))
		}
		if it.State == store.StatePosted && it.Next != "" {
			return fmt.Sprintf("Posted at %s; on its way to %s, the agent of %s's domain, who has until %s to accept.", t(it.Submitted), it.Next, it.Recipient, t(it.Deadline))
		}
		if it.State == store.StatePosted {
			return fmt.Sprintf("Posted at %s; the notification to %s is on its way, and they have until %s to accept.", t(it.Submitted), it.Recipient, t(it.Deadline))
		}
		return fmt.Sprintf("%s was notified at %s and has not decided yet; they have until %s to accept.", it.Recipient, t(it.Updated), t(it.Deadline))
	case store.StateRelayed:
		return fmt.Sprintf("Relayed: %s, the agent of %s's domain, took charge of it; they have until %s to accept.", it.Next, it.Recipient, t(it.Deadline))
	case store.StateDelivered:
		return fmt.Sprintf("Delivered: %s accepted the message at %s.", it.Recipient, t(it.Updated))
	case store.StateRefused:
		return fmt.Sprintf("Refused: %s refused the message at %s without seeing its content.", it.Recipient, t(it.Updated))
	case store.StateRetracted:
		return fmt.Sprintf("Retracted: you withdrew the message at %s, before %s picked it up.", t(it.Updated), it.Recipient)
	case store.StateExpired:
		return fmt.Sprintf("Not delivered: %s did not accept the message by the deadline %s.", it.Recipient, t(it.Deadline))
	case store.StateBounced:
		return fmt.Sprintf("Not delivered: the notification to %s could not be delivered (at %s).", it.Recipient, t(it.Updated))
	}
	return fmt.Sprintf("The message is %s.", it.State)
}

// modeWords says what a mode gives, for the compose form and the message page.
func modeWords(p evidence.Protocol) string {
	switch p {
	case evidence.CEMIP:
		return "the recipient accepts before seeing the content, and can check it against the commitment in the notification"
	case evidence.CEMNSR:
		return "the recipient accepts before seeing the content"
	case evidence.CEM:
		return "the content travels with the notification; the recipient may read it and still not sign for it"
	}
	return string(p)
}
