package web

import (
	"crypto/hmac"
	"errors"
	"fmt"
	"io"
	"mime/multipart"
	"net/http"
	"slices"
	"strconv"
	"strings"

	"certmail/agent"
	"certmail/api"
	"certmail/mailfmt"
	"certmail/store"
)

// The compose form is multipart/form-data with the fields of a JSON submission (compose.go):
// it becomes a jsonSubmission, is composed into a message, checked by mailfmt.ParseSubmission and
// handed to agent.Submit, exactly as POST /api/v1/messages does with JSON.

// composeForm is what the form sent. Password is never written back into a page.
type composeForm struct {
	CSRF              string
	To, Subject, Text string
	Mode, Deadline    string
	Receipt, Notify   string
	Password, Hint    string
	Files             []api.Attachment
}

// maxFormParts bounds the parts of one compose form: its ten fields and the files.
const maxFormParts = 200

// readComposeForm reads the form from a body of at most max bytes. Files stay in memory: the body
// limit bounds them, and they are headed for one message in memory anyway. On an error the fields
// read so far are returned with it, to fill the form again.
func readComposeForm(r *http.Request, max int64, w http.ResponseWriter) (*composeForm, error) {
	f := &composeForm{}
	r.Body = http.MaxBytesReader(w, r.Body, max)
	mr, err := r.MultipartReader()
	if err != nil {
		return f, err // and so no CSRF token: the form is refused as not this site's
	}
	for n := 0; ; n++ {
		p, err := mr.NextPart()
		if errors.Is(err, io.EOF) {
			return f, nil
		}
		if err != nil {
			return f, err
		}
		if n >= maxFormParts {
			return f, &fieldError{"attachments", fmt.Sprintf("more than %d files; send fewer in one message", maxFormParts-10)}
		}
		data, err := io.ReadAll(p)
		if err != nil {
			return f, err
		}
		name := p.FormName()
		if name == "attachments" {
			if p.FileName() == "" && len(data) == 0 {
				continue // the empty part a browser sends when no file was chosen
			}
			f.Files = append(f.Files, api.Attachment{Name: p.FileName(), ContentType: uploadType(p), Data: data})
			continue
		}
		v := string(data)
		switch name {
		case "csrf":
			f.CSRF = v
		case "to":
			f.To = v
		case "subject":
			f.Subject = v
		case "text":
			f.Text = v
		case "mode":
			f.Mode = v
		case "deadline":
			f.Deadline = strings.TrimSpace(v)
		case "receipt":
			f.Receipt = v
		case "notify":
			f.Notify = v
		case "password":
			f.Password = v
		case "hint":
			f.Hint = strings.TrimSpace(v)
		}
	}
}

// uploadType is the media type the browser gave a file, or application/octet-stream when it is
// one a file may not carry in a message (the person chose a file, not a type).
func uploadType(p *multipart.Part) string {
	ct := p.Header.Get("Content-Type")
	if t, err := attachmentType("", ct); err == nil {
		return t
	}
	return "application/octet-stream"
}

// recipientList splits the recipients field: addresses separated by commas, semicolons, spaces
// or line breaks.
func recipientList(s string) []string {
	return strings.FieldsFunc(s, func(r rune) bool {
		return r == ',' || r == ';' || r == ' ' || r == '\t' || r == '\r' || r == '\n'
	})
}

func (f *composeForm) submission() *jsonSubmission {
	return &jsonSubmission{To: recipientList(f.To), Subject: f.Subject, Text: f.Text, Attachments: f.Files,
		Mode: f.Mode, Deadline: f.Deadline, Receipt: f.Receipt, Notify: f.Notify, Password: f.Password, Hint: f.Hint}
}

type choice struct{ Value, Label string }

type composeData struct {
	senderPage
	Form                      *composeForm
	Errors                    map[string]string // by field name
	Error                     string            // about the whole message
	Refiled                   bool              // files were sent but must be chosen again
	Modes, Receipts, Notifies []choice
	MaxSize                   string
}

func (s *Server) composeData(c session, u store.User, f *composeForm) composeData {
	if f == nil {
		f = &composeForm{}
	}
	d := composeData{senderPage: s.senderPage("New certified message", c, u), Form: f, Errors: map[string]string{},
		MaxSize: humanSize(s.limits().MaxBytes)}
	d.Modes = []choice{{"cem-ip", "cem-ip (recommended): " + modeWords("cem-ip")}, {"cem-nsr", "cem-nsr: " + modeWords("cem-nsr")},
		{"cem", "cem: " + modeWords("cem")}}
	d.Receipts = []choice{{string(mailfmt.ReceiptFull), "full: with a copy of the message"},
		{string(mailfmt.ReceiptShort), "short: the files' names, sizes and fingerprints"},
		{string(mailfmt.ReceiptSummary), "summary: the certification data only"}}
	d.Notifies = []choice{{string(mailfmt.NotifyStandard), "every receipt"}, {string(mailfmt.NotifyNoWarning), "every receipt but the warning"},
		{string(mailfmt.NotifyFailuresOnly), "only when something goes wrong"}, {string(mailfmt.NotifyNoneForSender), "none: I follow my messages here"}}
	return d
}

// composePage is GET /messages/new: the empty form.
func (s *Server) composePage(w http.ResponseWriter, r *http.Request) {
	c, u, ok := s.signedIn(w, r)
	if !ok {
		return
	}
	s.render(w, r, http.StatusOK, "sender_compose", s.composeData(c, u, nil))
}

