package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"mime"
	"os"
	"path/filepath"
	"strings"

	"certmail/api"
	"certmail/client"
	"certmail/pki"
)

// apiFlags are the flags of the commands that talk to an agent as a sender: where the agent
// is and who is asking. The password is never a flag's value, which any user of the machine
// could read in the process list: it comes from a file or from the environment.
type apiFlags struct {
	server, user, passwordFile, ca string
}

const apiEnvHelp = `
The agent and the account come from the flags or from the environment: CERTMAIL_SERVER
(default https://localhost:8443, the agent 'certmail serve' starts), CERTMAIL_USER,
CERTMAIL_PASSWORD (or --password-file) and CERTMAIL_CA (default ./certmail-data/ca.crt when it
exists, the local CA of an agent started in this directory).`

func (a *apiFlags) register(fs *flag.FlagSet) {
	fs.StringVar(&a.server, "server", "", "the agent's `URL` (default $CERTMAIL_SERVER or https://localhost:8443)")
	fs.StringVar(&a.user, "user", "", "your certmail `ADDRESS` (default $CERTMAIL_USER)")
	fs.StringVar(&a.passwordFile, "password-file", "", "read your password from `FILE` (default $CERTMAIL_PASSWORD)")
	fs.StringVar(&a.ca, "ca", "", "trust the certificates in `FILE` besides the system's (default $CERTMAIL_CA or ./certmail-data/ca.crt)")
}

// client builds the API client from the flags and the environment.
func (a *apiFlags) client() (*client.Client, error) {
	o := client.Options{Server: firstOf(a.server, os.Getenv("CERTMAIL_SERVER"), "https://localhost:8443"),
		User: firstOf(a.user, os.Getenv("CERTMAIL_USER")), CAFile: firstOf(a.ca, os.Getenv("CERTMAIL_CA"))}
	if o.User == "" {
		return nil, errors.New("who are you? give --user ADDRESS or set CERTMAIL_USER")
	}
	switch {
	case a.passwordFile != "":
		b, err := os.ReadFile(a.passwordFile)
		if err != nil {
			return nil, fmt.Errorf("password: %w", err)
		}
		o.Password = strings.TrimRight(string(b), "\r\n")
	case os.Getenv("CERTMAIL_PASSWORD") != "":
		o.Password = os.Getenv("CERTMAIL_PASSWORD")
	default:
		return nil, errors.New("no password: give --password-file FILE or set CERTMAIL_PASSWORD")
	}
	if o.CAFile == "" {
		if local := filepath.Join("certmail-data", pki.CACertFile); fileExists(local) {
			o.CAFile = local
		}
	}
	return client.New(o)
}

func firstOf(values ...string) string {
	for _, v := range values {
		if v != "" {
			return v
		}
	}
	return ""
}

func fileExists(path string) bool {
	_, err := os.Stat(path)
	return err == nil
}

