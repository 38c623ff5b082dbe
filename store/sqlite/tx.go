package sqlite

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"math"
	"strconv"
	"strings"
	"time"

	msqlite "modernc.org/sqlite"
	sqlite3 "modernc.org/sqlite/lib"

	"certmail/evidence"
	"certmail/store"
)

// tx is a store.Tx on one database/sql transaction. Its statements run under the context of
// the Update or View that made it.
type tx struct {
	ctx      context.Context
	q        querier
	readOnly bool
	// put is the length of each message body this transaction inserted, by key, which
	// withoutMessage then need not read back.
	put map[string]int
}

// querier is what a tx runs its statements on: a *sql.Tx for View, a guard for Update.
type querier interface {
	ExecContext(ctx context.Context, query string, args ...any) (sql.Result, error)
	QueryContext(ctx context.Context, query string, args ...any) (*sql.Rows, error)
	QueryRowContext(ctx context.Context, query string, args ...any) *sql.Row
}

var _ store.Tx = (*tx)(nil)

var errReadOnly = errors.New("write in a View (read-only) transaction")

// exec runs a writing statement. A failed statement undoes only itself: the transaction goes on,
// so fn may handle an ErrDuplicate and continue (storetest pins this down for every backend).
func (t *tx) exec(query string, args ...any) (sql.Result, error) {
	if t.readOnly {
		return nil, errReadOnly
	}
	return t.q.ExecContext(t.ctx, query, args...)
}

// insert runs an INSERT of one row and returns its rowid (the table's INTEGER PRIMARY KEY). It
// is an exec, not an INSERT … RETURNING, whose rows cost the driver more than the insert
// (BENCHMARKS.md); the writer is one connection, so the last rowid is this statement's.
func (t *tx) insert(query string, args ...any) (int64, error) {
	res, err := t.exec(query, args...)
	if err != nil {
		return 0, err
	}
	return res.LastInsertId()
}

// mustChange turns an UPDATE or DELETE that matched no row into ErrNotFound.
func mustChange(res sql.Result, err error) error {
	if err != nil {
		return err
	}
	n, err := res.RowsAffected()
	if err != nil {
		return err
	}
	if n == 0 {
		return store.ErrNotFound
	}
	return nil
}

// isUnique reports whether err is a UNIQUE or PRIMARY KEY constraint violation.
func isUnique(err error) bool {
	var e *msqlite.Error
	if !errors.As(err, &e) {
		return false
	}
	return e.Code() == sqlite3.SQLITE_CONSTRAINT_UNIQUE || e.Code() == sqlite3.SQLITE_CONSTRAINT_PRIMARYKEY
}

// dupOr wraps a constraint violation as store.ErrDuplicate, keeping the driver's word on which
// constraint it was, and anything else as it is.
func dupOr(err error) error {
	if isUnique(err) {
		return fmt.Errorf("%w (%v)", store.ErrDuplicate, err)
	}
	return err
}

// Column encodings: times as Unix milliseconds, the zero label or hash as NULL.

func msec(t time.Time) int64 { return t.UnixMilli() }

func fromMsec(ms int64) time.Time { return time.UnixMilli(ms).UTC() }

func labelArg(l evidence.Label) any {
	if l.IsZero() {
		return nil
	}
	return l.String()
}

func hashArg(h evidence.Hash) any {
	if h.IsZero() {
		return nil
	}
	return h.String()
}

// labelIs is a WHERE condition on a label column and its argument: the zero label selects the
// rows stored without one (KEY records, mail about no item).
func labelIs(l evidence.Label) (string, []any) {
	if l.IsZero() {
		return "label IS NULL", nil
	}
	return "label = ?", []any{l.String()}
}

func labelCol(s sql.NullString) (evidence.Label, error) {
	if !s.Valid {
		return evidence.Label{}, nil
	}
	return evidence.ParseLabel(s.String)
}

