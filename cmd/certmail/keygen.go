package main

import (
	"certmail/evidence"
	"crypto/rand"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"strings"

	"golang.org/x/mod/sumdb/note"
)

// Modes of the files keygen writes: the private key is for its owner alone (DESIGN.md §5), the
// verifier key is public by nature.
const (
	privateKeyMode fs.FileMode = 0o600
	publicKeyMode  fs.FileMode = 0o644
)

const keygenDescription = `
Generate an Ed25519 signed-note key pair. An agent's key is named after its host name, a user's
after the e-mail address (with '%' written %25 and '+' written %2B, which note key names forbid).
Writes PREFIX.key (the private key, mode 0600) and PREFIX.pub (the verifier key, mode 0644) and
refuses to overwrite either. Give exactly one of -agent and -user.`

// runKeygen implements `certmail keygen [-agent HOST | -user ADDRESS] [-out PREFIX]`.
func runKeygen(args []string, _ io.Reader, stdout, stderr io.Writer) int {
	flags := newFlagSet("keygen", "[-agent HOST | -user ADDRESS] [-out PREFIX]", keygenDescription, stderr)
	agent := flags.String("agent", "", "generate the key of the delivery agent `HOST` (a lower-case DNS host name)")
	user := flags.String("user", "", "generate the key of the user with e-mail `ADDRESS`")
	out := flags.String("out", "", "write `PREFIX`.key and PREFIX.pub (default: the key name)")
	if code, ok := parseFlags(flags, args); !ok {
		return code
	}
	if flags.NArg() != 0 {
		return usageError(stderr, "keygen", "unexpected argument %q", flags.Arg(0))
	}
	name, err := keygenName(*agent, *user)
	if err != nil {
		return usageError(stderr, "keygen", "%v", err)
	}
	prefix := *out
	if prefix == "" {
		if prefix, err = defaultPrefix(name); err != nil {
			return usageError(stderr, "keygen", "%v", err)
		}
	}
	pair, err := writeKeyPair(rand.Reader, name, prefix)
	if err != nil {
		fmt.Fprintf(stderr, "certmail keygen: %v\n", err)
		return exitFail
	}
	fmt.Fprintf(stdout, "verifier key: %s\nprivate key:  %s (mode 0600; keep it secret)\npublic key:   %s\n",
		pair.verifierKey, pair.privatePath, pair.publicPath)
	return exitOK
}

// keygenName returns the key name for the one of -agent and -user that was given.
func keygenName(agent, user string) (string, error) {
	switch {
	case agent != "" && user != "":
		return "", errors.New("give -agent or -user, not both")
	case agent != "":
		if err := evidence.CheckHost(agent); err != nil {
			return "", err
		}
		return agent, nil
	case user != "":
		return evidence.KeyName(user)
	default:
		return "", errors.New("give -agent HOST or -user ADDRESS")
	}
}

// defaultPrefix turns a key name into a file prefix in the current directory. An address may
// legally contain '/', which would silently write elsewhere, so such names need -out.
func defaultPrefix(name string) (string, error) {
	if strings.ContainsAny(name, `/\`) {
		return "", fmt.Errorf("key name %q is not a plain file name; give -out PREFIX", name)
	}
	return name, nil
}

// keyPair says what writeKeyPair wrote.
type keyPair struct {
	verifierKey string
	privatePath string
	publicPath  string
}

// writeKeyPair generates a key pair named name from random and writes PREFIX.key and
// PREFIX.pub. It writes nothing if either file exists, and leaves nothing behind if it fails.
func writeKeyPair(random io.Reader, name, prefix string) (keyPair, error) {
	pair := keyPair{privatePath: prefix + ".key", publicPath: prefix + ".pub"}
	// Check both first, so a refusal leaves the directory exactly as it was.
	for _, path := range []string{pair.privatePath, pair.publicPath} {
		if err := checkAbsent(path); err != nil {
			return keyPair{}, err
		}
	}
	skey, vkey, err := note.GenerateKey(random, name)
	if err != nil {
		return keyPair{}, fmt.Errorf("generate key %q: %w", name, err)
	}
	pair.verifierKey = vkey
	if err := createFile(pair.privatePath, skey+"\n", privateKeyMode); err != nil {
		return keyPair{}, err
	}
	if err := createFile(pair.publicPath, vkey+"\n", publicKeyMode); err != nil {
		// A private key without its verifier key is an orphan that would block the next try.
		if rmErr := os.Remove(pair.privatePath); rmErr != nil {
			return keyPair{}, fmt.Errorf("%w (and removing %s: %v)", err, pair.privatePath, rmErr)
		}
		return keyPair{}, err
	}
	return pair, nil
}

// checkAbsent returns an error unless nothing, not even a dangling symbolic link, is at path.
func checkAbsent(path string) error {
	_, err := os.Lstat(path)
	switch {
	case err == nil:
		return existsError(path)
	case errors.Is(err, fs.ErrNotExist):
		return nil
	default:
		return fmt.Errorf("check %s: %w", path, err)
	}
}

func existsError(path string) error {
	return fmt.Errorf("%s already exists; refusing to overwrite a key (move it away or choose another -out)", path)
}

// createFile creates path with exactly mode perm and writes data to it. O_EXCL makes the
// no-overwrite rule hold even against a file that appears after checkAbsent. On failure the
// file is removed, since it is ours.
func createFile(path, data string, perm fs.FileMode) error {
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_EXCL, perm)
	if errors.Is(err, fs.ErrExist) {
		return existsError(path)
	}
	if err != nil {
		return fmt.Errorf("create %s: %w", path, err)
	}
	err = writeWithMode(f, data, perm)
	if closeErr := f.Close(); err == nil && closeErr != nil {
		err = fmt.Errorf("close %s: %w", path, closeErr)
	}
	if err != nil {
		os.Remove(path)
		return err
	}
	return nil
}

// writeWithMode sets and checks the mode before any data is written, then writes and syncs.
// The umask may have cleared bits at creation, and fchmod is not subject to it; the check
// catches a file system that ignores modes before a secret lands on it.
func writeWithMode(f *os.File, data string, perm fs.FileMode) error {
	if err := f.Chmod(perm); err != nil {
		return fmt.Errorf("chmod %s: %w", f.Name(), err)
	}
	info, err := f.Stat()
	if err != nil {
		return fmt.Errorf("stat %s: %w", f.Name(), err)
	}
	if got := info.Mode().Perm(); got != perm {
		return fmt.Errorf("%s has mode %04o, want %04o", f.Name(), got, perm)
	}
	if _, err := io.WriteString(f, data); err != nil {
		return fmt.Errorf("write %s: %w", f.Name(), err)
	}
	if err := f.Sync(); err != nil {
		return fmt.Errorf("sync %s: %w", f.Name(), err)
	}
	return nil
}
