// Package account manages the agent's users and authenticates them, for SMTP AUTH, the API and
// the web pages alike, with argon2id password hashes and failed-login limits per account and
// per client address.
//
// It never logs or returns a password, and it answers "bad credentials" alike for an unknown
// user and a wrong password, after the same work, so the answer does not tell which.
package account

import (
	"context"
	"errors"
	"fmt"
	"io"
	"strings"
	"sync"
	"time"

	"certmail/evidence"
	"certmail/password"
	"certmail/store"
)

// Errors Authenticate returns.
var (
	ErrBadCredentials = errors.New("account: bad credentials")
	ErrDisabled       = errors.New("account: disabled")
	ErrRateLimited    = errors.New("account: too many failed logins; try again later")
)

// Limits bound failed logins: at most PerAccount failures for one account and PerAddress from
// one client address within Window; past either, logins are refused until the window passes.
type Limits struct {
	PerAccount int
	PerAddress int
	Window     time.Duration
}

// Accounts is the users of one agent.
type Accounts struct {
	st     store.Store
	lim    Limits
	now    func() time.Time
	params password.Params
	rand   io.Reader
	dummy  string // a hash checked for unknown users, so they cost what known ones do

	mu       sync.Mutex
	failures map[string][]time.Time // by "a:" + account and "c:" + client address
}

// New returns the accounts kept in st. now may be nil for the wall clock.
func New(st store.Store, lim Limits, now func() time.Time) *Accounts {
	return NewWithParams(st, lim, now, password.Default, nil)
}

// NewWithParams is New with chosen argon2id costs and randomness (tests use cheap ones).
func NewWithParams(st store.Store, lim Limits, now func() time.Time, p password.Params, r io.Reader) *Accounts {
	if now == nil {
		now = time.Now
	}
	if lim.Window <= 0 {
		lim.Window = time.Minute
	}
	dummy, _ := password.Hash("certmail dummy password", p, r)
	return &Accounts{st: st, lim: lim, now: now, params: p, rand: r, dummy: dummy, failures: map[string][]time.Time{}}
}

// Normalize gives the canonical form of an address used as a login: the domain in lower case.
func Normalize(address string) string {
	at := strings.LastIndexByte(address, '@')
	if at < 0 {
		return address
	}
	return address[:at] + "@" + strings.ToLower(address[at+1:])
}

// Add creates a user. It refuses an existing address.
func (a *Accounts) Add(ctx context.Context, address, pw string, admin bool) error {
	address = Normalize(address)
	if err := evidence.CheckAddress(address); err != nil {
		return fmt.Errorf("account: %w", err)
	}
	h, err := password.Hash(pw, a.params, a.rand)
	if err != nil {
		return err
	}
	now := a.now().UTC()
	return a.st.Update(ctx, func(tx store.Tx) error {
		u, err := tx.User(address)
		switch {
		case err == nil && u.PasswordHash != "":
			return fmt.Errorf("account: %s exists already", address)
		case err != nil && !errors.Is(err, store.ErrNotFound):
			return err
		case err != nil:
			u = store.User{Address: address, Created: now}
		}
		// A user known only by a registered key (a recipient) becomes a full account.
		u.PasswordHash, u.Admin, u.Updated = h, admin, now
		return tx.PutUser(u)
	})
}

// SetPassword replaces a user's password.
func (a *Accounts) SetPassword(ctx context.Context, address, pw string) error {
	h, err := password.Hash(pw, a.params, a.rand)
	if err != nil {
		return err
	}
	return a.change(ctx, address, func(u *store.User) { u.PasswordHash = h })
}

// SetDisabled disables or enables a user. A disabled user cannot log in, send or pick up.
func (a *Accounts) SetDisabled(ctx context.Context, address string, disabled bool) error {
	return a.change(ctx, address, func(u *store.User) { u.Disabled = disabled })
}

func (a *Accounts) change(ctx context.Context, address string, f func(*store.User)) error {
	address = Normalize(address)
	return a.st.Update(ctx, func(tx store.Tx) error {
		u, err := tx.User(address)
		if errors.Is(err, store.ErrNotFound) {
			return fmt.Errorf("account: no user %s", address)
		}
		if err != nil {
			return err
		}
		f(&u)
		u.Updated = a.now().UTC()
		return tx.PutUser(u)
	})
}

// List returns every user.
func (a *Accounts) List(ctx context.Context) ([]store.User, error) {
	var us []store.User
	err := a.st.View(ctx, func(tx store.Tx) (err error) { us, err = tx.Users(); return err })
	return us, err
}

// Authenticate checks a login from client (an IP address). Failures count against the account
// and the client address; past the limits it refuses without checking the password.
func (a *Accounts) Authenticate(ctx context.Context, address, pw, client string) (store.User, error) {
	address = Normalize(address)
	now := a.now()
	if a.limited("a:"+address, a.lim.PerAccount, now) || a.limited("c:"+client, a.lim.PerAddress, now) {
		return store.User{}, ErrRateLimited
	}
	var u store.User
	err := a.st.View(ctx, func(tx store.Tx) (err error) { u, err = tx.User(address); return err })
	if err != nil && !errors.Is(err, store.ErrNotFound) {
		return store.User{}, err
	}
	hash := u.PasswordHash
	if hash == "" {
		hash = a.dummy
	}
	if password.Check(hash, pw) != nil || u.PasswordHash == "" {
		a.fail("a:"+address, now)
		a.fail("c:"+client, now)
		return store.User{}, ErrBadCredentials
	}
	if u.Disabled {
		return store.User{}, ErrDisabled
	}
	return u, nil
}

// limited reports whether key has max or more failures within the window.
func (a *Accounts) limited(key string, max int, now time.Time) bool {
	if max <= 0 {
		return false
	}
	a.mu.Lock()
	defer a.mu.Unlock()
	recent := a.failures[key][:0]
	for _, t := range a.failures[key] {
		if now.Sub(t) < a.lim.Window {
			recent = append(recent, t)
		}
	}
	if len(recent) == 0 {
		delete(a.failures, key)
	} else {
		a.failures[key] = recent
	}
	return len(recent) >= max
}

func (a *Accounts) fail(key string, now time.Time) {
	a.mu.Lock()
	defer a.mu.Unlock()
	a.failures[key] = append(a.failures[key], now)
}