func hashCol(s sql.NullString) (evidence.Hash, error) {
	if !s.Valid {
		return evidence.Hash{}, nil
	}
	return evidence.ParseHash(s.String)
}

// limitArg is LIMIT's argument: limit <= 0 means none.
func limitArg(limit int) int64 {
	if limit <= 0 {
		return math.MaxInt64
	}
	return int64(limit)
}

func offsetArg(offset int) int64 { return int64(max(offset, 0)) }

// scanner is a *sql.Row or *sql.Rows.
type scanner interface{ Scan(dest ...any) error }

// collect reads every row of a query with scan.
func collect[T any](rows *sql.Rows, err error, scan func(scanner) (T, error)) ([]T, error) {
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	var out []T
	for rows.Next() {
		v, err := scan(rows)
		if err != nil {
			return nil, err
		}
		out = append(out, v)
	}
	return out, rows.Err()
}

// one reads the single row of a query with scan; no row is ErrNotFound.
func one[T any](row *sql.Row, scan func(scanner) (T, error)) (T, error) {
	v, err := scan(row)
	if errors.Is(err, sql.ErrNoRows) {
		return v, store.ErrNotFound
	}
	return v, err
}

// Messages

// bodyKey is the key of the body h stored at at (schema v10): at as 12 hexadecimal digits of
// Unix milliseconds, then h, so that bodies are added in the order they are stored; a hash
// alone, a random key, put each body in a page of its own in the index. Bodies stored by
// earlier versions, and any stored at the zero time, have h alone as their key.
func bodyKey(h evidence.Hash, at time.Time) string {
	ms := msec(at)
	if at.IsZero() || ms < 0 || ms >= 1<<48 {
		return h.String()
	}
	return fmt.Sprintf("%012x", ms) + h.String()
}

// parseBodyKey is the hash and time of a bodyKey.
func parseBodyKey(key string) (evidence.Hash, time.Time, error) {
	if len(key) > 12 && !strings.HasPrefix(key, "sha256:") {
		ms, err := strconv.ParseUint(key[:12], 16, 48)
		if err != nil {
			return evidence.Hash{}, time.Time{}, fmt.Errorf("message key %q: %w", key, err)
		}
		h, err := evidence.ParseHash(key[12:])
		return h, fromMsec(int64(ms)), err
	}
	h, err := evidence.ParseHash(key)
	return h, time.Time{}, err
}

// findBody scans expr of the body h stored at at into dest, and returns the key it is stored
// under: bodyKey(h, at), or h alone for a body stored by an earlier version. ErrNotFound when
// neither holds one.
func (t *tx) findBody(h evidence.Hash, at time.Time, expr string, dest any) (string, error) {
	q := `SELECT ` + expr + ` FROM messages WHERE key = ?`
	key := bodyKey(h, at)
	err := t.q.QueryRowContext(t.ctx, q, key).Scan(dest)
	if errors.Is(err, sql.ErrNoRows) && key != h.String() { // stored by an earlier version
		key = h.String()
		err = t.q.QueryRowContext(t.ctx, q, key).Scan(dest)
	}
	if errors.Is(err, sql.ErrNoRows) {
		err = store.ErrNotFound
	}
	return key, err
}

func (t *tx) PutMessage(h evidence.Hash, at time.Time, data []byte) error {
	// h is not checked here, in the writer that runs every caller's statements in turn: the
	// caller hashed data, and Message checks what it reads.
	if data == nil {
		data = []byte{}
	}
	key := bodyKey(h, at)
	res, err := t.exec(`INSERT INTO messages (key, data) VALUES (?, ?) ON CONFLICT (key) DO NOTHING`, key, data)
	if err != nil {
		return fmt.Errorf("store: put message %s: %w", h, err)
	}
	if n, err := res.RowsAffected(); err == nil && n == 1 { // stored as given, not there before
		if t.put == nil {
			t.put = map[string]int{}
		}
		t.put[key] = len(data)
	}
	return nil
}

