// Package postfixtest runs a throwaway Postfix for tests: the real MTA of Debian's postfix
// package, with its own configuration, queue, data and mail directories under a new temporary
// directory, listening on a free loopback port. It delivers mail for the addresses a test names
// into Maildirs the test reads, and relays the rest as the test's main.cf lines say. The
// machine's /etc/postfix is only read (Postfix's list of its own files, meta_directory), never
// written, and no system Postfix is started or stopped.
//
// Postfix's master runs as root, so the tests that use this package need root; Skip says so.
package postfixtest

import (
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"
)

// Config is what a test sets of an instance.
type Config struct {
	// Hostname is Postfix's myhostname, which it writes in the Received fields it adds.
	Hostname string
	// Mailboxes are the addresses Postfix delivers itself, each into a Maildir of its own, with
	// the virtual(8) delivery agent; their domains are Postfix's virtual mailbox domains, where
	// any other address is refused as unknown.
	Mailboxes []string
	// Main is more main.cf: a parameter set here replaces the instance's own setting.
	Main string
	// Files are written into the configuration directory before Postfix starts, such as the
	// texthash maps Main names; "$config" in Main stands for that directory. They are root's,
	// mode 0600, as a map holding passwords should be: only a daemon that opens its maps before
	// it drops privileges (smtp(8) its smtp_sasl_password_maps) can read them.
	Files map[string]string
}

// Instance is a running Postfix.
type Instance struct {
	// Addr is where its SMTP server listens, 127.0.0.1:port.
	Addr string
	dir  string
	bin  string
}

// Skip skips t unless a Postfix instance can run here: the postfix command installed and the
// test running as root. Under CERTMAIL_TEST_REQUIRE_ALL=1 (as in CI) it fails t instead.
func Skip(t testing.TB) {
	t.Helper()
	why := ""
	if _, err := lookPath(); err != nil {
		why = "postfix is not installed (Debian: apt-get install postfix)"
	} else if os.Geteuid() != 0 {
		why = "a Postfix instance needs root, as Postfix's master does"
	}
	if why == "" {
		return
	}
	if os.Getenv("CERTMAIL_TEST_REQUIRE_ALL") == "1" {
		t.Fatalf("%s (CERTMAIL_TEST_REQUIRE_ALL=1): install it and run as root, as .ci/run does", why)
	}
	t.Skip(why)
}

// lookPath finds the postfix command, which lives in /usr/sbin, often not in a user's PATH.
func lookPath() (string, error) {
	if p, err := exec.LookPath("postfix"); err == nil {
		return p, nil
	}
	return exec.LookPath("/usr/sbin/postfix")
}

// Start starts an instance and stops it, removing its directory, when t ends.
func Start(t testing.TB, cfg Config) *Instance {
	t.Helper()
	p, err := start(cfg)
	if p != nil {
		t.Cleanup(p.stop)
	}
	if err != nil {
		t.Fatalf("postfix: %v", err)
	}
	return p
}

func start(cfg Config) (*Instance, error) {
	bin, err := lookPath()
	if err != nil {
		return nil, errors.New("not installed (Debian: apt-get install postfix)")
	}
	owner, err := user.Lookup("postfix")
	if err != nil {
		return nil, errors.New("no postfix user: install Debian's postfix package")
	}
	postfixUID, err := strconv.Atoi(owner.Uid)
	if err != nil {
		return nil, fmt.Errorf("postfix user: %w", err)
	}
	// Not t.TempDir: Postfix's daemons, running as the postfix user, and the delivery agent,
	// running as the mailbox owner, must cross every directory above the queue and the
	// Maildirs, and testing makes each level 0700. A short path also keeps the queue's UNIX
	// sockets within the 108 bytes a socket's name may have.
	dir, err := os.MkdirTemp("", "postfixtest")
	if err != nil {
		return nil, err
	}
	if err := os.Chmod(dir, 0o711); err != nil {
		os.RemoveAll(dir)
		return nil, err
	}
	p := &Instance{dir: dir, bin: bin}
	if err := p.configure(cfg, postfixUID); err != nil {
		return p, err
	}
	if out, err := p.postfix("start"); err != nil {
		return p, fmt.Errorf("postfix start: %v\n%s\n%s", err, out, p.tail())
	}
	if err := waitListening(p.Addr, 30*time.Second); err != nil {
		return p, fmt.Errorf("not listening at %s: %v\n%s", p.Addr, err, p.tail())
	}
	return p, nil
}

