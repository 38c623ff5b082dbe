// Package store is the delivery agent's durable state behind one interface (DESIGN.md §6): users,
// items and their states, evidence, timers and the outbound mail queue, with SQLite embedded by
// default and PostgreSQL for scale. Message bodies are content-addressed blobs beside it.
//
// The rule it exists for: nothing is acknowledged before it is durably stored. Update runs a
// function in one transaction and returns only once the transaction is on disk, so an agent step
// writes its item, its evidence, its timers and its outbound mail atomically, or not at all.
//
// The package knows nothing of protocols; it must never sign, send or decide anything.
package store

import (
	"context"
	"errors"
	"time"

	"certmail/evidence"
)

// Errors every backend returns, so callers can tell them apart with errors.Is.
var (
	ErrNotFound  = errors.New("store: not found")
	ErrDuplicate = errors.New("store: duplicate") // a label, token, leaf or user seen before
	ErrCorrupt   = errors.New("store: corrupt")   // stored bytes that do not hash to their name
)

// Store is the durable state of one agent (or of several agent nodes sharing PostgreSQL).
type Store interface {
	// Update runs fn in a read-write transaction and commits it durably before returning nil. If
	// fn returns an error, nothing fn did is kept and that error is returned.
	Update(ctx context.Context, fn func(Tx) error) error
	// UpdateWithin is Update for a write that nobody waits on to acknowledge anything, such as
	// the record of a delivered mail: its commit may wait up to within for an Update that
	// somebody does wait on, and share that one's commit. It too returns nil only once fn's
	// writes are durably committed.
	UpdateWithin(ctx context.Context, within time.Duration, fn func(Tx) error) error
	// View runs fn in a read-only transaction.
	View(ctx context.Context, fn func(Tx) error) error
	Close() error
}

// Tx is what a transaction can read and write.
type Tx interface {
	// PutUser inserts or replaces the user with u.Address.
	PutUser(u User) error
	User(address string) (User, error)
	Users() ([]User, error)

	// InsertItem stores a new item; ErrDuplicate when its label or token hash was seen before.
	InsertItem(it Item) error
	Item(l evidence.Label) (Item, error)
	// ItemByToken finds the item whose pickup token hashes to h.
	ItemByToken(h evidence.Hash) (Item, error)
	// UpdateItem replaces the mutable fields of an existing item: State, Updated, Retrievals and
	// the pickup credentials (TokenHash, PasswordHash, PasswordHint). The rest is fixed when the
	// item is inserted, as its evidence binds it. ErrNotFound when there is no such item.
	UpdateItem(it Item) error
	// ItemsBySender lists a sender's items, newest first.
	ItemsBySender(sender string, limit, offset int) ([]Item, error)
	// ItemsBySubmission lists the items of one submission (Item.Submission), in the order
	// they were inserted.
	ItemsBySubmission(submission string) ([]Item, error)

	// PutMessage stores a message body under its SHA-256 h and the time at which its items
	// were submitted (Item.Submitted), in the step that makes them exist, so that one commit
	// makes both durable: the store keeps bodies in the order of at, which a hash alone has
	// not. Storing the same bytes at the same time again is a no-op. h must be data's hash:
	// bytes stored under another name are found by Message (ErrCorrupt).
	PutMessage(h evidence.Hash, at time.Time, data []byte) error
	// Message returns the body stored under h and at (a body stored by an earlier version, under
	// h alone, is found whatever at): ErrNotFound when there is none, ErrCorrupt when what is
	// stored does not hash to h.
	Message(h evidence.Hash, at time.Time) ([]byte, error)

	// AddEvidence appends a signed note to the item's evidence (l is zero for KEY records);
	// ErrDuplicate when the same note (same leaf) is stored already.
	AddEvidence(l evidence.Label, n *evidence.Note) (Evidence, error)
	// Evidence lists the notes of a label in the order they were stored.
	Evidence(l evidence.Label) ([]Evidence, error)
	// EvidenceByLeaf finds a note by the label its record names (zero for a KEY record, which
	// names none; then under whatever label it is stored) and its leaf hash.
	EvidenceByLeaf(l evidence.Label, leaf evidence.Hash) (Evidence, error)
	// SetPublished indexes the stored note seq (a PUB record) under the ciphertext hash it
	// publishes a key for; ErrDuplicate when that hash has one already.
	SetPublished(ciphertext evidence.Hash, seq int64) error
	// Published finds the note indexed under a ciphertext hash.
	Published(ciphertext evidence.Hash) (Evidence, error)

	// SetLogIndex records that the note stored as seq is entry index of the evidence log
	// (package evlog). A note keeps the first index recorded for it: recording that index again
	// changes nothing, another one is ErrDuplicate, and so is an index recorded for another
	// note. ErrNotFound when no note is stored as seq.
	SetLogIndex(seq int64, index uint64) error
	// UnloggedEvidence lists up to limit notes with no log index recorded, in storage order:
	// those whose step committed but whose append to the log was lost or failed.
	UnloggedEvidence(limit int) ([]Evidence, error)
	// CountLogged counts the notes recorded at a log index at or above from.
	CountLogged(from uint64) (int64, error)

	// SetTimer inserts or moves the timer (Label, Kind).
	SetTimer(t Timer) error
	DeleteTimer(l evidence.Label, kind string) error
	// DueTimers lists timers due at or before now, earliest first.
	DueTimers(now time.Time, limit int) ([]Timer, error)
	Timers(l evidence.Label) ([]Timer, error)

	// Enqueue adds a mail to the outbound queue and returns it with its ID.
	Enqueue(m Outbound) (Outbound, error)
	// DueOutbound lists queued mails whose next attempt is at or before now, earliest first.
	DueOutbound(now time.Time, limit int) ([]Outbound, error)
	// UpdateOutbound records an attempt's result (State, Attempts, NextAttempt, LastError…).
	UpdateOutbound(m Outbound) error
	OutboundFor(l evidence.Label) ([]Outbound, error)
}

