package postfixtest

import (
	"net/smtp"
	"strings"
	"testing"
)

// An instance takes mail for its mailboxes into their Maildirs, adding its Received field, and
// refuses an address of the same domain that it does not know.
func TestMaildirDelivery(t *testing.T) {
	Skip(t)
	p := Start(t, Config{Hostname: "mx.b.example", Mailboxes: []string{"bob@b.example", "alice@a.example"}})
	msg := "From: carol@c.example\r\nTo: bob@b.example\r\nSubject: hello\r\n\r\nHello, Bob.\r\n"
	if err := smtp.SendMail(p.Addr, nil, "carol@c.example", []string{"bob@b.example"}, []byte(msg)); err != nil {
		t.Fatalf("send to bob: %v\n%s", err, p.tail())
	}
	got := string(p.Wait(t, "bob@b.example", "Hello, Bob"))
	if !strings.Contains(got, "by mx.b.example (Postfix)") || !strings.Contains(got, "Delivered-To: bob@b.example") {
		t.Errorf("the delivered message lacks Postfix's fields:\n%s", got)
	}
	if m, _ := p.Mail("alice@a.example"); len(m) != 0 {
		t.Errorf("alice got bob's mail")
	}
	err := smtp.SendMail(p.Addr, nil, "carol@c.example", []string{"nobody@b.example"}, []byte(msg))
	if err == nil || !strings.Contains(err.Error(), "550") {
		t.Errorf("mail to an unknown mailbox: %v, want 550", err)
	}
}
