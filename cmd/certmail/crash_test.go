package main

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"io"
	"math/rand/v2"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/emersion/go-sasl"
	"github.com/emersion/go-smtp"

	"certmail/agent"
	"certmail/evidence"
	"certmail/protocol"
	"certmail/store"
	"certmail/store/sqlite"
)

var labelRE = regexp.MustCompile(`label ([0-9A-HJKMNP-TV-Z]{26})`)

// submitter is one mail client: it logs in once and submits messages on the same connection,
// as a mail program does, until the agent stops answering.
type submitter struct {
	c *smtp.Client
}

func dialSubmitter(p *agentProc, pool *x509.CertPool) (*submitter, error) {
	c, err := smtp.DialStartTLS(p.smtp, &tls.Config{RootCAs: pool, ServerName: "localhost"})
	if err != nil {
		return nil, err
	}
	if err := c.Auth(sasl.NewPlainClient("", "alice@localhost", "correct horse battery")); err != nil {
		c.Close()
		return nil, err
	}
	return &submitter{c: c}, nil
}

// submit sends message n and returns the label of a 250, or an error when the agent did not
// acknowledge it (refused, or killed before answering).
func (s *submitter) submit(n int, deadline time.Time) (string, error) {
	if err := s.c.Mail("alice@localhost", nil); err != nil {
		return "", err
	}
	if err := s.c.Rcpt(fmt.Sprintf("rcpt%d@example.org", n), nil); err != nil {
		return "", err
	}
	w, err := s.c.Data()
	if err != nil {
		return "", err
	}
	fmt.Fprintf(w, "From: alice@localhost\r\nTo: rcpt%d@example.org\r\nSubject: crash %d\r\nCertmail-Deadline: %s\r\n\r\nmessage %d\r\n",
		n, n, deadline.UTC().Format(time.RFC3339), n)
	resp, err := w.CloseWithResponse() // any reply but 250 is an error
	if err != nil {
		return "", err
	}
	m := labelRE.FindStringSubmatch(resp.StatusText)
	if m == nil {
		return "", fmt.Errorf("250 without a label: %q", resp.StatusText)
	}
	return m[1], nil
}

// kill SIGKILLs the agent and waits for it to be gone.
func (p *agentProc) kill() {
	p.cmd.Process.Signal(syscall.SIGKILL)
	p.cmd.Wait()
}

// killRig starts what a kill test needs: the agent (with extra configuration) and alice's
// account, the sink beyond it, the binary to restart it with, its CA, a random source, and the
// number of kills (from the environment variable env, else n). It skips under -short.
func killRig(t *testing.T, env string, n int, extra string) (kills int, mx *sink, p *agentProc, bin string, pool *x509.CertPool, rng *rand.Rand) {
	t.Helper()
	if testing.Short() {
		t.Skip("a kill test takes up to a minute; it runs without -short")
	}
	kills = n
	if s := os.Getenv(env); s != "" {
		kills, _ = strconv.Atoi(s)
	}
	mx = newSink(t)
	p = startAgent(t, mx.addr, extra)
	if code, out, errs := p.certmail(t, "correct horse battery\n", "user", "add", "alice@localhost", "--password-stdin"); code != 0 {
		t.Fatalf("user add: %d %s %s", code, out, errs)
	}
	bin, _ = binary()
	pool = x509.NewCertPool()
	ca, _ := os.ReadFile(filepath.Join(p.dir, "data", "ca.crt"))
	pool.AppendCertsFromPEM(ca)
	rng = rand.New(rand.NewPCG(uint64(time.Now().UnixNano()), uint64(n)))
	return kills, mx, p, bin, pool, rng
}

