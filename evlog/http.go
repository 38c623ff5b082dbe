package evlog

import (
	"errors"
	"fmt"
	"io/fs"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
)

// Resource is one thing a tlog-tiles log serves: its checkpoint, a Merkle tree tile, or an entry
// bundle (C2SP tlog-tiles, "APIs").
type Resource struct {
	Kind  ResourceKind
	Level uint64 // a tile's level, 0 to 63
	Index uint64 // a tile's or entry bundle's index N
	Width uint64 // 1 to 255 for a partial tile or bundle, 0 for a full one
}

// ResourceKind tells the resources apart.
type ResourceKind int

const (
	KindCheckpoint ResourceKind = iota
	KindTile
	KindEntries
)

// maxLevel is the highest tile level tlog-tiles allows.
const maxLevel = 63

// ParsePath parses the path of a resource relative to the log's prefix, as in "checkpoint",
// "tile/0/x001/x234/067" or "tile/entries/005.p/17" (no leading slash). It accepts only the
// canonical encoding, so Path gives the input back: no other file of the log directory (tessera's
// private state, the temporary files an interrupted write leaves) has a path it accepts.
func ParsePath(p string) (Resource, error) {
	if p == "checkpoint" {
		return Resource{Kind: KindCheckpoint}, nil
	}
	rest, ok := strings.CutPrefix(p, "tile/")
	if !ok {
		return Resource{}, fmt.Errorf("evlog: %q is not a log resource", p)
	}
	r := Resource{Kind: KindTile}
	if after, ok := strings.CutPrefix(rest, "entries/"); ok {
		r.Kind, rest = KindEntries, after
	} else {
		level, after, ok := strings.Cut(rest, "/")
		if !ok {
			return Resource{}, fmt.Errorf("evlog: %q: no tile index", p)
		}
		n, err := decimal(level, maxLevel)
		if err != nil {
			return Resource{}, fmt.Errorf("evlog: %q: tile level: %v", p, err)
		}
		r.Level, rest = n, after
	}
	if i := strings.Index(rest, ".p/"); i >= 0 {
		w, err := decimal(rest[i+len(".p/"):], 255)
		if err != nil || w == 0 {
			return Resource{}, fmt.Errorf("evlog: %q: partial width must be 1 to 255", p)
		}
		r.Width, rest = w, rest[:i]
	}
	n, err := parseN(rest)
	if err != nil {
		return Resource{}, fmt.Errorf("evlog: %q: %v", p, err)
	}
	r.Index = n
	return r, nil
}

// Path is the resource's path relative to the log's prefix, as tlog-tiles (and tessera's POSIX
// layout) spell it.
func (r Resource) Path() string {
	switch r.Kind {
	case KindCheckpoint:
		return "checkpoint"
	case KindEntries:
		return "tile/entries/" + formatN(r.Index) + partial(r.Width)
	}
	return "tile/" + strconv.FormatUint(r.Level, 10) + "/" + formatN(r.Index) + partial(r.Width)
}

func partial(w uint64) string {
	if w == 0 {
		return ""
	}
	return ".p/" + strconv.FormatUint(w, 10)
}

// decimal parses a decimal ASCII integer up to max with no sign and no leading zero.
func decimal(s string, max uint64) (uint64, error) {
	if s == "" || len(s) > 1 && s[0] == '0' || strings.TrimLeft(s, "0123456789") != "" {
		return 0, fmt.Errorf("%q is not a decimal number without leading zeroes", s)
	}
	n, err := strconv.ParseUint(s, 10, 64)
	if err != nil || n > max {
		return 0, fmt.Errorf("%q is out of range", s)
	}
	return n, nil
}

// parseN parses a tile index in zero-padded 3-digit path elements, all but the last prefixed
// with x, and the first group not zero unless it is the only one ("x001/x234/067" is 1234067).
func parseN(s string) (uint64, error) {
	groups := strings.Split(s, "/")
	if len(groups) > 7 { // 10^21 > 2^64
		return 0, fmt.Errorf("index %q is out of range", s)
	}
	var n uint64
	for i, g := range groups {
		last := i == len(groups)-1
		if !last {
			var ok bool
			if g, ok = strings.CutPrefix(g, "x"); !ok {
				return 0, fmt.Errorf("index %q: element %d does not start with x", s, i+1)
			}
		}
		if len(g) != 3 || strings.TrimLeft(g, "0123456789") != "" {
			return 0, fmt.Errorf("index %q: element %d is not three digits", s, i+1)
		}
		v, _ := strconv.ParseUint(g, 10, 64)
		if i == 0 && !last && v == 0 {
			return 0, fmt.Errorf("index %q: leading zero element", s)
		}
		if n > (^uint64(0)-v)/1000 {
			return 0, fmt.Errorf("index %q is out of range", s)
		}
		n = n*1000 + v
	}
	return n, nil
}

// formatN encodes a tile index as tlog-tiles paths do.
func formatN(n uint64) string {
	s := fmt.Sprintf("%03d", n%1000)
	for n /= 1000; n > 0; n /= 1000 {
		s = fmt.Sprintf("x%03d/%s", n%1000, s)
	}
	return s
}

// Cache lifetimes (tlog-tiles: the checkpoint is mutable and must not be cached beyond a few
// seconds; tiles and bundles are immutable). A partial tile never changes either, but the log
// deletes it once the full tile exists, so caches should not keep it long.
const (
	cacheCheckpoint = "no-cache"
	cacheFull       = "public, max-age=31536000, immutable"
	cachePartial    = "public, max-age=60"
)

// Handler serves the log in dir read-only, at the tlog-tiles paths relative to the handler's
// root ("/checkpoint", "/tile/…"): mount it under the log's prefix with http.StripPrefix. It
// serves those resources and nothing else of the directory, and answers GET and HEAD only.
// It reads the files as they are, so it serves any log directory, open or not.
func Handler(dir string) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Method != http.MethodGet && r.Method != http.MethodHead {
			w.Header().Set("Allow", "GET, HEAD")
			http.Error(w, "the evidence log is read-only", http.StatusMethodNotAllowed)
			return
		}
		res, err := ParsePath(strings.TrimPrefix(r.URL.Path, "/"))
		if err != nil {
			http.Error(w, "no such log resource (C2SP tlog-tiles: checkpoint, tile/<L>/<N>[.p/<W>], tile/entries/<N>[.p/<W>])", http.StatusNotFound)
			return
		}
		b, err := os.ReadFile(filepath.Join(dir, filepath.FromSlash(res.Path())))
		if errors.Is(err, fs.ErrNotExist) {
			// A partial tile the log has replaced by its full tile, or one the tree has not reached.
			http.Error(w, "the log has no "+res.Path(), http.StatusNotFound)
			return
		}
		if err != nil {
			http.Error(w, "the log cannot be read now", http.StatusServiceUnavailable)
			return
		}
		h := w.Header()
		h.Set("Access-Control-Allow-Origin", "*") // public data, for tlog clients in browsers too
		h.Set("Content-Length", strconv.Itoa(len(b)))
		switch {
		case res.Kind == KindCheckpoint:
			h.Set("Content-Type", "text/plain; charset=utf-8")
			h.Set("Cache-Control", cacheCheckpoint)
		case res.Width > 0:
			h.Set("Content-Type", "application/octet-stream")
			h.Set("Cache-Control", cachePartial)
		default:
			h.Set("Content-Type", "application/octet-stream")
			h.Set("Cache-Control", cacheFull)
		}
		if r.Method == http.MethodHead {
			return
		}
		w.Write(b)
	})
}
