package config_test

import (
	"errors"
	"math"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"

	"certmail/config"
)

// load writes text to a file and loads it.
func load(t *testing.T, text string) (config.Config, error) {
	t.Helper()
	path := filepath.Join(t.TempDir(), "certmail.toml")
	if err := os.WriteFile(path, []byte(text), 0o600); err != nil {
		t.Fatal(err)
	}
	return config.Load(path)
}

func mustLoad(t *testing.T, text string) config.Config {
	t.Helper()
	c, err := load(t, text)
	if err != nil {
		t.Fatal(err)
	}
	return c
}

func TestDefault(t *testing.T) {
	t.Parallel()
	c, err := config.Load("")
	if err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(c, config.Default()) {
		t.Fatalf("Load(\"\") = %+v, want Default()", c)
	}
	if err := c.Validate(); err != nil {
		t.Fatalf("Default() does not validate: %v", err)
	}
	want := config.Config{
		DataDir:   "./certmail-data",
		Hostname:  "localhost",
		Domains:   []string{"localhost"},
		PublicURL: "https://localhost:8443",
		Listen:    config.Listen{SMTPSubmission: "127.0.0.1:2587", HTTPS: "127.0.0.1:8443"},
		Outbound: config.Outbound{
			Mode:         "mx",
			RetryInitial: config.Duration(5 * time.Minute),
			RetryMax:     config.Duration(time.Hour),
			GiveUpAfter:  config.Duration(5 * 24 * time.Hour),
			Workers:      32,
		},
		Deadlines: config.Deadlines{
			Default: config.Duration(48 * time.Hour),
			Min:     config.Duration(time.Hour),
			Max:     config.Duration(30 * 24 * time.Hour),
			WarnAt:  0.5,
		},
		Retention: config.Retention{ContentDays: 90, EvidenceDays: 3650},
		Limits: config.Limits{
			MaxMessageBytes:       25 << 20,
			MaxRecipients:         100,
			LoginPerMinuteAccount: 10,
			LoginPerMinuteAddress: 30,
			MaxConnections:        1000,
			MaxSubmissionSessions: 128,
		},
	}
	if !reflect.DeepEqual(c, want) {
		t.Fatalf("Default() =\n%+v\nwant\n%+v", c, want)
	}
	if got := c.Path("agent.key"); got != filepath.Join("certmail-data", "agent.key") {
		t.Errorf("Path = %q", got)
	}
	if c := mustLoad(t, ""); !reflect.DeepEqual(c, want) {
		t.Errorf("empty file = %+v, want the defaults", c)
	}
}

func TestLoadFull(t *testing.T) {
	t.Parallel()
	c, err := config.Load("testdata/full.toml")
	if err != nil {
		t.Fatal(err)
	}
	want := config.Config{
		DataDir:   "/var/lib/certmail",
		Hostname:  "mail.a.example",
		Domains:   []string{"a.example", "a2.example"},
		PublicURL: "https://certmail.a.example/pec",
		Listen:    config.Listen{SMTPSubmission: "0.0.0.0:587", SMTPInbound: "[::]:25", HTTPS: ":443", HTTP: "127.0.0.1:8080"},
		Outbound: config.Outbound{
			Mode:         "smarthost",
			Smarthost:    "smtp.a.example:465",
			Username:     "certmail",
			Password:     `s3cret "quoted"`,
			TLS:          "tls",
			RetryInitial: config.Duration(time.Minute),
			RetryMax:     config.Duration(150 * time.Minute),
			GiveUpAfter:  config.Duration(96 * time.Hour),
			Workers:      16,
		},
		Deadlines: config.Deadlines{
			Default: config.Duration(36 * time.Hour),
			Min:     config.Duration(30 * time.Minute),
			Max:     config.Duration(14 * 24 * time.Hour),
			WarnAt:  0.75,
		},
		Retention: config.Retention{ContentDays: 30, EvidenceDays: 3653},
		Limits:    config.Limits{MaxMessageBytes: 50 << 20, MaxRecipients: 20, LoginPerMinuteAccount: 5, LoginPerMinuteAddress: 60, MaxConnections: 1000, MaxSubmissionSessions: 128},
	}
	if !reflect.DeepEqual(c, want) {
		t.Fatalf("got\n%+v\nwant\n%+v", c, want)
	}
	if got := c.Path("log"); got != "/var/lib/certmail/log" {
		t.Errorf("Path = %q", got)
	}
}

