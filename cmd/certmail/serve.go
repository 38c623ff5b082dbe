package main

import (
	"context"
	"crypto/rand"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"log/slog"
	"net"
	"net/http"
	"net/netip"
	"os"
	"os/signal"
	"path/filepath"
	"runtime/debug"
	"runtime/pprof"
	"strings"
	"sync"
	"syscall"
	"time"

	"golang.org/x/net/netutil"
	"k8s.io/klog/v2"

	"certmail/account"
	"certmail/agent"
	"certmail/config"
	"certmail/durable"
	"certmail/evlog"
	"certmail/mailfmt"
	"certmail/mailout"
	"certmail/pki"
	"certmail/relay"
	"certmail/smtpd"
	"certmail/store"
	"certmail/store/blobfs"
	"certmail/store/sqlite"
	"certmail/web"
)

// commitDelay is how long a commit waits for more submissions when many are under way
// (sqlite.Store.SetCommitDelay). Measured at 80 % of the peak on two cores, 10 KB: p99 50–62
// ms with it against 66–79 ms without, the peak unchanged; waiting when only two or three were
// under way cost up to a quarter of the throughput at 1 and 4 connections (BENCHMARKS.md).
const commitDelay = time.Millisecond

// runServe runs the delivery agent until SIGINT or SIGTERM.
func runServe(args []string, _ io.Reader, stdout, stderr io.Writer) int {
	flags := newFlagSet("serve", "[--config FILE]", `
Run the delivery agent: SMTP submission for senders, HTTPS for the API and the pickup pages,
the outbound queue for notifications and receipts, and the deadline timers.

With no configuration it runs on localhost with its data in ./certmail-data: it creates the
agent's key, a local CA and a TLS certificate, and an admin account, and prints every address
and credential it made.`, stderr)
	cfgPath := flags.String("config", "", "the configuration `FILE` (default: zero configuration)")
	if code, ok := parseFlags(flags, args); !ok {
		return code
	}
	if flags.NArg() > 0 {
		return usageError(stderr, "serve", "unexpected argument %q", flags.Arg(0))
	}
	cfg, err := config.Load(*cfgPath)
	if err != nil {
		fmt.Fprintf(stderr, "certmail serve: %v\n", err)
		return exitFail
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	log := slog.New(slog.NewTextHandler(stderr, nil))
	// CERTMAIL_CPUPROFILE=FILE profiles the agent until it stops (certmail bench --cpuprofile).
	if path := os.Getenv("CERTMAIL_CPUPROFILE"); path != "" {
		f, err := os.Create(path)
		if err == nil {
			err = pprof.StartCPUProfile(f)
		}
		if err != nil {
			fmt.Fprintf(stderr, "certmail serve: CPU profile: %v\n", err)
			return exitFail
		}
		defer f.Close()
		defer pprof.StopCPUProfile()
	}
	if err := serve(ctx, cfg, stdout, log); err != nil {
		fmt.Fprintf(stderr, "certmail serve: %v\n", err)
		return exitFail
	}
	return exitOK
}

// reservedFiles is how many file descriptors connLimit leaves for the agent's own files: the
// database and its WAL, the evidence log's tiles and locks, sessions to other mail servers.
const reservedFiles = 512

// connLimit is how many connections each of n listeners serves at once: the configured
// limit, lowered when n times it would leave fewer than reservedFiles of the process's
// nofile (RLIMIT_NOFILE). A flood of connections that took every descriptor would make the
// database and the evidence log fail to open files, and the log's library panics then.
func connLimit(configured, n int, nofile uint64) int {
	room := int64(nofile) - reservedFiles
	if nofile > 1<<40 { // RLIM_INFINITY, or near it
		room = 1 << 40
	}
	return int(max(1, min(int64(configured), room/int64(n))))
}

// gcPercent is the agent's garbage collection target (runtime/debug.SetGCPercent).
const gcPercent = 400

// serve starts every part of the agent, prints where it is, and runs until ctx ends.
func serve(ctx context.Context, cfg config.Config, stdout io.Writer, log *slog.Logger) error {
	now := time.Now()
	if os.Getenv("GOGC") == "" {
		// The agent's live heap is small (tens of MiB) and it allocates fast (a message, its
		// mails and evidence a submission): at 400 the collector runs a quarter as often as
		// at the default 100, which took the agent's CPU per 10 KB message down by an eighth.
		// The price is memory: the RSS with 1,000 messages in flight stayed the same, but under
		// a sustained load it is about twice what it was (BENCHMARKS.md, soak). GOGC in the
		// environment overrides this.
		debug.SetGCPercent(gcPercent)
	}
	if err := pki.EnsurePrivateDir(cfg.DataDir); err != nil {
		return err
	}
	id, _, err := pki.LoadOrCreateAgentKey(cfg.DataDir, cfg.Hostname, rand.Reader)
	if err != nil {
		return err
	}
	ca, err := pki.LoadOrCreateCA(cfg.DataDir, cfg.Hostname, now)
	if err != nil {
		return err
	}
	cert, err := ca.ServerCertificate(cfg.DataDir, []string{cfg.Hostname, "localhost", "127.0.0.1", "::1"}, now)
	if err != nil {
		return err
	}
	tlsCfg := pki.TLSConfig(cert)
	st, err := sqlite.Open(cfg.Path(dbFile))
	if err != nil {
		return err
	}
	defer st.Close()
	// Message bodies are in the database; a data directory of an earlier version keeps older
	// ones as files, read from there.
	var blobs store.Blobs
	if _, err := os.Stat(cfg.Path("blobs")); err == nil {
		if blobs, err = blobfs.Open(cfg.Path("blobs")); err != nil {
			return err
		}
	}
	// tessera logs through klog; its lines go to the agent's log.
	klog.SetSlogLogger(log.With("part", "evidence log"))
	cosigner, err := id.LogCosigner(time.Now)
	if err != nil {
		return err
	}
	evl, err := evlog.Open(evlog.Config{Dir: cfg.Path("log"), Signer: id.Signer, Verifier: id.Verifier, Cosigner: cosigner})
	if err != nil {
		return err
	}
	defer func() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		if err := evl.Close(ctx); err != nil {
			log.Error("closing the evidence log", "err", err)
		}
	}()
	acc := account.New(st, account.Limits{PerAccount: cfg.Limits.LoginPerMinuteAccount,
		PerAddress: cfg.Limits.LoginPerMinuteAddress, Window: time.Minute}, nil)
	admin, adminPW, err := firstAdmin(ctx, st, acc, cfg.Hostname)
	if err != nil {
		return err
	}
	secret, err := loadOrCreateSecret(cfg.Path("web.key"))
	if err != nil {
		return err
	}
	// The queue needs the agent (to record outcomes) and the agent the queue (to kick it when
	// a step queued mail, to hand it a submission's mails): the agent reaches it through out,
	// set once both exist and before anything is served.
	out := &outbox{}
	// The trust store is read once: a change made with `certmail peer` applies at the next start.
	trust, err := pki.LoadTrustStore(cfg.DataDir, id.Verifier)
	if err != nil {
		return err
	}
	ag := agent.New(id, st, blobs, agent.MIMEMails{Domain: cfg.Hostname, Now: time.Now, Rand: rand.Reader},
		agent.Settings{PublicURL: cfg.PublicURL, DefaultDeadline: cfg.Deadlines.Default.Duration(),
			MinDeadline: cfg.Deadlines.Min.Duration(), MaxDeadline: cfg.Deadlines.Max.Duration(),
			WarnAt: cfg.Deadlines.WarnAt, Bounce: "certmail@" + cfg.Hostname, Queued: out.Kick, Outbox: out, Log: evl, Logger: log,
			Peers: peersOf(trust), Domains: cfg.Domains}, nil, nil)
	st.SetCommitDelay(commitDelay, ag.SubmissionsUnderWay)
	// Before serving: the notes a crash left out of the log, or whose place the store lost.
	if recorded, appended, err := ag.RecoverLog(ctx); err != nil {
		return err
	} else if recorded+appended > 0 {
		log.Info("evidence log recovered", "recorded", recorded, "appended", appended)
	}
	defer func() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		if err := ag.Flush(ctx); err != nil {
			log.Error("recording log indices", "err", err)
		}
	}()
	limits := mailfmt.Limits{MaxBytes: cfg.Limits.MaxMessageBytes, MaxRecipients: cfg.Limits.MaxRecipients,
		MinDeadline: cfg.Deadlines.Min.Duration(), MaxDeadline: cfg.Deadlines.Max.Duration(),
		DefaultDeadline: cfg.Deadlines.Default.Duration()}
	queue := mailout.New(mailout.Config{Mode: cfg.Outbound.Mode, Smarthost: cfg.Outbound.Smarthost,
		Username: cfg.Outbound.Username, Password: cfg.Outbound.Password, TLS: cfg.Outbound.TLS,
		Hostname: cfg.Hostname, RetryInitial: cfg.Outbound.RetryInitial.Duration(), RetryMax: cfg.Outbound.RetryMax.Duration(),
		GiveUpAfter: cfg.Outbound.GiveUpAfter.Duration(), Workers: cfg.Outbound.Workers, Logger: log, Peer: peerRoute(trust, cert)}, st, ag)
	out.q = queue
	// Before anything is served: the mails a stopped process claimed are due again.
	if n, err := queue.RecoverClaims(ctx); err != nil {
		return err
	} else if n > 0 {
		log.Info("outbound: mails claimed by a process that stopped are due again", "count", n)
	}

	listeners := 2
	if cfg.Listen.SMTPInbound != "" {
		listeners++
	}
	var nofile syscall.Rlimit
	if err := syscall.Getrlimit(syscall.RLIMIT_NOFILE, &nofile); err != nil {
		return fmt.Errorf("open files limit: %w", err)
	}
	conns := connLimit(cfg.Limits.MaxConnections, listeners, nofile.Cur)
	if conns < cfg.Limits.MaxConnections {
		log.Warn("limits: fewer connections at once than max_connections, for the files this process may open",
			"max_connections", cfg.Limits.MaxConnections, "each_listener", conns, "open_files_limit", nofile.Cur)
	}
	smtpL, err := net.Listen("tcp", cfg.Listen.SMTPSubmission)
	if err != nil {
		return fmt.Errorf("smtp submission: %w", err)
	}
	smtpL = netutil.LimitListener(smtpL, min(conns, cfg.Limits.MaxSubmissionSessions))
	httpsL, err := net.Listen("tcp", cfg.Listen.HTTPS)
	if err != nil {
		return fmt.Errorf("https: %w", err)
	}
	httpsL = netutil.LimitListener(httpsL, conns)
	var trusted []netip.Prefix
	for _, n := range cfg.Submission.TrustedNetworks {
		trusted = append(trusted, netip.MustParsePrefix(n)) // config.Validate checked them
	}
	if len(trusted) > 0 {
		log.Warn("smtp submission: clients from trusted networks submit without AUTH (for benchmarks and trusted relays only)",
			"networks", cfg.Submission.TrustedNetworks, "user", cfg.Submission.TrustedUser)
	}
	smtpSrv := smtpd.New(smtpd.Config{Addr: cfg.Listen.SMTPSubmission, Hostname: cfg.Hostname, TLS: tlsCfg,
		Limits: limits, MaxRecipients: cfg.Limits.MaxRecipients, Logger: log,
		TrustedNetworks: trusted, TrustedUser: cfg.Submission.TrustedUser}, ag, acc)
	webSrv := web.New(web.Config{PublicURL: cfg.PublicURL, Limits: limits, Secret: secret, Logger: log,
		Log: evlog.Handler(evl.Dir()), LogOrigin: evl.Origin()}, ag, acc)
	httpSrv := &http.Server{Handler: webSrv, TLSConfig: tlsCfg, ReadHeaderTimeout: 10 * time.Second}

	errs := make(chan error, 6)
	var relayAddr net.Addr
	if cfg.Listen.SMTPInbound != "" {
		relayL, err := net.Listen("tcp", cfg.Listen.SMTPInbound)
		if err != nil {
			return fmt.Errorf("smtp inbound: %w", err)
		}
		relayL = netutil.LimitListener(relayL, conns)
		relayAddr = relayL.Addr()
		relaySrv := smtpd.NewRelay(smtpd.RelayConfig{Hostname: cfg.Hostname, TLS: tlsCfg, Logger: log,
			// A relay carries M base64-encoded, with its evidence: room for both.
			MaxBytes: cfg.Limits.MaxMessageBytes/3*4 + 1<<20,
			Peer: func(name string) (string, string, bool) {
				p, ok := trust.Peer(name)
				return p.Key, p.TLSSPKI, ok
			}}, ag)
		go func() { errs <- relaySrv.Serve(relayL) }()
		defer relaySrv.Close()
	}
	go func() { errs <- smtpSrv.Serve(smtpL) }()
	go func() { errs <- httpSrv.ServeTLS(httpsL, "", "") }()
	// The agent's own loops stop with loopCtx; serve returns only once they have, so that the
	// deferred Flush logs the notes of the last deliveries and timers they record.
	loopCtx, stopLoops := context.WithCancel(ctx)
	var loops sync.WaitGroup
	defer loops.Wait()
	defer stopLoops()
	loops.Go(func() { queue.Run(loopCtx); errs <- nil })
	loops.Go(func() { runTimers(loopCtx, ag, log); errs <- nil })
	loops.Go(func() { runBackfill(loopCtx, ag, log); errs <- nil })

	var relayLine string
	switch {
	case relayAddr != nil:
		relayLine = fmt.Sprintf("%v (from peer agents: %d in the trust store)", relayAddr, len(trust.Peers))
	case len(trust.Peers) > 0:
		relayLine = fmt.Sprintf("off: %d peer agents can be relayed to, but none can relay here until [listen] smtp_inbound is set", len(trust.Peers))
	}
	printBanner(stdout, cfg, id.Verifier, evl.Origin(), smtpL.Addr(), httpsL.Addr(), relayLine, admin, adminPW)

	var runErr error
	select {
	case <-ctx.Done():
	case runErr = <-errs:
	}
	shutdown, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	smtpSrv.Close()
	httpSrv.Shutdown(shutdown)
	if runErr != nil && !errors.Is(runErr, http.ErrServerClosed) {
		return runErr
	}
	return nil
}

