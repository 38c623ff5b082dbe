// Package diskfault runs a program whose writes and syncs to chosen files fail on demand, with
// the errors a full or failing disk gives (ENOSPC, EIO): the fault-injection harness of tests
// that check a program acknowledges nothing it could not store, and recovers once the fault is
// gone.
//
// The faults are real system-call failures, not mocks: the program runs under a seccomp filter
// (seccomp(2), SECCOMP_RET_USER_NOTIF) that hands each write-like and sync-like call to the test,
// which looks up the file the call names and either fails it with the fault's errno or lets the
// kernel run it. Every layer of the program — database driver, file store, log — sees the error
// the kernel would give. Writes through a memory map (SQLite's -shm index) are not seen.
//
// A test binary that imports this package can serve as the small launcher that installs the
// filter and then executes the program: Start starts the running test binary again, and this
// package's init, seeing the launcher's environment variable, does the launcher's work before
// any test runs. Linux only (amd64, arm64); elsewhere Start returns ErrUnsupported.
//
// The filter and its listener are written here, on golang.org/x/sys/unix: libseccomp-golang,
// which has user notifications, needs cgo and the C library, and the pure-Go filter builders do
// not offer them; the filter itself is a dozen BPF instructions.
package diskfault

import (
	"errors"
	"os/exec"
	"slices"
	"strings"
	"sync"
	"syscall"
)

// ErrUnsupported is returned by Start where the harness cannot run: another system, or a kernel
// that refuses the filter (seccomp disabled, or too old for user notifications).
var ErrUnsupported = errors.New("diskfault: system-call fault injection is not available here")

// Op is a kind of file operation a fault can fail.
type Op int

const (
	// Write is a call that writes to or sizes a file: write, pwrite64, writev, pwritev,
	// pwritev2, fallocate, ftruncate.
	Write Op = iota
	// Sync is a call that flushes a file to the disk: fsync, fdatasync, sync_file_range, syncfs.
	Sync
)

func (o Op) String() string {
	if o == Sync {
		return "sync"
	}
	return "write"
}

// Fault fails every Op on a file whose path starts with Path, with Err.
type Fault struct {
	Op   Op
	Path string // an absolute path, or its beginning: "/data/certmail.db" takes its -wal too
	Err  syscall.Errno
}

// matches reports whether the fault applies to op on the file at path.
func (f Fault) matches(op Op, path string) bool {
	return f.Op == op && f.Path != "" && strings.HasPrefix(path, f.Path)
}

// Process is a program started by Start, whose file operations the test fails at will.
type Process struct {
	Cmd *exec.Cmd

	mu     sync.Mutex
	faults []Fault
	failed [2]int // calls failed, by Op
	sys    supervisor
}

// Inject makes the faults take effect, in place of any injected before.
func (p *Process) Inject(faults ...Fault) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.faults = slices.Clone(faults)
}

// Clear removes every fault: the disk works again.
func (p *Process) Clear() { p.Inject() }

// Failed is how many calls of op the faults have failed so far: a test's proof that its fault
// was met.
func (p *Process) Failed(op Op) int {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.failed[op]
}

// decide returns the errno a call of op on the file at path fails with, or 0 to let it run.
func (p *Process) decide(op Op, path string) syscall.Errno {
	p.mu.Lock()
	defer p.mu.Unlock()
	for _, f := range p.faults {
		if f.matches(op, path) {
			p.failed[op]++
			return f.Err
		}
	}
	return 0
}
