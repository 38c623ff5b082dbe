package main

import (
	"context"
	"encoding/base64"
	"errors"
	"fmt"
	"io"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"time"

	"certmail/client"
	"certmail/durable"
	"certmail/evidence"
	"certmail/evlog/audit"
	"certmail/pki"
)

// runLog is the public evidence log seen from outside (DESIGN.md §4): a monitor that follows an
// agent's log and proves a fork, a check of a log directory, and the check of a fork proof.
func runLog(args []string, _ io.Reader, stdout, stderr io.Writer) int {
	flags := newFlagSet("log", "monitor|fsck|check-fork ...", `
Check an agent's public evidence log, as anyone can.
  monitor URL      follow the agent's log and prove that it only grows (certmail log monitor -h)
  fsck DIR         recompute a stored log's tree and name every file that is wrong
  check-fork FILE  check a fork proof that monitor wrote`, stderr)
	if len(args) > 0 {
		switch args[0] {
		case "monitor":
			return runLogMonitor(args[1:], stdout, stderr)
		case "fsck":
			return runLogFsck(args[1:], stdout, stderr)
		case "check-fork":
			return runLogCheckFork(args[1:], stdout, stderr)
		}
	}
	if code, ok := parseFlags(flags, args); !ok {
		return code
	}
	if flags.NArg() == 0 {
		return usageError(stderr, "log", "name an action: monitor, fsck or check-fork")
	}
	return usageError(stderr, "log", "unknown action %q", flags.Arg(0))
}

// logUsageError is usageError for the actions of `certmail log`, whose usage `-h` prints.
func logUsageError(stderr io.Writer, action, format string, args ...any) int {
	fmt.Fprintf(stderr, "certmail log %s: %s\nRun 'certmail log %s -h' for usage.\n", action, fmt.Sprintf(format, args...), action)
	return exitUsage
}

func logFail(stderr io.Writer, action string, err error) int {
	fmt.Fprintf(stderr, "certmail log %s: %v\n", action, err)
	return exitFail
}