func TestDerivedDefaults(t *testing.T) {
	t.Parallel()
	c := mustLoad(t, "hostname = \"mail.b.example\"\n")
	if !reflect.DeepEqual(c.Domains, []string{"mail.b.example"}) || c.PublicURL != "https://mail.b.example:8443" {
		t.Errorf("domains %v, public_url %q: want both to follow hostname", c.Domains, c.PublicURL)
	}
	c = mustLoad(t, "hostname = \"mail.b.example\"\n[listen]\nhttps = \":443\"\n")
	if c.PublicURL != "https://mail.b.example" {
		t.Errorf("public_url %q: want no port for 443", c.PublicURL)
	}
	c = mustLoad(t, "public_url = \"https://b.example/certmail/\"\n")
	if c.PublicURL != "https://b.example/certmail" {
		t.Errorf("public_url %q: want the trailing slash gone", c.PublicURL)
	}
	c = mustLoad(t, "[outbound]\nsmarthost = \"relay.b.example:587\"\n")
	if c.Outbound.Mode != "smarthost" || c.Outbound.TLS != "starttls" || c.Outbound.Workers != 4 {
		t.Errorf("mode %q tls %q workers %d: want smarthost with starttls, 4 deliveries at once", c.Outbound.Mode, c.Outbound.TLS, c.Outbound.Workers)
	}
	c = mustLoad(t, "[outbound]\nsmarthost = \"relay.b.example:465\"\n")
	if c.Outbound.TLS != "tls" {
		t.Errorf("tls %q: want implicit TLS on port 465", c.Outbound.TLS)
	}
	if _, err := load(t, "[listen]\nhttps = \"\"\nhttp = \"127.0.0.1:8080\"\n"); err == nil || !strings.Contains(err.Error(), "public_url is empty") {
		t.Errorf("https off without public_url: %v", err)
	}
}

func TestTestdataLoads(t *testing.T) {
	t.Parallel()
	files, _ := filepath.Glob("testdata/*.toml")
	if len(files) == 0 {
		t.Fatal("no testdata/*.toml")
	}
	for _, f := range files {
		if _, err := config.Load(f); err != nil {
			t.Errorf("%s: %v", f, err)
		}
	}
}

// wantErr loads text and checks that the error says every one of want.
func wantErr(t *testing.T, text string, want ...string) {
	t.Helper()
	c, err := load(t, text)
	if err == nil {
		t.Errorf("%q loaded as %+v; want an error", text, c)
		return
	}
	for _, w := range want {
		if !strings.Contains(err.Error(), w) {
			t.Errorf("%q: error %q does not say %q", text, err, w)
		}
	}
}

