// Package blobfs is the filesystem store.Blobs: message bodies as content-addressed files,
// dir/sha256/ab/cdef… named by the SHA-256 of their bytes (DESIGN.md §6). The agent now keeps
// bodies in its database (store.Tx.PutMessage); a data directory of an earlier version keeps
// them here, and the agent reads them from here.
//
// Put returns only once the blob is durable: it writes a temporary file in the blob's directory,
// syncs it, renames it into place and syncs the directory. A crash leaves either the whole blob
// or none (and perhaps a .tmp- file, which nothing reads). Get checks that what it read hashes to
// the name it asked for, so a damaged file is an error, never a message. Files are 0600 and
// directories 0700: they hold other people's mail.
//
// Several processes may share one directory: names are derived from content, and a rename
// replaces a file atomically with the same bytes.
package blobfs

import (
	"certmail/durable"
	"context"
	"crypto/sha256"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"

	"certmail/evidence"
	"certmail/store"
)

// ErrCorrupt is returned by Get for a blob whose bytes do not hash to its name.
var ErrCorrupt = errors.New("blobfs: corrupt blob")

// Store is a store.Blobs in a directory.
type Store struct {
	root string // dir/sha256
}

var _ store.Blobs = (*Store)(nil)

// Open opens the blob store in dir, creating it (0700) as needed.
func Open(dir string) (*Store, error) {
	if dir == "" {
		return nil, errors.New("blobfs: open: no directory")
	}
	abs, err := filepath.Abs(dir)
	if err != nil {
		return nil, fmt.Errorf("blobfs: open %s: %w", dir, err)
	}
	root := filepath.Join(abs, "sha256")
	if err := durable.MkdirAll(root); err != nil {
		return nil, fmt.Errorf("blobfs: open %s: %w", dir, err)
	}
	return &Store{root: root}, nil
}

// path returns the directory and file name of the blob h.
func (s *Store) path(h evidence.Hash) (dir, file string) {
	hex := h.String()[len("sha256:"):]
	dir = filepath.Join(s.root, hex[:2])
	return dir, filepath.Join(dir, hex[2:])
}

// Put stores data and returns its SHA-256 once it is durable. Putting the same bytes again is
// cheap and returns the same hash; a damaged copy already there is replaced.
func (s *Store) Put(ctx context.Context, data []byte) (evidence.Hash, error) {
	if err := ctx.Err(); err != nil {
		return evidence.Hash{}, err
	}
	h := evidence.Sum(data)
	dir, file := s.path(h)
	switch ok, err := syncIfWhole(file, h); {
	case err != nil:
		return evidence.Hash{}, fmt.Errorf("blobfs: put %s: %w", h, err)
	case ok:
		// Synced again: an earlier Put may have died between its rename and its directory sync.
		if err := durable.SyncDir(dir); err != nil {
			return evidence.Hash{}, fmt.Errorf("blobfs: put %s: %w", h, err)
		}
		return h, nil
	}
	if err := durable.MkdirAll(dir); err != nil {
		return evidence.Hash{}, fmt.Errorf("blobfs: put %s: %w", h, err)
	}
	if err := writeFile(ctx, dir, file, data); err != nil {
		return evidence.Hash{}, fmt.Errorf("blobfs: put %s: %w", h, err)
	}
	return h, nil
}

// writeFile writes data to file through a synced temporary file and a synced rename.
func writeFile(ctx context.Context, dir, file string, data []byte) (err error) {
	tmp, err := os.CreateTemp(dir, ".tmp-*") // mode 0600
	if err != nil {
		return err
	}
	defer func() {
		if err != nil {
			tmp.Close()
			os.Remove(tmp.Name())
		}
	}()
	if _, err := tmp.Write(data); err != nil {
		return err
	}
	if err := tmp.Sync(); err != nil {
		return err
	}
	if err := tmp.Close(); err != nil {
		return err
	}
	if err := ctx.Err(); err != nil {
		return err
	}
	if err := os.Rename(tmp.Name(), file); err != nil {
		return err
	}
	return durable.SyncDir(dir)
}

// syncIfWhole reports whether file exists and hashes to h, and if so syncs it.
func syncIfWhole(file string, h evidence.Hash) (bool, error) {
	f, err := os.Open(file)
	if errors.Is(err, fs.ErrNotExist) {
		return false, nil
	}
	if err != nil {
		return false, err
	}
	defer f.Close()
	d := sha256.New()
	if _, err := io.Copy(d, f); err != nil {
		return false, err
	}
	if evidence.Hash(d.Sum(nil)) != h {
		return false, nil
	}
	return true, f.Sync()
}

// Get returns the blob h: store.ErrNotFound if there is none, ErrCorrupt if its bytes do not
// hash to h.
func (s *Store) Get(ctx context.Context, h evidence.Hash) ([]byte, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	if h.IsZero() {
		return nil, fmt.Errorf("blobfs: get %s: %w", h, store.ErrNotFound)
	}
	_, file := s.path(h)
	data, err := os.ReadFile(file)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, fmt.Errorf("blobfs: get %s: %w", h, store.ErrNotFound)
	}
	if err != nil {
		return nil, fmt.Errorf("blobfs: get %s: %w", h, err)
	}
	if got := evidence.Sum(data); got != h {
		return nil, fmt.Errorf("blobfs: get %s: %w: its %d bytes hash to %s", h, ErrCorrupt, len(data), got)
	}
	return data, nil
}