// runTimers fires the agent's due timers every second; timers are rows, so those that came due
// while the agent was down fire at its first pass.
func runTimers(ctx context.Context, ag *agent.Agent, log *slog.Logger) {
	t := time.NewTicker(time.Second)
	defer t.Stop()
	for {
		if n, err := ag.RunTimers(ctx); err != nil {
			log.Error("timers", "err", err)
		} else if n > 0 {
			log.Info("timers fired", "count", n)
		}
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}

// runBackfill logs, every minute, the notes of steps whose append to the evidence log failed
// (those steps were reported failed, but their notes are stored).
func runBackfill(ctx context.Context, ag *agent.Agent, log *slog.Logger) {
	t := time.NewTicker(time.Minute)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		if n, err := ag.Backfill(ctx); err != nil {
			log.Error("evidence log backfill", "err", err)
		} else if n > 0 {
			log.Info("evidence log backfilled", "notes", n)
		}
	}
}

// firstAdmin creates admin@HOST with a generated password when the agent has no user yet, and
// returns them to print once.
func firstAdmin(ctx context.Context, st store.Store, acc *account.Accounts, host string) (string, string, error) {
	us, err := acc.List(ctx)
	if err != nil || len(us) > 0 {
		return "", "", err
	}
	pw, err := newPassword()
	if err != nil {
		return "", "", err
	}
	addr := "admin@" + host
	if err := acc.Add(ctx, addr, pw, true); err != nil {
		return "", "", err
	}
	return addr, pw, nil
}