func TestUnknownKeys(t *testing.T) {
	t.Parallel()
	wantErr(t, "# comment\nhostnam = \"x.example\"\n", `line 2: unknown key "hostnam"`, `did you mean "hostname"`)
	wantErr(t, "Hostname = \"x.example\"\n", `line 1: unknown key "Hostname"`, `did you mean "hostname"`)
	wantErr(t, "\n\n[outbound]\nmode = \"mx\"\nsmarthots = \"a:1\"\n", `line 5: unknown key "outbound.smarthots"`, `did you mean "outbound.smarthost"`)
	wantErr(t, "smarthost = \"relay.example:587\"\n", `unknown key "smarthost"`, `did you mean "outbound.smarthost"`)
	wantErr(t, "[deadlines]\nwarn = 0.5\n", `unknown key "deadlines.warn"`, `did you mean "deadlines.warn_at"`)
	wantErr(t, "deadlines.dflt = \"1h\"\n", `line 1: unknown key "deadlines.dflt"`)
	wantErr(t, "limits = { max_recipient = 5 }\n", `unknown key "limits.max_recipient"`, `did you mean "limits.max_recipients"`)
	wantErr(t, "[[peers]]\nname = \"x\"\n", `line 1: unknown key "peers"`)

	// A whole unknown table is one error, not one per key.
	_, err := load(t, "[smtp]\nport = 25\nhost = \"x\"\n")
	if err == nil || strings.Count(err.Error(), "unknown key") != 1 || !strings.Contains(err.Error(), `line 1: unknown key "smtp"`) {
		t.Errorf("unknown table: %v", err)
	}
	// Several unknown keys are all reported.
	_, err = load(t, "a = 1\nb = 2\n")
	if err == nil || !strings.Contains(err.Error(), `line 1: unknown key "a"`) || !strings.Contains(err.Error(), `line 2: unknown key "b"`) {
		t.Errorf("two unknown keys: %v", err)
	}
}

func TestTypeErrors(t *testing.T) {
	t.Parallel()
	wantErr(t, "hostname = 5\n", "line 1", "hostname", "string")
	wantErr(t, "domains = \"a.example\"\n", "line 1", "domains")
	wantErr(t, "\n[deadlines]\nwarn_at = \"half\"\n", "line 3", "deadlines.warn_at", "float")
	wantErr(t, "[deadlines]\ndefault = 48\n", "line 2", "deadlines.default", "quoted string")
	wantErr(t, "[limits]\nmax_recipients = 1.5\n", "limits.max_recipients", "integer")
	wantErr(t, "listen = \"127.0.0.1:25\"\n", "listen")
	wantErr(t, "hostname = \"a\"\nhostname = \"b\"\n", "line 2", "hostname")
	wantErr(t, "hostname = \n", "line 1")
}

func TestBadDuration(t *testing.T) {
	t.Parallel()
	for _, d := range []string{"2 days", "-1h", "1.5d", "", "h", "48", "1d-1h", "+5m", "99999999999d"} {
		wantErr(t, "[deadlines]\ndefault = \""+d+"\"\n", "line 2", "deadlines.default", `write it like "30m", "48h" or "7d"`)
	}
}

func TestDuration(t *testing.T) {
	t.Parallel()
	const h, m, s, day = time.Hour, time.Minute, time.Second, 24 * time.Hour
	for _, tc := range []struct {
		in   string
		want time.Duration
		out  string
	}{
		{"48h", 48 * h, "2d"},
		{"7d", 7 * day, "7d"},
		{"1d12h", 36 * h, "1d12h"},
		{"30m", 30 * m, "30m"},
		{"90m", 90 * m, "1h30m"},
		{"1h0m", h, "1h"},
		{"10s", 10 * s, "10s"},
		{"1h0m5s", h + 5*s, "1h0m5s"},
		{"1500ms", 1500 * time.Millisecond, "1.5s"},
		{"0s", 0, "0s"},
		{"0d", 0, "0s"},
		{"1d10m", day + 10*m, "1d10m"},
	} {
		d, err := config.ParseDuration(tc.in)
		if err != nil || d.Duration() != tc.want {
			t.Errorf("ParseDuration(%q) = %v, %v; want %v", tc.in, d.Duration(), err, tc.want)
			continue
		}
		if d.String() != tc.out {
			t.Errorf("%q: String() = %q, want %q", tc.in, d.String(), tc.out)
		}
		if back, err := config.ParseDuration(d.String()); err != nil || back != d {
			t.Errorf("%q: String() %q parses back as %v, %v", tc.in, d.String(), back, err)
		}
	}
	var d config.Duration
	if err := d.UnmarshalText([]byte("3d")); err != nil || d.Duration() != 72*h {
		t.Errorf("UnmarshalText: %v %v", d, err)
	}
}

