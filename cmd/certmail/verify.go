package main

import (
	"bufio"
	"encoding/json"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
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
// and prints what the evidence proves. Exit 0 only when the bundle is whole and valid. Given
// several bundles (files, or directories of *.bundle files), it checks them together, verifying
// their signatures in batches, and reports each.
func runVerify(args []string, _ io.Reader, stdout, stderr io.Writer) int {
	flags := newFlagSet("verify", "BUNDLE... [--message FILE] [--json] [--key VKEY]... [--keys FILE] [--at TIME]", `
Check every signature, key binding, hash and proof in an evidence bundle, offline, and print the
verdict: what the evidence proves, by whom and when, or which note failed which check.
Exit status 0 when the bundle is whole and valid, 1 when it is not, 2 for a usage error.

Without --key or --keys the agents' keys are taken from the bundle itself, and the verdict says
so: pin the keys of the agents you trust to check who signed.

Given several BUNDLE files, or a directory (every *.bundle file under it), verify checks them
all, verifying their signatures in batches, and prints one line per bundle with the problems of
those that are not valid, then a count; with --json, an array of {"file", "verdict"}. The exit
status is 0 when every bundle is valid, 1 when any is not. --message needs a single bundle.`, stderr)
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
	if len(pos) == 0 {
		return usageError(stderr, "verify", "want a BUNDLE file (or several, or a directory of them)")
	}
	files, single, err := bundleFiles(pos)
	if err != nil {
		return usageError(stderr, "verify", "%v", err)
	}
	if !single && *message != "" {
		return usageError(stderr, "verify", "--message needs a single BUNDLE, got %d", len(files))
	}
	var data []byte
	if single {
		if data, err = os.ReadFile(files[0]); err != nil {
			return usageError(stderr, "verify", "%v", err)
		}
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
	if !single {
		return verifyMany(files, pinned, now, *asJSON, stdout)
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
		return unreadable(err)
	}
	if haveMsg {
		b.SetItem(evidence.ItemMessage, msg)
	}
	return judge(b.Check(pinned), now)
}

func unreadable(err error) *evidence.Verdict {
	v := &evidence.Verdict{Outcome: evidence.OutcomeInvalid, Summary: "the bundle cannot be read"}
	v.Fail(0, "", "format", "%v", err)
	return v
}

func judge(c *evidence.Checked, now time.Time) *evidence.Verdict {
	v := protocol.JudgeAt(c, now)
	v.Notices = append(v.Notices, "deadlines weighed at "+evidence.FormatTime(now)+" (use --at to choose another time)")
	return v
}

// bundleFiles lists the bundle files the arguments name: each file as given, and every *.bundle
// file under a directory, in lexical order. single is true for one file argument: the command's
// first form, whose output is one verdict.
func bundleFiles(args []string) (files []string, single bool, err error) {
	for _, arg := range args {
		fi, err := os.Stat(arg)
		if err != nil {
			return nil, false, err
		}
		if !fi.IsDir() {
			files = append(files, arg)
			continue
		}
		var found []string
		err = filepath.WalkDir(arg, func(path string, d fs.DirEntry, err error) error {
			if err != nil {
				return err
			}
			if !d.IsDir() && strings.HasSuffix(d.Name(), ".bundle") {
				found = append(found, path)
			}
			return nil
		})
		if err != nil {
			return nil, false, err
		}
		if len(found) == 0 {
			return nil, false, fmt.Errorf("no *.bundle file under %s", arg)
		}
		files = append(files, found...) // WalkDir walks in lexical order
	}
	return files, len(args) == 1 && len(files) == 1 && files[0] == args[0], nil
}

// verifyChunk is how many bundles verifyMany reads and checks at a time: enough for the
// signature batches to reach their best cost per signature, few enough to hold in memory.
const verifyChunk = 512

// verifyMany checks many bundles, a chunk at a time, their signatures in batches, and reports
// each: a line per bundle (with the problems of one that is not valid) and a count, or a JSON
// array. It returns the exit status: 0 when every bundle is valid.
func verifyMany(files []string, pinned *evidence.Keys, now time.Time, asJSON bool, stdout io.Writer) int {
	w := bufio.NewWriter(stdout)
	defer w.Flush()
	valid := 0
	if asJSON {
		w.WriteString("[")
	}
	for start := 0; start < len(files); start += verifyChunk {
		chunk := files[start:min(start+verifyChunk, len(files))]
		verdicts := make([]*evidence.Verdict, len(chunk))
		var parsed []*evidence.Bundle
		var at []int
		for i, f := range chunk {
			data, err := os.ReadFile(f)
			if err == nil {
				var b *evidence.Bundle
				if b, err = evidence.ParseBundle(data); err == nil {
					parsed, at = append(parsed, b), append(at, i)
					continue
				}
			}
			verdicts[i] = unreadable(err)
		}
		for j, c := range evidence.CheckBundles(parsed, pinned) {
			verdicts[at[j]] = judge(c, now)
		}
		for i, v := range verdicts {
			if v.Valid {
				valid++
			}
			if asJSON {
				if start+i > 0 {
					w.WriteString(",")
				}
				entry, _ := json.MarshalIndent(struct {
					File    string            `json:"file"`
					Verdict *evidence.Verdict `json:"verdict"`
				}{chunk[i], v}, "  ", "  ")
				w.WriteString("\n  ")
				w.Write(entry)
				continue
			}
			status := "VALID"
			if !v.Valid {
				status = "NOT VALID"
			}
			fmt.Fprintf(w, "%s: %s: %s\n", chunk[i], status, v.Summary)
			for _, p := range v.Problems {
				fmt.Fprintf(w, "  %s: %s check failed: %s\n", p.Where(), p.Check, p.Reason)
			}
		}
	}
	if asJSON {
		w.WriteString("\n]\n")
	} else {
		fmt.Fprintf(w, "%d bundles: %d valid, %d not valid (deadlines weighed at %s)\n", len(files), valid, len(files)-valid, evidence.FormatTime(now))
	}
	if valid != len(files) {
		return exitFail
	}
	return exitOK
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
