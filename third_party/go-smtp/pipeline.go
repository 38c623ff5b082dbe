package smtp

// certmail: this file is certmail's, not upstream's (third_party/README.md). Upstream's client
// waits for each command's reply before it sends the next (emersion/go-smtp#203).

import (
	"time"
)

// CommandError is the error of one command of a Transaction: the server's reply to it, an
// *SMTPError, or the error that ended the session.
type CommandError struct {
	Command string // "MAIL", "RCPT" or "DATA"
	Err     error
}

func (e *CommandError) Error() string { return "smtp: " + e.Command + ": " + e.Err.Error() }

func (e *CommandError) Unwrap() error { return e.Err }

// Transaction starts a mail transaction for one recipient: MAIL FROM, RCPT TO and DATA. It
// returns the writer for the message once the server has answered DATA with 354, as Data
// does.
//
// When the server offers PIPELINING (RFC 2920), the three commands go out in one write and
// their replies are read after it: one round trip instead of three. Otherwise they go one at
// a time, as Mail, Rcpt and Data send them.
//
// The error is a *CommandError naming the first command that failed. When MAIL or RCPT was
// refused, the replies to the commands after it have been read too, and the session is where
// Mail or Rcpt would have left it: the caller may send RSET and go on.
func (c *Client) Transaction(from string, mopts *MailOptions, to string, ropts *RcptOptions) (*DataCommand, error) {
	if err := c.hello(); err != nil {
		return nil, &CommandError{"MAIL", err}
	}
	if _, ok := c.ext["PIPELINING"]; !ok {
		if err := c.Mail(from, mopts); err != nil {
			return nil, &CommandError{"MAIL", err}
		}
		if err := c.Rcpt(to, ropts); err != nil {
			return nil, &CommandError{"RCPT", err}
		}
		w, err := c.Data()
		if err != nil {
			return nil, &CommandError{"DATA", err}
		}
		return w, nil
	}

	mail, err := c.mailCommand(from, mopts)
	if err != nil {
		return nil, &CommandError{"MAIL", err}
	}
	rcpt, err := c.rcptCommand(to, ropts)
	if err != nil {
		return nil, &CommandError{"RCPT", err}
	}

	c.conn.SetDeadline(time.Now().Add(c.CommandTimeout))
	defer c.conn.SetDeadline(time.Time{})

	// RFC 2920 3.1: MAIL and RCPT may be anywhere in a group, DATA only last.
	w := c.text.W
	w.WriteString(mail)
	w.WriteString("\r\n")
	w.WriteString(rcpt)
	w.WriteString("\r\nDATA\r\n")
	if err := w.Flush(); err != nil {
		return nil, &CommandError{"MAIL", err}
	}

	// Every reply is read, whatever the ones before it said, so that the next command meets
	// the reply that is its own. The error is that of the first command that failed: a
	// server may refuse MAIL with 421 and close the session, and the refusal is what says why.
	c.rcpts = nil
	var first *CommandError
	fail := func(cmd string, err error) (*DataCommand, error) {
		if first != nil {
			return nil, first
		}
		return nil, &CommandError{cmd, err}
	}
	if _, _, err := c.readResponse(250); err != nil {
		if !isReply(err) {
			return fail("MAIL", err)
		}
		first = &CommandError{"MAIL", err}
	}
	if _, _, err := c.readResponse(25); err != nil {
		if !isReply(err) {
			return fail("RCPT", err)
		}
		if first == nil {
			first = &CommandError{"RCPT", err}
		}
	} else {
		c.rcpts = append(c.rcpts, to)
	}
	if _, _, err := c.readResponse(354); err != nil {
		return fail("DATA", err)
	}
	if first != nil {
		// RFC 2920 3.1: a server that took DATA after refusing MAIL or RCPT is sent an empty
		// message, a single dot; its reply to it says nothing of the mail.
		w.WriteString(".\r\n")
		if w.Flush() == nil {
			c.readResponse(250)
		}
		return nil, first
	}
	return &DataCommand{client: c, wc: c.text.DotWriter()}, nil
}

// isReply says whether err is the server's reply to a command, not an error of the session.
func isReply(err error) bool {
	_, ok := err.(*SMTPError)
	return ok
}