// runSend submits a certified message through the agent's API.
func runSend(args []string, stdin io.Reader, stdout, stderr io.Writer) int {
	flags := newFlagSet("send", "--to ADDRESS... [--subject S] [--text T | --text-file F] [--attach FILE]... [options]\n       certmail send --eml FILE [--to ADDRESS]... [options]", `
Send a certified message: the agent stores it, signs a certificate of posting for each
recipient, notifies them and mails you the receipts. It prints each recipient's label; follow
one with 'certmail status LABEL'. A message the agent refuses is recorded by a signed notice of
non-acceptance (NAC), whose label the error names.
Exit status 0 when the message was certified, 1 when the agent refused it or could not be
reached, 2 for a usage error.`+"\n"+apiEnvHelp, stderr)
	var remote apiFlags
	remote.register(flags)
	var to, attach stringList
	flags.Var(&to, "to", "a recipient `ADDRESS`; repeatable, or comma-separated")
	subject := flags.String("subject", "", "the `SUBJECT`")
	text := flags.String("text", "", "the message `TEXT`")
	textFile := flags.String("text-file", "", "read the message text from `FILE` (- for standard input)")
	flags.Var(&attach, "attach", "attach `FILE`; repeatable")
	eml := flags.String("eml", "", "send the RFC 5322 message in `FILE` as it is (From must be you)")
	mode := flags.String("mode", "", "the protocol `MODE`: cem-ip (default), cem-nsr or cem")
	deadline := flags.String("deadline", "", "the `DEADLINE` for acceptance: a duration (48h, 7d) or an RFC 3339 time")
	receipt := flags.String("receipt", "", "the `FORM` of your receipts: full, short or summary")
	notify := flags.String("notify", "", "the notification `POLICY`")
	msgPassword := flags.String("message-password-file", "", "read the message password the recipient must give from `FILE`")
	hint := flags.String("hint", "", "a `HINT` for the message password, shown to the recipient")
	asJSON := flags.Bool("json", false, "print the agent's answer as JSON")
	if code, ok := parseFlags(flags, args); !ok {
		return code
	}
	if flags.NArg() > 0 {
		return usageError(stderr, "send", "unexpected argument %q", flags.Arg(0))
	}
	var rcpts []string
	for _, t := range to {
		for _, a := range strings.Split(t, ",") {
			if a = strings.TrimSpace(a); a != "" {
				rcpts = append(rcpts, a)
			}
		}
	}
	if *eml == "" && len(rcpts) == 0 {
		return usageError(stderr, "send", "name at least one recipient with --to")
	}
	if *text != "" && *textFile != "" {
		return usageError(stderr, "send", "give the text with --text or --text-file, not both")
	}
	if *eml != "" && (*subject != "" || *text != "" || *textFile != "" || len(attach) > 0 || *mode != "" || *deadline != "" ||
		*receipt != "" || *notify != "" || *msgPassword != "" || *hint != "") {
		return usageError(stderr, "send", "--eml sends a whole message: put its options in Certmail-* header fields")
	}
	c, err := remote.client()
	if err != nil {
		return usageError(stderr, "send", "%v", err)
	}

	var answer *api.Submitted
	if *eml != "" {
		data, err := os.ReadFile(*eml)
		if err != nil {
			return usageError(stderr, "send", "%v", err)
		}
		answer, err = c.SendMessage(context.Background(), data, rcpts)
		if err != nil {
			return sendFailed(stderr, err)
		}
	} else {
		m := api.Message{To: rcpts, Subject: *subject, Text: *text, Mode: *mode, Deadline: *deadline,
			Receipt: *receipt, Notify: *notify, Hint: *hint}
		if *textFile != "" {
			b, err := readFileOrStdin(*textFile, stdin)
			if err != nil {
				return usageError(stderr, "send", "%v", err)
			}
			m.Text = string(b)
		}
		if *msgPassword != "" {
			b, err := os.ReadFile(*msgPassword)
			if err != nil {
				return usageError(stderr, "send", "message password: %v", err)
			}
			m.Password = strings.TrimRight(string(b), "\r\n")
		}
		for _, f := range attach {
			data, err := os.ReadFile(f)
			if err != nil {
				return usageError(stderr, "send", "%v", err)
			}
			m.Attachments = append(m.Attachments, api.Attachment{Name: filepath.Base(f),
				ContentType: mime.TypeByExtension(filepath.Ext(f)), Data: data})
		}
		if answer, err = c.Send(context.Background(), m); err != nil {
			return sendFailed(stderr, err)
		}
	}
	if *asJSON {
		b, _ := json.MarshalIndent(answer, "", "  ")
		fmt.Fprintf(stdout, "%s\n", b)
		return exitOK
	}
	for _, p := range answer.Messages {
		fmt.Fprintf(stdout, "certified: label %s for %s\n", p.Label, p.Recipient)
	}
	if len(answer.Messages) > 0 {
		fmt.Fprintf(stdout, "\nFollow it with: certmail status %s\n", answer.Messages[0].Label)
	}
	return exitOK
}

// sendFailed reports a refused or failed submission.
func sendFailed(stderr io.Writer, err error) int {
	fmt.Fprintf(stderr, "certmail send: not certified: %v\n", err)
	var p *api.Problem
	if errors.As(err, &p) && p.NAC != "" {
		fmt.Fprintf(stderr, "The agent recorded its refusal; fetch the evidence with: certmail status %s --bundle %s.bundle\n", p.NAC, p.NAC)
	}
	return exitFail
}

// readFileOrStdin reads a file, or standard input for "-".
func readFileOrStdin(name string, stdin io.Reader) ([]byte, error) {
	if name == "-" {
		return io.ReadAll(stdin)
	}
	return os.ReadFile(name)
}