// loadOrCreateSecret keeps the web server's HMAC key (CSRF tokens) in a 0600 file.
func loadOrCreateSecret(path string) ([]byte, error) {
	b, err := os.ReadFile(path)
	if err == nil && len(b) == 32 {
		return b, nil
	}
	if err == nil || !errors.Is(err, fs.ErrNotExist) {
		return nil, fmt.Errorf("web secret %s: want 32 bytes (remove the file to make a new one; signed-in sessions end): %v", path, err)
	}
	b = make([]byte, 32)
	if _, err := rand.Read(b); err != nil {
		return nil, err
	}
	// Written whole or not at all, so a crash cannot leave a short secret behind.
	if err := durable.WriteAtomic(path, b, 0o600); err != nil {
		return nil, fmt.Errorf("web secret: %w", err)
	}
	return b, nil
}

func printBanner(w io.Writer, cfg config.Config, vkey, logOrigin string, smtpAddr, httpsAddr net.Addr, relayLine, admin, adminPW string) {
	dir, _ := filepath.Abs(cfg.DataDir)
	fmt.Fprintf(w, "certmail is serving %s\n\n", cfg.Hostname)
	fmt.Fprintf(w, "  data directory   %s\n", dir)
	fmt.Fprintf(w, "  agent key        %s\n", vkey)
	fmt.Fprintf(w, "  SMTP submission  %s (STARTTLS, then AUTH PLAIN or LOGIN)\n", smtpAddr)
	fmt.Fprintf(w, "  HTTPS            %s (sign in to send and follow messages; API; pickup pages)\n", cfg.PublicURL)
	fmt.Fprintf(w, "  listening on     %s\n", httpsAddr)
	fmt.Fprintf(w, "  evidence log     %s/log/ (origin %s; keys at %s/.well-known/certmail)\n", cfg.PublicURL, logOrigin, cfg.PublicURL)
	fmt.Fprintf(w, "  local CA         %s (trust it in your mail client and browser)\n", filepath.Join(dir, pki.CACertFile))
	fmt.Fprintf(w, "  outbound mail    %s\n", outboundLine(cfg))
	if relayLine != "" {
		fmt.Fprintf(w, "  SMTP relay       %s\n", relayLine)
	}
	if admin != "" {
		fmt.Fprintf(w, "\n  admin account    %s\n  password         %s   (shown once)\n", admin, adminPW)
	} else {
		admin, adminPW = "YOU@"+cfg.Hostname, "PASSWORD"
	}
	fmt.Fprintf(w, "\nNext, send a certified message:\n  swaks --server %s --tls --tls-ca-path %s \\\n    --auth PLAIN --auth-user %s --auth-password '%s' \\\n    --from %s --to someone@example.org --header 'Subject: hello'\n",
		smtpAddr, filepath.Join(dir, pki.CACertFile), admin, adminPW, admin)
	fmt.Fprintf(w, "Add senders with: certmail user add ADDRESS\n")
}

