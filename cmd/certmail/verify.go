package main

import (
	"fmt"
	"io"
	"os"
	"strings"
	"time"

	"certmail/evidence"
	"certmail/protocol"
)

// stringList is a repeatable string flag.
type stringList []string

func (s *stringList) String() string     { return strings.Join(*s, ",") }
func (s *stringList) Set(v string) error { *s = append(*s, v); return nil }

// runVerify is the arbiter's command: it checks a bundle offline, with no server and no account,
// and prints what the evidence proves. Exit 0 only when the bundle is whole and valid.
func runVerify(args []string, _ io.Reader, stdout, stderr io.Writer) int {
	flags := newFlagSet("verify", "BUNDLE [--message FILE] [--json] [--key VKEY]... [--keys FILE] [--at TIME]", `
Check every signature, key binding, hash and proof in an evidence bundle, offline, and print the
verdict: what the evidence proves, by whom and when, or which note failed which check.
Exit status 0 when the bundle is whole and valid, 1 when it is not, 2 for a usage error.

Without --key or --keys the agents' keys are taken from the bundle itself, and the verdict says
so: pin the keys of the agents you trust to check who signed.`, stderr)
	message := flags.String("message", "", "the message `FILE` the evidence must match (replaces the bundle's copy)")
	asJSON := flags.Bool("json", false, "print the verdict as JSON")
	var pins stringList
	flags.Var(&pins, "key", "a trusted verifier `VKEY` (name+hash+key); repeatable")
	keysFile := flags.String("keys", "", "a `FILE` of trusted verifier keys, one a line")
	at := flags.String("at", "", "weigh deadlines at `TIME` (RFC 3339) instead of now")
	pos, code, ok := parseInterspersed(flags, args)
	if !ok {
		return code
	}
	if len(pos) != 1 {
		return usageError(stderr, "verify", "want exactly one BUNDLE file, got %d arguments", len(pos))
	}
	data, err := os.ReadFile(pos[0])
	if err != nil {
		return usageError(stderr, "verify", "%v", err)
	}
	pinned, err := trustedKeys(pins, *keysFile)
	if err != nil {
		return usageError(stderr, "verify", "%v", err)
	}
	var msg []byte
	if *message != "" {
		if msg, err = os.ReadFile(*message); err != nil {
			return usageError(stderr, "verify", "%v", err)
		}
	}
	now := time.Now()
	if *at != "" {
		if now, err = time.Parse(time.RFC3339Nano, *at); err != nil {
			return usageError(stderr, "verify", "--at: %v", err)
		}
	}
	v := verifyBundle(data, msg, *message != "", pinned, now)
	if *asJSON {
		stdout.Write(v.JSON())
	} else {
		io.WriteString(stdout, v.Text())
	}
	if v.Valid {
		return exitOK
	}
	return exitFail
}

// verifyBundle parses and judges a bundle; a bundle that does not parse gets a verdict too, so
// --json always prints one.
func verifyBundle(data, msg []byte, haveMsg bool, pinned *evidence.Keys, now time.Time) *evidence.Verdict {
	b, err := evidence.ParseBundle(data)
	if err != nil {
		v := &evidence.Verdict{Outcome: evidence.OutcomeInvalid, Summary: "the bundle cannot be read"}
		v.Fail(0, "", "format", "%v", err)
		return v
	}
	if haveMsg {
		b.SetItem(evidence.ItemMessage, msg)
	}
	v := protocol.JudgeAt(b.Check(pinned), now)
	v.Notices = append(v.Notices, "deadlines weighed at "+evidence.FormatTime(now)+" (use --at to choose another time)")
	return v
}

// trustedKeys reads the pinned keys, or returns nil when none are given.
func trustedKeys(pins []string, file string) (*evidence.Keys, error) {
	all := append([]string{}, pins...)
	if file != "" {
		b, err := os.ReadFile(file)
		if err != nil {
			return nil, err
		}
		for _, line := range strings.Split(string(b), "\n") {
			if line = strings.TrimSpace(line); line != "" && !strings.HasPrefix(line, "#") {
				all = append(all, line)
			}
		}
	}
	if len(all) == 0 {
		return nil, nil
	}
	k, err := evidence.NewKeys(all...)
	if err != nil {
		return nil, fmt.Errorf("trusted keys: %w", err)
	}
	return k, nil
}
