//go:build linux && (amd64 || arm64)

package diskfault

import (
	"errors"
	"fmt"
	"os"
	"os/exec"
	"runtime"
	"strconv"
	"sync"
	"unsafe"

	"golang.org/x/sys/unix"
)

// launchEnv tells a test binary started by Start that it is the launcher, and on which file
// descriptor it hands the filter's listener back.
const launchEnv = "CERTMAIL_DISKFAULT_LAUNCH"

// calls are the system calls the filter hands to the test, and the Op each is. Each names its
// file by the descriptor in its first argument.
var calls = map[uint32]Op{
	unix.SYS_WRITE: Write, unix.SYS_PWRITE64: Write, unix.SYS_WRITEV: Write, unix.SYS_PWRITEV: Write,
	unix.SYS_PWRITEV2: Write, unix.SYS_FALLOCATE: Write, unix.SYS_FTRUNCATE: Write,
	unix.SYS_FSYNC: Sync, unix.SYS_FDATASYNC: Sync, unix.SYS_SYNC_FILE_RANGE: Sync, unix.SYS_SYNCFS: Sync,
}

// auditArch is the architecture seccomp reports for this build's system calls (seccomp(2):
// a filter must check it, for the numbers differ between architectures).
func auditArch() uint32 {
	if runtime.GOARCH == "arm64" {
		return unix.AUDIT_ARCH_AARCH64
	}
	return unix.AUDIT_ARCH_X86_64
}

// The kernel's struct seccomp_notif and seccomp_notif_resp (linux/seccomp.h), which x/sys/unix
// does not define.
type notif struct {
	id    uint64
	pid   uint32
	flags uint32
	nr    int32
	arch  uint32
	ip    uint64
	args  [6]uint64
}

type notifResp struct {
	id    uint64
	val   int64
	error int32
	flags uint32
}

func init() {
	if v, ok := os.LookupEnv(launchEnv); ok {
		os.Exit(launch(v))
	}
}

// launch is the launcher's work: install the filter on this thread, hand its listener to the
// test over the socket at file descriptor fd, and execute the program in place of this one,
// which keeps the filter (seccomp(2): it is inherited across execve). It returns only on failure.
func launch(fd string) int {
	runtime.LockOSThread()
	os.Unsetenv(launchEnv)
	sock, err := strconv.Atoi(fd)
	if err != nil {
		fmt.Fprintf(os.Stderr, "diskfault: %s=%q\n", launchEnv, fd)
		return 2
	}
	lfd, err := installFilter()
	if err != nil {
		unix.Sendmsg(sock, []byte("E"+err.Error()), nil, nil, 0)
		return 1
	}
	if err := unix.Sendmsg(sock, []byte("L"), unix.UnixRights(lfd), nil, 0); err != nil {
		fmt.Fprintf(os.Stderr, "diskfault: handing over the listener: %v\n", err)
		return 1
	}
	unix.Close(lfd)
	unix.Close(sock)
	err = unix.Exec(os.Args[0], os.Args, os.Environ())
	fmt.Fprintf(os.Stderr, "diskfault: exec %s: %v\n", os.Args[0], err)
	return 1
}

// installFilter installs, on the calling thread, a filter that hands every call in calls to the
// listener it returns and lets every other call run.
func installFilter() (int, error) {
	if err := unix.Prctl(unix.PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0); err != nil {
		return -1, fmt.Errorf("prctl(PR_SET_NO_NEW_PRIVS): %w", err)
	}
	nrs := make([]uint32, 0, len(calls))
	for nr := range calls {
		nrs = append(nrs, nr)
	}
	// Classic BPF over struct seccomp_data: nr at offset 0, arch at offset 4.
	k := uint8(len(nrs))
	prog := []unix.SockFilter{
		{Code: unix.BPF_LD | unix.BPF_W | unix.BPF_ABS, K: 4},
		{Code: unix.BPF_JMP | unix.BPF_JEQ | unix.BPF_K, K: auditArch(), Jf: k + 1},
		{Code: unix.BPF_LD | unix.BPF_W | unix.BPF_ABS, K: 0},
	}
	for i, nr := range nrs {
		prog = append(prog, unix.SockFilter{Code: unix.BPF_JMP | unix.BPF_JEQ | unix.BPF_K, K: nr, Jt: k - uint8(i)})
	}
	prog = append(prog,
		unix.SockFilter{Code: unix.BPF_RET | unix.BPF_K, K: unix.SECCOMP_RET_ALLOW},
		unix.SockFilter{Code: unix.BPF_RET | unix.BPF_K, K: unix.SECCOMP_RET_USER_NOTIF})
	fprog := unix.SockFprog{Len: uint16(len(prog)), Filter: &prog[0]}
	lfd, _, errno := unix.Syscall(unix.SYS_SECCOMP, unix.SECCOMP_SET_MODE_FILTER,
		unix.SECCOMP_FILTER_FLAG_NEW_LISTENER, uintptr(unsafe.Pointer(&fprog)))
	runtime.KeepAlive(prog)
	if errno != 0 {
		return -1, fmt.Errorf("seccomp(SECCOMP_SET_MODE_FILTER, NEW_LISTENER): %w", errno)
	}
	return int(lfd), nil
}