func (t *tx) Message(h evidence.Hash, at time.Time) ([]byte, error) {
	var data []byte
	_, err := t.findBody(h, at, "data", &data)
	if err != nil {
		return nil, fmt.Errorf("store: message %s: %w", h, err)
	}
	if evidence.Sum(data) != h {
		return nil, fmt.Errorf("store: message %s: %w", h, store.ErrCorrupt)
	}
	return data, nil
}

// Users

const userColumns = `address, password_hash, admin, disabled, verifier_key, created, updated`

func scanUser(sc scanner) (store.User, error) {
	var u store.User
	var created, updated int64
	if err := sc.Scan(&u.Address, &u.PasswordHash, &u.Admin, &u.Disabled, &u.VerifierKey, &created, &updated); err != nil {
		return store.User{}, err
	}
	u.Created, u.Updated = fromMsec(created), fromMsec(updated)
	return u, nil
}

func (t *tx) PutUser(u store.User) error {
	if u.Address == "" {
		return errors.New("store: put user: no address")
	}
	_, err := t.exec(`INSERT INTO users (`+userColumns+`) VALUES (?, ?, ?, ?, ?, ?, ?)
		ON CONFLICT (address) DO UPDATE SET password_hash = excluded.password_hash, admin = excluded.admin,
			disabled = excluded.disabled, verifier_key = excluded.verifier_key,
			created = excluded.created, updated = excluded.updated`,
		u.Address, u.PasswordHash, u.Admin, u.Disabled, u.VerifierKey, msec(u.Created), msec(u.Updated))
	if err != nil {
		return fmt.Errorf("store: put user %s: %w", u.Address, dupOr(err))
	}
	return nil
}

func (t *tx) User(address string) (store.User, error) {
	u, err := one(t.q.QueryRowContext(t.ctx, `SELECT `+userColumns+` FROM users WHERE address = ?`, address), scanUser)
	if err != nil {
		return store.User{}, fmt.Errorf("store: user %s: %w", address, err)
	}
	return u, nil
}

func (t *tx) Users() ([]store.User, error) {
	rows, err := t.q.QueryContext(t.ctx, `SELECT `+userColumns+` FROM users ORDER BY address`)
	us, err := collect(rows, err, scanUser)
	if err != nil {
		return nil, fmt.Errorf("store: users: %w", err)
	}
	return us, nil
}

// Items

const itemColumns = `label, submission, protocol, sender, recipient, subject, content, commitment, size,
	deadline, receipt, notify, password_hash, password_hint, token_hash, state, submitted, updated, retrievals, prev_agent, next_agent`

func scanItem(sc scanner) (store.Item, error) {
	var it store.Item
	var label, content, commitment, token sql.NullString
	var protocol, state string
	var deadline, submitted, updated int64
	err := sc.Scan(&label, &it.Submission, &protocol, &it.Sender, &it.Recipient, &it.Subject, &content, &commitment,
		&it.Size, &deadline, &it.Receipt, &it.Notify, &it.PasswordHash, &it.PasswordHint, &token, &state,
		&submitted, &updated, &it.Retrievals, &it.Prev, &it.Next)
	if err != nil {
		return store.Item{}, err
	}
	it.Protocol, it.State = evidence.Protocol(protocol), store.State(state)
	it.Deadline, it.Submitted, it.Updated = fromMsec(deadline), fromMsec(submitted), fromMsec(updated)
	var errs [4]error
	it.Label, errs[0] = labelCol(label)
	it.Content, errs[1] = hashCol(content)
	it.Commitment, errs[2] = hashCol(commitment)
	it.TokenHash, errs[3] = hashCol(token)
	if err := errors.Join(errs[:]...); err != nil {
		return store.Item{}, fmt.Errorf("corrupt item row: %w", err)
	}
	return it, nil
}

