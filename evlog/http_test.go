package evlog_test

import (
	"bytes"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"

	"certmail/evidence"
	"certmail/evlog"

	"golang.org/x/mod/sumdb/note"
	"golang.org/x/mod/sumdb/tlog"
)

func TestParsePath(t *testing.T) {
	good := map[string]evlog.Resource{
		"checkpoint":            {Kind: evlog.KindCheckpoint},
		"tile/0/000":            {Kind: evlog.KindTile},
		"tile/0/005.p/17":       {Kind: evlog.KindTile, Index: 5, Width: 17},
		"tile/63/x001/x234/067": {Kind: evlog.KindTile, Level: 63, Index: 1234067},
		"tile/1/x001/000.p/255": {Kind: evlog.KindTile, Level: 1, Index: 1000, Width: 255},
		"tile/entries/000.p/1":  {Kind: evlog.KindEntries, Width: 1},
		"tile/entries/x999/999": {Kind: evlog.KindEntries, Index: 999999},
		"tile/entries/x018/x446/x744/x073/x709/x551/615": {Kind: evlog.KindEntries, Index: 18446744073709551615},
	}
	for p, want := range good {
		got, err := evlog.ParsePath(p)
		if err != nil || got != want {
			t.Errorf("ParsePath(%q) = %+v, %v; want %+v", p, got, err, want)
			continue
		}
		if got.Path() != p {
			t.Errorf("ParsePath(%q).Path() = %q", p, got.Path())
		}
	}
	bad := []string{
		"", "/checkpoint", "checkpoint12345", "checkpoint/", ".state/treeState", "tile", "tile/0", "tile/0/",
		"tile/00/000", "tile/64/000", "tile/-1/000", "tile/+1/000", "tile/0/5", "tile/0/0005", "tile/0/x000/001",
		"tile/0/001/002", "tile/0/x1/002", "tile/0/000.p/0", "tile/0/000.p/256", "tile/0/000.p/017",
		"tile/0/000.p/", "tile/0/000.p/1/2", "tile/0/0001234567", "tile/0/000.p/12345678",
		"tile/entries/000.p/5123456", // a temporary file tessera left behind
		"tile/entries/x018/x446/x744/x073/x709/x551/616", "tile/entries/x001/x000/x000/x000/x000/x000/x000/000",
		"tile/0/../../etc/passwd", "tile/entries/../000", "tile/8/0/000",
	}
	for _, p := range bad {
		if r, err := evlog.ParsePath(p); err == nil {
			t.Errorf("ParsePath(%q) = %+v, want an error", p, r)
		}
	}
}

// FuzzParsePath: whatever ParsePath accepts, Path spells back exactly (so nothing but canonical
// resource paths reaches the file system).
func FuzzParsePath(f *testing.F) {
	for _, s := range []string{"checkpoint", "tile/0/000", "tile/2/x001/x234/067.p/8", "tile/entries/005.p/17", "tile/0/x000/001"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, p string) {
		r, err := evlog.ParsePath(p)
		if err != nil {
			return
		}
		if r.Path() != p {
			t.Fatalf("ParsePath(%q).Path() = %q", p, r.Path())
		}
	})
}

// tiles reads a tlog-tiles log over HTTP for x/mod's tlog, which names tiles with their height
// (tile/8/L/N) where tlog-tiles does not (tile/L/N). A partial tile the log has replaced by its
// full tile is read from the full tile, cut to the width asked for.
type tiles struct {
	t    *testing.T
	base string // ends with /
}

func (h tiles) Height() int { return 8 }

func (h tiles) SaveTiles([]tlog.Tile, [][]byte) {}

func (h tiles) ReadTiles(ts []tlog.Tile) ([][]byte, error) {
	out := make([][]byte, len(ts))
	for i, tile := range ts {
		p := strings.Replace(tile.Path(), "tile/8/", "tile/", 1)
		b, status := h.get(p)
		if status == http.StatusNotFound && tile.W < 256 {
			full := tile
			full.W = 256
			b, status = h.get(strings.Replace(full.Path(), "tile/8/", "tile/", 1))
			if status == http.StatusOK {
				b = b[:tile.W*tlog.HashSize]
			}
		}
		if status != http.StatusOK {
			return nil, fmt.Errorf("GET %s: %d", p, status)
		}
		out[i] = b
	}
	return out, nil
}