func outboundLine(cfg config.Config) string {
	if cfg.Outbound.Mode == config.ModeSmarthost {
		return "through " + cfg.Outbound.Smarthost
	}
	return "direct to each recipient's MX"
}

// peersOf gives the agent the trust store's peers: their keys, and which peer serves which
// mail domain.
func peersOf(ts *pki.TrustStore) agent.Peers {
	p := agent.Peers{Keys: map[string]string{}, Routes: map[string]string{}}
	for _, peer := range ts.Peers {
		p.Keys[peer.Name] = peer.Key
		for _, d := range peer.Domains {
			p.Routes[strings.ToLower(d)] = peer.Name
		}
	}
	return p
}

// peerRoute sends relay mail to the peer's relay endpoint over TLS, presenting this agent's
// certificate. A peer whose TLS key the trust store pins must show that key; without a pin,
// TLS only encrypts, and the peer is known by the signature of what it sends back.
func peerRoute(ts *pki.TrustStore, cert tls.Certificate) func(store.Outbound) (mailout.PeerHop, bool) {
	return func(m store.Outbound) (mailout.PeerHop, bool) {
		if !agent.IsPeerMail(m.Kind) {
			return mailout.PeerHop{}, false
		}
		name := strings.TrimPrefix(m.To, relay.Address(""))
		p, ok := ts.Peer(name)
		if !ok {
			// Removed from the trust store since it was queued: it bounces, and never goes
			// to the smarthost or an MX.
			return mailout.PeerHop{Name: name}, true
		}
		host, _, _ := net.SplitHostPort(p.Relay)
		c := pki.TLSConfig(cert)
		c.ServerName = host
		c.InsecureSkipVerify = true // each agent's certificate comes from its own CA: checked by pin below
		c.VerifyConnection = func(cs tls.ConnectionState) error {
			if p.TLSSPKI == "" {
				return nil
			}
			if len(cs.PeerCertificates) == 0 || pki.SPKIPin(cs.PeerCertificates[0]) != p.TLSSPKI {
				return fmt.Errorf("the TLS certificate of %s is not the one the trust store pins", p.Name)
			}
			return nil
		}
		return mailout.PeerHop{Addr: p.Relay, Name: p.Name, TLS: c}, true
	}
}

// outbox is the agent's way to the outbound queue, which is made after the agent (it records
// its outcomes with the agent): q is set once, before anything is served. A Kick before then
// (a step of the start-up) has no queue to wake, and the queue's first run finds the mail.
type outbox struct{ q *mailout.Queue }

func (o *outbox) Kick() {
	if o.q != nil {
		o.q.Kick()
	}
}
func (o *outbox) Claim(m store.Outbound) store.Outbound { return o.q.Claim(m) }
func (o *outbox) Hand(ms ...store.Outbound)             { o.q.Hand(ms...) }
