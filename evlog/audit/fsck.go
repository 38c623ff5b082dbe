package audit

import (
	"bytes"
	"context"
	"encoding/base64"
	"fmt"

	"golang.org/x/mod/sumdb/tlog"
)

// Problem is one thing wrong in a stored log: the file and what is wrong with it.
type Problem struct {
	Path   string
	Reason string
}

func (p Problem) String() string { return p.Path + ": " + p.Reason }

// FsckReport is what Fsck found.
type FsckReport struct {
	Checkpoint *Checkpoint
	Signed     bool  // the checkpoint's signature was checked with the agent's key
	Entries    int64 // entries read and hashed
	Tiles      int   // hash tiles compared with the tree the entries give
	Problems   []Problem
}

func (r *FsckReport) problem(path, format string, args ...any) {
	r.Problems = append(r.Problems, Problem{path, fmt.Sprintf(format, args...)})
}

// Fsck recomputes a log's tree from its stored entries, compares every stored hash tile with it
// and the root with the checkpoint's, and names each file that is wrong. An error means the
// checkpoint itself could not be read or is not the agent's; with agentKey "" its signature is
// not checked.
//
// tessera has an fsck too, but it stops at the first difference and blames the hash tile even
// when an entry bundle was altered; this one decides which side is wrong with the signed root:
// when the entries give the checkpoint's root, every tile that differs from them is wrong; when
// they do not and the stored tiles do, the entries that differ from the tiles are.
//
// It holds two hashes per entry in memory (64 MB for a million entries).
func Fsck(ctx context.Context, src Source, agentKey string) (*FsckReport, error) {
	cp, err := ReadCheckpoint(ctx, src, agentKey)
	if err != nil {
		return nil, err
	}
	r := &FsckReport{Checkpoint: cp, Signed: agentKey != ""}
	n := cp.Size

	// The tree the entries give, as x/mod's tlog stores it.
	var hashes []tlog.Hash
	mem := tlog.HashReaderFunc(func(idx []int64) ([]tlog.Hash, error) {
		out := make([]tlog.Hash, len(idx))
		for i, x := range idx {
			if x < 0 || x >= int64(len(hashes)) {
				return nil, fmt.Errorf("audit: hash %d not computed", x)
			}
			out[i] = hashes[x]
		}
		return out, nil
	})
	var bundlePaths []string
	for k := int64(0); k*tileWidth < n; k++ {
		if err := ctx.Err(); err != nil {
			return nil, err
		}
		w := int(min(tileWidth, n-k*tileWidth))
		entries, path, err := readEntries(ctx, src, k, w)
		if err != nil {
			r.problem(path, "%v", err)
			break
		}
		bundlePaths = append(bundlePaths, path)
		for j, e := range entries {
			i := k*tileWidth + int64(j)
			if len(e) != tlog.HashSize {
				r.problem(path, "entry %d (log index %d) is %d bytes; the evidence log holds the 32-byte leaf of each note", j, i, len(e))
			}
			hs, err := tlog.StoredHashes(i, e, mem)
			if err != nil {
				return nil, fmt.Errorf("audit: hash entry %d: %w", i, err)
			}
			hashes = append(hashes, hs...)
		}
		r.Entries += int64(w)
	}

	stored := tlog.TileHashReader(cp.Tree(), newTileReader(ctx, src))
	tiles := tlog.NewTiles(tileHeight, 0, n)
	if r.Entries < n {
		if _, err := tlog.TreeHash(n, stored); err != nil {
			r.problem(CheckpointPath, "with entries missing, the stored tiles do not give the checkpoint's root either: %v", err)
		}
		return r, nil
	}
	root, err := tlog.TreeHash(n, mem)
	if err != nil {
		return nil, fmt.Errorf("audit: root of the entries: %w", err)
	}

	if root == cp.Hash {
		// The entries are the signed tree's: each tile must be what they give.
		for _, t := range tiles {
			r.Tiles++
			want, err := tlog.ReadTileData(t, mem)
			if err != nil {
				return nil, fmt.Errorf("audit: tile %s from the entries: %w", TilePath(t), err)
			}
			got, path, err := readTile(ctx, src, t)
			if err != nil {
				r.problem(path, "%v", err)
				continue
			}
			if i := firstDiff(got, want); i >= 0 {
				level, index := t.L*tileHeight, t.N*tileWidth+int64(i)
				r.problem(path, "hash %d (tree level %d, node %d) is %s; the entries, which give the checkpoint's root, make it %s",
					i, level, index, b64(got[i*tlog.HashSize:(i+1)*tlog.HashSize]), b64(want[i*tlog.HashSize:(i+1)*tlog.HashSize]))
			}
		}
		return r, nil
	}

	if _, err := tlog.TreeHash(n, stored); err != nil {
		r.problem(CheckpointPath, "neither the entries nor the stored tiles give the checkpoint's root %s at size %d: the entries give %s, and the tiles: %v",
			b64(cp.Hash[:]), n, b64(root[:]), err)
		return r, nil
	}
	// The stored tiles carry the signed tree: the entries that differ from its leaves are wrong.
	for _, t := range tiles {
		if t.L != 0 {
			continue
		}
		r.Tiles++
		idx := make([]int64, t.W)
		for j := range idx {
			idx[j] = tlog.StoredHashIndex(0, t.N*tileWidth+int64(j))
		}
		signed, err := stored.ReadHashes(idx)
		if err != nil {
			r.problem(TilePath(t), "neither this tile nor %s matches the checkpoint: %v", bundlePaths[t.N], err)
			continue
		}
		for j, x := range idx {
			if hashes[x] != signed[j] {
				r.problem(bundlePaths[t.N], "entry %d (log index %d) is not the one the checkpoint's tree holds there: its leaf hash is %s, the signed tree's %s",
					j, t.N*tileWidth+int64(j), b64(hashes[x][:]), b64(signed[j][:]))
			}
		}
	}
	return r, nil
}

func firstDiff(a, b []byte) int {
	for i := 0; i*tlog.HashSize < len(a) && i*tlog.HashSize < len(b); i++ {
		if !bytes.Equal(a[i*tlog.HashSize:(i+1)*tlog.HashSize], b[i*tlog.HashSize:(i+1)*tlog.HashSize]) {
			return i
		}
	}
	return -1
}

func b64(b []byte) string { return base64.StdEncoding.EncodeToString(b) }