// TestCrashSafety SIGKILLs the agent at random instants during a stream of submissions and
// pickups, restarts it, and checks: every message that got 250 is there with its COP; every
// acceptance that got 200 is delivered; no evidence is duplicated or missing (each bundle
// parses, which refuses repeated notes, and judges valid); and every deadline timer fires
// after the crashes (the items nobody accepted end with a notice of non-delivery).
func TestCrashSafety(t *testing.T) {
	kills, mx, p, bin, pool, rng := killRig(t, "CERTMAIL_KILLS", 50, "[deadlines]\nmin = \"5s\"\ndefault = \"30s\"\n")

	var mu sync.Mutex
	acked := map[string]bool{}    // labels that got 250
	accepted := map[string]bool{} // pickup links whose acceptance got 200
	picked := map[string]bool{}   // pickup links already tried
	n := 0
	lastDeadline := time.Now()

	for round := range kills {
		ctx, cancel := context.WithCancel(context.Background())
		var wg sync.WaitGroup
		for w := range 3 {
			wg.Add(1)
			go func() {
				defer wg.Done()
				for ctx.Err() == nil {
					sub, err := dialSubmitter(p, pool)
					if err != nil {
						time.Sleep(10 * time.Millisecond)
						continue
					}
					for ctx.Err() == nil {
						mu.Lock()
						n++
						i := n
						mu.Unlock()
						deadline := time.Now().Add(20 * time.Second)
						l, err := sub.submit(i, deadline)
						if err != nil {
							break
						}
						mu.Lock()
						acked[l] = true
						if deadline.After(lastDeadline) {
							lastDeadline = deadline
						}
						mu.Unlock()
					}
					sub.c.Close()
				}
			}()
			_ = w
		}
		// A picker accepts every second notification it finds.
		wg.Add(1)
		go func() {
			defer wg.Done()
			for ctx.Err() == nil {
				mx.mu.Lock()
				var links []string
				for _, m := range mx.got {
					if l := linkRE.Find(m.data); l != nil {
						links = append(links, string(l))
					}
				}
				mx.mu.Unlock()
				for _, link := range links {
					mu.Lock()
					done := picked[link]
					picked[link] = true
					mu.Unlock()
					if done || link[len(link)-1]%2 == 0 { // about half the links
						continue
					}
					if acceptLink(p, link) {
						mu.Lock()
						accepted[link] = true
						mu.Unlock()
					}
				}
				time.Sleep(20 * time.Millisecond)
			}
		}()
		time.Sleep(time.Duration(300+rng.IntN(900)) * time.Millisecond)
		p.kill()
		cancel()
		wg.Wait()
		if round < kills-1 {
			p.start(t, bin)
		}
	}
	t.Logf("%d kills, %d submissions tried, %d acknowledged, %d acceptances acknowledged", kills, n, len(acked), len(accepted))
	if len(acked) < kills {
		t.Fatalf("only %d messages acknowledged in %d rounds: the stream did not run; agent log:\n%s", len(acked), kills, p.out)
	}

	// Restart once more and let every deadline pass: the timers must fire after the crashes.
	p.start(t, bin)
	time.Sleep(time.Until(lastDeadline.Add(3 * time.Second)))
	p.cmd.Process.Signal(syscall.SIGTERM)
	p.cmd.Wait()

	st, err := sqlite.Open(filepath.Join(p.dir, "data", dbFile))
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	vkey, _ := os.ReadFile(filepath.Join(p.dir, "data", "agent.pub"))
	keys, _ := evidence.NewKeys(strings.TrimSpace(string(vkey)))
	deliveredLinks := 0
	for l := range acked {
		label, _ := evidence.ParseLabel(l)
		var it store.Item
		var evs []store.Evidence
		var timers []store.Timer
		err := st.View(context.Background(), func(tx store.Tx) error {
			var err error
			if it, err = tx.Item(label); err != nil {
				return err
			}
			if evs, err = tx.Evidence(label); err != nil {
				return err
			}
			timers, err = tx.Timers(label)
			return err
		})
		if err != nil {
			t.Fatalf("acknowledged message %s: %v", l, err)
		}
		b := &evidence.Bundle{Label: label}
		b.AddKey(strings.TrimSpace(string(vkey)))
		types := map[evidence.Type]int{}
		for _, e := range evs {
			nn, err := evidence.ParseNote(e.Note)
			if err != nil {
				t.Fatalf("%s: stored note: %v", l, err)
			}
			b.Notes = append(b.Notes, nn)
			types[nn.Record.Type]++
		}
		enc, err := b.Encode()
		if err != nil {
			t.Fatalf("%s: %v", l, err)
		}
		parsed, err := evidence.ParseBundle(enc)
		if err != nil {
			t.Fatalf("%s: %v", l, err)
		}
		v := protocol.JudgeAt(parsed.Check(keys), time.Now())
		if !v.Valid || types[evidence.COP] != 1 {
			t.Fatalf("%s: evidence not whole (%v):\n%s", l, types, v.Text())
		}
		for typ, c := range types {
			if c > 1 && typ != evidence.RET {
				t.Fatalf("%s: %d %s notes", l, c, typ)
			}
		}
		if !it.State.Final() || len(timers) != 0 {
			var lines []string
			for _, line := range strings.Split(p.out.String(), "\n") {
				if strings.Contains(line, "level=ERROR") || strings.Contains(line, "level=WARN") || strings.Contains(line, "timers") {
					lines = append(lines, line)
				}
			}
			t.Fatalf("%s: state %s with %d timers (%v) left after every deadline passed (%s); the agent's warnings and errors:\n%s",
				l, it.State, len(timers), timers, lastDeadline, strings.Join(lines[max(len(lines)-40, 0):], "\n"))
		}
		if it.State == store.StateDelivered {
			deliveredLinks++
		}
		if it.State == store.StateExpired && types[evidence.NDN] != 1 {
			t.Fatalf("%s: expired without its notice", l)
		}
	}
	// Every acknowledged acceptance is on record, whether or not its message's own 250 reached
	// the client (a kill between the commit and the reply leaves a real item whose 250 was lost).
	for link := range accepted {
		tok := link[strings.LastIndex(link, "/")+1:]
		var it store.Item
		err := st.View(context.Background(), func(tx store.Tx) (err error) { it, err = tx.ItemByToken(agent.TokenHash(tok)); return err })
		if err != nil || it.State != store.StateDelivered {
			t.Errorf("acceptance acknowledged for %s, but the item is %q (%v)", it.Label, it.State, err)
		}
	}
	t.Logf("%d of the %d acknowledged messages delivered; %d acceptances acknowledged", deliveredLinks, len(acked), len(accepted))
}

// acceptLink opens a pickup page and accepts; it reports whether the agent answered 200.
func acceptLink(p *agentProc, link string) bool {
	resp, err := p.client.Get(link)
	if err != nil {
		return false
	}
	page, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != 200 {
		return false
	}
	action, v, ok := parseForm(string(page), "/accept")
	if !ok {
		return false
	}
	u, _ := url.Parse(link)
	target, _ := u.Parse(action)
	resp, err = p.client.PostForm(target.String(), v)
	if err != nil {
		return false
	}
	io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	return resp.StatusCode == http.StatusOK
}
