package smtp

// certmail: this file is certmail's, not upstream's (third_party/README.md). Upstream's client
// waits for each command's reply before it sends the next (emersion/go-smtp#203).

import (
	"errors"
	"strconv"
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

	refused, broken := c.readEnvelope(to)
	if broken != nil {
		return nil, firstOf(refused, broken)
	}
	if _, _, err := c.readResponse(354); err != nil {
		return nil, firstOf(refused, &CommandError{"DATA", err})
	}
	if refused != nil {
		// RFC 2920 3.1: a server that took DATA after refusing MAIL or RCPT is sent an empty
		// message, a single dot; its reply to it says nothing of the mail.
		w.WriteString(".\r\n")
		if w.Flush() == nil {
			c.readResponse(250)
		}
		return nil, refused
	}
	return &DataCommand{client: c, wc: c.text.DotWriter()}, nil
}

// isReply says whether err is the server's reply to a command, not an error of the session.
func isReply(err error) bool {
	_, ok := err.(*SMTPError)
	return ok
}

// Mail is one mail for SendMany: its sender, its one recipient, and its message.
type Mail struct {
	From        string
	MailOptions *MailOptions
	To          string
	RcptOptions *RcptOptions
	Data        []byte
}

// Send hands the server one mail, msg, for one recipient: SendMany with one mail.
func (c *Client) Send(from string, mopts *MailOptions, to string, ropts *RcptOptions, msg []byte) error {
	return c.SendMany([]Mail{{From: from, MailOptions: mopts, To: to, RcptOptions: ropts, Data: msg}})[0]
}

// SendMany hands the server the mails, each for one recipient, and returns each mail's error:
// nil when the server took it.
//
// When the server offers PIPELINING and CHUNKING (RFC 3030), all of them go out in one write —
// each as MAIL FROM, RCPT TO and the message as one "BDAT size LAST" chunk, with RSET before
// every mail after the first (RFC 2920 3.1 lets RSET, MAIL and RCPT stand anywhere in a group,
// and RFC 3030 4.2 lets BDAT be pipelined) — and the replies are read after it: one round trip
// for them all, and no dot-stuffing. A chunk follows its command whatever the replies before it
// say, and a server reads it even when it refuses it (RFC 3030 2), so a refused MAIL or RCPT
// leaves the session where Transaction's would, and the RSET after it starts the next mail
// clean. Otherwise each mail is Transaction, the message and its final dot, in turn.
//
// An error is a *CommandError naming the first command of its mail that failed: "MAIL",
// "RCPT", "DATA", or, for the message itself, "BDAT" or "end of DATA": the reply to the
// message is what says whether the server took the mail. An Err that is not an *SMTPError
// ended the session; the mails after it then have it too, at MAIL, for none of their replies
// came.
func (c *Client) SendMany(mails []Mail) []error {
	errs := make([]error, len(mails))
	if err := c.hello(); err != nil {
		for i := range errs {
			errs[i] = &CommandError{"MAIL", err}
		}
		return errs
	}
	_, pipelining := c.ext["PIPELINING"]
	_, chunking := c.ext["CHUNKING"]
	if !pipelining || !chunking || c.lmtp {
		for i, m := range mails {
			errs[i] = c.sendData(m)
		}
		return errs
	}

	// As for DATA, the messages are written without a deadline; their replies have theirs.
	w := c.text.W
	var sent []int // the mails written, in order
	for i, m := range mails {
		mail, err := c.mailCommand(m.From, m.MailOptions)
		if err != nil {
			errs[i] = &CommandError{"MAIL", err}
			continue
		}
		rcpt, err := c.rcptCommand(m.To, m.RcptOptions)
		if err != nil {
			errs[i] = &CommandError{"RCPT", err}
			continue
		}
		if len(sent) > 0 {
			w.WriteString("RSET\r\n")
		}
		w.WriteString(mail)
		w.WriteString("\r\n")
		w.WriteString(rcpt)
		w.WriteString("\r\nBDAT ")
		w.WriteString(strconv.Itoa(len(m.Data)))
		w.WriteString(" LAST\r\n")
		w.Write(m.Data)
		sent = append(sent, i)
	}
	if len(sent) == 0 {
		return errs
	}
	defer c.conn.SetDeadline(time.Time{})
	broken := w.Flush()
	for k, i := range sent {
		if broken == nil {
			if k > 0 {
				c.conn.SetDeadline(time.Now().Add(c.CommandTimeout))
				if _, _, err := c.readResponse(250); err != nil && !isReply(err) {
					broken = err
				}
				// A refused RSET leaves the next MAIL to say whether a mail can begin.
			}
			if broken == nil {
				errs[i] = c.readChunked(mails[i].To)
			}
			var ce *CommandError
			if errors.As(errs[i], &ce) && !isReply(ce.Err) {
				broken = ce.Err
				continue
			}
		}
		if broken != nil {
			errs[i] = &CommandError{"MAIL", broken}
		}
	}
	return errs
}

// sendData hands one mail with Transaction, the message and its final dot.
func (c *Client) sendData(m Mail) error {
	w, err := c.Transaction(m.From, m.MailOptions, m.To, m.RcptOptions)
	if err != nil {
		return err
	}
	if _, err := w.Write(m.Data); err != nil {
		return &CommandError{"end of DATA", err}
	}
	if _, err := w.CloseWithResponse(); err != nil {
		return &CommandError{"end of DATA", err}
	}
	return nil
}

// readChunked reads the replies to one mail's MAIL, RCPT and BDAT: the error of the first that
// failed, or of the session.
func (c *Client) readChunked(to string) error {
	c.conn.SetDeadline(time.Now().Add(c.CommandTimeout))
	refused, broken := c.readEnvelope(to)
	if broken != nil {
		return firstOf(refused, broken)
	}
	c.conn.SetDeadline(time.Now().Add(c.SubmissionTimeout))
	if _, _, err := c.readResponse(250); err != nil {
		// After a refusal the reply to the chunk says nothing of the mail.
		return firstOf(refused, &CommandError{"BDAT", err})
	}
	if refused != nil {
		return refused
	}
	return nil
}

// readEnvelope reads the replies to a pipelined MAIL FROM and RCPT TO for to. Both are read,
// whatever the first said, so that the next command meets the reply that is its own. refused
// is the first the server refused; broken, an error that ended the session, named by the
// command whose reply it cut.
func (c *Client) readEnvelope(to string) (refused, broken *CommandError) {
	c.rcpts = nil
	if _, _, err := c.readResponse(250); err != nil {
		if !isReply(err) {
			return nil, &CommandError{"MAIL", err}
		}
		refused = &CommandError{"MAIL", err}
	}
	if _, _, err := c.readResponse(25); err != nil {
		if !isReply(err) {
			return refused, &CommandError{"RCPT", err}
		}
		if refused == nil {
			refused = &CommandError{"RCPT", err}
		}
	} else {
		c.rcpts = append(c.rcpts, to)
	}
	return refused, nil
}

// firstOf is a mail's error once err ended it: the first refusal, which says why (a server may
// refuse MAIL with 421 and close the session), or else err.
func firstOf(refused, err *CommandError) error {
	if refused != nil {
		return refused
	}
	return err
}