func (h tiles) get(p string) ([]byte, int) {
	resp, err := http.Get(h.base + p)
	if err != nil {
		h.t.Fatal(err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		h.t.Fatal(err)
	}
	return b, resp.StatusCode
}

// TestHandler serves a log over HTTP and checks it as a tlog client would: the checkpoint
// verifies, each entry's record is in the tree the checkpoint commits to (proofs built from the
// served tiles, which tlog checks against the root), the entry bundles hold the leaves, and the
// cache headers say what may be kept. Nothing else of the directory is served.
func TestHandler(t *testing.T) {
	l, k := openLog(t, evlog.Config{})
	const n = 600 // two full entry bundles and a partial one
	var leaves []evidence.Hash
	for i := range n {
		leaves = append(leaves, leafN(uint64(i)))
	}
	for i := 0; i < n; i += 100 {
		if _, err := l.Append(t.Context(), leaves[i:i+100]...); err != nil {
			t.Fatal(err)
		}
	}
	waitCheckpoint(t, l, n)
	mux := http.NewServeMux()
	mux.Handle("GET /log/", http.StripPrefix("/log", evlog.Handler(l.Dir())))
	srv := httptest.NewServer(mux)
	defer srv.Close()
	h := tiles{t, srv.URL + "/log/"}

	raw, status := h.get("checkpoint")
	v, _ := note.NewVerifier(k.verifier)
	nt, err := note.Open(raw, note.VerifierList(v))
	if status != 200 || err != nil {
		t.Fatalf("checkpoint: %d %v\n%s", status, err, raw)
	}
	lines := strings.SplitN(nt.Text, "\n", 4)
	size, _ := strconv.ParseInt(lines[1], 10, 64)
	root, err := tlog.ParseHash(lines[2])
	if lines[0] != l.Origin() || size != n || err != nil {
		t.Fatalf("checkpoint text %q", nt.Text)
	}
	tree := tlog.Tree{N: size, Hash: root}
	hr := tlog.TileHashReader(tree, h)
	for _, i := range []int64{0, 1, 255, 256, 511, 512, n - 1} {
		p, err := tlog.ProveRecord(size, i, hr)
		if err != nil {
			t.Fatalf("proof of %d from the served tiles: %v", i, err)
		}
		if err := tlog.CheckRecord(p, size, root, i, tlog.RecordHash(leaves[i][:])); err != nil {
			t.Fatalf("entry %d: %v", i, err)
		}
	}
	for bundle, width := range []string{"000", "001", "002.p/88"} {
		b, status := h.get("tile/entries/" + width)
		if status != 200 {
			t.Fatalf("entry bundle %s: %d", width, status)
		}
		for j := 0; len(b) > 0; j++ {
			if len(b) < 2+32 || b[0] != 0 || b[1] != 32 || !bytes.Equal(b[2:34], leaves[bundle*256+j][:]) {
				t.Fatalf("entry bundle %s: entry %d is not leaf %d", width, j, bundle*256+j)
			}
			b = b[34:]
		}
	}

	check := func(p string, wantStatus int, wantCache string) {
		t.Helper()
		resp, err := http.Get(h.base + p)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != wantStatus || wantCache != "" && resp.Header.Get("Cache-Control") != wantCache {
			t.Errorf("GET %s: %d, Cache-Control %q; want %d, %q", p, resp.StatusCode, resp.Header.Get("Cache-Control"), wantStatus, wantCache)
		}
	}
	check("checkpoint", 200, "no-cache")
	check("tile/0/000", 200, "public, max-age=31536000, immutable")
	check("tile/entries/001", 200, "public, max-age=31536000, immutable")
	check("tile/0/002.p/88", 200, "public, max-age=60")
	check("tile/1/000.p/2", 200, "public, max-age=60")
	check("tile/0/003", 404, "")
	check("tile/0/002.p/89", 404, "")

	// What an interrupted write leaves, and tessera's private state, are never served.
	os.WriteFile(filepath.Join(l.Dir(), "checkpoint12345"), []byte("stale"), 0o644)
	os.WriteFile(filepath.Join(l.Dir(), "tile", "entries", "002.p", "8812345"), []byte("half"), 0o644)
	for _, p := range []string{"checkpoint12345", "tile/entries/002.p/8812345", ".state/treeState", ".state/version", "", "tile/", "tile/0"} {
		check(p, 404, "")
	}
	resp, err := http.Post(h.base+"checkpoint", "text/plain", strings.NewReader("x"))
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusMethodNotAllowed {
		t.Errorf("POST checkpoint: %d, want 405", resp.StatusCode)
	}
}
