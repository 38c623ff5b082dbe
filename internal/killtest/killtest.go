// Package killtest runs a test binary's crash child and SIGKILLs it: the harness of the
// store's durability tests, which check that every promise the child printed before the kill
// holds after it.
package killtest

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

// Run starts the running test binary again with env=value in its environment (the child's
// cue to do its work and print one promise a line), SIGKILLs it after delay, and returns the
// whole lines it printed — a partial last line is no promise — and what it wrote on stderr.
func Run(t *testing.T, env, value string, delay time.Duration) (lines []string, stderr string) {
	t.Helper()
	cmd := exec.Command(os.Args[0], "-test.run=^$")
	cmd.Env = append(os.Environ(), env+"="+value)
	var errb strings.Builder
	cmd.Stderr = &errb
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	var readErr error
	var wg sync.WaitGroup
	wg.Go(func() {
		r := bufio.NewReader(out)
		for {
			line, err := r.ReadString('\n')
			if err != nil { // io.EOF, with perhaps a partial line: not a promise
				if err != io.EOF {
					readErr = err
				}
				return
			}
			lines = append(lines, strings.TrimSuffix(line, "\n"))
		}
	})
	time.Sleep(delay)
	if err := cmd.Process.Kill(); err != nil {
		t.Fatal(err)
	}
	wg.Wait()
	err = cmd.Wait()
	var exit *exec.ExitError
	if !errors.As(err, &exit) || exit.Sys().(syscall.WaitStatus).Signal() != syscall.SIGKILL {
		t.Fatalf("child did not die of the kill: %v\nstderr: %s", err, errb.String())
	}
	if readErr != nil {
		t.Fatalf("reading the child's output: %v", readErr)
	}
	return lines, errb.String()
}

// Main is a test binary's TestMain for a kill test: with env set it runs child on env's value —
// the crash child, printing one promise a line until it is killed — and exits; otherwise it
// runs the tests.
func Main(m *testing.M, env string, child func(string) error) {
	if v := os.Getenv(env); v != "" {
		if err := child(v); err != nil {
			fmt.Fprintln(os.Stderr, err)
			os.Exit(1)
		}
		os.Exit(0)
	}
	os.Exit(m.Run())
}
