package main

import (
	"encoding/base64"
	"io"
	"net"
	"net/smtp"
	"net/url"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"certmail/internal/postfixtest"
)

// mailOf is a pattern for the agent's mail of a kind about one label, as its fields name them.
func mailOf(kind, label string) string {
	return `(?s)X-Certmail-Kind: ` + regexp.QuoteMeta(kind) + `\r?\nX-Certmail-Label: ` + label + `\r?\n`
}

// TestPostfixIsTheRecipientsMailServer runs the standalone shape of DESIGN.md §1 with a real
// Postfix as the ordinary mail server of both parties: the agent hands its notifications and
// receipts to Postfix over SMTP, Postfix delivers them into Maildirs, the recipient follows the
// link in the mail Postfix delivered and accepts, and the sender's delivery receipt arrives in
// her Maildir the same way. A recipient Postfix does not know is refused with 550, which the
// agent turns into a signed notice of non-delivery.
func TestPostfixIsTheRecipientsMailServer(t *testing.T) {
	postfixtest.Skip(t)
	mx := postfixtest.Start(t, postfixtest.Config{Hostname: "mx.b.example", Mailboxes: []string{"alice@a.example", "bob@b.example"}})
	p := startAgent(t, mx.Addr, "")
	if code, out, errs := p.certmail(t, "correct horse battery\n", "user", "add", "alice@a.example", "--password-stdin"); code != 0 {
		t.Fatalf("user add: %d %s %s", code, out, errs)
	}
	alice := newSender(t, p, "alice@a.example", "correct horse battery")
	label := alice.send(t, "--to", "bob@b.example", "--subject", "the lease", "--text", "Signed copy attached.")

	// The notification is in bob's Maildir, put there by Postfix, which took it from the agent
	// over SMTP: its Received field, the envelope sender it kept as Return-Path, and the
	// Delivered-To of its virtual delivery agent.
	notice := string(mx.Wait(t, "bob@b.example", mailOf("notification", label)))
	for _, want := range []*regexp.Regexp{
		regexp.MustCompile(`(?m)^Received: from \S+ \(\S+ \[127\.0\.0\.1\]\)\r?\n\s+by mx\.b\.example \(Postfix\) with E?SMTP`),
		regexp.MustCompile(`(?m)^Return-Path: <certmail@localhost>`),
		regexp.MustCompile(`(?m)^Delivered-To: bob@b\.example`),
	} {
		if !want.MatchString(notice) {
			t.Errorf("the notification in bob's Maildir has no %s:\n%s", want, notice)
		}
	}
	if strings.Contains(notice, "Signed copy attached") {
		t.Fatalf("the notification reveals the message:\n%s", notice)
	}
	link := linkRE.FindString(notice)
	if link == "" {
		t.Fatalf("no pickup link in the notification:\n%s", notice)
	}
	mx.Wait(t, "alice@a.example", mailOf("posting-receipt", label))

	// Bob follows the link of the mail Postfix delivered, and accepts.
	code, page := get(t, p.client, link)
	if code != 200 || strings.Contains(page, "Signed copy attached") {
		t.Fatalf("pickup page %d:\n%s", code, page)
	}
	action, fields := form(t, page, "/accept")
	u, _ := url.Parse(link)
	target, _ := u.Parse(action)
	resp, err := p.client.PostForm(target.String(), fields)
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != 200 || !strings.Contains(string(body), "Signed copy attached") {
		t.Fatalf("accept: %d\n%s", resp.StatusCode, body)
	}

	// Alice's delivery receipt comes back through Postfix too, and her bundle says delivered.
	receipt := string(mx.Wait(t, "alice@a.example", mailOf("delivery-receipt", label)))
	if !strings.Contains(receipt, "by mx.b.example (Postfix)") || !strings.Contains(receipt, "Delivered-To: alice@a.example") {
		t.Errorf("the delivery receipt did not come through Postfix:\n%s", receipt)
	}
	if v := alice.verdict(t, label); !strings.Contains(v, "outcome delivered") {
		t.Fatalf("verdict:\n%s", v)
	}

	// Postfix refuses carol, whom it does not know: the agent takes the 550 for a bounce, ends
	// the item and tells alice, through Postfix, with a notice of non-delivery.
	lost := alice.send(t, "--to", "carol@b.example", "--subject", "the lost one", "--text", "Hello?")
	mx.Wait(t, "alice@a.example", mailOf("non-delivery", lost))
	if !strings.Contains(mx.Log(), "<carol@b.example>: Recipient address rejected: User unknown in virtual mailbox table") {
		t.Errorf("Postfix did not refuse carol:\n%s", mx.Log())
	}
	if m, err := mx.Mail("carol@b.example"); err != nil || len(m) != 0 {
		t.Errorf("carol has %d messages (%v)", len(m), err)
	}
	if v := alice.verdict(t, lost); !strings.Contains(v, "outcome not-delivered") {
		t.Fatalf("verdict of the bounced notification:\n%s", v)
	}
}

