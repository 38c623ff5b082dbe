package pki

import (
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"runtime"
)

// checkModes is false where file modes do not express who may read a file.
const checkModes = runtime.GOOS != "windows"

// PermissionError reports a private file or directory that group or others can read or write.
type PermissionError struct {
	Path string
	Mode fs.FileMode
	Fix  string // the command that fixes it
}

func (e *PermissionError) Error() string {
	return fmt.Sprintf("pki: %s has mode %04o and is open to group or others: run %q", e.Path, e.Mode.Perm(), e.Fix)
}

// EnsurePrivateDir creates the directory path, and its parents, with mode 0700. An existing
// directory is accepted unless group or others may write to it: whoever can write there can
// replace the agent's keys.
func EnsurePrivateDir(path string) error {
	fi, err := os.Stat(path)
	switch {
	case errors.Is(err, fs.ErrNotExist):
		if err := os.MkdirAll(path, 0o700); err != nil {
			return fmt.Errorf("pki: create data directory: %w", err)
		}
		// MkdirAll applies the umask; a strict one (say 0277) would leave it unwritable.
		if err := os.Chmod(path, 0o700); err != nil {
			return fmt.Errorf("pki: data directory: %w", err)
		}
		return nil
	case err != nil:
		return fmt.Errorf("pki: data directory: %w", err)
	case !fi.IsDir():
		return fmt.Errorf("pki: data directory %s is not a directory", path)
	case checkModes && fi.Mode().Perm()&0o022 != 0:
		return &PermissionError{Path: path, Mode: fi.Mode(), Fix: "chmod go-w " + path}
	}
	return nil
}

// readPrivateFile reads a private key file, refusing one that group or others can read or write.
func readPrivateFile(path string) ([]byte, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		return nil, err
	}
	if !fi.Mode().IsRegular() {
		return nil, fmt.Errorf("pki: %s is not a regular file", path)
	}
	if checkModes && fi.Mode().Perm()&0o077 != 0 {
		return nil, &PermissionError{Path: path, Mode: fi.Mode(), Fix: "chmod 600 " + path}
	}
	const max = 1 << 20 // key files are a few hundred bytes
	b, err := io.ReadAll(io.LimitReader(f, max+1))
	if err != nil {
		return nil, err
	}
	if len(b) > max {
		return nil, fmt.Errorf("pki: %s: larger than %d bytes", path, max)
	}
	return b, nil
}