func TestValidate(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name   string
		change func(c *config.Config)
		want   []string
	}{
		{"warn_at zero", func(c *config.Config) { c.Deadlines.WarnAt = 0 }, []string{"deadlines.warn_at = 0", "between 0 and 1"}},
		{"warn_at one", func(c *config.Config) { c.Deadlines.WarnAt = 1 }, []string{"deadlines.warn_at = 1"}},
		{"warn_at above one", func(c *config.Config) { c.Deadlines.WarnAt = 1.5 }, []string{"deadlines.warn_at = 1.5"}},
		{"warn_at NaN", func(c *config.Config) { c.Deadlines.WarnAt = math.NaN() }, []string{"deadlines.warn_at = NaN"}},
		{"min above default", func(c *config.Config) { c.Deadlines.Min = config.Duration(72 * time.Hour) }, []string{"min <= default <= max", "min 3d, default 2d, max 30d"}},
		{"default above max", func(c *config.Config) { c.Deadlines.Default = config.Duration(31 * 24 * time.Hour) }, []string{"min <= default <= max"}},
		{"min zero", func(c *config.Config) { c.Deadlines.Min = 0 }, []string{"deadlines.min must be positive"}},
		{"hostname upper case", func(c *config.Config) { c.Hostname = "Mail.Example" }, []string{"hostname", "lower case"}},
		{"hostname empty", func(c *config.Config) { c.Hostname = "" }, []string{"hostname"}},
		{"no domains", func(c *config.Config) { c.Domains = nil }, []string{"domains is empty"}},
		{"bad domain", func(c *config.Config) { c.Domains = []string{"a_b.example"} }, []string{"domains", "a_b.example"}},
		{"duplicate domain", func(c *config.Config) { c.Domains = []string{"a.example", "a.example"} }, []string{`"a.example" is listed twice`}},
		{"no data_dir", func(c *config.Config) { c.DataDir = "" }, []string{"data_dir is empty"}},
		{"listener without port", func(c *config.Config) { c.Listen.HTTPS = "localhost" }, []string{`listen.https = "localhost"`, "host:port"}},
		{"listener port too big", func(c *config.Config) { c.Listen.SMTPSubmission = "127.0.0.1:99999" }, []string{"listen.smtp_submission", "0 to 65535"}},
		{"listener port by name", func(c *config.Config) { c.Listen.SMTPInbound = ":smtp" }, []string{"listen.smtp_inbound", `port "smtp"`}},
		{"listener bad host", func(c *config.Config) { c.Listen.HTTP = "bad host:80" }, []string{"listen.http"}},
		{"listeners clash", func(c *config.Config) { c.Listen.HTTP = c.Listen.HTTPS }, []string{`listen.https and listen.http both listen on "127.0.0.1:8443"`}},
		{"no web listener", func(c *config.Config) { c.Listen.HTTPS = "" }, []string{"listen.https and listen.http are both off"}},
		{"no public_url", func(c *config.Config) { c.PublicURL = "" }, []string{"public_url is empty"}},
		{"public_url plain http", func(c *config.Config) { c.PublicURL = "http://certmail.a.example" }, []string{"public_url", "only for localhost"}},
		{"public_url query", func(c *config.Config) { c.PublicURL = "https://a.example/?x=1" }, []string{"public_url", "path only"}},
		{"public_url relative", func(c *config.Config) { c.PublicURL = "/pickup" }, []string{"public_url", "https://"}},
		{"public_url port 0", func(c *config.Config) { c.PublicURL = "https://localhost:0" }, []string{"public_url", "port 0"}},
		{"bad mode", func(c *config.Config) { c.Outbound.Mode = "direct" }, []string{`outbound.mode = "direct"`, `"mx" or "smarthost"`}},
		{"smarthost without address", func(c *config.Config) { c.Outbound.Mode = "smarthost"; c.Outbound.TLS = "starttls" }, []string{"outbound.smarthost is empty"}},
		{"smarthost without port", func(c *config.Config) { smarthost(c); c.Outbound.Smarthost = "relay.example" }, []string{"outbound.smarthost = \"relay.example\""}},
		{"smarthost bad tls", func(c *config.Config) { smarthost(c); c.Outbound.TLS = "ssl" }, []string{`outbound.tls = "ssl"`}},
		{"password in clear", func(c *config.Config) { smarthost(c); c.Outbound.TLS = "none" }, []string{"password in clear"}},
		{"username alone", func(c *config.Config) { smarthost(c); c.Outbound.Password = "" }, []string{"username and outbound.password go together"}},
		{"smarthost in mx mode", func(c *config.Config) { c.Outbound.Smarthost = "relay.example:25" }, []string{`outbound.smarthost is set but outbound.mode is "mx"`}},
		{"retry zero", func(c *config.Config) { c.Outbound.RetryInitial = 0 }, []string{"outbound.retry_initial must be positive"}},
		{"retry max short", func(c *config.Config) { c.Outbound.RetryMax = config.Duration(time.Minute) }, []string{"outbound.retry_max (1m) is shorter"}},
		{"give up short", func(c *config.Config) { c.Outbound.GiveUpAfter = config.Duration(time.Minute) }, []string{"outbound.give_up_after"}},
		{"no workers", func(c *config.Config) { c.Outbound.Workers = -1 }, []string{"outbound.workers = -1", "between 1 and 1000"}},
		{"content before deadline", func(c *config.Config) { c.Retention.ContentDays = 7 }, []string{"retention.content_days = 7", "at least 30 days"}},
		{"content zero", func(c *config.Config) { c.Retention.ContentDays = 0 }, []string{"retention.content_days = 0"}},
		{"evidence before content", func(c *config.Config) { c.Retention.EvidenceDays = 60 }, []string{"retention.evidence_days = 60", "outlive"}},
		{"no size", func(c *config.Config) { c.Limits.MaxMessageBytes = 0 }, []string{"limits.max_message_bytes = 0"}},
		{"no recipients", func(c *config.Config) { c.Limits.MaxRecipients = -1 }, []string{"limits.max_recipients = -1"}},
		{"no logins", func(c *config.Config) { c.Limits.LoginPerMinuteAddress = 0 }, []string{"limits.login_per_minute_address = 0"}},
		{"no connections", func(c *config.Config) { c.Limits.MaxConnections = 0 }, []string{"limits.max_connections = 0"}},
		{"no submission sessions", func(c *config.Config) { c.Limits.MaxSubmissionSessions = 0 }, []string{"limits.max_submission_sessions = 0"}},
		{"trusted not a network", func(c *config.Config) { trusted(c); c.Submission.TrustedNetworks = []string{"127.0.0.1"} }, []string{"submission.trusted_networks", `"127.0.0.1" is not a network`}},
		{"trusted not loopback", func(c *config.Config) { trusted(c); c.Submission.TrustedNetworks = []string{"10.0.0.0/8"} }, []string{`"10.0.0.0/8" is not a loopback network`}},
		{"trusted wider than loopback", func(c *config.Config) { trusted(c); c.Submission.TrustedNetworks = []string{"126.0.0.0/7"} }, []string{`"126.0.0.0/7" is not a loopback network`}},
		{"trusted everything", func(c *config.Config) { trusted(c); c.Submission.TrustedNetworks = []string{"::/0"} }, []string{`"::/0" is not a loopback network`}},
		{"trusted without user", func(c *config.Config) { trusted(c); c.Submission.TrustedUser = "" }, []string{"submission.trusted_user is empty"}},
		{"trusted user without networks", func(c *config.Config) { trusted(c); c.Submission.TrustedNetworks = nil }, []string{"submission.trusted_networks is empty"}},
		{"trusted user not an address", func(c *config.Config) { trusted(c); c.Submission.TrustedUser = "bench" }, []string{`submission.trusted_user = "bench"`}},
	} {
		c := config.Default()
		tc.change(&c)
		err := c.Validate()
		if err == nil {
			t.Errorf("%s: validates", tc.name)
			continue
		}
		for _, w := range tc.want {
			if !strings.Contains(err.Error(), w) {
				t.Errorf("%s: %q does not say %q", tc.name, err, w)
			}
		}
	}

	for _, ok := range []func(c *config.Config){
		func(c *config.Config) { c.Listen.HTTPS = "[::1]:8443" },
		func(c *config.Config) {
			c.Listen.HTTPS = ":0"
			c.Listen.SMTPSubmission = ":0"
			c.PublicURL = "https://localhost:9999"
		},
		func(c *config.Config) {
			c.Listen.HTTP = "localhost:8080"
			c.Listen.HTTPS = ""
			c.PublicURL = "http://localhost:8080"
		},
		func(c *config.Config) { c.PublicURL = "https://[::1]:8443/x" },
		smarthost,
	} {
		c := config.Default()
		ok(&c)
		if err := c.Validate(); err != nil {
			t.Errorf("%+v: %v", c, err)
		}
	}
}

