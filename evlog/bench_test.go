package evlog_test

import (
	"crypto/sha256"
	"encoding/binary"
	"fmt"
	"slices"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"certmail/evidence"
	"certmail/evlog"
)

// BenchmarkAppend measures appends per second to a durable log on this machine's disk, with one
// appender waiting for each entry (a lone agent step) and with 16 concurrent appenders (steps
// arriving together, sharing batches). Each op is one entry durably sequenced.
func BenchmarkAppend(b *testing.B) {
	for _, appenders := range []int{1, 16} {
		b.Run(fmt.Sprintf("appenders=%d", appenders), func(b *testing.B) {
			l, _ := openLog(b, evlog.Config{})
			var next atomic.Uint64
			b.ResetTimer()
			var wg sync.WaitGroup
			per := (b.N + appenders - 1) / appenders
			for range appenders {
				wg.Go(func() {
					for range per {
						if _, err := l.Append(b.Context(), leafN(next.Add(1))); err != nil {
							b.Error(err)
							return
						}
					}
				})
			}
			wg.Wait()
			b.StopTimer()
			b.ReportMetric(float64(per*appenders)/b.Elapsed().Seconds(), "appends/s")
		})
	}
}

// BenchmarkIntegration measures the time from Append's call to the first published checkpoint
// that covers the entry: when a bundle can carry the entry's inclusion proof. The figures are
// the median and the 95th percentile, for a lone appender and for 16 concurrent ones.
func BenchmarkIntegration(b *testing.B) {
	for _, appenders := range []int{1, 16} {
		b.Run(fmt.Sprintf("appenders=%d", appenders), func(b *testing.B) {
			l, _ := openLog(b, evlog.Config{})
			var next atomic.Uint64
			var mu sync.Mutex
			var lat []time.Duration
			b.ResetTimer()
			var wg sync.WaitGroup
			per := (b.N + appenders - 1) / appenders
			for range appenders {
				wg.Go(func() {
					for range per {
						start := time.Now()
						idx, err := l.Append(b.Context(), leafN(next.Add(1)))
						if err != nil {
							b.Error(err)
							return
						}
						for {
							cp, err := l.Checkpoint(b.Context())
							if err != nil {
								b.Error(err)
								return
							}
							if cp.Size > idx[0] {
								break
							}
							time.Sleep(time.Millisecond)
						}
						mu.Lock()
						lat = append(lat, time.Since(start))
						mu.Unlock()
					}
				})
			}
			wg.Wait()
			b.StopTimer()
			slices.Sort(lat)
			if len(lat) > 0 {
				b.ReportMetric(float64(lat[len(lat)/2].Microseconds())/1000, "p50-ms")
				b.ReportMetric(float64(lat[len(lat)*95/100].Microseconds())/1000, "p95-ms")
			}
		})
	}
}

// leafN is a distinct leaf for each n.
func leafN(n uint64) evidence.Hash {
	return sha256.Sum256(binary.BigEndian.AppendUint64([]byte("bench leaf "), n))
}