func (t *tx) InsertItem(it store.Item) error {
	if it.Label.IsZero() {
		return errors.New("store: insert item: zero label")
	}
	_, err := t.exec(`INSERT INTO items (`+itemColumns+`) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)`,
		it.Label.String(), it.Submission, string(it.Protocol), it.Sender, it.Recipient, it.Subject,
		hashArg(it.Content), hashArg(it.Commitment), it.Size, msec(it.Deadline), it.Receipt, it.Notify,
		it.PasswordHash, it.PasswordHint, hashArg(it.TokenHash), string(it.State),
		msec(it.Submitted), msec(it.Updated), it.Retrievals, it.Prev, it.Next)
	if err != nil {
		return fmt.Errorf("store: insert item %s: %w", it.Label, dupOr(err))
	}
	return nil
}

func (t *tx) Item(l evidence.Label) (store.Item, error) {
	it, err := one(t.q.QueryRowContext(t.ctx, `SELECT `+itemColumns+` FROM items WHERE label = ?`, l.String()), scanItem)
	if err != nil {
		return store.Item{}, fmt.Errorf("store: item %s: %w", l, err)
	}
	return it, nil
}

func (t *tx) ItemByToken(h evidence.Hash) (store.Item, error) {
	if h.IsZero() {
		return store.Item{}, fmt.Errorf("store: item by token: zero hash: %w", store.ErrNotFound)
	}
	it, err := one(t.q.QueryRowContext(t.ctx, `SELECT `+itemColumns+` FROM items WHERE token_hash = ?`, h.String()), scanItem)
	if err != nil {
		return store.Item{}, fmt.Errorf("store: item by token: %w", err)
	}
	return it, nil
}

// UpdateItem replaces what may change after posting; what the evidence binds (label, parties,
// content, deadline…) stays as inserted.
func (t *tx) UpdateItem(it store.Item) error {
	err := mustChange(t.exec(`UPDATE items SET state = ?, updated = ?, retrievals = ?, token_hash = ?,
		password_hash = ?, password_hint = ? WHERE label = ?`,
		string(it.State), msec(it.Updated), it.Retrievals, hashArg(it.TokenHash),
		it.PasswordHash, it.PasswordHint, it.Label.String()))
	if err != nil {
		return fmt.Errorf("store: update item %s: %w", it.Label, dupOr(err))
	}
	return nil
}

func (t *tx) ItemsBySubmission(submission string) ([]store.Item, error) {
	rows, err := t.q.QueryContext(t.ctx, `SELECT `+itemColumns+` FROM items WHERE submission = ? ORDER BY id`, submission)
	items, err := collect(rows, err, scanItem)
	if err != nil {
		return nil, fmt.Errorf("store: items of submission %s: %w", submission, err)
	}
	return items, nil
}

func (t *tx) ItemsBySender(sender string, limit, offset int) ([]store.Item, error) {
	rows, err := t.q.QueryContext(t.ctx, `SELECT `+itemColumns+` FROM items WHERE sender = ?
		ORDER BY submitted DESC, id DESC LIMIT ? OFFSET ?`, sender, limitArg(limit), offsetArg(offset))
	items, err := collect(rows, err, scanItem)
	if err != nil {
		return nil, fmt.Errorf("store: items by sender %s: %w", sender, err)
	}
	return items, nil
}

// Evidence

const evidenceColumns = `seq, label, type, leaf, note, stored, log_index`

