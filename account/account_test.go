package account_test

import (
	"context"
	"errors"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"certmail/account"
	"certmail/password"
	"certmail/store/sqlite"
)

var cheap = password.Params{Memory: 64, Time: 1, Threads: 1}

type clock struct {
	mu sync.Mutex
	t  time.Time
}

func (c *clock) now() time.Time { c.mu.Lock(); defer c.mu.Unlock(); return c.t }
func (c *clock) add(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.t = c.t.Add(d)
}

func newAccounts(t *testing.T, lim account.Limits) (*account.Accounts, *clock) {
	t.Helper()
	st, err := sqlite.Open(filepath.Join(t.TempDir(), "db"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	c := &clock{t: time.Date(2026, 3, 2, 9, 0, 0, 0, time.UTC)}
	return account.NewWithParams(st, lim, c.now, cheap, nil), c
}

func TestAddAuthenticateDisable(t *testing.T) {
	ctx := context.Background()
	a, _ := newAccounts(t, account.Limits{})
	if err := a.Add(ctx, "alice@A.Example", "correct horse", false); err != nil {
		t.Fatal(err)
	}
	if err := a.Add(ctx, "alice@a.example", "another one!", false); err == nil {
		t.Fatal("the same address added twice")
	}
	if err := a.Add(ctx, "not an address", "correct horse", false); err == nil {
		t.Fatal("a bad address was added")
	}
	u, err := a.Authenticate(ctx, "alice@a.EXAMPLE", "correct horse", "192.0.2.1")
	if err != nil || u.Address != "alice@a.example" {
		t.Fatalf("login: %+v %v", u, err)
	}
	if _, err := a.Authenticate(ctx, "alice@a.example", "wrong horse", "192.0.2.1"); !errors.Is(err, account.ErrBadCredentials) {
		t.Fatalf("wrong password: %v", err)
	}
	if _, err := a.Authenticate(ctx, "nobody@a.example", "correct horse", "192.0.2.1"); !errors.Is(err, account.ErrBadCredentials) {
		t.Fatalf("unknown user: %v", err)
	}
	if err := a.SetPassword(ctx, "alice@a.example", "battery staple"); err != nil {
		t.Fatal(err)
	}
	if _, err := a.Authenticate(ctx, "alice@a.example", "battery staple", "192.0.2.1"); err != nil {
		t.Fatalf("new password: %v", err)
	}
	if err := a.SetDisabled(ctx, "alice@a.example", true); err != nil {
		t.Fatal(err)
	}
	if _, err := a.Authenticate(ctx, "alice@a.example", "battery staple", "192.0.2.1"); !errors.Is(err, account.ErrDisabled) {
		t.Fatalf("disabled user: %v", err)
	}
	us, err := a.List(ctx)
	if err != nil || len(us) != 1 || !us[0].Disabled || strings.Contains(us[0].PasswordHash, "battery") {
		t.Fatalf("list: %+v %v", us, err)
	}
	if err := a.SetDisabled(ctx, "nobody@a.example", true); err == nil {
		t.Fatal("disabled a user that does not exist")
	}
}

func TestFailedLoginsAreLimited(t *testing.T) {
	ctx := context.Background()
	a, c := newAccounts(t, account.Limits{PerAccount: 3, PerAddress: 5, Window: time.Minute})
	for _, u := range []string{"alice@a.example", "bob@a.example"} {
		if err := a.Add(ctx, u, "correct horse", false); err != nil {
			t.Fatal(err)
		}
	}
	// Per account: three failures from different addresses lock alice out, right password or not.
	for i, client := range []string{"192.0.2.1", "192.0.2.2", "192.0.2.3"} {
		if _, err := a.Authenticate(ctx, "alice@a.example", "guess", client); !errors.Is(err, account.ErrBadCredentials) {
			t.Fatalf("failure %d: %v", i, err)
		}
	}
	if _, err := a.Authenticate(ctx, "alice@a.example", "correct horse", "192.0.2.9"); !errors.Is(err, account.ErrRateLimited) {
		t.Fatalf("after three failures: %v", err)
	}
	// Per address: one client guessing across accounts is stopped too.
	for _, u := range []string{"bob@a.example", "carol@a.example", "dave@a.example", "erin@a.example", "frank@a.example"} {
		a.Authenticate(ctx, u, "guess", "198.51.100.7")
	}
	if _, err := a.Authenticate(ctx, "bob@a.example", "correct horse", "198.51.100.7"); !errors.Is(err, account.ErrRateLimited) {
		t.Fatalf("a client past its limit: %v", err)
	}
	if _, err := a.Authenticate(ctx, "bob@a.example", "correct horse", "192.0.2.50"); err != nil {
		t.Fatalf("bob from elsewhere: %v", err)
	}
	c.add(61 * time.Second)
	if _, err := a.Authenticate(ctx, "alice@a.example", "correct horse", "192.0.2.9"); err != nil {
		t.Fatalf("after the window: %v", err)
	}
}
