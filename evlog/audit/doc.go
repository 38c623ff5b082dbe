// Package audit checks a certmail evidence log from the outside, as any third party can: it
// reads a C2SP tlog-tiles log from a directory or over HTTP, verifies its signed checkpoints,
// recomputes its tree from the stored entries and tiles (Fsck), follows it from one checkpoint
// to the next and proves that each extends the last (Follow), and writes and checks the
// self-contained proof of a fork when one does not (Fork, CheckFork).
//
// The Merkle tree is RFC 6962's, computed with golang.org/x/mod/sumdb/tlog; checkpoints are
// opened with package evidence. This package never writes to a log, and trusts nothing it reads
// before the agent's signature and the hashes vouch for it.
package audit