func smarthost(c *config.Config) {
	c.Outbound.Mode = "smarthost"
	c.Outbound.Smarthost = "relay.example:587"
	c.Outbound.TLS = "starttls"
	c.Outbound.Username = "u"
	c.Outbound.Password = "p"
}

func trusted(c *config.Config) {
	c.Submission = config.Submission{TrustedNetworks: []string{"127.0.0.0/8", "::1/128"}, TrustedUser: "bench@localhost"}
}

// TestTrustedSubmission: the trusted-network option is off unless configured, and loads as
// written when it is.
func TestTrustedSubmission(t *testing.T) {
	t.Parallel()
	if c := config.Default(); len(c.Submission.TrustedNetworks) != 0 || c.Submission.TrustedUser != "" {
		t.Fatalf("trusted submission is on by default: %+v", c.Submission)
	}
	c := mustLoad(t, "[submission]\ntrusted_networks = [\"127.0.0.0/8\", \"::1/128\"]\ntrusted_user = \"bench@localhost\"\n")
	want := config.Submission{TrustedNetworks: []string{"127.0.0.0/8", "::1/128"}, TrustedUser: "bench@localhost"}
	if !reflect.DeepEqual(c.Submission, want) {
		t.Fatalf("submission = %+v, want %+v", c.Submission, want)
	}
	c = mustLoad(t, "[submission]\ntrusted_networks = [\"127.0.0.1/32\"]\ntrusted_user = \"bench@localhost\"\n")
	if len(c.Submission.TrustedNetworks) != 1 {
		t.Fatalf("a single host as /32: %+v", c.Submission)
	}
}

func TestValidationErrorListsAll(t *testing.T) {
	t.Parallel()
	c := config.Default()
	c.Hostname = "X"
	c.Deadlines.WarnAt = 2
	c.Limits.MaxRecipients = 0
	err := c.Validate()
	var verr *config.ValidationError
	if !errors.As(err, &verr) || len(verr.Problems) != 3 || !strings.HasPrefix(err.Error(), "3 problems:") {
		t.Fatalf("err = %v, want three problems", err)
	}
	_, err = load(t, "[limits]\nmax_recipients = 0\n[deadlines]\nwarn_at = 2.0\n")
	if !errors.As(err, &verr) || len(verr.Problems) != 2 || !strings.Contains(err.Error(), "certmail.toml: 2 problems") {
		t.Fatalf("Load: err = %v, want two problems naming the file", err)
	}
}

func TestLoadMissingFile(t *testing.T) {
	t.Parallel()
	_, err := config.Load("testdata/no-such-file.toml")
	if !errors.Is(err, os.ErrNotExist) || !strings.Contains(err.Error(), "no-such-file.toml") {
		t.Fatalf("err = %v", err)
	}
}