func scanEvidence(sc scanner) (store.Evidence, error) {
	var e store.Evidence
	var label sql.NullString
	var typ, leaf string
	var stored int64
	var logIndex sql.NullInt64
	if err := sc.Scan(&e.Seq, &label, &typ, &leaf, &e.Note, &stored, &logIndex); err != nil {
		return store.Evidence{}, err
	}
	e.Type, e.Stored = evidence.Type(typ), fromMsec(stored)
	if logIndex.Valid {
		if logIndex.Int64 < 0 {
			return store.Evidence{}, fmt.Errorf("corrupt evidence row %d: log index %d", e.Seq, logIndex.Int64)
		}
		e.Logged, e.LogIndex = true, uint64(logIndex.Int64)
	}
	var err1, err2 error
	e.Label, err1 = labelCol(label)
	e.Leaf, err2 = evidence.ParseHash(leaf)
	if err := errors.Join(err1, err2); err != nil {
		return store.Evidence{}, fmt.Errorf("corrupt evidence row %d: %w", e.Seq, err)
	}
	// The note is the evidence; a note that does not hash to its leaf is damage, not data.
	if evidence.Sum(e.Note) != e.Leaf {
		return store.Evidence{}, fmt.Errorf("corrupt evidence row %d: note does not hash to its leaf %s", e.Seq, e.Leaf)
	}
	return e, nil
}

// AddEvidence stores n under l. Stored is the time in n's record (when its signer made it), or
// the current time for a record without one: the Store has no clock of its own to inject.
func (t *tx) AddEvidence(l evidence.Label, n *evidence.Note) (store.Evidence, error) {
	if n == nil || n.Record == nil || len(n.Bytes()) == 0 {
		return store.Evidence{}, fmt.Errorf("store: add evidence %s: no note", l)
	}
	if rl := n.Record.Label; !rl.IsZero() && rl != l {
		return store.Evidence{}, fmt.Errorf("store: add evidence %s: the %s note is of label %s", l, n.Record.Type, rl)
	}
	stored := n.Record.Time
	if stored.IsZero() {
		stored = time.Now()
	}
	e := store.Evidence{Label: l, Type: n.Record.Type, Leaf: n.Leaf(), Note: n.Bytes(), Stored: fromMsec(msec(stored))}
	seq, err := t.insert(`INSERT INTO evidence (label, type, leaf, note, stored) VALUES (?, ?, ?, ?, ?)`,
		labelArg(l), string(e.Type), e.Leaf.String(), e.Note, msec(e.Stored))
	if err != nil {
		return store.Evidence{}, fmt.Errorf("store: add evidence %s %s %s: %w", l, e.Type, e.Leaf, dupOr(err))
	}
	e.Seq = seq
	return e, nil
}

// evidenceOf is the query of a label's notes, in the order they were stored.
func evidenceOf(l evidence.Label) (string, []any) {
	cond, args := labelIs(l)
	return `SELECT ` + evidenceColumns + ` FROM evidence WHERE ` + cond + ` ORDER BY seq`, args
}

func (t *tx) Evidence(l evidence.Label) ([]store.Evidence, error) {
	q, args := evidenceOf(l)
	rows, err := t.q.QueryContext(t.ctx, q, args...)
	ev, err := collect(rows, err, scanEvidence)
	if err != nil {
		return nil, fmt.Errorf("store: evidence %s: %w", l, err)
	}
	return ev, nil
}

func (t *tx) EvidenceByLeaf(l evidence.Label, leaf evidence.Hash) (store.Evidence, error) {
	// The conditions are those of the unique indexes (schema v9).
	q, args := `SELECT `+evidenceColumns+` FROM evidence WHERE label = ? AND leaf = ?`, []any{l.String(), leaf.String()}
	if l.IsZero() {
		q, args = `SELECT `+evidenceColumns+` FROM evidence WHERE type = 'KEY' AND leaf = ?`, []any{leaf.String()}
	}
	e, err := one(t.q.QueryRowContext(t.ctx, q, args...), scanEvidence)
	if err != nil {
		return store.Evidence{}, fmt.Errorf("store: evidence by leaf %s: %w", leaf, err)
	}
	return e, nil
}

