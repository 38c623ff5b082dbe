package main

import (
	"context"
	"crypto/x509"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"mime"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/emersion/go-smtp"

	"certmail/api"
	"certmail/evidence"
	"certmail/internal/diskfault"
	"certmail/store"
	"certmail/store/sqlite"
)

// startUnderFaults restarts the agent of p (stopped) with its file operations under a diskfault
// harness, and waits for its banner. Where the harness cannot run the test skips, or fails
// under CERTMAIL_TEST_REQUIRE_ALL=1.
func (p *agentProc) startUnderFaults(t *testing.T, bin string) *diskfault.Process {
	t.Helper()
	cmd := exec.Command(bin, "serve", "--config", p.config)
	pr, pw := io.Pipe()
	cmd.Stdout = pw
	cmd.Stderr = p.out
	proc, err := diskfault.Start(cmd)
	if errors.Is(err, diskfault.ErrUnsupported) && os.Getenv("CERTMAIL_TEST_REQUIRE_ALL") != "1" {
		t.Skipf("%v", err)
	}
	if err != nil {
		t.Fatal(err)
	}
	p.cmd = cmd
	t.Cleanup(func() { cmd.Process.Kill(); cmd.Wait(); proc.Close() })
	p.waitBanner(t, pr, "certmail serve did not start under the harness")
	return proc
}