func runLogMonitor(args []string, stdout, stderr io.Writer) int {
	flags := newFlagSet("log monitor", "URL [--state FILE] [--key VKEY] [--proof FILE] [--cacert FILE]", `
Follow an agent's public evidence log: fetch its latest checkpoint from URL/log/, check the
agent's signature, and prove that its tree extends the last checkpoint seen, kept in the state
file. Run it from cron; each run moves the state forward only over a proven extension.

On first contact without --key, the agent's key is learnt from URL/.well-known/certmail and
pinned in the state; later runs check every checkpoint against the pinned key.

When the new checkpoint does not extend the old one, the log forked (or rewrote its history):
monitor writes a self-contained proof (both signed checkpoints and the consistency proof) to the
proof file, which anyone checks with 'certmail log check-fork', and keeps the old state.

Exit status 0 when the log is consistent, 1 on a fork, a checkpoint the agent did not sign, a
log that went back or cannot be read, 2 for a usage error.`, stderr)
	statePath := flags.String("state", "certmail-log.state", "the state `FILE`: the pinned key and the last checkpoint seen")
	key := flags.String("key", "", "the agent's verifier key `VKEY` (default: learnt on first contact)")
	proofPath := flags.String("proof", "", "where to write a fork proof `FILE` (default: the state file with .fork appended)")
	caFile := flags.String("cacert", "", "trust the CA certificates in PEM `FILE` as well as the system's (an agent's local CA)")
	pos, code, ok := parseInterspersed(flags, args)
	if !ok {
		return code
	}
	if len(pos) != 1 {
		return logUsageError(stderr, "monitor", "want exactly one agent URL, got %d arguments", len(pos))
	}
	agentURL, err := url.Parse(strings.TrimSuffix(pos[0], "/"))
	if err != nil || (agentURL.Scheme != "https" && agentURL.Scheme != "http") || agentURL.Host == "" || agentURL.RawQuery != "" || agentURL.Fragment != "" {
		return logUsageError(stderr, "monitor", "URL %q: want the agent's http or https address, such as https://agent.example", pos[0])
	}
	if *key != "" {
		if _, err := evidence.NewKeys(*key); err != nil {
			return logUsageError(stderr, "monitor", "--key: %v", err)
		}
	}
	if *proofPath == "" {
		*proofPath = *statePath + ".fork"
	}
	hc, err := client.HTTPClient(*caFile, time.Minute)
	if err != nil {
		return logUsageError(stderr, "monitor", "--cacert: %v", err)
	}
	st, err := audit.LoadState(*statePath)
	if err != nil {
		return logFail(stderr, "monitor", err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()

	var prev *audit.Checkpoint
	switch {
	case st != nil:
		if st.Agent != agentURL.String() {
			return logUsageError(stderr, "monitor", "the state %s follows %s, not %s: give each log its own --state", *statePath, st.Agent, agentURL)
		}
		if *key != "" && *key != st.Key {
			return logUsageError(stderr, "monitor", "the state %s pinned the key %s, not %s: give another --state to follow the log with another key", *statePath, st.Key, *key)
		}
		prev = st.Checkpoint
	case *key != "":
		st = &audit.State{Agent: agentURL.String(), Log: agentURL.JoinPath("log/").String(), Key: *key}
	default:
		agent, logURL, err := audit.Discover(ctx, hc, agentURL.String())
		if err != nil {
			return logFail(stderr, "monitor", err)
		}
		st = &audit.State{Agent: agentURL.String(), Log: logURL.String(), Key: agent.VerifierKey}
	}

	src, err := audit.NewHTTP(st.Log, hc)
	if err != nil {
		return logFail(stderr, "monitor", err)
	}
	latest, fork, err := audit.Follow(ctx, src, st.Key, prev)
	if err != nil {
		return logFail(stderr, "monitor", err)
	}
	if fork != nil {
		if err := durable.WriteAtomic(*proofPath, fork.Encode(), 0o644); err != nil {
			return logFail(stderr, "monitor", fmt.Errorf("the log forked, and the proof could not be written: %w", err))
		}
		fmt.Fprintf(stdout, "FORK: %s\nproof written to %s; anyone can check it with: certmail log check-fork %s --key %s\n", fork, *proofPath, *proofPath, st.Key)
		return exitFail
	}
	st.Checkpoint = latest
	if err := st.Save(*statePath); err != nil {
		return logFail(stderr, "monitor", err)
	}
	root := b64(latest.Hash[:])
	switch {
	case prev == nil:
		fmt.Fprintf(stdout, "first contact: %s at size %d, root %s; key %s pinned in %s\n", latest.Origin, latest.Size, root, st.Key, *statePath)
	case prev.Size == latest.Size:
		fmt.Fprintf(stdout, "consistent: %s unchanged at size %d, root %s\n", latest.Origin, latest.Size, root)
	default:
		fmt.Fprintf(stdout, "consistent: %s grew from size %d to %d, root %s\n", latest.Origin, prev.Size, latest.Size, root)
	}
	return exitOK
}

func runLogFsck(args []string, stdout, stderr io.Writer) int {
	flags := newFlagSet("log fsck", "DIR [--key VKEY]", `
Recompute an evidence log's Merkle tree from the entries stored in DIR (DIR/checkpoint and
DIR/tile/..., as tessera's POSIX driver writes them), compare every stored hash tile with it and
its root with the checkpoint, and name every file that is wrong. The checkpoint's signature is
checked with the agent's verifier key: --key, or by default the agent.pub beside DIR (an
agent's data directory holds log/ and agent.pub); without either, the report says it was not.

Exit status 0 when the log is whole, 1 when a file is wrong or the checkpoint is not the
agent's, 2 for a usage error.`, stderr)
	key := flags.String("key", "", "the agent's verifier key `VKEY`")
	pos, code, ok := parseInterspersed(flags, args)
	if !ok {
		return code
	}
	if len(pos) != 1 {
		return logUsageError(stderr, "fsck", "want exactly one log directory, got %d arguments", len(pos))
	}
	if fi, err := os.Stat(pos[0]); err != nil || !fi.IsDir() {
		return logUsageError(stderr, "fsck", "%s is not a directory", pos[0])
	}
	if *key == "" {
		// An agent's own log: DATA/log beside DATA/agent.pub.
		if b, err := os.ReadFile(filepath.Join(pos[0], "..", pki.AgentPubFile)); err == nil {
			*key = strings.TrimSpace(string(b))
			fmt.Fprintf(stderr, "certmail log fsck: using the agent key in %s\n", filepath.Join(filepath.Dir(filepath.Clean(pos[0])), pki.AgentPubFile))
		}
	}
	if *key != "" {
		if _, err := evidence.NewKeys(*key); err != nil {
			return logUsageError(stderr, "fsck", "--key: %v", err)
		}
	}
	r, err := audit.Fsck(context.Background(), audit.Dir(pos[0]), *key)
	if err != nil {
		return logFail(stderr, "fsck", err)
	}
	cp := r.Checkpoint
	signed := "signature checked with " + evidence.KeyID(*key)
	if !r.Signed {
		signed = "signature NOT checked (give --key)"
	}
	fmt.Fprintf(stdout, "log %s: %s at size %d, root %s (%s)\n", pos[0], cp.Origin, cp.Size, b64(cp.Hash[:]), signed)
	if len(r.Problems) == 0 {
		fmt.Fprintf(stdout, "OK: %d entries and %d tiles give the checkpoint's tree\n", r.Entries, r.Tiles)
		return exitOK
	}
	fmt.Fprintf(stdout, "DAMAGED: %d problems\n", len(r.Problems))
	for _, p := range r.Problems {
		fmt.Fprintf(stdout, "  %s\n", p)
	}
	return exitFail
}

func runLogCheckFork(args []string, stdout, stderr io.Writer) int {
	flags := newFlagSet("log check-fork", "FILE [--key VKEY]", `
Check a fork proof that 'certmail log monitor' wrote, offline: both checkpoints are signed by
the agent's key for its log, and the consistency proof shows that the later tree does not begin
with the earlier one. Without --key the key the file names is used, and the output says so.

Exit status 0 when the file proves a fork, 1 when it does not, 2 for a usage error.`, stderr)
	key := flags.String("key", "", "the agent's verifier key `VKEY` you trust")
	pos, code, ok := parseInterspersed(flags, args)
	if !ok {
		return code
	}
	if len(pos) != 1 {
		return logUsageError(stderr, "check-fork", "want exactly one proof file, got %d arguments", len(pos))
	}
	if *key != "" {
		if _, err := evidence.NewKeys(*key); err != nil {
			return logUsageError(stderr, "check-fork", "--key: %v", err)
		}
	}
	data, err := os.ReadFile(pos[0])
	if err != nil {
		if errors.Is(err, os.ErrNotExist) {
			return logUsageError(stderr, "check-fork", "%v", err)
		}
		return logFail(stderr, "check-fork", err)
	}
	fork, err := audit.CheckFork(data, *key)
	if err != nil {
		fmt.Fprintf(stdout, "NOT A FORK PROOF: %v\n", err)
		return exitFail
	}
	fmt.Fprintf(stdout, "FORK PROVEN: %s\n", fork)
	if *key == "" {
		fmt.Fprintf(stdout, "the agent's key was taken from the file itself (%s); give --key to check it is the agent you mean\n", evidence.KeyID(fork.Key))
	}
	return exitOK
}

func b64(h []byte) string { return base64.StdEncoding.EncodeToString(h) }