// User is an account at the agent.
type User struct {
	Address      string // the e-mail address, which is also the login name
	PasswordHash string // argon2id, PHC string format
	Admin        bool
	Disabled     bool
	// VerifierKey is the user's registered signed-note key ("" when none), bound to the
	// address by a KEY record the agent logged.
	VerifierKey string
	Created     time.Time
	Updated     time.Time
}

// State is where an item stands.
type State string

const (
	StatePosted    State = "posted"    // COP signed; notification (or relay to the next agent) queued
	StateRelayed   State = "relayed"   // the next agent took charge of it (ACK)
	StateNotified  State = "notified"  // notification delivered to the recipient's server
	StateAccepted  State = "accepted"  // the recipient accepted at the last agent, which awaits the sender's agent's countersignature
	StateDelivered State = "delivered" // the recipient accepted (COD/DLV, ROD)
	StateRefused   State = "refused"   // the recipient refused (REJ)
	StateRetracted State = "retracted" // the sender withdrew it (RTR)
	StateExpired   State = "expired"   // deadline passed (NDN)
	StateBounced   State = "bounced"   // the notification could not be delivered (NDN)
)

// Final reports whether nothing more can happen to an item in state s.
func (s State) Final() bool {
	return s == StateDelivered || s == StateRefused || s == StateRetracted || s == StateExpired || s == StateBounced
}

// Item is one certified exchange: one label, one sender, one recipient. A submission to several
// recipients makes one item per recipient, sharing Submission and the content blob.
type Item struct {
	Label      evidence.Label
	Submission string // groups the items of one submission
	Protocol   evidence.Protocol
	Sender     string
	Recipient  string
	Subject    string        // shown to the sender on its own pages; never in notifications
	Content    evidence.Hash // H(M): the blob key
	Commitment evidence.Hash // H(L,M)
	Size       int64
	Deadline   time.Time
	Receipt    string // full | short | summary
	Notify     string // notification policy
	// PasswordHash (argon2id, "" for none) and PasswordHint protect the pickup.
	PasswordHash string
	PasswordHint string
	TokenHash    evidence.Hash // SHA-256 of the single-purpose pickup token
	State        State
	Submitted    time.Time
	Updated      time.Time
	Retrievals   int // how many times the content was fetched (RET records)
	// Prev and Next place the item in a chain of agents P1..Pn (federation, PROTOCOLS.md §1):
	// the agent it was relayed from ("" at P1, which posted it) and the agent it is relayed to
	// ("" at Pn, which delivers it). Both are empty when one agent serves both ends.
	Prev, Next string
}

// Evidence is one stored note.
type Evidence struct {
	Seq    int64 // order of storage, across the store
	Label  evidence.Label
	Type   evidence.Type
	Leaf   evidence.Hash
	Note   []byte
	Stored time.Time
	// Logged says whether the note's entry in the evidence log is recorded, and LogIndex is
	// that entry's index.
	Logged   bool
	LogIndex uint64
}

// Timer is a durable wake-up: a deadline, a warning, a retry.
type Timer struct {
	Label evidence.Label
	Kind  string // e.g. "warn", "deadline"
	Due   time.Time
}

// OutboundState is where a queued mail stands.
type OutboundState string

const (
	OutQueued  OutboundState = "queued"
	OutSent    OutboundState = "sent"
	OutBounced OutboundState = "bounced" // permanent failure, or retries exhausted
)

// Outbound is one mail in the durable outbound queue.
type Outbound struct {
	ID    int64
	Label evidence.Label // zero when the mail concerns no item
	Kind  string         // notification, posting-receipt, delivery-receipt, warning, non-delivery…
	From  string         // envelope sender
	To    string         // envelope recipient
	Data  []byte         // the whole RFC 5322 message
	// Message, when set, names a stored message body (Tx.PutMessage's h and at: Message and
	// MessageTime) that Data carries verbatim at byte MessageAt, as a full receipt does: the
	// store keeps Data without it and puts it back when the mail is read, so that the body is
	// not written twice.
	Message     evidence.Hash
	MessageTime time.Time
	MessageAt   int
	State       OutboundState
	Attempts    int
	NextAttempt time.Time
	LastError   string
	Created     time.Time
	Updated     time.Time
}

// Blobs holds message bodies by content hash. Put returns only once the bytes are durable. The
// agent stores bodies with Tx.PutMessage; a Blobs is where a data directory of an earlier
// version kept them, read when the store has no such body.
type Blobs interface {
	Put(ctx context.Context, data []byte) (evidence.Hash, error)
	Get(ctx context.Context, h evidence.Hash) ([]byte, error)
}