// TestPostfixRelaysSubmissions puts a real Postfix in front of the agent as the sender's own
// MTA: a mail program hands Postfix a message with plain SMTP, and Postfix relays it to the
// agent's submission port as its relayhost, with STARTTLS verified against the agent's CA and
// SASL authentication from a password map. The agent certifies it in alice's name: its 250
// names the label in Postfix's log, the posting receipt goes to alice, the notification to
// bob, and certmail status shows the item. The password Postfix sent appears nowhere in the
// agent's log.
func TestPostfixRelaysSubmissions(t *testing.T) {
	postfixtest.Skip(t)
	mx := newSink(t)
	p := startAgent(t, mx.addr, "")
	const password = "correct horse battery"
	if code, out, errs := p.certmail(t, password+"\n", "user", "add", "alice@a.example", "--password-stdin"); code != 0 {
		t.Fatalf("user add: %d %s %s", code, out, errs)
	}
	ca, err := os.ReadFile(filepath.Join(p.dir, "data", "ca.crt"))
	if err != nil {
		t.Fatal(err)
	}
	_, port, _ := net.SplitHostPort(p.smtp)
	relay := "[127.0.0.1]:" + port
	// TLS at the "secure" level: encryption required and the agent's certificate checked
	// against its CA for the name localhost, as a client on the network would check it.
	mta := postfixtest.Start(t, postfixtest.Config{Hostname: "mta.a.example",
		Main: "relayhost = " + relay + `
smtpd_relay_restrictions = permit_mynetworks, reject
smtp_sasl_auth_enable = yes
smtp_sasl_password_maps = texthash:$config/sasl_passwd
smtp_sasl_security_options = noanonymous
smtp_tls_security_level = secure
smtp_tls_secure_cert_match = localhost
smtp_tls_CAfile = $config/certmail-ca.crt
smtp_tls_loglevel = 1
`,
		Files: map[string]string{
			"sasl_passwd":     relay + " alice@a.example:" + password + "\n",
			"certmail-ca.crt": string(ca),
		}})

	msg := "From: Alice <alice@a.example>\r\nTo: bob@b.example\r\nSubject: the lease\r\n" +
		"Date: " + time.Now().Format(time.RFC1123Z) + "\r\nMessage-ID: <lease.1@a.example>\r\n\r\nSigned copy attached.\r\n"
	if err := smtp.SendMail(mta.Addr, nil, "alice@a.example", []string{"bob@b.example"}, []byte(msg)); err != nil {
		t.Fatalf("submit to Postfix: %v\n%s", err, mta.Log())
	}

	// Postfix logs the agent's 250, which names the label: the agent certified what Postfix
	// relayed, over a verified TLS connection.
	sent := mta.WaitLog(t, `to=<bob@b\.example>, relay=127\.0\.0\.1\[127\.0\.0\.1\]:\d+,.* status=sent \(250 2\.0\.0 certified: label ([0-9A-HJKMNP-TV-Z]{26}) for bob@b\.example\)`)
	label := sent[1]
	mta.WaitLog(t, `Verified TLS connection established to 127\.0\.0\.1\[127\.0\.0\.1\]:\d+`)
	mx.wait(t, "alice@a.example", mailOf("posting-receipt", label))
	notice := mx.wait(t, "bob@b.example", mailOf("notification", label))
	if !linkRE.Match(notice) || strings.Contains(string(notice), "Signed copy attached") {
		t.Fatalf("notification:\n%s", notice)
	}
	alice := newSender(t, p, "alice@a.example", password)
	code, out, errs := alice.run(t, "status", label)
	if code != exitOK || !strings.Contains(out, "subject    the lease") || !strings.Contains(out, "to         bob@b.example") || !strings.Contains(out, "COP") {
		t.Fatalf("status: exit %d\n%s%s", code, out, errs)
	}

	// The agent's log, whole once it has stopped, names alice's login but holds nothing of the
	// password: not as sent with PLAIN or LOGIN, nor in clear.
	p.cmd.Process.Signal(os.Interrupt)
	p.cmd.Wait()
	log := p.out.String()
	if !strings.Contains(log, "smtp auth") || !strings.Contains(log, "alice@a.example") {
		t.Fatalf("the agent did not log Postfix's login:\n%s", log)
	}
	for what, secret := range map[string]string{
		"password":       password,
		"PLAIN response": base64.StdEncoding.EncodeToString([]byte("\x00alice@a.example\x00" + password)),
		"LOGIN response": base64.StdEncoding.EncodeToString([]byte(password)),
	} {
		if strings.Contains(log, secret) {
			t.Errorf("the agent's log shows the %s Postfix sent", what)
		}
	}
}
