package sqlite

import (
	"context"
	"database/sql"
	"fmt"
	"time"
)

// migrations are the schema versions, in order: migrations[i] takes a database from version i
// to version i+1. A released migration is never edited; a change is a new one.
//
// Portability: INTEGER PRIMARY KEY is SQLite's rowid (BIGINT GENERATED ALWAYS AS IDENTITY in
// PostgreSQL); it is only relied on to grow, and rows of evidence and items are never deleted.
// Times are BIGINT Unix milliseconds; the zero time is stored as its own value (year 1), which
// sorts before every real time, so a zero NextAttempt is due at once.
var migrations = [][]string{schemaV1, schemaV2, schemaV3, schemaV4, schemaV5, schemaV6, schemaV7, schemaV8, schemaV9, schemaV10, schemaV11}

var schemaV1 = []string{
	`CREATE TABLE users (
		address       TEXT    NOT NULL,
		password_hash TEXT    NOT NULL,
		admin         BOOLEAN NOT NULL,
		disabled      BOOLEAN NOT NULL,
		verifier_key  TEXT    NOT NULL,
		created       BIGINT  NOT NULL,
		updated       BIGINT  NOT NULL,
		CONSTRAINT users_pkey PRIMARY KEY (address)
	)`,
	`CREATE TABLE items (
		id            INTEGER PRIMARY KEY,
		label         TEXT    NOT NULL,
		submission    TEXT    NOT NULL,
		protocol      TEXT    NOT NULL,
		sender        TEXT    NOT NULL,
		recipient     TEXT    NOT NULL,
		subject       TEXT    NOT NULL,
		content       TEXT,
		commitment    TEXT,
		size          BIGINT  NOT NULL,
		deadline      BIGINT  NOT NULL,
		receipt       TEXT    NOT NULL,
		notify        TEXT    NOT NULL,
		password_hash TEXT    NOT NULL,
		password_hint TEXT    NOT NULL,
		token_hash    TEXT,
		state         TEXT    NOT NULL,
		submitted     BIGINT  NOT NULL,
		updated       BIGINT  NOT NULL,
		retrievals    INTEGER NOT NULL,
		CONSTRAINT items_label_key UNIQUE (label),
		CONSTRAINT items_token_hash_key UNIQUE (token_hash)
	)`,
	`CREATE INDEX items_sender_submitted ON items (sender, submitted, id)`,
	`CREATE TABLE evidence (
		seq    INTEGER PRIMARY KEY,
		label  TEXT,
		type   TEXT   NOT NULL,
		leaf   TEXT   NOT NULL,
		note   BLOB   NOT NULL,
		stored BIGINT NOT NULL,
		CONSTRAINT evidence_leaf_key UNIQUE (leaf)
	)`,
	`CREATE INDEX evidence_label_seq ON evidence (label, seq)`,
	`CREATE TABLE timers (
		label TEXT   NOT NULL,
		kind  TEXT   NOT NULL,
		due   BIGINT NOT NULL,
		CONSTRAINT timers_pkey PRIMARY KEY (label, kind)
	)`,
	`CREATE INDEX timers_due ON timers (due)`,
	`CREATE TABLE outbound (
		id           INTEGER PRIMARY KEY,
		label        TEXT,
		kind         TEXT    NOT NULL,
		mail_from    TEXT    NOT NULL,
		rcpt_to      TEXT    NOT NULL,
		data         BLOB    NOT NULL,
		state        TEXT    NOT NULL,
		attempts     INTEGER NOT NULL,
		next_attempt BIGINT  NOT NULL,
		last_error   TEXT    NOT NULL,
		created      BIGINT  NOT NULL,
		updated      BIGINT  NOT NULL
	)`,
	`CREATE INDEX outbound_state_next ON outbound (state, next_attempt, id)`,
	`CREATE INDEX outbound_label ON outbound (label, id)`,
}

// schemaV2 records where each note is in the evidence log (NULL until it is): the index is
// unique, and an index on it finds the unlogged notes (NULLs) and counts the logged ones.
var schemaV2 = []string{
	`ALTER TABLE evidence ADD COLUMN log_index BIGINT`,
	`CREATE UNIQUE INDEX evidence_log_index_key ON evidence (log_index)`,
}

// schemaV3 indexes the PUB records the agent signs as Schneier–Riordan's public location by the
// ciphertext hash H(C) they publish a key for, so that a recipient holding C finds K.
var schemaV3 = []string{
	`CREATE TABLE published (
		ciphertext TEXT   NOT NULL,
		seq        BIGINT NOT NULL,
		CONSTRAINT published_pkey PRIMARY KEY (ciphertext)
	)`,
}

// schemaV4 keeps an outbound mail's data apart from its delivery state. SQLite rewrites a
// whole row on UPDATE, so with the data in the row every claim and every recorded attempt
// wrote the mail again — a posting receipt carries the message — and the write-ahead log grew
// by several copies of each mail.
var schemaV4 = []string{
	`CREATE TABLE outbound_data (
		id   INTEGER PRIMARY KEY,
		data BLOB    NOT NULL
	)`,
	`INSERT INTO outbound_data (id, data) SELECT id, data FROM outbound`,
	`ALTER TABLE outbound DROP COLUMN data`,
}

// schemaV5 places an item in a chain of agents (federation): the agent it came from and the
// agent it goes on to, both empty for an item the agent both posted and delivers.
var schemaV5 = []string{
	`ALTER TABLE items ADD COLUMN prev_agent TEXT NOT NULL DEFAULT ''`,
	`ALTER TABLE items ADD COLUMN next_agent TEXT NOT NULL DEFAULT ''`,
}

