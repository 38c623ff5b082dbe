//go:build !(linux && (amd64 || arm64))

package diskfault

import "os/exec"

type supervisor struct{}

// Start returns ErrUnsupported: the harness needs Linux's seccomp user notifications.
func Start(cmd *exec.Cmd) (*Process, error) { return nil, ErrUnsupported }

// Close does nothing here.
func (p *Process) Close() error { return nil }
