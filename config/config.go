// Package config is certmail's configuration: one TOML file in which every field is optional
// (DESIGN.md §7). With no file at all, Default describes a working agent for localhost with its
// data directory in the current folder.
//
// Loading is strict: an unknown key, a value of the wrong type or an invalid setting is an error
// that names the key, its line where known, and what to write instead. A typo must not silently
// fall back to a default — for a certified mail service the deadline or retention it falls back
// to may be the wrong one.
//
// This package reads one file and nothing else: it opens no listener and creates no directory.
package config

import (
	"net"
	"path/filepath"
	"strings"
	"time"
)

// Config is the configuration of a delivery agent. Empty strings switch a listener off; every
// other zero value is replaced by its default when loading.
type Config struct {
	// DataDir holds keys, the database, message blobs and the evidence log.
	DataDir string `toml:"data_dir"`
	// Hostname is the agent's name: it names the agent's signing key and appears in every
	// piece of evidence the agent signs.
	Hostname string `toml:"hostname"`
	// Domains are the mail domains the agent serves; default [Hostname].
	Domains []string `toml:"domains"`
	// PublicURL is the base of the links recipients open to pick up; default
	// https://Hostname:port with the port of Listen.HTTPS.
	PublicURL string `toml:"public_url"`

	Listen     Listen     `toml:"listen"`
	Submission Submission `toml:"submission"`
	Outbound   Outbound   `toml:"outbound"`
	Deadlines  Deadlines  `toml:"deadlines"`
	Retention  Retention  `toml:"retention"`
	Limits     Limits     `toml:"limits"`
}

// Listen holds listener addresses as host:port; an empty address switches the listener off.
type Listen struct {
	SMTPSubmission string `toml:"smtp_submission"` // senders, with STARTTLS and AUTH
	SMTPInbound    string `toml:"smtp_inbound"`    // relays from peer agents; off by default
	HTTPS          string `toml:"https"`           // API, pages, pickup, /log/
	HTTP           string `toml:"http"`            // plain HTTP, for a TLS-terminating proxy; off by default
}

// Submission configures SMTP submission beyond the listener.
type Submission struct {
	// TrustedNetworks lets clients connecting from these loopback networks (CIDR prefixes such
	// as "127.0.0.0/8") submit as TrustedUser without STARTTLS and AUTH, as Postfix's
	// mynetworks does. For benchmarks and trusted relays on the same machine only; empty (off)
	// by default. Their messages are certified like any other, in TrustedUser's name.
	TrustedNetworks []string `toml:"trusted_networks"`
	TrustedUser     string   `toml:"trusted_user"`
}

// Outbound delivery modes and TLS modes of a smarthost.
const (
	ModeMX        = "mx"
	ModeSmarthost = "smarthost"

	TLSNone     = "none"
	TLSStartTLS = "starttls"
	TLSImplicit = "tls"
)

// Outbound configures the queue that delivers notifications and receipts.
type Outbound struct {
	// Mode is ModeMX (look up the recipient domain's MX) or ModeSmarthost; default: ModeSmarthost
	// when Smarthost is set, else ModeMX.
	Mode      string `toml:"mode"`
	Smarthost string `toml:"smarthost"` // host:port
	Username  string `toml:"username"`
	Password  string `toml:"password"`
	// TLS is TLSNone, TLSStartTLS or TLSImplicit; default TLSImplicit for port 465 (RFC 8314),
	// else TLSStartTLS.
	TLS string `toml:"tls"`

	RetryInitial Duration `toml:"retry_initial"` // first wait after a temporary failure
	RetryMax     Duration `toml:"retry_max"`     // the wait doubles up to this
	GiveUpAfter  Duration `toml:"give_up_after"` // then the message bounces (RFC 5321 4.5.4.1)

	// Workers is how many deliveries run at once; default SmarthostWorkers through a
	// smarthost, MXWorkers by MX.
	Workers int `toml:"workers"`
}

// The default number of deliveries at once. By MX, most of a delivery is waiting for distant
// servers, and many run at once. A smarthost is most often a relay on the same host or
// network, where a delivery waits little and is mostly CPU: more of them at once only take the
// CPU from submissions, whose acknowledgement waits for it (BENCHMARKS.md: at 1,250 msg/s on
// two cores, p99 latency was 74–109 ms with 4 deliveries at once, 92–194 ms with 8, 192–206
// ms with 16, and with 32 the agent fell behind).
const (
	MXWorkers        = 32
	SmarthostWorkers = 4
)