// schemaV6 finds the items of a submission, so that a sender's retry of a submission whose
// reply it never got is answered with the items made the first time.
var schemaV6 = []string{
	`CREATE INDEX items_submission ON items (submission, id)`,
}

// schemaV7 keeps message bodies in the database, written in the transaction that makes their
// items exist: one commit (shared by concurrent submissions) makes a message and its evidence
// durable, where a file of its own cost a create, two fsyncs and a rename (BENCHMARKS.md).
// Bodies stored as files by earlier versions stay where they are and are read from there.
var schemaV7 = []string{
	`CREATE TABLE messages (
		hash TEXT NOT NULL,
		data BLOB NOT NULL,
		CONSTRAINT messages_pkey PRIMARY KEY (hash)
	)`,
}

// schemaV8 lets an outbound mail that carries a stored message body verbatim (a full receipt)
// be kept without it: the body is put back, from messages, when the mail is read.
var schemaV8 = []string{
	`ALTER TABLE outbound_data ADD COLUMN message TEXT`,
	`ALTER TABLE outbound_data ADD COLUMN message_at BIGINT NOT NULL DEFAULT 0`,
}

// schemaV9 drops the index of notes by leaf hash alone, whose keys are random: each note
// written changed a page of its own in it, which the write-ahead log and then the checkpoint
// wrote out, once the index outgrew a commit (BENCHMARKS.md). A note's text names its label,
// so (label, leaf) is as unique, and sorts in the order labels are made. KEY records name no
// label and stay unique by leaf in an index of their own. SQLite cannot drop a table's
// constraint, so the table is copied, in the one transaction of the migration.
var schemaV9 = []string{
	`CREATE TABLE evidence_v9 (
		seq       INTEGER PRIMARY KEY,
		label     TEXT,
		type      TEXT   NOT NULL,
		leaf      TEXT   NOT NULL,
		note      BLOB   NOT NULL,
		stored    BIGINT NOT NULL,
		log_index BIGINT
	)`,
	`INSERT INTO evidence_v9 (seq, label, type, leaf, note, stored, log_index)
		SELECT seq, label, type, leaf, note, stored, log_index FROM evidence ORDER BY seq`,
	`DROP TABLE evidence`,
	`ALTER TABLE evidence_v9 RENAME TO evidence`,
	`CREATE INDEX evidence_label_seq ON evidence (label, seq)`,
	`CREATE UNIQUE INDEX evidence_log_index_key ON evidence (log_index)`,
	`CREATE UNIQUE INDEX evidence_label_leaf_key ON evidence (label, leaf)`,
	`CREATE UNIQUE INDEX evidence_key_leaf_key ON evidence (leaf) WHERE type = 'KEY'`,
}

// schemaV10 keys message bodies by the time their items were submitted and then their hash
// (bodyKey), for the reason of schemaV9: a hash alone is a random key. Bodies already stored
// keep their hash as key, which bodyKey never begins with a time for; outbound_data.message
// holds the key of the body a mail carries.
var schemaV10 = []string{
	`ALTER TABLE messages RENAME COLUMN hash TO key`,
}

// schemaV11 drops the index of notes by (label, seq): the unique index by (label, leaf) finds a
// label's notes as well, and the few it finds are sorted by seq. Every note inserted wrote a
// leaf of both; with one, a certified message writes about 5 % fewer bytes (BENCHMARKS.md).
var schemaV11 = []string{
	`DROP INDEX evidence_label_seq`,
}

// SchemaVersion is the schema version this code writes.
func SchemaVersion() int { return len(migrations) }

// migrate brings the schema to SchemaVersion in one transaction, so that a crash halfway leaves
// the database as it was.
func migrate(ctx context.Context, db *sql.DB) error {
	tx, err := db.BeginTx(ctx, nil) // BEGIN IMMEDIATE: another process may be migrating too
	if err != nil {
		return fmt.Errorf("migrate: %w", err)
	}
	defer tx.Rollback()
	if _, err := tx.ExecContext(ctx, `CREATE TABLE IF NOT EXISTS schema_migrations (
		version INTEGER NOT NULL,
		applied BIGINT  NOT NULL,
		CONSTRAINT schema_migrations_pkey PRIMARY KEY (version)
	)`); err != nil {
		return fmt.Errorf("migrate: %w", err)
	}
	var have int
	if err := tx.QueryRowContext(ctx, `SELECT COALESCE(MAX(version), 0) FROM schema_migrations`).Scan(&have); err != nil {
		return fmt.Errorf("migrate: %w", err)
	}
	if have > len(migrations) {
		return fmt.Errorf("database schema version %d is newer than this certmail's (%d): run a newer certmail", have, len(migrations))
	}
	for v := have + 1; v <= len(migrations); v++ {
		for _, stmt := range migrations[v-1] {
			if _, err := tx.ExecContext(ctx, stmt); err != nil {
				return fmt.Errorf("migrate to version %d: %w", v, err)
			}
		}
		if _, err := tx.ExecContext(ctx, `INSERT INTO schema_migrations (version, applied) VALUES (?, ?)`,
			v, time.Now().UnixMilli()); err != nil {
			return fmt.Errorf("migrate to version %d: %w", v, err)
		}
	}
	return tx.Commit()
}
