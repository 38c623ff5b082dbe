package main

import (
	"context"
	"crypto/ed25519"
	"encoding/base64"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"strings"

	"golang.org/x/mod/sumdb/note"

	"certmail/api"
	"certmail/client"
)

// messageMode is the mode of a saved message: it is the recipient's private mail.
const messageMode fs.FileMode = 0o600

const pickupDescription = `
Pick up a certified message as its recipient, with the link of the notification mail: show who
sent what under which label, then accept it (the default) or refuse it (--refuse).

With --key (a private key from 'certmail keygen -user ADDRESS'), acceptance carries your own
signature: the key's verifier key is enrolled for your address through the link, and the
certificate of delivery the agent asks for is checked and signed here, so the sender's evidence
is recipient-signed. Without --key the agent attests your acceptance (agent-attested).

Once accepted, the message is fetched, checked against the commitment the notification named,
and saved to --out (default LABEL.eml, mode 0600; never overwritten).
Exit status 0 when done, 1 when the agent refused or the message does not match, 2 for a usage
error.`

// runPickup implements `certmail pickup URL [--password-file F] [--key FILE] [--refuse] [--out FILE.eml] [--ca FILE]`.
func runPickup(args []string, stdin io.Reader, stdout, stderr io.Writer) int {
	flags := newFlagSet("pickup", "URL [--password-file F] [--key FILE] [--refuse] [--out FILE.eml] [--ca FILE]", pickupDescription, stderr)
	pwFile := flags.String("password-file", "", "read the message password from the first line of `F` ('-': standard input)")
	keyFile := flags.String("key", "", "sign the certificate of delivery with the private key in `FILE`")
	refuse := flags.Bool("refuse", false, "refuse the message instead of accepting it")
	out := flags.String("out", "", "save the message to `FILE.eml` (default: LABEL.eml)")
	caFile := flags.String("ca", "", "also trust the CA certificates in PEM `FILE` (a local agent's certmail-data/ca.crt)")
	pos, code, ok := parseInterspersed(flags, args)
	if !ok {
		return code
	}
	if len(pos) != 1 {
		return usageError(stderr, "pickup", "want exactly one pickup link, got %d arguments", len(pos))
	}
	server, token, err := client.ParsePickupLink(pos[0])
	if err != nil {
		return usageError(stderr, "pickup", "%v", err)
	}
	if *refuse && (*keyFile != "" || *out != "") {
		return usageError(stderr, "pickup", "--refuse takes no --key or --out: nothing is signed or saved")
	}
	var pw string
	if *pwFile != "" {
		if pw, err = readPassword(*pwFile, stdin); err != nil {
			return usageError(stderr, "pickup", "%v", err)
		}
	}
	var key *userKey
	if *keyFile != "" {
		if key, err = readUserKey(*keyFile); err != nil {
			return usageError(stderr, "pickup", "%v", err)
		}
	}
	if *out != "" {
		if err := checkAbsent(*out); err != nil {
			return usageError(stderr, "pickup", "--out: %v", err)
		}
	}
	c, err := client.New(client.Options{Server: server, CAFile: *caFile})
	if err != nil {
		return usageError(stderr, "pickup", "%v", err)
	}
	job := pickupJob{password: pw, hasPassword: *pwFile != "", key: key, refuse: *refuse, out: *out}
	if err := job.run(context.Background(), c.Pickup(token), stdout); err != nil {
		var p *api.Problem
		if errors.As(err, &p) {
			err = fmt.Errorf("the agent refused (%d): %s", p.Status, p.Detail)
		}
		fmt.Fprintf(stderr, "certmail pickup: %v\n", err)
		var u usageErr
		if errors.As(err, &u) {
			return exitUsage
		}
		return exitFail
	}
	return exitOK
}

// usageErr is a mistake of the caller the agent's answer reveals (a password it did not give).
type usageErr struct{ msg string }

func (e usageErr) Error() string { return e.msg }

// readPassword reads the first line of a file, or of stdin for "-".
func readPassword(path string, stdin io.Reader) (string, error) {
	var b []byte
	var err error
	if path == "-" {
		b, err = io.ReadAll(io.LimitReader(stdin, 64<<10))
	} else {
		b, err = os.ReadFile(path)
	}
	if err != nil {
		return "", fmt.Errorf("--password-file: %w", err)
	}
	line, _, _ := strings.Cut(string(b), "\n")
	line = strings.TrimSuffix(line, "\r")
	if line == "" {
		return "", errors.New("--password-file: the first line is empty")
	}
	return line, nil
}

// userKey is a user's signing key read from a `certmail keygen -user` private key file.
type userKey struct {
	path     string
	signer   note.Signer
	verifier string
}

// readUserKey reads a private key file and derives its verifier key, refusing a file others can
// read: a key anyone on the machine could copy proves nothing about its owner.
func readUserKey(path string) (*userKey, error) {
	info, err := os.Stat(path)
	if err != nil {
		return nil, fmt.Errorf("--key: %w", err)
	}
	if perm := info.Mode().Perm(); perm&0o077 != 0 {
		return nil, fmt.Errorf("--key: %s has mode %04o, readable by others: chmod 600 it (and consider the key exposed)", path, perm)
	}
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("--key: %w", err)
	}
	k, err := parseUserKey(b)
	if err != nil {
		return nil, fmt.Errorf("--key: %s %v", path, err)
	}
	k.path = path
	return k, nil
}

