package config

import (
	"errors"
	"fmt"
	"net"
	"net/netip"
	"net/url"
	"strconv"
	"strings"
	"time"

	"certmail/evidence"
)

// ValidationError lists every problem found in a configuration, each naming its TOML key.
type ValidationError struct {
	Problems []string
}

func (e *ValidationError) Error() string {
	if len(e.Problems) == 1 {
		return e.Problems[0]
	}
	return fmt.Sprintf("%d problems:\n\t%s", len(e.Problems), strings.Join(e.Problems, "\n\t"))
}

// Validate checks that the configuration describes an agent that can start, and says what to
// change when it does not.
func (c Config) Validate() error {
	var p []string
	bad := func(format string, args ...any) { p = append(p, fmt.Sprintf(format, args...)) }

	if c.DataDir == "" {
		bad(`data_dir is empty: set it to the directory for keys, database and log, such as "./certmail-data"`)
	}
	if err := evidence.CheckHost(c.Hostname); err != nil {
		bad("hostname: %v: write the agent's DNS name in lower case, such as \"mail.example.org\"", err)
	}
	if len(c.Domains) == 0 {
		bad("domains is empty: list the mail domains this agent certifies, such as [\"example.org\"]")
	}
	seen := map[string]bool{}
	for _, d := range c.Domains {
		if err := evidence.CheckHost(d); err != nil {
			bad("domains: %v: write each domain in lower case, such as \"example.org\"", err)
		} else if seen[d] {
			bad("domains: %q is listed twice", d)
		}
		seen[d] = true
	}

	addrs := map[string]string{}
	for _, l := range []struct{ key, addr string }{
		{"listen.smtp_submission", c.Listen.SMTPSubmission},
		{"listen.smtp_inbound", c.Listen.SMTPInbound},
		{"listen.https", c.Listen.HTTPS},
		{"listen.http", c.Listen.HTTP},
	} {
		if l.addr == "" {
			continue
		}
		if err := checkAddr(l.addr); err != nil {
			bad("%s = %q: %v; write host:port, such as \"127.0.0.1:8443\" or \":443\", or \"\" to switch it off", l.key, l.addr, err)
		} else if other, dup := addrs[l.addr]; dup && !strings.HasSuffix(l.addr, ":0") {
			bad("%s and %s both listen on %q", other, l.key, l.addr)
		}
		addrs[l.addr] = l.key
	}
	if c.Listen.HTTPS == "" && c.Listen.HTTP == "" {
		bad("listen.https and listen.http are both off: recipients need the pickup pages, so set listen.https")
	}
	switch {
	case c.PublicURL == "":
		bad("public_url is empty: set the https:// address recipients open to pick up (derived from listen.https only when that is set)")
	default:
		if err := checkPublicURL(c.PublicURL); err != nil {
			bad("public_url = %q: %v", c.PublicURL, err)
		}
	}

	sub := c.Submission
	for _, n := range sub.TrustedNetworks {
		pfx, err := netip.ParsePrefix(n)
		switch {
		case err != nil:
			bad("submission.trusted_networks: %q is not a network: write a CIDR prefix, such as \"127.0.0.0/8\" or \"::1/128\"", n)
		case !pfx.Masked().Addr().IsLoopback() || !lastIn(pfx).IsLoopback():
			bad("submission.trusted_networks: %q is not a loopback network: only clients on this machine may submit without AUTH (127.0.0.0/8, ::1/128)", n)
		}
	}
	switch {
	case len(sub.TrustedNetworks) > 0 && sub.TrustedUser == "":
		bad("submission.trusted_networks is set but submission.trusted_user is empty: name the user its clients submit as, such as \"bench@localhost\"")
	case sub.TrustedUser != "" && len(sub.TrustedNetworks) == 0:
		bad("submission.trusted_user is set but submission.trusted_networks is empty: list the loopback networks that may submit as it, or remove trusted_user")
	case sub.TrustedUser != "":
		if err := evidence.CheckAddress(sub.TrustedUser); err != nil {
			bad("submission.trusted_user = %q: %v", sub.TrustedUser, err)
		}
	}

	o := c.Outbound
	switch o.Mode {
	case ModeMX:
		for _, f := range []struct{ key, val string }{
			{"smarthost", o.Smarthost}, {"username", o.Username}, {"password", o.Password}, {"tls", o.TLS},
		} {
			if f.val != "" {
				bad(`outbound.%s is set but outbound.mode is "mx", which delivers to each domain's MX itself (with STARTTLS when offered): set mode = "smarthost" or remove %s`, f.key, f.key)
			}
		}
	case ModeSmarthost:
		if o.Smarthost == "" {
			bad(`outbound.mode is "smarthost" but outbound.smarthost is empty: set it to host:port, such as "smtp.example.org:587"`)
		} else if err := checkAddr(o.Smarthost); err != nil {
			bad(`outbound.smarthost = %q: %v; want host:port of the relay, such as "smtp.example.org:587"`, o.Smarthost, err)
		} else if strings.HasPrefix(o.Smarthost, ":") || strings.HasSuffix(o.Smarthost, ":0") {
			bad(`outbound.smarthost = %q: want host:port of the relay, with both, such as "smtp.example.org:587"`, o.Smarthost)
		}
		switch o.TLS {
		case TLSNone, TLSStartTLS, TLSImplicit:
		default:
			bad(`outbound.tls = %q: want "starttls", "tls" (port 465) or "none"`, o.TLS)
		}
		if (o.Username == "") != (o.Password == "") {
			bad("outbound.username and outbound.password go together: set both or neither")
		}
		if o.Password != "" && o.TLS == TLSNone {
			bad(`outbound.tls = "none" would send the smarthost password in clear: set tls = "starttls" or "tls"`)
		}
	default:
		bad(`outbound.mode = %q: want "mx" or "smarthost"`, o.Mode)
	}
	switch {
	case o.RetryInitial <= 0:
		bad("outbound.retry_initial must be positive, such as \"5m\"")
	case o.RetryMax < o.RetryInitial:
		bad("outbound.retry_max (%s) is shorter than outbound.retry_initial (%s)", o.RetryMax, o.RetryInitial)
	case o.GiveUpAfter < o.RetryInitial:
		bad("outbound.give_up_after (%s) is shorter than outbound.retry_initial (%s)", o.GiveUpAfter, o.RetryInitial)
	}
	if o.Workers < 1 || o.Workers > maxWorkers {
		bad("outbound.workers = %d: want between 1 and %d deliveries at once", o.Workers, maxWorkers)
	}

	d := c.Deadlines
	switch {
	case d.Min <= 0:
		bad("deadlines.min must be positive, such as \"1h\"")
	case d.Default < d.Min || d.Default > d.Max:
		bad("deadlines: want min <= default <= max, have min %s, default %s, max %s", d.Min, d.Default, d.Max)
	}
	if !(d.WarnAt > 0 && d.WarnAt < 1) {
		bad("deadlines.warn_at = %v: want a fraction between 0 and 1, such as 0.5 to warn the sender half way to the deadline", d.WarnAt)
	}

	const maxDays = 100 * 365
	r := c.Retention
	switch {
	case r.ContentDays < 1 || r.ContentDays > maxDays:
		bad("retention.content_days = %d: want 1 to %d", r.ContentDays, maxDays)
	case r.EvidenceDays < r.ContentDays || r.EvidenceDays > maxDays:
		bad("retention.evidence_days = %d: want at least retention.content_days (%d) and at most %d; evidence must outlive the content it proves", r.EvidenceDays, r.ContentDays, maxDays)
	case d.Max > 0 && time.Duration(r.ContentDays)*day < d.Max.Duration():
		bad("retention.content_days = %d would delete content before deadlines.max (%s) has passed: keep it at least %d days",
			r.ContentDays, d.Max, (d.Max.Duration()+day-1)/day)
	}

	l := c.Limits
	for _, f := range []struct {
		key string
		v   int64
	}{
		{"max_message_bytes", l.MaxMessageBytes},
		{"max_recipients", int64(l.MaxRecipients)},
		{"login_per_minute_account", int64(l.LoginPerMinuteAccount)},
		{"login_per_minute_address", int64(l.LoginPerMinuteAddress)},
		{"max_connections", int64(l.MaxConnections)},
		{"max_submission_sessions", int64(l.MaxSubmissionSessions)},
	} {
		if f.v < 1 {
			bad("limits.%s = %d: want a positive number", f.key, f.v)
		}
	}

	if len(p) > 0 {
		return &ValidationError{Problems: p}
	}
	return nil
}

