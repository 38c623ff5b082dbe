package sqlite_test

import (
	"path/filepath"
	"testing"

	"certmail/store"
	"certmail/store/sqlite"
	"certmail/store/storetest"
)

func open(t testing.TB) *sqlite.Store {
	t.Helper()
	s, err := sqlite.Open(filepath.Join(t.TempDir(), "data", "certmail.db"))
	if err != nil {
		t.Fatal(err)
	}
	return s
}

func TestStore(t *testing.T) {
	storetest.Run(t, func(t *testing.T) store.Store { return open(t) })
}

func BenchmarkUpdateItemAndEvidence(b *testing.B) {
	storetest.BenchUpdateItemAndEvidence(b, func(b *testing.B) store.Store { return open(b) })
}
