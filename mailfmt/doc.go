// Package mailfmt holds the mail formats of the delivery agent: it checks a submitted message
// and turns it into the exact bytes M that the agent stores, hashes and delivers, and it composes
// the mails the agent sends — the message-waiting notification to the recipient and the receipts
// to the sender (posting, delivery, warning, non-delivery, refusal, retraction, non-acceptance).
//
// ParseSubmission is the access point's gate, in the spirit of PEC's punto di accesso: a message
// that is not well-formed Internet mail is refused with an *Error that says what is wrong and what
// to do, carrying the SMTP reply and enhanced status codes and the HTTP status for the API. The
// per-message options travel as Certmail-* header fields, which are removed before hashing.
//
// The composers build RFC 5322 / MIME messages with CRLF line endings, RFC 2047-encoded headers,
// Auto-Submitted: auto-generated (RFC 3834) and a Message-ID made from an id the caller draws.
// They refuse header values that could break a header (CR, LF, other controls) and escape every
// value in HTML. A notification never carries the content nor the subject of the certified
// message, except in mode cem, where delivering M with the notification is the protocol's step 5.
//
// Everything here is a pure function: no I/O, no clock (times are arguments), no randomness
// (ids are arguments), no package-level mutable state. The package must never send, store or sign.
package mailfmt