// parseUserKey reads a note private key (PRIVATE+KEY+name+hash+base64(0x01 || seed), one line)
// and derives its verifier key, which the note package has no call for.
func parseUserKey(b []byte) (*userKey, error) {
	skey := strings.TrimSpace(string(b))
	signer, err := note.NewSigner(skey)
	if err != nil {
		return nil, fmt.Errorf("is not a private key of 'certmail keygen -user ADDRESS' (%v)", err)
	}
	raw, err := base64.StdEncoding.DecodeString(strings.SplitN(skey, "+", 5)[4])
	if err != nil || len(raw) != 1+ed25519.SeedSize || raw[0] != 1 {
		return nil, errors.New("is not an Ed25519 key")
	}
	vkey, err := note.NewEd25519VerifierKey(signer.Name(), ed25519.NewKeyFromSeed(raw[1:]).Public().(ed25519.PublicKey))
	if err != nil {
		return nil, err
	}
	if v, err := note.NewVerifier(vkey); err != nil || v.KeyHash() != signer.KeyHash() {
		return nil, errors.New("is damaged: its key hash does not match the key")
	}
	return &userKey{signer: signer, verifier: vkey}, nil
}

// pickupJob is what the user asked for.
type pickupJob struct {
	password    string
	hasPassword bool
	key         *userKey
	refuse      bool
	out         string
}

// run shows the item, then refuses it, or accepts it (signed with the key, or attested by the
// agent) and saves the message.
func (job pickupJob) run(ctx context.Context, p *client.Pickup, stdout io.Writer) error {
	v, err := p.View(ctx)
	if err != nil {
		return err
	}
	fmt.Fprintf(stdout, "certified message from %s to %s\n  label      %s\n  mode       %s\n  commitment %s\n  decide by  %s\n  size       %d bytes\n",
		v.Sender, v.Recipient, v.Label, v.Mode, v.Commitment, v.Deadline, v.Size)
	switch {
	case v.State == "delivered" && !job.refuse:
		fmt.Fprintf(stdout, "already accepted; fetching the message again\n")
		return job.save(ctx, p, v, stdout)
	case v.Closed != "":
		return fmt.Errorf("this message can no longer be picked up: %s", v.Closed)
	case v.NeedPassword && !job.hasPassword:
		hint := ""
		if v.Hint != "" {
			hint = fmt.Sprintf(" (the sender's hint: %q)", v.Hint)
		}
		return usageErr{fmt.Sprintf("the sender protected this message with a password%s: give it with --password-file", hint)}
	}
	req := api.PickupRequest{CSRF: v.CSRF, Password: job.password}
	if job.refuse {
		if _, err := p.Refuse(ctx, req); err != nil {
			return err
		}
		fmt.Fprintf(stdout, "refused: the agent recorded your refusal (REJ) and tells the sender; nothing of the message was released\n")
		return nil
	}
	if k := job.key; k != nil {
		if k.signer.Name() != v.KeyName {
			return fmt.Errorf("the key in %s is named %s, but this message is for %s (key name %s): use that address's key", k.path, k.signer.Name(), v.Recipient, v.KeyName)
		}
		enrol := req
		enrol.VerifierKey = k.verifier
		e, err := p.EnrolKey(ctx, enrol)
		if err != nil {
			return err
		}
		if e.New {
			fmt.Fprintf(stdout, "key: enrolled %s for %s (the agent signed a KEY record)\n", k.verifier, v.Recipient)
		} else {
			fmt.Fprintf(stdout, "key: %s is already registered for %s\n", k.verifier, v.Recipient)
		}
		cod, err := p.SignCOD(ctx, v, k.signer)
		if err != nil {
			return err
		}
		fmt.Fprintf(stdout, "signed: %s for label %s with %s\n", cod.Record.Type, v.Label, k.signer.Name())
		req.COD = string(cod.Bytes())
	}
	d, err := p.Accept(ctx, req)
	if err != nil {
		return err
	}
	fmt.Fprintf(stdout, "accepted: the agent recorded %s; the sender's evidence is %s\n", strings.Join(d.Recorded, ", "), d.Attestation)
	return job.save(ctx, p, v, stdout)
}

// save fetches the message, checked against what the notification named, and saves it, even
// when it does not match: it is the recipient's proof of what was released.
func (job pickupJob) save(ctx context.Context, p *client.Pickup, v *api.PickupView, stdout io.Writer) error {
	m, checked, err := p.Message(ctx, v)
	var mismatch *client.MismatchError
	if err != nil && !errors.As(err, &mismatch) {
		return err
	}
	out := job.out
	if out == "" {
		out = v.Label + ".eml"
	}
	if err := createFile(out, string(m), messageMode); err != nil {
		return fmt.Errorf("the message was released but not saved: %v; fetch it again with the same link", err)
	}
	if mismatch != nil {
		return fmt.Errorf("ALARM: the message saved to %s does not match %s; keep it and tell the sender", out, mismatch.Want)
	}
	match := ""
	if checked != "" {
		match = ", matches " + checked
	}
	fmt.Fprintf(stdout, "saved %s (%d bytes%s)\n", out, len(m), match)
	return nil
}
