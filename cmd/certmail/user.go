package main

import (
	"bufio"
	"context"
	"crypto/rand"
	"encoding/base32"
	"fmt"
	"io"
	"strings"
	"text/tabwriter"

	"certmail/account"
	"certmail/config"
	"certmail/store/sqlite"
)

// runUser manages the agent's accounts in its data directory; it works beside a running
// `certmail serve` (SQLite takes the two writers in turn).
func runUser(args []string, stdin io.Reader, stdout, stderr io.Writer) int {
	flags := newFlagSet("user", "add|list|disable|enable|passwd [ADDRESS] [--admin] [--password-stdin] [--config FILE]", `
Manage the users who may send certified mail.
  add ADDRESS      create a user; prints a generated password unless --password-stdin
  list             list users
  disable ADDRESS  forbid the user to log in, send or pick up
  enable ADDRESS   allow it again
  passwd ADDRESS   set a new password (generated, or read with --password-stdin)`, stderr)
	cfgPath := flags.String("config", "", "the configuration `FILE` (default: zero configuration)")
	admin := flags.Bool("admin", false, "with add: the user administers the agent")
	fromStdin := flags.Bool("password-stdin", false, "read the password from the first line of standard input")
	pos, code, ok := parseInterspersed(flags, args)
	if !ok {
		return code
	}
	if len(pos) == 0 {
		return usageError(stderr, "user", "name an action: add, list, disable, enable or passwd")
	}
	action, rest := pos[0], pos[1:]
	wantArgs := map[string]int{"add": 1, "list": 0, "disable": 1, "enable": 1, "passwd": 1}
	n, known := wantArgs[action]
	if !known {
		return usageError(stderr, "user", "unknown action %q", action)
	}
	if len(rest) != n {
		return usageError(stderr, "user", "%s takes %d address(es), got %d", action, n, len(rest))
	}
	cfg, err := config.Load(*cfgPath)
	if err != nil {
		fmt.Fprintf(stderr, "certmail user: %v\n", err)
		return exitFail
	}
	st, err := sqlite.Open(cfg.Path(dbFile))
	if err != nil {
		fmt.Fprintf(stderr, "certmail user: %v\n", err)
		return exitFail
	}
	defer st.Close()
	acc := account.New(st, account.Limits{}, nil)
	ctx := context.Background()

	password := func() (string, bool, error) {
		if *fromStdin {
			line, err := bufio.NewReader(stdin).ReadString('\n')
			if err != nil && line == "" {
				return "", false, fmt.Errorf("no password on standard input")
			}
			return strings.TrimRight(line, "\r\n"), false, nil
		}
		p, err := newPassword()
		return p, true, err
	}
	switch action {
	case "list":
		us, err := acc.List(ctx)
		if err != nil {
			fmt.Fprintf(stderr, "certmail user: %v\n", err)
			return exitFail
		}
		tw := tabwriter.NewWriter(stdout, 0, 4, 2, ' ', 0)
		fmt.Fprintln(tw, "ADDRESS\tADMIN\tDISABLED\tKEY\tCREATED")
		for _, u := range us {
			key := "-"
			if u.VerifierKey != "" {
				key = "registered"
			}
			fmt.Fprintf(tw, "%s\t%v\t%v\t%s\t%s\n", u.Address, u.Admin, u.Disabled, key, u.Created.Format("2006-01-02"))
		}
		tw.Flush()
		return exitOK
	case "disable", "enable":
		if err := acc.SetDisabled(ctx, rest[0], action == "disable"); err != nil {
			fmt.Fprintf(stderr, "certmail user: %v\n", err)
			return exitFail
		}
		fmt.Fprintf(stdout, "%s %sd\n", rest[0], action)
		return exitOK
	}
	pw, generated, err := password()
	if err == nil {
		if action == "add" {
			err = acc.Add(ctx, rest[0], pw, *admin)
		} else {
			err = acc.SetPassword(ctx, rest[0], pw)
		}
	}
	if err != nil {
		fmt.Fprintf(stderr, "certmail user: %v\n", err)
		return exitFail
	}
	fmt.Fprintf(stdout, "%s: password set\n", account.Normalize(rest[0]))
	if generated {
		fmt.Fprintf(stdout, "password: %s\n(shown once; it is stored only as an argon2id hash)\n", pw)
	}
	return exitOK
}

// newPassword draws a 20-character password (100 bits) a person can type.
func newPassword() (string, error) {
	b := make([]byte, 13)
	if _, err := rand.Read(b); err != nil {
		return "", err
	}
	return strings.ToLower(base32.StdEncoding.EncodeToString(b))[:20], nil
}

// dbFile is the database's name inside the data directory.
const dbFile = "certmail.db"