// mailboxUID owns the Maildirs: nobody, since the tests run as root, as Postfix's master must,
// and virtual(8) delivers as no user ID below virtual_minimum_uid, which is at least 1.
func mailboxUID() (uid, gid int, err error) {
	u, err := user.Lookup("nobody")
	if err != nil {
		return 0, 0, fmt.Errorf("no user nobody to own the Maildirs: %w", err)
	}
	if uid, err = strconv.Atoi(u.Uid); err == nil {
		gid, err = strconv.Atoi(u.Gid)
	}
	return uid, gid, err
}

func (p *Instance) configure(cfg Config, postfixUID int) error {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return err
	}
	p.Addr = l.Addr().String()
	l.Close()
	for _, d := range []string{"etc", "queue", "data", "mail"} {
		if err := os.Mkdir(filepath.Join(p.dir, d), 0o755); err != nil {
			return err
		}
	}
	// Postfix's master wants to own data_directory.
	if err := os.Chown(filepath.Join(p.dir, "data"), postfixUID, -1); err != nil {
		return fmt.Errorf("data directory: %w", err)
	}
	uid, gid, err := mailboxUID()
	if err != nil {
		return err
	}
	if err := os.Chown(filepath.Join(p.dir, "mail"), uid, gid); err != nil {
		return fmt.Errorf("mail directory: %w", err)
	}
	var domains, mailboxes []string
	for _, a := range cfg.Mailboxes {
		local, domain, ok := strings.Cut(a, "@")
		if !ok || local == "" || domain == "" || strings.ContainsAny(a, "/ \t\r\n") {
			return fmt.Errorf("mailbox %q is not an address", a)
		}
		if !slices.Contains(domains, domain) {
			domains = append(domains, domain)
		}
		// The trailing slash makes it a Maildir (virtual(8)).
		mailboxes = append(mailboxes, fmt.Sprintf("%s %s/%s/\n", a, domain, local))
	}
	etc := filepath.Join(p.dir, "etc")
	// virtual(8) reads its map as the postfix user; it holds no secret.
	if err := os.WriteFile(filepath.Join(etc, "vmailbox"), []byte(strings.Join(mailboxes, "")), 0o644); err != nil {
		return err
	}
	for name, content := range cfg.Files {
		if name != filepath.Base(name) || name == "main.cf" || name == "master.cf" || name == "vmailbox" {
			return fmt.Errorf("file %q: a plain name of its own, please", name)
		}
		if err := os.WriteFile(filepath.Join(etc, name), []byte(content), 0o600); err != nil {
			return err
		}
	}
	hostname := cfg.Hostname
	if hostname == "" {
		hostname = "postfix.localhost"
	}
	_, port, _ := net.SplitHostPort(p.Addr)
	main := fmt.Sprintf(`compatibility_level = 3.6
config_directory = %[1]s/etc
queue_directory = %[1]s/queue
data_directory = %[1]s/data
meta_directory = /etc/postfix
mail_owner = postfix
setgid_group = postdrop
myhostname = %[2]s
mydestination =
inet_interfaces = 127.0.0.1
inet_protocols = ipv4
mynetworks = 127.0.0.0/8
smtpd_relay_restrictions = permit_mynetworks, reject_unauth_destination
alias_maps =
alias_database =
local_recipient_maps =
smtp_tls_security_level = none
smtpd_tls_security_level = none
virtual_mailbox_domains = %[3]s
virtual_mailbox_maps = texthash:%[1]s/etc/vmailbox
virtual_mailbox_base = %[1]s/mail
virtual_uid_maps = static:%[4]d
virtual_gid_maps = static:%[5]d
maillog_file = %[1]s/postfix.log
maillog_file_prefixes = %[1]s
`, p.dir, hostname, strings.Join(domains, ", "), uid, gid)
	main = override(main, strings.ReplaceAll(cfg.Main, "$config", etc))
	if err := os.WriteFile(filepath.Join(etc, "main.cf"), []byte(main), 0o644); err != nil {
		return err
	}
	return os.WriteFile(filepath.Join(etc, "master.cf"), []byte(port+masterCF), 0o644)
}

// override appends more to main.cf, dropping the lines of main whose parameters more sets
// (Postfix would warn of each, in every daemon's log lines).
func override(main, more string) string {
	set := map[string]bool{}
	for _, line := range strings.Split(more, "\n") {
		if name, _, ok := strings.Cut(line, "="); ok && !strings.HasPrefix(line, " ") && !strings.HasPrefix(line, "\t") {
			set[strings.TrimSpace(name)] = true
		}
	}
	var b strings.Builder
	for _, line := range strings.SplitAfter(main, "\n") {
		if name, _, ok := strings.Cut(line, "="); !ok || !set[strings.TrimSpace(name)] {
			b.WriteString(line)
		}
	}
	return b.String() + more
}

