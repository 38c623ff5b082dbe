package agent

import (
	"context"
	"errors"

	"certmail/store"
)

// Items lists a sender's items, newest first: at most limit of them after skipping offset, and
// whether more follow. It reads in one transaction, so a page is consistent in itself.
func (a *Agent) Items(ctx context.Context, sender string, offset, limit int) ([]store.Item, bool, error) {
	if offset < 0 || limit <= 0 {
		return nil, false, refuse(KindInvalid, "a page starts at 0 or later and holds at least one item")
	}
	var items []store.Item
	err := a.st.View(ctx, func(tx store.Tx) (err error) {
		items, err = tx.ItemsBySender(sender, limit+1, offset) // one more tells whether a next page exists
		return err
	})
	if err != nil {
		return nil, false, err
	}
	if len(items) > limit {
		return items[:limit], true, nil
	}
	return items, false, nil
}

// Sender returns the account of a sender who may act now: one with a password that is not
// disabled. Anything else is KindForbidden, so a session of an account disabled (or removed)
// after it signed in stops at its next request.
func (a *Agent) Sender(ctx context.Context, address string) (store.User, error) {
	var u store.User
	err := a.st.View(ctx, func(tx store.Tx) (err error) { u, err = tx.User(address); return err })
	switch {
	case errors.Is(err, store.ErrNotFound) || err == nil && u.PasswordHash == "":
		return store.User{}, refuse(KindForbidden, "%s has no account at %s", address, a.Name())
	case err != nil:
		return store.User{}, err
	case u.Disabled:
		return store.User{}, refuse(KindForbidden, "the account %s is disabled", address)
	}
	return u, nil
}
