package main

import (
	"bytes"
	"crypto/sha256"
	"encoding/base64"
	bin "encoding/binary"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"strconv"
	"strings"
	"testing"
	"time"

	"golang.org/x/mod/sumdb/note"
	"golang.org/x/mod/sumdb/tlog"
)

// logClient is an independent verifier of an agent's evidence log. It uses only what the agent
// publishes over HTTP and x/mod's note and tlog: no certmail code, so what it proves does not
// rest on the agent's own implementation.
type logClient struct {
	t      *testing.T
	c      *http.Client
	base   string // https://localhost
	name   string
	vkey   string
	v      note.Verifier
	origin string
	url    string // the log's prefix, ending in /
}

// newLogClient starts from the agent's address only: /.well-known/certmail names its key and
// its log.
func newLogClient(t *testing.T, p *agentProc) *logClient {
	t.Helper()
	lc := &logClient{t: t, c: p.client, base: "https://localhost"}
	b, status := lc.get(lc.base + "/.well-known/certmail")
	var doc struct {
		Name        string `json:"name"`
		VerifierKey string `json:"verifier_key"`
		Log         struct {
			Origin string `json:"origin"`
			URL    string `json:"url"`
		} `json:"log"`
	}
	if status != 200 || json.Unmarshal(b, &doc) != nil {
		t.Fatalf("/.well-known/certmail: %d %s", status, b)
	}
	v, err := note.NewVerifier(doc.VerifierKey)
	if err != nil || v.Name() != doc.Name || doc.Log.Origin != doc.Name+"/log" || !strings.HasSuffix(doc.Log.URL, "/log/") {
		t.Fatalf("/.well-known/certmail: %s (%v)", b, err)
	}
	lc.name, lc.vkey, lc.v, lc.origin, lc.url = doc.Name, doc.VerifierKey, v, doc.Log.Origin, doc.Log.URL
	return lc
}

