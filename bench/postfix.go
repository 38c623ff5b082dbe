package bench

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"time"
)

// postfix is a throwaway Postfix instance relaying everything from loopback to an smtp-sink.
// Its configuration and queue live under its own directory; the machine's /etc/postfix is only
// read (Postfix's list of its own files, meta_directory), never written.
type postfix struct {
	dir      string
	keep     bool
	bin      string // the postfix command
	smtp     string // Postfix's smtpd
	sinkAddr string
	sink     *exec.Cmd
	sinkDone chan struct{}

	mu        sync.Mutex
	cond      *sync.Cond
	delivered int // smtp-sink's message counter
}

// startPostfix starts smtp-sink and a Postfix instance in a new directory of its own under the
// system's temporary directory, which Postfix's daemons (user postfix) can reach whoever runs
// the bench; keep leaves it after Stop. It says why when it cannot.
func startPostfix(ctx context.Context, keep bool) (*postfix, error) {
	var progs [2]string
	for i, prog := range []string{"postfix", "smtp-sink"} {
		var err error
		if progs[i], err = lookPath(prog); err != nil {
			return nil, fmt.Errorf("%s is not installed (Debian: apt-get install postfix)", prog)
		}
	}
	if os.Geteuid() != 0 {
		return nil, errors.New("the Postfix baseline needs root, as Postfix's master does")
	}
	owner, err := user.Lookup("postfix")
	if err != nil {
		return nil, errors.New("no postfix user: install Debian's postfix package")
	}
	uid, err := strconv.Atoi(owner.Uid)
	if err != nil {
		return nil, fmt.Errorf("postfix user: %w", err)
	}
	dir, err := os.MkdirTemp("", "certmail-bench-postfix")
	if err != nil {
		return nil, err
	}
	p := &postfix{dir: dir, keep: keep, bin: progs[0], sinkDone: make(chan struct{})}
	p.cond = sync.NewCond(&p.mu)
	defer func() {
		if p.sink == nil && !keep { // failed before anything started
			os.RemoveAll(dir)
		}
	}()
	if p.smtp, err = freePort(); err != nil {
		return nil, err
	}
	if p.sinkAddr, err = freePort(); err != nil {
		return nil, err
	}
	for _, d := range []string{"etc", "queue", "data"} {
		if err := os.MkdirAll(filepath.Join(dir, d), 0o755); err != nil {
			return nil, err
		}
	}
	// Postfix's daemons run as the postfix user, which must cross the directory (os.MkdirTemp
	// makes it 0700); its master wants to own data_directory.
	if err := os.Chmod(dir, 0o711); err != nil {
		return nil, err
	}
	if err := os.Chown(filepath.Join(dir, "data"), uid, -1); err != nil {
		return nil, fmt.Errorf("postfix data directory: %w", err)
	}
	if err := os.WriteFile(filepath.Join(dir, "etc", "main.cf"), []byte(p.mainCF()), 0o644); err != nil {
		return nil, err
	}
	if err := os.WriteFile(filepath.Join(dir, "etc", "master.cf"), []byte(p.masterCF()), 0o644); err != nil {
		return nil, err
	}

	// smtp-sink as the next hop: it takes every message and counts them (-c).
	p.sink = exec.Command(progs[1], "-u", "nobody", "-c", p.sinkAddr, "1024")
	out, err := p.sink.StdoutPipe()
	if err != nil {
		return nil, err
	}
	if err := p.sink.Start(); err != nil {
		return nil, fmt.Errorf("smtp-sink: %w", err)
	}
	go func() {
		defer close(p.sinkDone)
		sc := bufio.NewScanner(out)
		sc.Split(splitCR)
		for sc.Scan() {
			if n, ok := sinkCount(sc.Text()); ok {
				p.mu.Lock()
				p.delivered = n
				p.cond.Broadcast()
				p.mu.Unlock()
			}
		}
	}()
	if out, err := p.postfix(ctx, "start"); err != nil {
		p.Stop()
		return nil, fmt.Errorf("postfix start: %v\n%s(its log: %s)", err, out, filepath.Join(dir, "postfix.log"))
	}
	if err := waitListening(p.smtp, 30*time.Second); err != nil {
		p.Stop()
		return nil, fmt.Errorf("postfix did not listen: %v (its log: %s)", err, filepath.Join(dir, "postfix.log"))
	}
	return p, nil
}

// mainCF is the instance's main.cf: relay whatever loopback clients send to the sink. The
// queue is Postfix's own, durable as shipped; only concurrency limits are raised so Postfix
// can use the connections the bench offers.
func (p *postfix) mainCF() string {
	return fmt.Sprintf(`compatibility_level = 3.6
config_directory = %[1]s/etc
queue_directory = %[1]s/queue
data_directory = %[1]s/data
meta_directory = /etc/postfix
mail_owner = postfix
setgid_group = postdrop
myhostname = bench.localhost
mydestination =
inet_interfaces = 127.0.0.1
inet_protocols = ipv4
mynetworks = 127.0.0.0/8
relayhost = [127.0.0.1]:%[2]s
smtpd_relay_restrictions = permit_mynetworks, reject
alias_maps =
alias_database =
local_recipient_maps =
smtp_tls_security_level = none
smtpd_tls_security_level = none
maillog_file = %[1]s/postfix.log
maillog_file_prefixes = %[1]s
default_process_limit = 200
default_destination_concurrency_limit = 100
smtp_destination_concurrency_limit = 100
relay_destination_concurrency_limit = 100
`, p.dir, port(p.sinkAddr))
}

