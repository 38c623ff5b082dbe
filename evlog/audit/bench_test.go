package audit_test

import (
	"context"
	"testing"

	"certmail/evlog/audit"
	"certmail/evlog/audit/audittest"
)

// benchLog is a finished tessera log of n entries.
func benchLog(b *testing.B, n int) (dir, key string) {
	agent := audittest.NewIdentity(b, agentName, 1)
	dir = b.TempDir()
	l := audittest.NewLog(b, dir, agent)
	leaves := audittest.Leaves("note", n)
	for i := 0; i < n; i += 1024 {
		l.Add(b, leaves[i:min(i+1024, n)]...)
	}
	l.Close(b)
	return dir, agent.Verifier
}

// BenchmarkLogFsck recomputes a log of 65,536 entries from its directory: 256 entry bundles and
// 258 hash tiles read, hashed and compared.
func BenchmarkLogFsck(b *testing.B) {
	dir, key := benchLog(b, 1<<16)
	b.ResetTimer()
	for b.Loop() {
		r, err := audit.Fsck(context.Background(), audit.Dir(dir), key)
		if err != nil || len(r.Problems) != 0 {
			b.Fatal(err, r.Problems)
		}
	}
	b.ReportMetric(float64(1<<16)*float64(b.N)/b.Elapsed().Seconds(), "entries/s")
}

// BenchmarkLogFollow is one monitor step over HTTP: fetch and verify the checkpoint of a log of
// 65,536 entries, and prove it extends the checkpoint at 40,000.
func BenchmarkLogFollow(b *testing.B) {
	agent := audittest.NewIdentity(b, agentName, 1)
	dir := b.TempDir()
	l := audittest.NewLog(b, dir, agent)
	leaves := audittest.Leaves("note", 1<<16)
	for i := 0; i < 40000; i += 1000 {
		l.Add(b, leaves[i:i+1000]...)
	}
	prev, err := audit.OpenCheckpoint(l.Checkpoint(b), agent.Verifier)
	if err != nil || prev.Size != 40000 {
		b.Fatal(err, prev)
	}
	for i := 40000; i < len(leaves); i += 1024 {
		l.Add(b, leaves[i:min(i+1024, len(leaves))]...)
	}
	l.Close(b)
	srv := audittest.NewServer(b, dir, agent)
	src, _ := audit.NewHTTP(srv.URL+"/log/", srv.Client())
	b.ResetTimer()
	for b.Loop() {
		latest, fork, err := audit.Follow(context.Background(), src, agent.Verifier, prev)
		if err != nil || fork != nil || latest.Size != 1<<16 {
			b.Fatal(err, fork)
		}
	}
}
