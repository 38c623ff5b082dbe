package audit_test

import (
	"bytes"
	"encoding/binary"
	"net/url"
	"os"
	"testing"

	"certmail/evlog/audit"
	"certmail/internal/seed"
)

func FuzzParseTilePath(f *testing.F) {
	for _, s := range []string{"tile/0/000", "tile/0/x001/234.p/5", "tile/entries/x002/003.p/17", "tile/3/x123/x456/789", "checkpoint", "tile/8/0/000"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, path string) {
		tile, err := audit.ParseTilePath(path)
		if err != nil {
			return
		}
		if got := audit.TilePath(tile); got != path {
			t.Fatalf("%q parsed as %+v, written back as %q", path, tile, got)
		}
		if tile.H != 8 || tile.W < 1 || tile.W > 256 || tile.L < -1 || tile.N < 0 {
			t.Fatalf("%q parsed as %+v", path, tile)
		}
	})
}

func FuzzParseEntryBundle(f *testing.F) {
	f.Add(encodeEntries([][]byte{make([]byte, 32), bytes.Repeat([]byte{7}, 32)}))
	f.Add([]byte{0, 3, 'a', 'b'})
	f.Fuzz(func(t *testing.T, data []byte) {
		entries, err := audit.ParseEntryBundle(data)
		if err != nil {
			return
		}
		if len(entries) > 256 || !bytes.Equal(encodeEntries(entries), data) {
			t.Fatalf("%d entries do not encode back to the bundle", len(entries))
		}
	})
}

// encodeEntries writes a tlog-tiles entry bundle: each entry as a big-endian uint16 length and
// its bytes.
func encodeEntries(entries [][]byte) []byte {
	var out []byte
	for _, e := range entries {
		out = binary.BigEndian.AppendUint16(out, uint16(len(e)))
		out = append(out, e...)
	}
	return out
}

func FuzzParseFork(f *testing.F) {
	seed.Files(f, logVectors+"/*/*.proof")
	key, err := os.ReadFile(logVectors + "/key.txt")
	if err != nil {
		f.Fatal(err)
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		fork, err := audit.ParseFork(data)
		if err != nil {
			return
		}
		if !bytes.Equal(fork.Encode(), data) {
			t.Fatalf("parse then encode changed the fork proof")
		}
		_ = fork.Check(string(bytes.TrimSpace(key))) // must not panic
	})
}

func FuzzParseState(f *testing.F) {
	seed.Files(f, logVectors+"/valid/*.proof")
	f.Fuzz(func(t *testing.T, data []byte) {
		if fork, err := audit.ParseFork(data); err == nil {
			// Make a state of the fork's first checkpoint: a seed that parses.
			data = (&audit.State{Agent: "https://localhost", Log: "https://localhost/log/", Key: fork.Key, Checkpoint: fork.Old}).Encode()
		}
		s, err := audit.ParseState(data)
		if err != nil {
			return
		}
		if !bytes.Equal(s.Encode(), data) {
			t.Fatalf("parse then encode changed the state")
		}
	})
}

func FuzzParseAgent(f *testing.F) {
	key, err := os.ReadFile(logVectors + "/key.txt")
	if err != nil {
		f.Fatal(err)
	}
	f.Add([]byte(`{"name":"localhost","verifier_key":"` + string(bytes.TrimSpace(key)) + `","log":{"origin":"localhost/log","url":"/log/"}}`))
	f.Add([]byte(`{"name":"localhost","verifier_key":"x","log":{"origin":"localhost/log","url":"https://cdn.example/log/"}}`))
	base, _ := url.Parse("https://localhost:8443")
	f.Fuzz(func(t *testing.T, data []byte) {
		a, logURL, err := audit.ParseAgent(data, base)
		if err != nil {
			return
		}
		if a.Log.Origin != a.Name+"/log" || (logURL.Scheme != "https" && logURL.Scheme != "http") || logURL.Host == "" {
			t.Fatalf("accepted %+v at %v", a, logURL)
		}
	})
}
