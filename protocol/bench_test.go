package protocol_test

import (
	"crypto/ed25519"
	"fmt"
	"os"
	"path/filepath"
	"testing"

	"certmail/evidence"
	"certmail/protocol"
)

// signatures counts the signature lines a bundle's notes carry: the Ed25519 verifications a full
// check needs at least.
func signatures(b *evidence.Bundle) int {
	n := 0
	for _, note := range b.Notes {
		n += len(note.Sigs)
	}
	return n
}

// BenchmarkVerifyBundle is `certmail verify` without the terminal: parse, check every signature
// and key binding, judge. The six-note, seven-signature cem-ip vector (COP, ACK, NTF, KEY,
// COD-IP, ROD countersigned) is the reference bundle; ed25519/op reports the same work as raw
// Ed25519 verifications, for the goal "no more than 1.5x the verifications it contains".
func BenchmarkVerifyBundle(b *testing.B) {
	data, err := os.ReadFile(filepath.Join(bundleVectors, "cem-ip-n2-signed.bundle"))
	if err != nil {
		b.Fatal(err)
	}
	parsed, err := evidence.ParseBundle(data)
	if err != nil {
		b.Fatal(err)
	}
	sigs := signatures(parsed)

	b.Run("raw-ed25519", func(b *testing.B) {
		priv := ed25519.NewKeyFromSeed(make([]byte, ed25519.SeedSize))
		pub := priv.Public().(ed25519.PublicKey)
		msg := parsed.Notes[0].Bytes()
		sig := ed25519.Sign(priv, msg)
		for b.Loop() {
			for range sigs {
				if !ed25519.Verify(pub, msg, sig) {
					b.Fatal("verify")
				}
			}
		}
	})
	b.Run("bundle", func(b *testing.B) {
		for b.Loop() {
			bu, err := evidence.ParseBundle(data)
			if err != nil {
				b.Fatal(err)
			}
			if v := protocol.Judge(bu.Check(nil)); !v.Valid {
				b.Fatal(v.Text())
			}
		}
		b.ReportMetric(float64(sigs), "signatures")
	})
}

// BenchmarkVerifyBundles checks an archive of 1,000 distinct six-note bundles (seven signatures
// each; two agent keys and 1,000 user keys, or 100 users with ten bundles each), as `certmail
// verify` given many bundles does: one-at-a-time parses, checks and judges each bundle in turn;
// batch checks them together (CheckBundles) and judges each. bundles/s is the throughput.
func BenchmarkVerifyBundles(b *testing.B) {
	for _, users := range []int{1000, 100} {
		a := newArchive(b, 1000, users)
		pinned, err := evidence.NewKeys(a.keys[:2]...)
		if err != nil {
			b.Fatal(err)
		}
		b.Run(fmt.Sprintf("users=%d/one-at-a-time", users), func(b *testing.B) {
			for b.Loop() {
				for _, data := range a.files {
					bu, err := evidence.ParseBundle(data)
					if err != nil {
						b.Fatal(err)
					}
					if v := protocol.Judge(bu.Check(pinned)); !v.Valid {
						b.Fatal(v.Text())
					}
				}
			}
			b.ReportMetric(float64(len(a.files))*float64(b.N)/b.Elapsed().Seconds(), "bundles/s")
		})
		b.Run(fmt.Sprintf("users=%d/batch", users), func(b *testing.B) {
			for b.Loop() {
				bundles := make([]*evidence.Bundle, len(a.files))
				for i, data := range a.files {
					if bundles[i], err = evidence.ParseBundle(data); err != nil {
						b.Fatal(err)
					}
				}
				for _, c := range evidence.CheckBundles(bundles, pinned) {
					if v := protocol.Judge(c); !v.Valid {
						b.Fatal(v.Text())
					}
				}
			}
			b.ReportMetric(float64(len(a.files))*float64(b.N)/b.Elapsed().Seconds(), "bundles/s")
		})
	}
}
