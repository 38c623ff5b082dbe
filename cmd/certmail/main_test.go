package main

import (
	"bytes"
	"errors"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"testing"

	"github.com/rogpeppe/go-internal/testscript"
)

// TestMain lets the scripts under testdata/script run `exec certmail ...`: the test binary
// itself serves as the certmail command, so the scripts test this code, not an installed binary.
func TestMain(m *testing.M) {
	testscript.Main(m, map[string]func(){"certmail": main})
}

func TestScripts(t *testing.T) {
	t.Parallel()
	testscript.Run(t, testscript.Params{
		Dir:                 "testdata/script",
		RequireExplicitExec: true,
		RequireUniqueNames:  true,
		Cmds: map[string]func(ts *testscript.TestScript, neg bool, args []string){
			"perm":    cmdPerm,
			"exits":   cmdExits,
			"replace": cmdReplace,
		},
	})
}

// cmdPerm implements `perm FILE MODE`: FILE's permission bits are exactly MODE (octal).
func cmdPerm(ts *testscript.TestScript, neg bool, args []string) {
	if neg || len(args) != 2 {
		ts.Fatalf("usage: perm FILE MODE")
	}
	want, err := strconv.ParseUint(args[1], 8, 32)
	if err != nil {
		ts.Fatalf("perm: mode %q: %v", args[1], err)
	}
	info, err := os.Stat(ts.MkAbs(args[0]))
	ts.Check(err)
	if got := info.Mode().Perm(); uint64(got) != want {
		ts.Fatalf("%s has mode %04o, want %04o", args[0], got, want)
	}
}

// cmdExits implements `exits CODE PROG [ARG...]`: run PROG like exec, and require exit status
// CODE, since `! exec` cannot tell a usage error (2) from a failure (1).
func cmdExits(ts *testscript.TestScript, neg bool, args []string) {
	if neg || len(args) < 2 {
		ts.Fatalf("usage: exits CODE PROG [ARG...]")
	}
	want, err := strconv.Atoi(args[0])
	if err != nil {
		ts.Fatalf("exits: code %q: %v", args[0], err)
	}
	got := 0
	if err := ts.Exec(args[1], args[2:]...); err != nil {
		var exitErr *exec.ExitError
		if !errors.As(err, &exitErr) {
			ts.Fatalf("exits: %v", err)
		}
		got = exitErr.ExitCode()
	}
	if got != want {
		ts.Fatalf("%s exited with status %d, want %d", args[1], got, want)
	}
}

// cmdReplace implements `replace OLD NEW FILE`: FILE with every OLD written NEW, as a tamperer
// would change it; OLD must occur.
func cmdReplace(ts *testscript.TestScript, neg bool, args []string) {
	if neg || len(args) != 3 {
		ts.Fatalf("usage: replace OLD NEW FILE")
	}
	path := ts.MkAbs(args[2])
	b, err := os.ReadFile(path)
	ts.Check(err)
	if !strings.Contains(string(b), args[0]) {
		ts.Fatalf("replace: %s does not contain %q", args[2], args[0])
	}
	ts.Check(os.WriteFile(path, []byte(strings.ReplaceAll(string(b), args[0], args[1])), 0o644))
}

// runCLI runs certmail in-process with no input.
func runCLI(args ...string) (code int, stdout, stderr string) {
	var out, errOut bytes.Buffer
	code = run(args, strings.NewReader(""), &out, &errOut)
	return code, out.String(), errOut.String()
}

// Every command in the table must answer -h with its usage, since `certmail help CMD` shows
// that text; a new command that forgets would print nothing useful.
func TestEveryCommandHasHelp(t *testing.T) {
	t.Parallel()
	for _, c := range commands() {
		t.Run(c.name, func(t *testing.T) {
			t.Parallel()
			code, stdout, stderr := runCLI("help", c.name)
			if code != exitOK {
				t.Errorf("help %s: exit %d, want 0; stderr:\n%s", c.name, code, stderr)
			}
			if !strings.HasPrefix(stdout, "usage: certmail "+c.name) {
				t.Errorf("help %s: stdout does not start with its usage line:\n%s", c.name, stdout)
			}
			if stderr != "" {
				t.Errorf("help %s: unexpected stderr:\n%s", c.name, stderr)
			}
			overview := func() string { _, out, _ := runCLI("help"); return out }()
			if !strings.Contains(overview, "  "+c.name+" ") {
				t.Errorf("help does not list %s:\n%s", c.name, overview)
			}
		})
	}
}

func TestUsageErrorsExitTwo(t *testing.T) {
	t.Parallel()
	for _, args := range [][]string{
		{},
		{"nosuch"},
		{"help", "nosuch"},
		{"help", "keygen", "verify"},
		{"version", "extra"},
		{"keygen", "-nosuch"},
		{"keygen"},
	} {
		code, stdout, stderr := runCLI(args...)
		if code != exitUsage {
			t.Errorf("certmail %q: exit %d, want %d", args, code, exitUsage)
		}
		if stderr == "" {
			t.Errorf("certmail %q: no message on stderr", args)
		}
		if stdout != "" {
			t.Errorf("certmail %q: unexpected stdout:\n%s", args, stdout)
		}
	}
}
