package audit

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io/fs"
	"strings"

	"golang.org/x/mod/sumdb/tlog"
)

// tileHeight is the height of every tlog-tiles tile: 256 hashes or entries wide.
const tileHeight = 8

const tileWidth = 1 << tileHeight

// TilePath returns the C2SP tlog-tiles path of a tlog tile of height 8. x/mod's tlog writes the
// height as the first path element ("tile/8/0/x001/234.p/5", "tile/8/data/000"); tlog-tiles
// leaves it out ("tile/0/x001/234.p/5") and keeps entry bundles under "tile/entries/".
// Everything else, the index and the partial width, is written alike.
func TilePath(t tlog.Tile) string {
	p := strings.TrimPrefix(t.Path(), fmt.Sprintf("tile/%d/", tileHeight))
	if rest, ok := strings.CutPrefix(p, "data/"); ok {
		return "tile/entries/" + rest
	}
	return "tile/" + p
}

// ParseTilePath parses the path of a hash tile or, with L == -1, an entry bundle, and accepts
// only the canonical spelling TilePath writes. A server of the log uses it to serve tile paths
// and nothing else.
func ParseTilePath(path string) (tlog.Tile, error) {
	rest, ok := strings.CutPrefix(path, "tile/")
	if !ok {
		return tlog.Tile{}, fmt.Errorf("audit: %q is not a tile path", path)
	}
	if e, ok := strings.CutPrefix(rest, "entries/"); ok {
		rest = "data/" + e
	} else if strings.HasPrefix(rest, "data/") {
		return tlog.Tile{}, fmt.Errorf("audit: %q is not a tile path", path)
	}
	t, err := tlog.ParseTilePath(fmt.Sprintf("tile/%d/%s", tileHeight, rest))
	if err != nil || TilePath(t) != path {
		return tlog.Tile{}, fmt.Errorf("audit: %q is not a tile path", path)
	}
	return t, nil
}

// tileReader reads the hash tiles of a log for x/mod's tlog.TileHashReader, which checks every
// tile it is given against the tree's root before using it.
type tileReader struct {
	ctx   context.Context
	src   Source
	cache map[tlog.Tile][]byte
}

func newTileReader(ctx context.Context, src Source) *tileReader {
	return &tileReader{ctx: ctx, src: src, cache: map[tlog.Tile][]byte{}}
}

func (r *tileReader) Height() int { return tileHeight }

func (r *tileReader) ReadTiles(tiles []tlog.Tile) ([][]byte, error) {
	out := make([][]byte, len(tiles))
	for i, t := range tiles {
		if data, ok := r.cache[t]; ok {
			out[i] = data
			continue
		}
		data, path, err := readTile(r.ctx, r.src, t)
		if err != nil {
			return nil, fmt.Errorf("%s: %w", path, err)
		}
		r.cache[t], out[i] = data, data
	}
	return out, nil
}

func (r *tileReader) SaveTiles([]tlog.Tile, [][]byte) {}

// readTile reads a hash tile of W hashes. A log removes a partial tile once the full one is
// written, so a reader that holds an older, smaller tree falls back to the full tile and keeps
// its first W hashes (DESIGN.md §4). It returns the path it read; its errors do not repeat it.
func readTile(ctx context.Context, src Source, t tlog.Tile) ([]byte, string, error) {
	path := TilePath(t)
	data, err := src.ReadFile(ctx, path)
	if errors.Is(err, fs.ErrNotExist) && t.W < tileWidth {
		full := t
		full.W = tileWidth
		if d, ferr := src.ReadFile(ctx, TilePath(full)); ferr == nil {
			path, err = TilePath(full), nil
			if len(d) >= t.W*tlog.HashSize {
				d = d[:t.W*tlog.HashSize]
			}
			data = d
		}
	}
	if err != nil {
		return nil, path, notExist(err)
	}
	if len(data) != t.W*tlog.HashSize {
		return nil, path, fmt.Errorf("holds %d bytes, want %d (%d hashes)", len(data), t.W*tlog.HashSize, t.W)
	}
	return data, path, nil
}

// readEntries reads the first w entries of entry bundle n, with the same fallback from a
// partial bundle to the full one as readTile.
func readEntries(ctx context.Context, src Source, n int64, w int) ([][]byte, string, error) {
	t := tlog.Tile{H: tileHeight, L: -1, N: n, W: w}
	path := TilePath(t)
	data, err := src.ReadFile(ctx, path)
	if errors.Is(err, fs.ErrNotExist) && w < tileWidth {
		t.W = tileWidth
		if d, ferr := src.ReadFile(ctx, TilePath(t)); ferr == nil {
			path, data, err = TilePath(t), d, nil
		}
	}
	if err != nil {
		return nil, path, notExist(err)
	}
	entries, err := ParseEntryBundle(data)
	if err != nil {
		return nil, path, err
	}
	if len(entries) != t.W {
		return nil, path, fmt.Errorf("holds %d entries, want %d", len(entries), t.W)
	}
	return entries[:w], path, nil
}

// notExist says "missing" for a file that is not there, rather than the system's words.
func notExist(err error) error {
	if errors.Is(err, fs.ErrNotExist) {
		return fmt.Errorf("missing (%w)", fs.ErrNotExist)
	}
	return err
}

// ParseEntryBundle splits a tlog-tiles entry bundle: each entry is a big-endian uint16 length
// and that many bytes.
func ParseEntryBundle(data []byte) ([][]byte, error) {
	var entries [][]byte
	for len(data) > 0 {
		if len(data) < 2 {
			return nil, fmt.Errorf("entry bundle: truncated after %d entries", len(entries))
		}
		n := int(binary.BigEndian.Uint16(data))
		if len(data) < 2+n {
			return nil, fmt.Errorf("entry bundle: entry %d of %d bytes runs past the end", len(entries), n)
		}
		if len(entries) == tileWidth {
			return nil, fmt.Errorf("entry bundle: more than %d entries", tileWidth)
		}
		entries = append(entries, data[2:2+n])
		data = data[2+n:]
	}
	return entries, nil
}
