package main

import (
	"fmt"
	"io"
	"runtime/debug"
	"strings"
)

// runHelp implements `certmail help [COMMAND]`.
func runHelp(args []string, _ io.Reader, stdout, stderr io.Writer) int {
	flags := newFlagSet("help", "[COMMAND]", "Show the commands, or the usage and flags of one command.", stderr)
	if code, ok := parseFlags(flags, args); !ok {
		return code
	}
	switch flags.NArg() {
	case 0:
		printCommands(stdout)
		return exitOK
	case 1:
	default:
		return usageError(stderr, "help", "want at most one command, got %d", flags.NArg())
	}
	name := flags.Arg(0)
	cmd, ok := lookup(name)
	if !ok {
		return usageError(stderr, "help", "unknown command %q", name)
	}
	// Every command prints its usage on -h (see commands); sending its stderr to stdout makes
	// the help pipeable. Asking for help succeeded whatever code the command gives for -h.
	cmd.run([]string{"-h"}, strings.NewReader(""), stdout, stdout)
	return exitOK
}

// runVersion implements `certmail version`.
func runVersion(args []string, _ io.Reader, stdout, stderr io.Writer) int {
	flags := newFlagSet("version", "", "Print the certmail version, the VCS revision if known, and the Go version it was built with.", stderr)
	if code, ok := parseFlags(flags, args); !ok {
		return code
	}
	if flags.NArg() != 0 {
		return usageError(stderr, "version", "takes no arguments")
	}
	fmt.Fprintln(stdout, versionString())
	return exitOK
}

// versionString describes this build from the information the Go toolchain embeds, so there is
// no version variable to forget to bump.
func versionString() string {
	info, ok := debug.ReadBuildInfo()
	if !ok {
		return "certmail (unknown build)"
	}
	version := info.Main.Version
	if version == "" || version == "(devel)" {
		version = "devel"
	}
	s := "certmail " + version
	for _, setting := range info.Settings {
		if setting.Key == "vcs.revision" && len(setting.Value) >= 12 {
			s += " " + setting.Value[:12]
		}
	}
	return s + " " + info.GoVersion
}