// Deadlines bounds the pickup deadline a sender may ask for (Certmail-Deadline).
type Deadlines struct {
	Default Duration `toml:"default"`
	Min     Duration `toml:"min"`
	Max     Duration `toml:"max"`
	// WarnAt is the fraction of the time to the deadline after which the sender is warned
	// (WRN) that the item is not yet picked up; PEC warns after 12 of 24 hours.
	WarnAt float64 `toml:"warn_at"`
}

// Retention says how long the agent keeps what it stores. Evidence committed to the public log
// stays there for good; this governs the agent's own copies.
type Retention struct {
	ContentDays  int `toml:"content_days"`  // message content, counted from posting
	EvidenceDays int `toml:"evidence_days"` // evidence notes and bundles
}

// Limits protects the agent from oversized input and password guessing.
type Limits struct {
	MaxMessageBytes       int64 `toml:"max_message_bytes"`
	MaxRecipients         int   `toml:"max_recipients"`           // per message
	LoginPerMinuteAccount int   `toml:"login_per_minute_account"` // login attempts per account
	LoginPerMinuteAddress int   `toml:"login_per_minute_address"` // login attempts per client IP address
	// MaxConnections bounds the connections each listener serves at once; the rest wait to be
	// accepted. Every connection holds a file descriptor, and a flood of them must not leave
	// none for the database and the evidence log.
	MaxConnections int `toml:"max_connections"`
	// MaxSubmissionSessions bounds the SMTP submission sessions served at once, below
	// MaxConnections: a connection beyond it waits in the kernel's queue to be greeted, as mail
	// waits for a free smtpd under Postfix's process limit (100). Every session in flight
	// takes its share of the cores the committer needs: offered more than it could take, an
	// agent serving 1,000 at once grew to 2,000 goroutines and 540 MB, and its p99 to 0.4–1.3 s
	// in 30 s, where 128 held 100 goroutines, 240 MB and 0.27–0.54 s (BENCHMARKS.md, eleventh
	// round).
	MaxSubmissionSessions int `toml:"max_submission_sessions"`
}

// base is the configuration before a file is applied: every default that does not depend on
// another field.
func base() Config {
	return Config{
		DataDir:  "./certmail-data",
		Hostname: "localhost",
		Listen: Listen{
			SMTPSubmission: "127.0.0.1:2587",
			HTTPS:          "127.0.0.1:8443",
		},
		Outbound: Outbound{
			RetryInitial: Duration(5 * time.Minute),
			RetryMax:     Duration(time.Hour),
			GiveUpAfter:  Duration(5 * day),
		},
		Deadlines: Deadlines{
			Default: Duration(48 * time.Hour),
			Min:     Duration(time.Hour),
			Max:     Duration(30 * day),
			WarnAt:  0.5,
		},
		Retention: Retention{
			ContentDays:  90,
			EvidenceDays: 3650,
		},
		Limits: Limits{
			MaxMessageBytes:       25 << 20,
			MaxRecipients:         100, // RFC 5321 4.5.3.1.8
			LoginPerMinuteAccount: 10,
			LoginPerMinuteAddress: 30,
			MaxConnections:        1000,
			MaxSubmissionSessions: 128,
		},
	}
}

// resolve fills in the defaults that depend on other fields.
func (c *Config) resolve() {
	if len(c.Domains) == 0 {
		c.Domains = []string{c.Hostname}
	}
	if c.PublicURL == "" && c.Listen.HTTPS != "" {
		if _, port, err := net.SplitHostPort(c.Listen.HTTPS); err == nil {
			c.PublicURL = "https://" + c.Hostname
			if port != "443" {
				c.PublicURL += ":" + port
			}
		}
	}
	c.PublicURL = strings.TrimRight(c.PublicURL, "/")
	if len(c.Submission.TrustedNetworks) == 0 {
		c.Submission.TrustedNetworks = nil // "trusted_networks = []" is the default, off
	}
	o := &c.Outbound
	if o.Mode == "" {
		o.Mode = ModeMX
		if o.Smarthost != "" {
			o.Mode = ModeSmarthost
		}
	}
	if o.Workers == 0 {
		o.Workers = MXWorkers
		if o.Mode == ModeSmarthost {
			o.Workers = SmarthostWorkers
		}
	}
	if o.Mode == ModeSmarthost && o.TLS == "" {
		o.TLS = TLSStartTLS
		if _, port, err := net.SplitHostPort(o.Smarthost); err == nil && port == "465" {
			o.TLS = TLSImplicit
		}
	}
}

// Default returns the configuration of an agent started without a file: named localhost,
// serving the domain localhost, SMTP submission on 127.0.0.1:2587, HTTPS on 127.0.0.1:8443,
// data in ./certmail-data.
func Default() Config {
	c := base()
	c.resolve()
	return c
}

// Path returns the path of name inside the data directory.
func (c Config) Path(name string) string { return filepath.Join(c.DataDir, name) }