// compose is POST /messages: the form becomes a certified message, or comes back with each
// error beside its field and the values kept (never the passwords, and files must be chosen
// again: a browser cannot be given them back).
func (s *Server) compose(w http.ResponseWriter, r *http.Request) {
	c, u, ok := s.signedIn(w, r)
	if !ok {
		return
	}
	lim := s.limits()
	f, err := readComposeForm(r, lim.MaxBytes+maxForm, w)
	if !s.csrfMatches(f.CSRF, sessionScope(c)) {
		s.formExpired(w, r, "/messages/new")
		return
	}
	again := func(status int, field, msg string) {
		d := s.composeData(c, u, f)
		if field == "" {
			d.Error = msg
		} else {
			d.Errors[field] = msg
		}
		d.Refiled = len(f.Files) > 0
		f.Password = ""
		note(w, "field")
		s.render(w, r, status, "sender_compose", d)
	}
	var tooBig *http.MaxBytesError
	switch {
	case errors.As(err, &tooBig):
		f.Files = nil
		again(http.StatusRequestEntityTooLarge, "attachments", fmt.Sprintf("The files are larger than this agent accepts in one message (%s in all): send fewer or smaller files.", humanSize(lim.MaxBytes)))
		return
	case err != nil:
		var fe *fieldError
		if errors.As(err, &fe) {
			again(http.StatusUnprocessableEntity, fe.Field, sentence(fe.Message))
			return
		}
		again(http.StatusBadRequest, "", "The form did not arrive whole. Fill it in again.")
		return
	}
	now := s.now()
	js := f.submission()
	raw, err := js.compose(u.Address, s.ag.Name(), now, s.rand)
	if err != nil {
		var fe *fieldError
		if !errors.As(err, &fe) {
			s.senderError(w, r, err)
			return
		}
		// "to[1]" and "attachments[0].name" are the fields "to" and "attachments" of the form.
		field, _, _ := strings.Cut(fe.Field, "[")
		again(http.StatusUnprocessableEntity, field, sentence(fe.Message))
		return
	}
	want, _ := js.recipients()
	sub, err := mailfmt.ParseSubmission(raw, lim, now, mailfmt.Options{})
	if err != nil {
		var me *mailfmt.Error
		if !errors.As(err, &me) {
			s.senderError(w, r, err)
			return
		}
		field, msg := submissionField(me, len(f.Files) > 0)
		again(me.HTTPStatus, field, msg)
		return
	}
	if sub.From != u.Address || !slices.Equal(sub.Recipients, want) {
		// compose wrote From and To from these very values: a difference is a bug, not the sender's.
		s.senderError(w, r, fmt.Errorf("web: composed message reads back as from %s to %v, want %s to %v", sub.From, sub.Recipients, u.Address, want))
		return
	}
	o := sub.Options
	postings, err := s.ag.Submit(r.Context(), agent.Submission{Sender: u.Address, Recipients: sub.Recipients, Message: sub.Message,
		Subject: sub.Subject, Protocol: o.Mode, Deadline: o.Deadline, Receipt: string(o.Receipt), Notify: string(o.Notify),
		Password: o.Password, Hint: o.PasswordHint, Client: clientIP(r), Attachments: sub.Attachments})
	if err != nil {
		var ae *agent.Error
		if errors.As(err, &ae) && ae.Kind == agent.KindInvalid {
			field := ""
			switch {
			case strings.HasPrefix(ae.Message, "deadline"):
				field = "deadline"
			case strings.HasPrefix(ae.Message, "recipient"), strings.HasPrefix(ae.Message, "no recipient"):
				field = "to"
			case strings.HasPrefix(ae.Message, "mode"):
				field = "mode"
			}
			again(http.StatusUnprocessableEntity, field, sentence(ae.Message))
			return
		}
		s.senderError(w, r, err)
		return
	}
	s.metrics.submissions.Add(1)
	http.Redirect(w, r, "/messages/"+postings[0].Label.String()+"?posted="+strconv.Itoa(len(postings)), http.StatusSeeOther)
}

// csrfMatches checks a token read from a multipart form, as csrfOK does for urlencoded ones.
func (s *Server) csrfMatches(token, scope string) bool {
	return token != "" && hmac.Equal([]byte(token), []byte(s.csrfToken(scope)))
}

// optionFields maps the Certmail-* header fields mailfmt names in its errors to the form's
// fields and to the words a person filling in the form knows them by. Longest names first:
// Certmail-Password-Hint begins with Certmail-Password.
var optionFields = []struct{ header, field, words string }{
	{mailfmt.HeaderPasswordHint, "hint", "the password hint"},
	{mailfmt.HeaderPassword, "password", "the message password"},
	{mailfmt.HeaderDeadline, "deadline", "the deadline"},
	{mailfmt.HeaderReceipt, "receipt", "the receipt form"},
	{mailfmt.HeaderNotify, "notify", "the notification policy"},
	{mailfmt.HeaderMode, "mode", "the mode"},
}

// submissionField says which field of the form a refusal of the composed message is about, and
// says it in the form's words.
func submissionField(me *mailfmt.Error, files bool) (field, msg string) {
	msg = me.Message
	switch me.Code {
	case mailfmt.CodeSize:
		field = "text"
		if files {
			field = "attachments"
		}
		return field, sentence(msg)
	case mailfmt.CodeRecipients:
		return "to", sentence(msg)
	case mailfmt.CodeOption, mailfmt.CodeUTF8:
		first := len(msg)
		for _, o := range optionFields {
			if i := strings.Index(msg, o.header); i >= 0 && i < first {
				first, field = i, o.field
			}
		}
		for _, o := range optionFields {
			msg = strings.ReplaceAll(msg, o.header+": ", o.words+": ")
			msg = strings.ReplaceAll(msg, o.header, o.words)
		}
		return field, sentence(msg)
	}
	return "", sentence(msg)
}
