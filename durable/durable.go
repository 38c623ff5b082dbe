// Package durable creates directories and files so that they survive a crash at any instant:
// every new entry is fsynced, and so is the directory that holds it, before the call returns.
// It is what "nothing is acknowledged before it is durably stored" needs below the database.
package durable

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
)

// MkdirAll is os.MkdirAll with mode 0700 that syncs the parent of each directory it creates,
// so the new entries survive a crash.
func MkdirAll(dir string) error {
	fi, err := os.Stat(dir)
	if err == nil {
		if !fi.IsDir() {
			return fmt.Errorf("%s is not a directory", dir)
		}
		return nil
	}
	if !errors.Is(err, fs.ErrNotExist) {
		return err
	}
	parent := filepath.Dir(dir)
	if parent != dir {
		if err := MkdirAll(parent); err != nil {
			return err
		}
	}
	if err := os.Mkdir(dir, 0o700); err != nil && !errors.Is(err, fs.ErrExist) {
		return err
	}
	return SyncDir(parent)
}

// SyncDir makes the creation, rename or removal of an entry of dir durable.
func SyncDir(dir string) error {
	d, err := os.Open(dir)
	if err != nil {
		return err
	}
	defer d.Close()
	return d.Sync()
}

// CreateExclusive writes a new file that must not exist yet, with exactly the given mode
// whatever the umask, and syncs it and its directory. A failure leaves no file behind.
func CreateExclusive(path string, data []byte, mode fs.FileMode) (err error) {
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_EXCL, mode)
	if err != nil {
		return err
	}
	defer func() {
		if err != nil {
			f.Close()
			os.Remove(path)
		}
	}()
	return finish(f, data, mode, path)
}

// WriteAtomic replaces a file with new contents and the given mode: a reader, or the file after
// a crash, is the old file or the new one, never a part.
func WriteAtomic(path string, data []byte, mode fs.FileMode) (err error) {
	f, err := os.CreateTemp(filepath.Dir(path), "."+filepath.Base(path)+".tmp*")
	if err != nil {
		return err
	}
	defer func() {
		if err != nil {
			f.Close()
			os.Remove(f.Name())
		}
	}()
	if err := finish(f, data, mode, ""); err != nil {
		return err
	}
	if err := os.Rename(f.Name(), path); err != nil {
		return err
	}
	return SyncDir(filepath.Dir(path))
}

// finish sets the mode, writes, syncs and closes f, then syncs the directory of path if given.
func finish(f *os.File, data []byte, mode fs.FileMode, path string) error {
	if err := f.Chmod(mode); err != nil {
		return err
	}
	if _, err := f.Write(data); err != nil {
		return err
	}
	if err := f.Sync(); err != nil {
		return err
	}
	if err := f.Close(); err != nil {
		return err
	}
	if path == "" {
		return nil
	}
	return SyncDir(filepath.Dir(path))
}