func (lc *logClient) get(u string) ([]byte, int) {
	lc.t.Helper()
	resp, err := lc.c.Get(u)
	if err != nil {
		lc.t.Fatalf("GET %s: %v", u, err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		lc.t.Fatalf("GET %s: %v", u, err)
	}
	return b, resp.StatusCode
}

// openCheckpoint verifies a checkpoint note with the agent's key and reads its tree. tlog's own
// ParseTree wants the go.sum database's origin, so the three lines are read here.
func (lc *logClient) openCheckpoint(raw []byte) (tlog.Tree, error) {
	n, err := note.Open(raw, note.VerifierList(lc.v))
	if err != nil {
		return tlog.Tree{}, err
	}
	lines := strings.Split(n.Text, "\n")
	if len(lines) < 4 || lines[0] != lc.origin {
		return tlog.Tree{}, fmt.Errorf("checkpoint of another log: %q", n.Text)
	}
	size, err := strconv.ParseInt(lines[1], 10, 64)
	if err != nil || size < 0 || strconv.FormatInt(size, 10) != lines[1] {
		return tlog.Tree{}, fmt.Errorf("checkpoint size %q", lines[1])
	}
	h, err := tlog.ParseHash(lines[2])
	if err != nil {
		return tlog.Tree{}, fmt.Errorf("checkpoint root %q: %v", lines[2], err)
	}
	return tlog.Tree{N: size, Hash: h}, nil
}

// checkpoint fetches and verifies the log's latest checkpoint.
func (lc *logClient) checkpoint() (tlog.Tree, []byte) {
	lc.t.Helper()
	raw, status := lc.get(lc.url + "checkpoint")
	if status != 200 {
		lc.t.Fatalf("checkpoint: %d %s", status, raw)
	}
	tree, err := lc.openCheckpoint(raw)
	if err != nil {
		lc.t.Fatalf("checkpoint: %v\n%s", err, raw)
	}
	return tree, raw
}

// hashes reads the tree's hashes from the served tiles, which tlog checks against the tree's
// root as it reads them.
func (lc *logClient) hashes(tree tlog.Tree) tlog.HashReader {
	return tlog.TileHashReader(tree, tileReader{lc})
}

// tileReader adapts tlog-tiles paths, which carry no tile height, to tlog's tiles; a partial
// tile the log has replaced by its full tile is read from the full one, cut to its width.
type tileReader struct{ lc *logClient }

func (r tileReader) Height() int                     { return 8 }
func (r tileReader) SaveTiles([]tlog.Tile, [][]byte) {}
func (r tileReader) ReadTiles(ts []tlog.Tile) ([][]byte, error) {
	out := make([][]byte, len(ts))
	for i, tile := range ts {
		b, status := r.lc.get(r.lc.url + strings.Replace(tile.Path(), "tile/8/", "tile/", 1))
		if status == http.StatusNotFound && tile.W < 256 {
			full := tile
			full.W = 256
			if b, status = r.lc.get(r.lc.url + strings.Replace(full.Path(), "tile/8/", "tile/", 1)); status == 200 {
				b = b[:tile.W*tlog.HashSize]
			}
		}
		if status != 200 {
			return nil, fmt.Errorf("tile %s: %d", tile.Path(), status)
		}
		out[i] = b
	}
	return out, nil
}

// proveIncluded proves, from the served tiles alone, that the record data is entry index of tree.
func (lc *logClient) proveIncluded(tree tlog.Tree, index int64, data []byte) error {
	p, err := tlog.ProveRecord(tree.N, index, lc.hashes(tree))
	if err != nil {
		return err
	}
	return tlog.CheckRecord(p, tree.N, tree.Hash, index, tlog.RecordHash(data))
}

// proveConsistent proves, from the served tiles alone, that old is a prefix of tree.
func (lc *logClient) proveConsistent(old, tree tlog.Tree) error {
	p, err := tlog.ProveTree(tree.N, old.N, lc.hashes(tree))
	if err != nil {
		return err
	}
	return tlog.CheckTree(p, tree.N, tree.Hash, old.N, old.Hash)
}

// entries reads every entry of tree from the entry bundles and recomputes the tree from them:
// it fails unless they hash to the checkpoint's root. It returns the entries and a reader of
// the recomputed hashes, from which the root of any earlier size follows.
func (lc *logClient) entries(tree tlog.Tree) ([][]byte, tlog.HashReaderFunc) {
	lc.t.Helper()
	var all [][]byte
	for n := int64(0); n*256 < tree.N; n++ {
		tile := tlog.Tile{H: 8, L: -1, N: n, W: int(min(256, tree.N-n*256))}
		p := "tile/entries/" + strings.TrimPrefix(strings.Replace(tile.Path(), "tile/8/data/", "", 1), "/")
		b, status := lc.get(lc.url + p)
		if status == http.StatusNotFound && tile.W < 256 {
			tile.W = 256
			b, status = lc.get(lc.url + "tile/entries/" + strings.Replace(tile.Path(), "tile/8/data/", "", 1))
		}
		if status != 200 {
			lc.t.Fatalf("%s: %d", p, status)
		}
		for len(b) > 0 && int64(len(all)) < tree.N {
			if len(b) < 2 || len(b) < 2+int(bin.BigEndian.Uint16(b)) {
				lc.t.Fatalf("%s: truncated entry", p)
			}
			size := int(bin.BigEndian.Uint16(b))
			all = append(all, b[2:2+size])
			b = b[2+size:]
		}
	}
	if int64(len(all)) != tree.N {
		lc.t.Fatalf("the entry bundles hold %d entries, the checkpoint %d", len(all), tree.N)
	}
	var stored []tlog.Hash
	read := tlog.HashReaderFunc(func(idx []int64) ([]tlog.Hash, error) {
		out := make([]tlog.Hash, len(idx))
		for i, x := range idx {
			if x >= int64(len(stored)) {
				return nil, fmt.Errorf("hash %d not computed", x)
			}
			out[i] = stored[x]
		}
		return out, nil
	})
	for i, e := range all {
		hs, err := tlog.StoredHashes(int64(i), e, read)
		if err != nil {
			lc.t.Fatal(err)
		}
		stored = append(stored, hs...)
	}
	root, err := tlog.TreeHash(tree.N, read)
	if err != nil || root != tree.Hash {
		lc.t.Fatalf("the entries hash to %v (%v), the checkpoint says %v", root, err, tree.Hash)
	}
	return all, read
}

// proveBundleLogged downloads a label's bundle until every note has a log proof, then proves
// each note's inclusion independently: with the bundle's own checkpoint and proofs, and again
// from the log's latest checkpoint and tiles, its entry holding exactly the note's leaf
// (SHA-256 of the note's bytes). It returns the bundle.
func proveBundleLogged(t *testing.T, p *agentProc, label, user, pw string) []byte {
	t.Helper()
	lc := newLogClient(t, p)
	var raw []byte
	var notes [][]byte
	var cp []byte
	var proofs map[int]bundleProof
	deadline := time.Now().Add(15 * time.Second)
	for {
		req, _ := http.NewRequest("GET", lc.base+"/api/v1/messages/"+label+"/bundle", nil)
		req.SetBasicAuth(user, pw)
		resp, err := lc.c.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		raw, _ = io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != 200 {
			t.Fatalf("bundle: %d %s", resp.StatusCode, raw)
		}
		notes, cp, proofs = readBundle(t, raw)
		if len(proofs) == len(notes) {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("after 15 s the bundle proves %d of its %d notes:\n%s", len(proofs), len(notes), raw)
		}
		time.Sleep(50 * time.Millisecond)
	}
	bt, err := lc.openCheckpoint(cp)
	if err != nil {
		t.Fatalf("the bundle's checkpoint: %v\n%s", err, cp)
	}
	latest, _ := lc.checkpoint()
	if err := lc.proveConsistent(bt, latest); err != nil {
		t.Fatalf("the bundle's checkpoint (%d) is not a prefix of the log's (%d): %v", bt.N, latest.N, err)
	}
	for i, n := range notes {
		leaf := sha256.Sum256(n)
		pr := proofs[i]
		if err := tlog.CheckRecord(pr.hashes, bt.N, bt.Hash, pr.index, tlog.RecordHash(leaf[:])); err != nil {
			t.Errorf("note %d: the bundle's proof: %v", i+1, err)
		}
		if err := lc.proveIncluded(latest, pr.index, leaf[:]); err != nil {
			t.Errorf("note %d: not entry %d of the log: %v", i+1, pr.index, err)
		}
		entries, status := lc.get(lc.url + "tile/entries/" + entriesN(pr.index, latest.N))
		off := int(pr.index%256) * 34
		if status != 200 || len(entries) < off+34 || !bytes.Equal(entries[off:off+34], append([]byte{0, 32}, leaf[:]...)) {
			t.Errorf("note %d: entry %d in the entry bundle is not its leaf", i+1, pr.index)
		}
	}
	return raw
}

// entriesN is the path of the entry bundle holding index in a tree of size n.
func entriesN(index, size int64) string {
	tile := tlog.Tile{H: 8, L: -1, N: index / 256, W: int(min(256, size-index/256*256))}
	return strings.Replace(tile.Path(), "tile/8/data/", "", 1)
}

type bundleProof struct {
	index  int64
	hashes tlog.RecordProof
}

// readBundle reads, by hand from the bundle format, its notes, checkpoint and proofs (keyed by
// note position), so that the verifier needs no certmail code.
func readBundle(t *testing.T, raw []byte) (notes [][]byte, cp []byte, proofs map[int]bundleProof) {
	t.Helper()
	proofs = map[int]bundleProof{}
	rest := raw
	line := func() string {
		i := bytes.IndexByte(rest, '\n')
		if i < 0 {
			t.Fatalf("bundle: no line end:\n%s", raw)
		}
		l := string(rest[:i])
		rest = rest[i+1:]
		return l
	}
	block := func(n string) []byte {
		size, err := strconv.Atoi(n)
		if err != nil || size+1 > len(rest) {
			t.Fatalf("bundle: bad block length %q", n)
		}
		b := rest[:size]
		rest = rest[size+1:]
		return b
	}
	for len(rest) > 0 {
		f := strings.Fields(line())
		switch {
		case len(f) == 2 && f[0] == "note":
			notes = append(notes, block(f[1]))
		case len(f) == 2 && f[0] == "checkpoint":
			cp = block(f[1])
		case len(f) == 3 && f[0] == "item":
			block(f[2])
		case len(f) == 4 && f[0] == "proof":
			pos, _ := strconv.Atoi(f[1])
			idx, _ := strconv.ParseInt(f[2], 10, 64)
			k, _ := strconv.Atoi(f[3])
			var hs tlog.RecordProof
			for range k {
				h, err := base64.StdEncoding.DecodeString(line())
				if err != nil || len(h) != tlog.HashSize {
					t.Fatalf("bundle: bad proof hash")
				}
				hs = append(hs, tlog.Hash(h))
			}
			proofs[pos] = bundleProof{idx, hs}
		}
	}
	return notes, cp, proofs
}