func (t *tx) SetPublished(ciphertext evidence.Hash, seq int64) error {
	if _, err := t.exec(`INSERT INTO published (ciphertext, seq) VALUES (?, ?)`, ciphertext.String(), seq); err != nil {
		return fmt.Errorf("store: set published %s: %w", ciphertext, dupOr(err))
	}
	return nil
}

func (t *tx) Published(ciphertext evidence.Hash) (store.Evidence, error) {
	e, err := one(t.q.QueryRowContext(t.ctx, `SELECT `+evidenceColumns+` FROM evidence WHERE seq = (SELECT seq FROM published WHERE ciphertext = ?)`,
		ciphertext.String()), scanEvidence)
	if err != nil {
		return store.Evidence{}, fmt.Errorf("store: published %s: %w", ciphertext, err)
	}
	return e, nil
}

// SetLogIndex sets the log index of a note that has none, and tells the other cases apart
// when it has one already.
func (t *tx) SetLogIndex(seq int64, index uint64) error {
	if index > math.MaxInt64 {
		return fmt.Errorf("store: set log index of evidence %d: index %d out of range", seq, index)
	}
	res, err := t.exec(`UPDATE evidence SET log_index = ? WHERE seq = ? AND log_index IS NULL`, int64(index), seq)
	if err != nil {
		return fmt.Errorf("store: set log index of evidence %d to %d: %w", seq, index, dupOr(err))
	}
	if n, err := res.RowsAffected(); err != nil || n == 1 {
		return err
	}
	var have sql.NullInt64
	err = t.q.QueryRowContext(t.ctx, `SELECT log_index FROM evidence WHERE seq = ?`, seq).Scan(&have)
	switch {
	case errors.Is(err, sql.ErrNoRows):
		return fmt.Errorf("store: set log index of evidence %d: %w", seq, store.ErrNotFound)
	case err != nil:
		return fmt.Errorf("store: set log index of evidence %d: %w", seq, err)
	case have.Int64 != int64(index):
		return fmt.Errorf("store: set log index of evidence %d to %d: it is logged at %d: %w", seq, index, have.Int64, store.ErrDuplicate)
	}
	return nil
}

func (t *tx) UnloggedEvidence(limit int) ([]store.Evidence, error) {
	rows, err := t.q.QueryContext(t.ctx, `SELECT `+evidenceColumns+` FROM evidence WHERE log_index IS NULL
		ORDER BY seq LIMIT ?`, limitArg(limit))
	ev, err := collect(rows, err, scanEvidence)
	if err != nil {
		return nil, fmt.Errorf("store: unlogged evidence: %w", err)
	}
	return ev, nil
}

func (t *tx) CountLogged(from uint64) (int64, error) {
	if from > math.MaxInt64 {
		return 0, nil
	}
	var n int64
	if err := t.q.QueryRowContext(t.ctx, `SELECT COUNT(*) FROM evidence WHERE log_index >= ?`, int64(from)).Scan(&n); err != nil {
		return 0, fmt.Errorf("store: count logged evidence: %w", err)
	}
	return n, nil
}

// Timers

func scanTimer(sc scanner) (store.Timer, error) {
	var tm store.Timer
	var label string
	var due int64
	if err := sc.Scan(&label, &tm.Kind, &due); err != nil {
		return store.Timer{}, err
	}
	l, err := evidence.ParseLabel(label)
	if err != nil {
		return store.Timer{}, fmt.Errorf("corrupt timer row: %w", err)
	}
	tm.Label, tm.Due = l, fromMsec(due)
	return tm, nil
}

func (t *tx) SetTimer(tm store.Timer) error {
	if tm.Label.IsZero() || tm.Kind == "" {
		return fmt.Errorf("store: set timer %s %q: zero label or no kind", tm.Label, tm.Kind)
	}
	_, err := t.exec(`INSERT INTO timers (label, kind, due) VALUES (?, ?, ?)
		ON CONFLICT (label, kind) DO UPDATE SET due = excluded.due`, tm.Label.String(), tm.Kind, msec(tm.Due))
	if err != nil {
		return fmt.Errorf("store: set timer %s %s: %w", tm.Label, tm.Kind, err)
	}
	return nil
}

