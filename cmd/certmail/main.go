// Command certmail is certified e-mail in one binary: the delivery agent, the sender's and
// recipient's clients, key management and the arbiter's offline verifier (DESIGN.md §7).
//
// This file is only the dispatcher. Each command group lives in a file of its own and holds no
// logic beyond wiring flags to the packages that do the work.
package main

import (
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"strings"
)

// Exit codes shared by every command, so scripts and arbiters can tell "the answer is no" (1)
// from "the question was malformed" (2).
const (
	exitOK    = 0
	exitFail  = 1
	exitUsage = 2
)

// runFunc is the shape of every command: it reads arguments and streams and returns an exit
// code, so tests run commands in-process and in parallel.
type runFunc func(args []string, stdin io.Reader, stdout, stderr io.Writer) int

// command is one row of the command table.
type command struct {
	name    string
	summary string // one line for `certmail help`
	run     runFunc
}

// commands is the table of subcommands, in the order `certmail help` lists them. A new command
// group adds its row here and its run function in a file of its own. It is a function, not a
// variable, so nothing at package level can be changed at run time.
//
// Every run function must answer -h by printing its usage to its stderr writer and returning 0:
// `certmail help CMD` relies on that to show the same text.
func commands() []command {
	return []command{
		{"serve", "run the delivery agent (zero configuration: localhost, ./certmail-data)", runServe},
		{"keygen", "generate an Ed25519 signed-note key pair for an agent or a user", runKeygen},

		{"send", "send a certified message through an agent's API", runSend},
		{"status", "show a sent message's timeline; fetch its bundle; retract it", runStatus},
		{"verify", "check an evidence bundle offline and print the verdict", runVerify},

		{"pickup", "pick up a certified message: accept (signed with your key) or refuse", runPickup},
		{"user", "add, list, disable, enable users or set their passwords", runUser},
		{"peer", "add, list or remove the peer agents this agent trusts", runPeer},
		{"log", "monitor an agent's evidence log, check a stored log or a fork proof", runLog},
		{"bench", "measure certified throughput against a Postfix baseline", runBench},
		{"version", "print the certmail version", runVersion},
		{"help", "show the commands, or the usage of one command", runHelp},
	}
}

func main() {
	os.Exit(run(os.Args[1:], os.Stdin, os.Stdout, os.Stderr))
}

// run dispatches args[0] to its command and returns the process exit code.
func run(args []string, stdin io.Reader, stdout, stderr io.Writer) int {
	if len(args) == 0 {
		printCommands(stderr)
		return exitUsage
	}
	name := args[0]
	switch name {
	case "-h", "-help", "--help":
		printCommands(stdout)
		return exitOK
	}
	cmd, ok := lookup(name)
	if !ok {
		fmt.Fprintf(stderr, "certmail: unknown command %q\nRun 'certmail help' for the commands there are.\n", name)
		return exitUsage
	}
	return cmd.run(args[1:], stdin, stdout, stderr)
}

// lookup finds a command by name.
func lookup(name string) (command, bool) {
	for _, c := range commands() {
		if c.name == name {
			return c, true
		}
	}
	return command{}, false
}

// printCommands writes the overview that `certmail help` shows.
func printCommands(w io.Writer) {
	fmt.Fprintf(w, "certmail is certified e-mail: signed, offline-verifiable evidence of posting and delivery.\n\n")
	fmt.Fprintf(w, "usage: certmail COMMAND [arguments]\n\ncommands:\n")
	for _, c := range commands() {
		fmt.Fprintf(w, "  %-8s %s\n", c.name, c.summary)
	}
	fmt.Fprintf(w, "\nRun 'certmail help COMMAND' for the usage of one command.\n")
}

// newFlagSet returns the FlagSet of one command. Its usage text starts with the synopsis and a
// short description, so `CMD -h` and `certmail help CMD` read the same.
func newFlagSet(name, synopsis, description string, stderr io.Writer) *flag.FlagSet {
	fs := flag.NewFlagSet("certmail "+name, flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.Usage = func() {
		out := fs.Output()
		fmt.Fprintf(out, "usage: certmail %s %s\n\n%s\n", name, synopsis, strings.TrimSpace(description))
		if hasFlags(fs) {
			fmt.Fprintf(out, "\nflags:\n")
			fs.PrintDefaults()
		}
	}
	return fs
}

// hasFlags reports whether fs defines any flag.
func hasFlags(fs *flag.FlagSet) bool {
	n := 0
	fs.VisitAll(func(*flag.Flag) { n++ })
	return n > 0
}

// parseFlags parses args into fs. When it returns false, the command must stop and return code:
// 0 after -h (the user asked for help and got it), 2 after a bad flag, whose message the flag
// package has already written to stderr.
func parseFlags(fs *flag.FlagSet, args []string) (code int, ok bool) {
	err := fs.Parse(args)
	switch {
	case err == nil:
		return exitOK, true
	case errors.Is(err, flag.ErrHelp):
		return exitOK, false
	default:
		return exitUsage, false
	}
}

// usageError reports a usage mistake the flag package cannot see (a missing or conflicting
// argument) and returns the usage exit code.
func usageError(stderr io.Writer, name, format string, args ...any) int {
	fmt.Fprintf(stderr, "certmail %s: %s\nRun 'certmail help %s' for usage.\n", name, fmt.Sprintf(format, args...), name)
	return exitUsage
}

// parseInterspersed parses flags that may come before or after the positional arguments
// ("verify BUNDLE --json"), which the flag package alone stops at. It returns the positional
// arguments; ok is false as for parseFlags.
func parseInterspersed(fs *flag.FlagSet, args []string) (positional []string, code int, ok bool) {
	for {
		if code, ok := parseFlags(fs, args); !ok {
			return nil, code, false
		}
		args = fs.Args()
		if len(args) == 0 {
			return positional, exitOK, true
		}
		if args[0] == "--" {
			return append(positional, args[1:]...), exitOK, true
		}
		positional = append(positional, args[0])
		args = args[1:]
	}
}
