package storetest

import (
	"fmt"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"certmail/evidence"
	"certmail/store"
)

// BenchUpdateItemAndEvidence measures the writes of a posting (DESIGN.md §2) as one Update: an
// item, one evidence note, two timers and one outbound mail. open returns a new, empty store.
// "serial" runs one Update after another; "callers-N" runs them from N goroutines at once, the
// load that group commit is for. Each reports writes/s, one write being one whole Update.
// Notes are signed before the clock starts.
func BenchUpdateItemAndEvidence(b *testing.B, open func(b *testing.B) store.Store) {
	f, err := NewFixture()
	if err != nil {
		b.Fatal(err)
	}
	type step struct {
		it store.Item
		n  *evidence.Note
	}
	prepare := func(b *testing.B) (store.Store, []step) {
		s := open(b)
		b.Cleanup(func() { s.Close() })
		steps := make([]step, b.N)
		for i := range steps {
			l, err := f.NewLabel()
			if err != nil {
				b.Fatal(err)
			}
			it := f.Item(l, f.T0.Add(time.Duration(i)*time.Millisecond))
			n, err := f.Note(l, evidence.COP, it.Submitted)
			if err != nil {
				b.Fatal(err)
			}
			steps[i] = step{it, n}
		}
		b.ResetTimer()
		return s, steps
	}
	write := func(b *testing.B, s store.Store, st step) {
		err := s.Update(b.Context(), func(tx store.Tx) error {
			if err := writeStep(tx, f, st.it, st.n); err != nil {
				return err
			}
			return tx.SetTimer(store.Timer{Label: st.it.Label, Kind: "warn", Due: st.it.Deadline.Add(-time.Hour)})
		})
		if err != nil {
			b.Error(err)
		}
	}
	report := func(b *testing.B) {
		b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "writes/s")
	}
	b.Run("serial", func(b *testing.B) {
		s, steps := prepare(b)
		for i := range b.N {
			write(b, s, steps[i])
		}
		report(b)
	})
	// Concurrent callers, as concurrent SMTP sessions submit: a backend with group commit
	// shares one commit among them, one without serialises a commit per call.
	for _, callers := range []int{1, 16, 64} {
		b.Run(fmt.Sprintf("callers-%d", callers), func(b *testing.B) {
			s, steps := prepare(b)
			var next atomic.Int64
			var wg sync.WaitGroup
			for range callers {
				wg.Go(func() {
					for i := next.Add(1) - 1; i < int64(b.N); i = next.Add(1) - 1 {
						write(b, s, steps[i])
					}
				})
			}
			wg.Wait()
			report(b)
		})
	}
}
