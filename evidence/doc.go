// Package evidence defines certmail's evidence: every record of DESIGN.md §3 and every protocol
// token of PROTOCOLS.md as a C2SP signed note with a canonical, versioned body; the bundle that
// carries the evidence of one label to an arbiter; and the verdict that says what it proves.
//
// A note made here verifies with golang.org/x/mod/sumdb/note and the signer's verifier key
// alone. The body is canonical text:
//
//	certmail-evidence/1
//	type COP
//	label 0Q3ZJ8X...
//	...
//
// Parsing is strict: the version line, the field order the type defines, no missing, duplicate
// or unknown fields, canonical values only. Parsing then encoding gives back the input bytes, so
// two parties holding the same evidence hold the same bytes and the same log leaf.
//
// A bundle may carry a checkpoint of an agent's evidence log (a C2SP tlog-checkpoint whose
// origin is "<agent>/log", signed with the agent's key) and, for each note, the RFC 6962
// inclusion proof of its leaf, Note.Leaf; Check verifies them with the other checks.
//
// This package does no I/O, keeps no state and never decides who won: the judges in package
// protocol do that, using the checked records this package returns.
package evidence