// masterCF runs the services a relay needs, none chrooted, smtpd on the bench's port.
func (p *postfix) masterCF() string {
	return p.smtp + ` inet n - n - - smtpd
pickup    unix  n       -       n       60      1       pickup
cleanup   unix  n       -       n       -       0       cleanup
qmgr      unix  n       -       n       300     1       qmgr
rewrite   unix  -       -       n       -       -       trivial-rewrite
bounce    unix  -       -       n       -       0       bounce
defer     unix  -       -       n       -       0       bounce
trace     unix  -       -       n       -       0       bounce
verify    unix  -       -       n       -       1       verify
flush     unix  n       -       n       1000?   0       flush
proxymap  unix  -       -       n       -       -       proxymap
smtp      unix  -       -       n       -       -       smtp
relay     unix  -       -       n       -       -       smtp
showq     unix  n       -       n       -       -       showq
error     unix  -       -       n       -       -       error
retry     unix  -       -       n       -       -       error
discard   unix  -       -       n       -       -       discard
anvil     unix  -       -       n       -       1       anvil
scache    unix  -       -       n       -       1       scache
postlog   unix-dgram n  -       n       -       1       postlogd
`
}

// postfix runs `postfix -c DIR/etc VERB`. Postfix writes its errors to the terminal only when
// there is one, and to the instance's log file otherwise.
func (p *postfix) postfix(ctx context.Context, verb string) ([]byte, error) {
	cmd := exec.CommandContext(ctx, p.bin, "-c", filepath.Join(p.dir, "etc"), verb)
	out, err := cmd.CombinedOutput()
	if err != nil {
		if b, rerr := os.ReadFile(filepath.Join(p.dir, "postfix.log")); rerr == nil {
			out = append(out, tail(b, 2000)...)
		}
	}
	return out, err
}

// Stop stops Postfix and the sink.
func (p *postfix) Stop() {
	p.postfix(context.Background(), "stop")
	if p.sink != nil && p.sink.Process != nil {
		p.sink.Process.Kill()
		p.sink.Wait()
		<-p.sinkDone
	}
	if !p.keep {
		os.RemoveAll(p.dir)
	}
}

func (p *postfix) count() int {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.delivered
}

// settle waits until smtp-sink has n messages more than base.
func (p *postfix) settle(ctx context.Context, base, n int) error {
	stop := context.AfterFunc(ctx, func() { p.mu.Lock(); p.cond.Broadcast(); p.mu.Unlock() })
	defer stop()
	limit := time.AfterFunc(10*time.Minute, func() { p.mu.Lock(); p.cond.Broadcast(); p.mu.Unlock() })
	defer limit.Stop()
	deadline := time.Now().Add(10 * time.Minute)
	p.mu.Lock()
	defer p.mu.Unlock()
	for p.delivered < base+n {
		if err := ctx.Err(); err != nil {
			return err
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("bench: postfix relayed %d of %d messages in 10 minutes (its log: %s)", p.delivered-base, n, filepath.Join(p.dir, "postfix.log"))
		}
		p.cond.Wait()
	}
	return nil
}

// point relays n messages through Postfix and times them until smtp-sink has them all.
func (p *postfix) point(ctx context.Context, source string, size, conc, n int) (Point, error) {
	base := p.count()
	master := p.masterPID()
	cpu0, _ := treeCPU(master)
	start := time.Now()
	if err := runSource(ctx, source, p.smtp, size, conc, n); err != nil {
		return Point{}, err
	}
	if err := p.settle(ctx, base, n); err != nil {
		return Point{}, err
	}
	pt := Point{Server: "postfix", Size: size, Concurrency: conc, Messages: n, Elapsed: time.Since(start)}
	if cpu1, err := treeCPU(master); err == nil && master > 0 {
		pt.CPU = cpu1 - cpu0
	}
	return pt, nil
}

// masterPID is the process ID of the instance's master, whose descendants are all of Postfix.
func (p *postfix) masterPID() int {
	b, err := os.ReadFile(filepath.Join(p.dir, "queue", "pid", "master.pid"))
	if err != nil {
		return 0
	}
	pid, _ := strconv.Atoi(strings.TrimSpace(string(b)))
	return pid
}

func port(addr string) string {
	_, p, _ := strings.Cut(addr, ":")
	return p
}

func tail(b []byte, n int) []byte {
	if len(b) > n {
		b = b[len(b)-n:]
	}
	return b
}

// sinkCount reads the message count from one update of smtp-sink -c: "sess=3 quit=3 mesg=12".
func sinkCount(line string) (int, bool) {
	_, m, ok := strings.Cut(line, "mesg=")
	if !ok {
		return 0, false
	}
	n, err := strconv.Atoi(strings.TrimSpace(m))
	return n, err == nil && n >= 0
}

// splitCR splits smtp-sink's counter output, which ends each update with a carriage return.
func splitCR(data []byte, atEOF bool) (int, []byte, error) {
	if i := bytes.IndexAny(data, "\r\n"); i >= 0 {
		return i + 1, data[:i], nil
	}
	if atEOF && len(data) > 0 {
		return len(data), data, nil
	}
	return 0, nil, nil
}

// waitListening waits until something accepts connections at addr.
func waitListening(addr string, limit time.Duration) error {
	deadline := time.Now().Add(limit)
	for {
		c, err := net.DialTimeout("tcp", addr, time.Second)
		if err == nil {
			c.Close()
			return nil
		}
		if time.Now().After(deadline) {
			return err
		}
		time.Sleep(50 * time.Millisecond)
	}
}