// lastIn returns the last address of a prefix.
func lastIn(p netip.Prefix) netip.Addr {
	b := p.Masked().Addr().AsSlice()
	for i := p.Bits(); i < len(b)*8; i++ {
		b[i/8] |= 0x80 >> (i % 8)
	}
	a, _ := netip.AddrFromSlice(b)
	return a
}

// checkAddr accepts a listener address: host:port with an optional host (an IP address or a
// lower-case DNS name) and a port from 0 (any free port, for tests) to 65535.
func checkAddr(addr string) error {
	host, port, err := net.SplitHostPort(addr)
	if err != nil {
		return errors.New("not host:port")
	}
	if n, err := strconv.ParseUint(port, 10, 16); err != nil || strconv.FormatUint(n, 10) != port {
		return fmt.Errorf("port %q is not a number from 0 to 65535", port)
	}
	if host == "" {
		return nil
	}
	if _, err := netip.ParseAddr(host); err == nil {
		return nil
	}
	return evidence.CheckHost(host)
}

// checkPublicURL accepts an absolute https URL without query or fragment; http only for
// localhost, which browsers treat as a secure context too.
func checkPublicURL(s string) error {
	u, err := url.Parse(s)
	if err != nil {
		return errors.New("not a URL")
	}
	host := u.Hostname()
	switch {
	case u.Scheme == "http" && !isLoopback(host):
		return errors.New("plain http is only for localhost: recipients log in and accept there, use https://")
	case u.Scheme != "https" && u.Scheme != "http":
		return errors.New("want an https:// URL, the base of pickup links")
	case host == "" || u.User != nil || u.RawQuery != "" || u.Fragment != "" || u.Opaque != "" || u.ForceQuery || strings.Contains(s, "#"):
		return errors.New("want scheme, host, optional port and path only, such as \"https://certmail.example.org\"")
	case u.Port() == "0":
		return errors.New("port 0: set public_url when listen.https uses a random port")
	}
	if _, err := netip.ParseAddr(host); err != nil {
		if err := evidence.CheckHost(host); err != nil {
			return err
		}
	}
	if p := u.Port(); p != "" {
		if n, err := strconv.ParseUint(p, 10, 16); err != nil || n == 0 {
			return fmt.Errorf("port %q is not a number from 1 to 65535", p)
		}
	}
	return nil
}

func isLoopback(host string) bool {
	if host == "localhost" {
		return true
	}
	a, err := netip.ParseAddr(host)
	return err == nil && a.IsLoopback()
}

// maxWorkers bounds outbound.workers: each delivery may hold a connection and a goroutine.
const maxWorkers = 1000