// supervisor answers the filter's notifications for one Process.
type supervisor struct {
	lfd  int
	stop chan struct{}
	done chan struct{}
	once sync.Once
}

// Start starts cmd (made by exec.Command, not yet started) with the file operations it makes
// under the test's control; no fault is injected yet. The caller waits for cmd as usual, and
// calls Close once the program has ended.
func Start(cmd *exec.Cmd) (*Process, error) {
	if cmd.Err != nil {
		return nil, cmd.Err
	}
	self, err := os.Executable()
	if err != nil {
		return nil, err
	}
	pair, err := unix.Socketpair(unix.AF_UNIX, unix.SOCK_SEQPACKET|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		return nil, fmt.Errorf("diskfault: socketpair: %w", err)
	}
	ours, theirs := os.NewFile(uintptr(pair[0]), "diskfault"), os.NewFile(uintptr(pair[1]), "diskfault launcher")
	defer ours.Close()
	// The launcher runs as the program will, with the program's arguments; it finds the
	// program's path in its own argv[0].
	cmd.Args = append([]string{cmd.Path}, cmd.Args[1:]...)
	cmd.Path = self
	cmd.ExtraFiles = append([]*os.File{theirs}, cmd.ExtraFiles...) // file descriptor 3
	if cmd.Env == nil {
		cmd.Env = os.Environ()
	}
	cmd.Env = append(cmd.Env, launchEnv+"=3")
	err = cmd.Start()
	theirs.Close()
	if err != nil {
		return nil, err
	}
	msg, oob := make([]byte, 4096), make([]byte, unix.CmsgSpace(4))
	n, oobn, _, _, err := unix.Recvmsg(pair[0], msg, oob, 0)
	lfd := -1
	if err == nil && oobn > 0 {
		if cms, perr := unix.ParseSocketControlMessage(oob[:oobn]); perr == nil && len(cms) == 1 {
			if fds, perr := unix.ParseUnixRights(&cms[0]); perr == nil && len(fds) == 1 {
				lfd = fds[0]
			}
		}
	}
	if lfd < 0 {
		cmd.Process.Kill()
		cmd.Wait()
		why := "the launcher ended without a word"
		if err != nil {
			why = err.Error()
		} else if n > 1 && msg[0] == 'E' {
			why = string(msg[1:n])
		}
		return nil, fmt.Errorf("%w: %s", ErrUnsupported, why)
	}
	p := &Process{Cmd: cmd, sys: supervisor{lfd: lfd, stop: make(chan struct{}), done: make(chan struct{})}}
	go p.supervise()
	return p, nil
}

// Close stops answering the program's calls (any it makes after this fail with ENOSYS) and
// releases the listener. Call it once the program has ended.
func (p *Process) Close() error {
	p.sys.once.Do(func() { close(p.sys.stop) })
	<-p.sys.done
	return nil
}

// supervise answers each notification: the call fails with a matching fault's errno, or runs.
func (p *Process) supervise() {
	s := &p.sys
	defer close(s.done)
	defer unix.Close(s.lfd)
	fds := []unix.PollFd{{Fd: int32(s.lfd), Events: unix.POLLIN}}
	for {
		select {
		case <-s.stop:
			return
		default:
		}
		fds[0].Revents = 0
		if _, err := unix.Poll(fds, 100); err != nil && !errors.Is(err, unix.EINTR) {
			return
		}
		if fds[0].Revents&(unix.POLLHUP|unix.POLLNVAL|unix.POLLERR) != 0 {
			return // no process is left under the filter
		}
		if fds[0].Revents&unix.POLLIN == 0 {
			continue
		}
		var n notif
		if _, _, errno := unix.Syscall(unix.SYS_IOCTL, uintptr(s.lfd), unix.SECCOMP_IOCTL_NOTIF_RECV, uintptr(unsafe.Pointer(&n))); errno != 0 {
			if errno == unix.ENOENT || errno == unix.EINTR {
				continue // the caller was killed meanwhile
			}
			return
		}
		resp := notifResp{id: n.id, flags: unix.SECCOMP_USER_NOTIF_FLAG_CONTINUE}
		if op, ok := calls[uint32(n.nr)]; ok {
			// The call runs in the program's thread n.pid; its file is that thread's descriptor.
			path, err := os.Readlink(fmt.Sprintf("/proc/%d/fd/%d", n.pid, int32(n.args[0])))
			if err == nil {
				if errno := p.decide(op, path); errno != 0 {
					resp = notifResp{id: n.id, error: -int32(errno)}
				}
			}
		}
		// ENOENT: the caller was killed before the answer; nothing waits for it.
		unix.Syscall(unix.SYS_IOCTL, uintptr(s.lfd), unix.SECCOMP_IOCTL_NOTIF_SEND, uintptr(unsafe.Pointer(&resp)))
	}
}