// apiSubmit posts message n to POST /api/v1/messages as alice and returns the status, the
// content type and the body.
func (p *agentProc) apiSubmit(t *testing.T, n int) (int, string, []byte) {
	t.Helper()
	m := fmt.Sprintf("From: alice@localhost\r\nTo: rcpt%d@example.org\r\nSubject: fault %d\r\n\r\nmessage %d\r\n", n, n, n)
	req, _ := http.NewRequest("POST", "https://localhost/api/v1/messages", strings.NewReader(m))
	req.Header.Set("Content-Type", "message/rfc822")
	req.SetBasicAuth("alice@localhost", "correct horse battery")
	resp, err := p.client.Do(req)
	if err != nil {
		t.Fatalf("POST /api/v1/messages: %v", err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	mt, _, _ := mime.ParseMediaType(resp.Header.Get("Content-Type"))
	return resp.StatusCode, mt, body
}

// TestFaultDiskFullAndFailingSync runs the real agent with its disk failing under it: writes
// to the database, which holds the message bodies too, fail with ENOSPC (a full disk), or their fsync fails with
// EIO (a failing one). While a fault lasts, a submission over SMTP gets 451 with a 4.x.x
// enhanced code and one over the API 503 problem+json; once it is cleared, without a restart,
// the next submissions are certified. In the end every acknowledged message is in the database
// with one COP and its notification and posting receipt queued, and nothing else is: no item,
// COP or mail for a refused submission. An acceptance while the database's fsync fails gets 503
// and no content; the same form, posted again once the fault is gone, releases it.
func TestFaultDiskFullAndFailingSync(t *testing.T) {
	mx := newSink(t)
	p := startAgent(t, mx.addr, "")
	if code, out, errs := p.certmail(t, "correct horse battery\n", "user", "add", "alice@localhost", "--password-stdin"); code != 0 {
		t.Fatalf("user add: %d %s %s", code, out, errs)
	}
	bin, _ := binary()
	p.cmd.Process.Signal(syscall.SIGTERM)
	p.cmd.Wait()
	proc := p.startUnderFaults(t, bin)
	data := filepath.Join(p.dir, "data")
	pool := x509.NewCertPool()
	if ca, err := os.ReadFile(filepath.Join(data, "ca.crt")); err != nil || !pool.AppendCertsFromPEM(ca) {
		t.Fatalf("local CA: %v", err)
	}

	n := 0
	var acked []string
	submit := func(t *testing.T) (label string, code int, enhanced smtp.EnhancedCode) {
		t.Helper()
		n++
		s, err := dialSubmitter(p, pool)
		if err != nil {
			t.Fatalf("connect and log in: %v", err)
		}
		defer s.c.Close()
		l, err := s.submit(n, time.Now().Add(48*time.Hour))
		var se *smtp.SMTPError
		switch {
		case err == nil:
			return l, 250, smtp.EnhancedCode{2, 0, 0}
		case errors.As(err, &se):
			return "", se.Code, se.EnhancedCode
		}
		t.Fatalf("submission %d: %v", n, err)
		return "", 0, smtp.EnhancedCode{}
	}
	certified := func(t *testing.T) {
		t.Helper()
		l, code, _ := submit(t)
		if code != 250 {
			t.Fatalf("SMTP submission after the fault: %d\nagent log:\n%s", code, p.out)
		}
		n++
		status, _, body := p.apiSubmit(t, n)
		var sub api.Submitted
		if status != http.StatusCreated || json.Unmarshal(body, &sub) != nil || len(sub.Messages) != 1 {
			t.Fatalf("API submission after the fault: %d %s", status, body)
		}
		acked = append(acked, l, sub.Messages[0].Label)
	}

	certified(t)
	for _, f := range []struct {
		name string
		diskfault.Fault
	}{
		{"database full", diskfault.Fault{Op: diskfault.Write, Path: filepath.Join(data, dbFile), Err: syscall.ENOSPC}},
		{"database fsync fails", diskfault.Fault{Op: diskfault.Sync, Path: filepath.Join(data, dbFile), Err: syscall.EIO}},
	} {
		t.Run(f.name, func(t *testing.T) {
			before := proc.Failed(f.Op)
			proc.Inject(f.Fault)
			_, code, enh := submit(t)
			n++
			status, mt, body := p.apiSubmit(t, n)
			met := proc.Failed(f.Op) > before
			proc.Clear()
			if code != 451 || enh[0] != 4 {
				t.Errorf("SMTP submission: %d %d.%d.%d, want 451 4.x.x", code, enh[0], enh[1], enh[2])
			}
			var prob struct{ Status int }
			if status != http.StatusServiceUnavailable || mt != "application/problem+json" || json.Unmarshal(body, &prob) != nil || prob.Status != 503 {
				t.Errorf("API submission: %d %s %s, want 503 problem+json", status, mt, body)
			}
			if !met {
				t.Errorf("no %s failed: the fault was not met", f.Op)
			}
			certified(t)
		})
	}

	// The content is released only once the acceptance is durably recorded: not while the
	// database's fsync fails.
	t.Run("acceptance while the database fsync fails", func(t *testing.T) {
		link := string(linkRE.Find(mx.wait(t, "rcpt1@example.org", "pickup")))
		code, page := get(t, p.client, link)
		if code != http.StatusOK {
			t.Fatalf("pickup page: %d", code)
		}
		action, fields := form(t, page, "/accept")
		target := link[:strings.Index(link, "/pickup/")] + action
		accept := func() (int, string) {
			resp, err := p.client.PostForm(target, fields)
			if err != nil {
				t.Fatal(err)
			}
			defer resp.Body.Close()
			b, _ := io.ReadAll(resp.Body)
			return resp.StatusCode, string(b)
		}
		before := proc.Failed(diskfault.Sync)
		proc.Inject(diskfault.Fault{Op: diskfault.Sync, Path: filepath.Join(data, dbFile), Err: syscall.EIO})
		code, body := accept()
		met := proc.Failed(diskfault.Sync) > before
		proc.Clear()
		if code != http.StatusServiceUnavailable || strings.Contains(body, "message 1") || !met {
			t.Fatalf("acceptance with the fsync failing: %d (fault met: %v)\n%s", code, met, body)
		}
		if code, body = accept(); code != http.StatusOK || !strings.Contains(body, "message 1") {
			t.Fatalf("acceptance after the fault: %d\n%s", code, body)
		}
	})

	p.cmd.Process.Signal(syscall.SIGTERM)
	if err := p.cmd.Wait(); err != nil {
		t.Fatalf("the agent's exit: %v\n%s", err, p.out)
	}
	st, err := sqlite.Open(filepath.Join(data, dbFile))
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	err = st.View(context.Background(), func(tx store.Tx) error {
		items, err := tx.ItemsBySender("alice@localhost", 1000, 0)
		if err != nil {
			return err
		}
		if len(items) != len(acked) {
			t.Errorf("%d items stored for %d acknowledged submissions", len(items), len(acked))
		}
		for _, l := range acked {
			label, _ := evidence.ParseLabel(l)
			evs, err := tx.Evidence(label)
			if err != nil {
				return err
			}
			if len(evs) == 0 || evs[0].Type != evidence.COP {
				t.Errorf("acknowledged %s: evidence %v, want its COP first", l, evs)
			}
			out, err := tx.OutboundFor(label)
			if err != nil {
				return err
			}
			kinds := map[string]int{}
			for _, m := range out {
				kinds[m.Kind]++
			}
			if kinds["notification"] != 1 || kinds["posting-receipt"] != 1 {
				t.Errorf("acknowledged %s: mails %v, want one notification and one posting receipt", l, kinds)
			}
			if l != acked[0] {
				continue
			}
			types := map[evidence.Type]int{}
			for _, e := range evs {
				types[e.Type]++
			}
			if types[evidence.DLV] != 1 || types[evidence.ROD] != 1 || kinds["delivery-receipt"] != 1 {
				t.Errorf("accepted %s: evidence %v and mails %v, want one DLV, one ROD and one delivery receipt", l, types, kinds)
			}
		}
		nac, err := tx.OutboundFor(evidence.Label{})
		if len(nac) != 0 {
			t.Errorf("%d mails queued for no item (a NAC?) for refusals that were temporary", len(nac))
		}
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
}
