package diskfault_test

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"

	"certmail/internal/diskfault"
)

// script reads commands from stdin: "write FILE" appends a byte to FILE (coreutils printf, whose
// error names the errno), "sync FILE" fsyncs it (coreutils sync with an operand); each answers
// ok, or failed and why, on one line.
const script = `while read op f; do
	case $op in
	write) err=$( (env printf x >> "$f") 2>&1 ) ;;
	sync) err=$(sync "$f" 2>&1) ;;
	esac
	if [ $? = 0 ]; then echo ok; else echo "failed: $err"; fi
done`

// TestFaultsHitOnlyTheirFiles drives a shell under the harness: a fault fails its Op on its
// files only, with its errno, and nothing once cleared; the program's other output (its pipe to
// the test) passes throughout.
func TestFaultsHitOnlyTheirFiles(t *testing.T) {
	for _, prog := range []string{"sh", "sync"} {
		if _, err := exec.LookPath(prog); err != nil {
			t.Skipf("%s is not installed", prog)
		}
	}
	dir := t.TempDir()
	db, other := filepath.Join(dir, "db", "certmail.db"), filepath.Join(dir, "blobs", "b")
	for _, f := range []string{db + "-wal", other} {
		os.MkdirAll(filepath.Dir(f), 0o700)
	}
	cmd := exec.Command("sh", "-c", script)
	in, _ := cmd.StdinPipe()
	outPipe, _ := cmd.StdoutPipe()
	p, err := diskfault.Start(cmd)
	if errors.Is(err, diskfault.ErrUnsupported) && os.Getenv("CERTMAIL_TEST_REQUIRE_ALL") != "1" {
		t.Skipf("%v", err)
	}
	if err != nil {
		t.Fatal(err)
	}
	defer func() {
		in.Close()
		cmd.Wait()
		p.Close()
	}()
	out := bufio.NewReader(outPipe)
	do := func(op, file string) string {
		t.Helper()
		fmt.Fprintf(in, "%s %s\n", op, file)
		line, err := out.ReadString('\n')
		if err != nil && err != io.EOF {
			t.Fatal(err)
		}
		return strings.TrimSpace(line)
	}
	expect := func(op, file, want string) {
		t.Helper()
		if got := do(op, file); !strings.HasPrefix(got, want) || want == "ok" && got != "ok" {
			t.Fatalf("%s %s: %q, want %q", op, file, got, want)
		}
	}

	for _, f := range []string{db, db + "-wal", other} {
		expect("write", f, "ok")
		expect("sync", f, "ok")
	}
	p.Inject(diskfault.Fault{Op: diskfault.Write, Path: db, Err: syscall.ENOSPC},
		diskfault.Fault{Op: diskfault.Sync, Path: filepath.Dir(other) + "/", Err: syscall.EIO})
	expect("write", db, "failed: ")
	expect("write", db+"-wal", "failed: ")
	expect("sync", db, "ok")
	expect("write", other, "ok")
	expect("sync", other, "failed: ")
	if w, s := p.Failed(diskfault.Write), p.Failed(diskfault.Sync); w != 2 || s != 1 {
		t.Fatalf("failed %d writes and %d syncs, want 2 and 1", w, s)
	}
	if got := do("write", db); !strings.Contains(strings.ToLower(got), syscall.ENOSPC.Error()) {
		t.Fatalf("a failed write says %q, want %q", got, syscall.ENOSPC.Error())
	}
	if got := do("sync", other); !strings.Contains(strings.ToLower(got), syscall.EIO.Error()) {
		t.Fatalf("a failed sync says %q, want %q", got, syscall.EIO.Error())
	}

	p.Clear()
	for _, f := range []string{db, other} {
		expect("write", f, "ok")
		expect("sync", f, "ok")
	}
	b, err := os.ReadFile(db)
	if err != nil || string(b) != "xx" {
		t.Fatalf("%s holds %q (%v): want the two writes that were let through", db, b, err)
	}
}