func (t *tx) DeleteTimer(l evidence.Label, kind string) error {
	if err := mustChange(t.exec(`DELETE FROM timers WHERE label = ? AND kind = ?`, l.String(), kind)); err != nil {
		return fmt.Errorf("store: delete timer %s %s: %w", l, kind, err)
	}
	return nil
}

func (t *tx) DueTimers(now time.Time, limit int) ([]store.Timer, error) {
	rows, err := t.q.QueryContext(t.ctx, `SELECT label, kind, due FROM timers WHERE due <= ?
		ORDER BY due, label, kind LIMIT ?`, msec(now), limitArg(limit))
	tms, err := collect(rows, err, scanTimer)
	if err != nil {
		return nil, fmt.Errorf("store: due timers: %w", err)
	}
	return tms, nil
}

func (t *tx) Timers(l evidence.Label) ([]store.Timer, error) {
	cond, args := labelIs(l)
	rows, err := t.q.QueryContext(t.ctx, `SELECT label, kind, due FROM timers WHERE `+cond+` ORDER BY due, kind`, args...)
	tms, err := collect(rows, err, scanTimer)
	if err != nil {
		return nil, fmt.Errorf("store: timers %s: %w", l, err)
	}
	return tms, nil
}

// Outbound

// outboundColumns are read from outbound o joined with outbound_data d (outboundFrom).
const outboundColumns = `o.id, o.label, o.kind, o.mail_from, o.rcpt_to, d.data, d.message, d.message_at, o.state, o.attempts, o.next_attempt, o.last_error, o.created, o.updated`

const outboundFrom = `outbound o JOIN outbound_data d ON d.id = o.id`

func scanOutbound(sc scanner) (store.Outbound, error) {
	var m store.Outbound
	var label, message sql.NullString
	var state string
	var next, created, updated int64
	if err := sc.Scan(&m.ID, &label, &m.Kind, &m.From, &m.To, &m.Data, &message, &m.MessageAt, &state, &m.Attempts, &next, &m.LastError,
		&created, &updated); err != nil {
		return store.Outbound{}, err
	}
	l, err := labelCol(label)
	if err == nil && message.Valid {
		m.Message, m.MessageTime, err = parseBodyKey(message.String)
	}
	if err == nil && (m.MessageAt < 0 || m.MessageAt > len(m.Data)) {
		err = fmt.Errorf("message at %d of %d bytes", m.MessageAt, len(m.Data))
	}
	if err != nil {
		return store.Outbound{}, fmt.Errorf("corrupt outbound row %d: %w", m.ID, err)
	}
	m.Label, m.State = l, store.OutboundState(state)
	m.NextAttempt, m.Created, m.Updated = fromMsec(next), fromMsec(created), fromMsec(updated)
	return m, nil
}

func (t *tx) Enqueue(m store.Outbound) (store.Outbound, error) {
	if m.State == "" {
		m.State = store.OutQueued
	}
	if m.Data == nil {
		m.Data = []byte{}
	}
	id, err := t.insert(`INSERT INTO outbound (label, kind, mail_from, rcpt_to, state, attempts,
		next_attempt, last_error, created, updated) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)`,
		labelArg(m.Label), m.Kind, m.From, m.To, string(m.State), m.Attempts,
		msec(m.NextAttempt), m.LastError, msec(m.Created), msec(m.Updated))
	data, key := m.Data, any(nil)
	if err == nil && !m.Message.IsZero() {
		var k string
		k, data, err = t.withoutMessage(m)
		key = k
	}
	if err == nil {
		_, err = t.exec(`INSERT INTO outbound_data (id, data, message, message_at) VALUES (?, ?, ?, ?)`,
			id, data, key, m.MessageAt)
	}
	if err != nil {
		return store.Outbound{}, fmt.Errorf("store: enqueue %s for %s: %w", m.Kind, m.To, err)
	}
	m.ID = id
	m.NextAttempt, m.Created, m.Updated = fromMsec(msec(m.NextAttempt)), fromMsec(msec(m.Created)), fromMsec(msec(m.Updated))
	return m, nil
}

