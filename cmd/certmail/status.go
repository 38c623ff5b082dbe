package main

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"strings"

	"certmail/api"
	"certmail/client"
	"certmail/durable"
)

// runStatus shows a sent item's state and timeline, and fetches its bundle.
func runStatus(args []string, _ io.Reader, stdout, stderr io.Writer) int {
	flags := newFlagSet("status", "LABEL [--bundle FILE] [--retract] [--json] [options]", `
Show the state and the timeline of a certified message you sent: posted, notified, accepted or
refused, retrieved, warned, not delivered, retracted. With --bundle, save its evidence bundle
for 'certmail verify' (a refused submission's NAC label gives the NAC's bundle). With --retract,
withdraw the message first, if nobody has picked it up yet.
Exit status 0 on success, 1 when the agent refused or could not be reached, 2 for a usage
error.`+"\n"+apiEnvHelp, stderr)
	var remote apiFlags
	remote.register(flags)
	bundle := flags.String("bundle", "", "save the evidence bundle, with the message, to `FILE`")
	retract := flags.Bool("retract", false, "retract the message before anyone picks it up")
	asJSON := flags.Bool("json", false, "print the status as JSON")
	pos, code, ok := parseInterspersed(flags, args)
	if !ok {
		return code
	}
	if len(pos) != 1 {
		return usageError(stderr, "status", "want exactly one LABEL, got %d arguments", len(pos))
	}
	label := strings.ToUpper(pos[0])
	c, err := remote.client()
	if err != nil {
		return usageError(stderr, "status", "%v", err)
	}
	ctx := context.Background()
	if *retract {
		if _, err := c.Retract(ctx, label); err != nil {
			fmt.Fprintf(stderr, "certmail status: not retracted: %v\n", err)
			return exitFail
		}
	}
	if *bundle != "" {
		b, err := c.Bundle(ctx, label)
		if err != nil {
			fmt.Fprintf(stderr, "certmail status: bundle: %v\n", err)
			return exitFail
		}
		if err := durable.WriteAtomic(*bundle, b, 0o644); err != nil {
			fmt.Fprintf(stderr, "certmail status: %v\n", err)
			return exitFail
		}
		fmt.Fprintf(stderr, "bundle saved to %s; check it with: certmail verify %s\n", *bundle, *bundle)
	}
	st, err := c.Status(ctx, label)
	if client.IsProblem(err, "not-found") && *bundle != "" {
		return exitOK // a NAC has a bundle but no item to show
	}
	if err != nil {
		fmt.Fprintf(stderr, "certmail status: %v\n", err)
		return exitFail
	}
	if *asJSON {
		b, _ := json.MarshalIndent(st, "", "  ")
		fmt.Fprintf(stdout, "%s\n", b)
		return exitOK
	}
	printStatus(stdout, st)
	return exitOK
}

// printStatus writes an item's status for a person.
func printStatus(w io.Writer, st *api.Status) {
	fmt.Fprintf(w, "label      %s\n", st.Label)
	fmt.Fprintf(w, "to         %s\n", st.Recipient)
	if st.Subject != "" {
		fmt.Fprintf(w, "subject    %s\n", st.Subject)
	}
	fmt.Fprintf(w, "mode       %s\n", st.Mode)
	fmt.Fprintf(w, "state      %s\n", st.State)
	fmt.Fprintf(w, "deadline   %s\n", st.Deadline)
	fmt.Fprintf(w, "content    %s\n", st.Content)
	fmt.Fprintf(w, "\ntimeline\n")
	for _, e := range st.Events {
		fmt.Fprintf(w, "  %s  %-4s %s\n", e.Time, e.Type, e.Says)
	}
}