// masterCF runs the services a relay and a virtual mailbox host need, none chrooted (the
// chroot would need copies of the machine's files), smtpd on the instance's port.
const masterCF = ` inet n - n - - smtpd
pickup    unix  n       -       n       60      1       pickup
cleanup   unix  n       -       n       -       0       cleanup
qmgr      unix  n       -       n       300     1       qmgr
tlsmgr    unix  -       -       n       1000?   1       tlsmgr
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
virtual   unix  -       n       n       -       -       virtual
anvil     unix  -       -       n       -       1       anvil
scache    unix  -       -       n       -       1       scache
postlog   unix-dgram n  -       n       -       1       postlogd
`

// postfix runs `postfix -c DIR VERB`.
func (p *Instance) postfix(verb string) ([]byte, error) {
	return exec.Command(p.bin, "-c", filepath.Join(p.dir, "etc"), verb).CombinedOutput()
}

// Log is Postfix's log so far.
func (p *Instance) Log() string {
	b, _ := os.ReadFile(filepath.Join(p.dir, "postfix.log"))
	return string(b)
}

func (p *Instance) tail() string {
	l := p.Log()
	if len(l) > 3000 {
		l = l[len(l)-3000:]
	}
	return "Postfix's log:\n" + l
}

// Mail returns the messages Postfix has delivered to address, oldest first.
func (p *Instance) Mail(address string) ([][]byte, error) {
	local, domain, _ := strings.Cut(address, "@")
	dir := filepath.Join(p.dir, "mail", domain, local, "new")
	entries, err := os.ReadDir(dir)
	if errors.Is(err, os.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	// A Maildir's unique names begin with the time of delivery in seconds; within a second
	// the modification time orders them.
	type file struct {
		name string
		mod  time.Time
	}
	var files []file
	for _, e := range entries {
		if info, err := e.Info(); err == nil && info.Mode().IsRegular() {
			files = append(files, file{e.Name(), info.ModTime()})
		}
	}
	slices.SortFunc(files, func(a, b file) int { return a.mod.Compare(b.mod) })
	var out [][]byte
	for _, f := range files {
		b, err := os.ReadFile(filepath.Join(dir, f.name))
		if err != nil {
			return nil, err
		}
		out = append(out, b)
	}
	return out, nil
}

// Wait returns the first message delivered to address that matches pattern, waiting up to
// 30 s for it to arrive.
func (p *Instance) Wait(t testing.TB, address, pattern string) []byte {
	t.Helper()
	re := regexp.MustCompile(pattern)
	deadline := time.Now().Add(30 * time.Second)
	for {
		msgs, err := p.Mail(address)
		if err != nil {
			t.Fatal(err)
		}
		for _, m := range msgs {
			if re.Match(m) {
				return m
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("postfix delivered no mail to %s matching %q within 30 s (%d other messages)\n%s", address, pattern, len(msgs), p.tail())
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// WaitLog returns the submatches of the first line of Postfix's log that matches pattern,
// waiting up to 30 s for it to be written.
func (p *Instance) WaitLog(t testing.TB, pattern string) []string {
	t.Helper()
	re := regexp.MustCompile(pattern)
	deadline := time.Now().Add(30 * time.Second)
	for {
		if m := re.FindStringSubmatch(p.Log()); m != nil {
			return m
		}
		if time.Now().After(deadline) {
			t.Fatalf("postfix logged no line matching %q within 30 s\n%s", pattern, p.tail())
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// stop stops Postfix, waits for its master to be gone, and removes the instance's directory.
func (p *Instance) stop() {
	pid := p.masterPID()
	p.postfix("stop")
	for deadline := time.Now().Add(10 * time.Second); pid > 0 && time.Now().Before(deadline); time.Sleep(20 * time.Millisecond) {
		if syscall.Kill(pid, 0) != nil {
			break
		}
	}
	os.RemoveAll(p.dir)
}

// masterPID is the process ID of the instance's master, whose children are all of Postfix.
func (p *Instance) masterPID() int {
	b, err := os.ReadFile(filepath.Join(p.dir, "queue", "pid", "master.pid"))
	if err != nil {
		return 0
	}
	pid, _ := strconv.Atoi(strings.TrimSpace(string(b)))
	return pid
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