// withoutMessage is m's data without the stored body m.Message at m.MessageAt, and the key
// the body is stored under.
func (t *tx) withoutMessage(m store.Outbound) (string, []byte, error) {
	key := bodyKey(m.Message, m.MessageTime)
	n, ok := t.put[key]
	var err error
	if !ok {
		key, err = t.findBody(m.Message, m.MessageTime, "length(data)", &n)
	}
	if err != nil {
		return "", nil, fmt.Errorf("message %s: %w", m.Message, err)
	}
	if m.MessageAt < 0 || m.MessageAt+n > len(m.Data) {
		return "", nil, fmt.Errorf("message %s of %d bytes at %d lies outside the mail's %d", m.Message, n, m.MessageAt, len(m.Data))
	}
	return key, append(m.Data[:m.MessageAt:m.MessageAt], m.Data[m.MessageAt+n:]...), nil
}

// withMessages puts back into each mail the stored body it was kept without (Enqueue).
func (t *tx) withMessages(ms []store.Outbound) error {
	for i, m := range ms {
		if m.Message.IsZero() {
			continue
		}
		var body []byte
		err := t.q.QueryRowContext(t.ctx, `SELECT data FROM messages WHERE key = ?`, bodyKey(m.Message, m.MessageTime)).Scan(&body)
		if errors.Is(err, sql.ErrNoRows) {
			err = store.ErrNotFound
		}
		if err != nil {
			return fmt.Errorf("outbound %d: message %s: %w", m.ID, m.Message, err)
		}
		data := make([]byte, 0, len(m.Data)+len(body))
		data = append(append(append(data, m.Data[:m.MessageAt]...), body...), m.Data[m.MessageAt:]...)
		ms[i].Data = data
	}
	return nil
}

func (t *tx) DueOutbound(now time.Time, limit int) ([]store.Outbound, error) {
	rows, err := t.q.QueryContext(t.ctx, `SELECT `+outboundColumns+` FROM `+outboundFrom+` WHERE o.state = ? AND o.next_attempt <= ?
		ORDER BY o.next_attempt, o.id LIMIT ?`, string(store.OutQueued), msec(now), limitArg(limit))
	ms, err := collect(rows, err, scanOutbound)
	if err == nil {
		err = t.withMessages(ms)
	}
	if err != nil {
		return nil, fmt.Errorf("store: due outbound: %w", err)
	}
	return ms, nil
}

// UpdateOutbound records an attempt; the mail itself stays as enqueued.
func (t *tx) UpdateOutbound(m store.Outbound) error {
	err := mustChange(t.exec(`UPDATE outbound SET state = ?, attempts = ?, next_attempt = ?, last_error = ?, updated = ?
		WHERE id = ?`, string(m.State), m.Attempts, msec(m.NextAttempt), m.LastError, msec(m.Updated), m.ID))
	if err != nil {
		return fmt.Errorf("store: update outbound %d: %w", m.ID, err)
	}
	return nil
}

func (t *tx) OutboundFor(l evidence.Label) ([]store.Outbound, error) {
	cond, args := labelIs(l)
	rows, err := t.q.QueryContext(t.ctx, `SELECT `+outboundColumns+` FROM `+outboundFrom+` WHERE o.`+cond+` ORDER BY o.id`, args...)
	ms, err := collect(rows, err, scanOutbound)
	if err == nil {
		err = t.withMessages(ms)
	}
	if err != nil {
		return nil, fmt.Errorf("store: outbound for %s: %w", l, err)
	}
	return ms, nil
}
