// Package mailout delivers the agent's durable outbound queue (DESIGN.md §7, Outbound): it takes
// the mails that are due from the store, hands each to the next SMTP server — the recipient
// domain's MX, or a configured smarthost — and reports the outcome to a Recorder (the agent),
// which stores it and signs NTF when a notification is delivered or NDN when it bounces.
//
// Delivery is at least once. A mail is recorded sent only after the next server answered 2xx to
// the end of its DATA (RFC 5321 4.1.1.4). If the process stops between that reply and the record,
// or the record fails, the mail is sent again later: receivers dedupe by Message-ID, and the agent
// signs NTF only for an item still posted, so a repeat adds no evidence.
//
// Before delivering, a run claims its mails in one transaction by moving their next attempt a
// lease ahead, so that two runs, or two agent nodes sharing a store whose Update is serializable,
// do not deliver the same mail at once; a delivery that a crash interrupted is tried again when
// the lease ends, or at once when the next process recovers its claims. A step that queues mail
// to send at once (a submission's notification and posting receipt) can instead store it
// claimed from birth (Claim) and hand it over after its commit (Hand): the queue then delivers
// it without a transaction to claim it.
//
// The package decides only whether a failure is permanent or temporary; it never changes an item
// or signs anything itself, and never logs message data or passwords.
package mailout

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"net"
	"strings"
	"sync"
	"time"

	"certmail/config"
	"certmail/store"
)

// Recorder stores the outcome of a delivery durably. The agent implements it: both set the mail's
// State themselves, and sign NTF or NDN when the mail is a notification.
type Recorder interface {
	// Sent records that the next server accepted m.
	Sent(ctx context.Context, m store.Outbound) error
	// Bounced records that m can never be delivered, and why, in words the sender can act on.
	Bounced(ctx context.Context, m store.Outbound, why string) error
}

// Resolver looks up where a domain's mail goes. *net.Resolver implements it.
type Resolver interface {
	LookupMX(ctx context.Context, name string) ([]*net.MX, error)
	LookupHost(ctx context.Context, host string) ([]string, error)
}

// Config says how to deliver. The zero value of each field but Smarthost has a working default.
type Config struct {
	// Mode is config.ModeMX (the recipient domain's MX hosts, with STARTTLS when offered) or
	// config.ModeSmarthost; default: smarthost when Smarthost is set, else MX.
	Mode      string
	Smarthost string // host:port of the relay
	// Username and Password authenticate to the smarthost with AUTH PLAIN, never in the clear.
	Username, Password string
	// TLS to the smarthost: config.TLSNone, config.TLSStartTLS (default; refuse a relay that does
	// not offer it) or config.TLSImplicit (RFC 8314).
	TLS      string
	RootCAs  *x509.CertPool // to verify the smarthost; nil for the system's roots
	Hostname string         // the name this agent gives in EHLO; default "localhost"

	// After a temporary failure the next attempt waits RetryInitial, doubling up to RetryMax, less
	// up to a fifth at random so that mails failing together do not retry together. A mail still
	// undelivered GiveUpAfter its creation bounces (RFC 5321 4.5.4.1). Defaults: 5m, 1h, 5 days.
	RetryInitial, RetryMax, GiveUpAfter time.Duration

	Resolver Resolver         // nil for net.DefaultResolver
	Port     string           // the port of MX hosts: "25" unless a test points it elsewhere
	Now      func() time.Time // nil for time.Now
	Rand     func() float64   // in [0, 1), for the jitter; nil for math/rand/v2
	Logger   *slog.Logger     // nil for slog.Default()
	Workers  int              // deliveries at once, and sessions kept open to the smarthost; default 32
	Poll     time.Duration    // how often Run looks for due mail; default 1m
	Batch    int              // mails claimed by one run; default 100
	// Timeout bounds one mail's delivery, all hosts tried included; default 15m, above the 10
	// minutes RFC 5321 4.5.3.2.6 asks a client to wait for the reply to the end of DATA.
	Timeout time.Duration
	// Peer, when set, routes a mail to a peer agent's relay endpoint instead of the smarthost or
	// the MX: false for ordinary mail. Such a mail always goes over STARTTLS with the hop's TLS
	// configuration (which presents this agent's certificate), without AUTH.
	Peer func(m store.Outbound) (PeerHop, bool)
}

// PeerHop is where a relay mail for a peer agent goes.
type PeerHop struct {
	Addr string // host:port of the peer's relay endpoint; "" bounces the mail (no such peer)
	Name string // the peer's name, to say who answered
	TLS  *tls.Config
}

// recordTimeout bounds writing an outcome, which happens even when the run is cancelled: a mail
// the next server took must be recorded if at all possible.
const recordTimeout = 30 * time.Second

// Queue delivers the outbound queue of one store. It is safe for concurrent use.
type Queue struct {
	cfg  Config
	st   store.Store
	rec  Recorder
	log  *slog.Logger
	kick chan struct{}
	idle chan *session // open sessions to the smarthost, for the next mails
	// slots holds a token for each delivery under way, Workers in all, whether Run claimed the
	// mail or was handed it.
	slots chan struct{}

	handMu sync.Mutex
	handed []store.Outbound // claimed at birth and committed, waiting for Run (Hand)
	hand   chan struct{}    // tells Run there are handed mails

	randMu sync.Mutex // Config.Rand need not be safe for concurrent use
}

// New returns a queue delivering st's outbound mail and recording outcomes with rec.
func New(cfg Config, st store.Store, rec Recorder) *Queue {
	if cfg.Mode == "" {
		cfg.Mode = config.ModeMX
		if cfg.Smarthost != "" {
			cfg.Mode = config.ModeSmarthost
		}
	}
	if cfg.TLS == "" {
		cfg.TLS = config.TLSStartTLS
	}
	if cfg.Hostname == "" {
		cfg.Hostname = "localhost"
	}
	if cfg.RetryInitial <= 0 {
		cfg.RetryInitial = 5 * time.Minute
	}
	if cfg.RetryMax < cfg.RetryInitial {
		cfg.RetryMax = max(time.Hour, cfg.RetryInitial)
	}
	if cfg.GiveUpAfter <= 0 {
		cfg.GiveUpAfter = 5 * 24 * time.Hour
	}
	if cfg.Resolver == nil {
		cfg.Resolver = net.DefaultResolver
	}
	if cfg.Port == "" {
		cfg.Port = "25"
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	if cfg.Rand == nil {
		cfg.Rand = rand.Float64
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	if cfg.Workers <= 0 {
		cfg.Workers = 32
	}
	if cfg.Poll <= 0 {
		cfg.Poll = time.Minute
	}
	if cfg.Batch <= 0 {
		cfg.Batch = 100
	}
	if cfg.Timeout <= 0 {
		cfg.Timeout = 15 * time.Minute
	}
	return &Queue{cfg: cfg, st: st, rec: rec, log: cfg.Logger, kick: make(chan struct{}, 1), idle: make(chan *session, cfg.Workers),
		slots: make(chan struct{}, cfg.Workers), hand: make(chan struct{}, 1)}
}

// lease is how long a claimed mail stays out of other runs' reach: its delivery's bound, and a
// minute to record the outcome.
func (q *Queue) lease() time.Duration { return q.cfg.Timeout + time.Minute }

// Kick asks Run to look at the queue now rather than at its next poll, as when a submission has
// just queued a notification. It never blocks.
func (q *Queue) Kick() {
	select {
	case q.kick <- struct{}{}:
	default: // a run is asked for already
	}
}

// Claim returns m, a mail about to be enqueued, claimed by this queue from birth: due only
// when a lease has passed since m.Updated, as a run's claim leaves it. A step that enqueues
// mail claimed so hands it to the queue once committed (Hand), and the queue delivers it
// without the transaction that claiming it from the store would cost. If the process stops
// before the delivery is recorded, RecoverClaims makes the mail due again at the next start.
func (q *Queue) Claim(m store.Outbound) store.Outbound {
	m.NextAttempt = m.Updated.Add(q.lease())
	return m
}

// Hand gives Run mails that a committed step enqueued claimed (Claim), to deliver at once, as
// many at a time as Workers allows with the mails Run claims itself. Mails handed to a queue
// that is not running wait for Run; those Run has not started when it stops are given back,
// due at once. When more than maxHanded wait, Hand gives the rest back to the store itself
// (a write, the only time it waits) and kicks a run to claim them.
func (q *Queue) Hand(ms ...store.Outbound) {
	if len(ms) == 0 {
		return
	}
	q.handMu.Lock()
	room := max(maxHanded-len(q.handed), 0)
	over := ms[min(room, len(ms)):]
	q.handed = append(q.handed, ms[:min(room, len(ms))]...)
	q.handMu.Unlock()
	select {
	case q.hand <- struct{}{}:
	default: // Run is told already
	}
	if len(over) > 0 {
		ctx, cancel := context.WithTimeout(context.Background(), recordTimeout)
		defer cancel()
		q.giveBack(ctx, over)
		q.Kick()
	}
}

// takeHanded returns the mails handed over since it was last called.
func (q *Queue) takeHanded() []store.Outbound {
	q.handMu.Lock()
	defer q.handMu.Unlock()
	ms := q.handed
	q.handed = nil
	return ms
}

// Run delivers due mail every Poll, at once after a Kick, and the mails handed over with Hand
// as they come, until ctx ends. It returns once the deliveries under way have ended and their
// outcomes are recorded. The process that delivers a store's queue calls RecoverClaims once,
// before it takes any mail and before Run.
func (q *Queue) Run(ctx context.Context) {
	t := time.NewTimer(0)
	defer t.Stop()
	defer q.closeIdle()
	// Handed mails are delivered beside the runs by a dispatcher that starts each once a slot
	// is free; Run stops it, then waits for the deliveries under way, before it returns.
	var handed sync.WaitGroup
	stop, stopped := make(chan struct{}), make(chan struct{})
	defer handed.Wait()
	defer func() { close(stop); <-stopped }()
	go func() {
		defer close(stopped)
		q.dispatch(ctx, stop, &handed)
	}()
	for {
		select {
		case <-ctx.Done():
			return
		case <-q.kick:
		case <-t.C:
		}
		claimed, _, _, _, err := q.runOnce(ctx)
		if err != nil && ctx.Err() == nil {
			q.log.Error("outbound: run", "err", err)
		}
		if claimed == q.cfg.Batch {
			t.Reset(0) // there may be more
		} else {
			t.Reset(q.untilNext(ctx))
		}
	}
}

// untilNext is how long Run may sleep: until the earliest mail waiting out its backoff is due,
// and at most Poll, so that a retry a few seconds away is not put off to the next poll.
func (q *Queue) untilNext(ctx context.Context) time.Duration {
	now := q.cfg.Now()
	var next []store.Outbound
	err := q.st.View(ctx, func(tx store.Tx) (err error) { next, err = tx.DueOutbound(now.Add(q.cfg.Poll), 1); return err })
	if err != nil || len(next) == 0 {
		return q.cfg.Poll
	}
	// Never less than a moment: a mail that stays due (its outcome could not be recorded) must
	// not spin the loop.
	return min(max(next[0].NextAttempt.Sub(now), 50*time.Millisecond), q.cfg.Poll)
}

// RecoverClaims makes due again the mails a run claimed and never finished, because the process
// stopped during their delivery: without it they would wait out their lease (Timeout plus a
// minute) before anyone tried them again. A claim is recognised by its lease: its NextAttempt is
// exactly lease after its Updated. It is for the start of the one process delivering a store's
// queue, before the process takes mail and before Run: a mail claimed at birth (Claim) after it
// started would be released and delivered twice. Several nodes sharing a queue would release
// each other's.
func (q *Queue) RecoverClaims(ctx context.Context) (int, error) {
	now := q.cfg.Now()
	var n int
	err := q.st.Update(ctx, func(tx store.Tx) error {
		n = 0
		waiting, err := tx.DueOutbound(now.Add(q.lease()+time.Minute), 1<<16)
		if err != nil {
			return err
		}
		for _, m := range waiting {
			if !m.NextAttempt.After(now) || m.NextAttempt.Sub(m.Updated) != q.lease() {
				continue
			}
			m.NextAttempt, m.Updated = now, now
			if err := tx.UpdateOutbound(m); err != nil {
				return err
			}
			n++
		}
		return nil
	})
	if err != nil {
		return 0, fmt.Errorf("mailout: recover claims: %w", err)
	}
	return n, nil
}

// RunOnce claims the mails due now, delivers them, Workers at a time, and records each outcome:
// delivered (the next server took it), retried (a temporary failure: it waits its backoff) or
// bounced (a permanent failure, or temporary ones for GiveUpAfter). A mail whose delivery ctx
// interrupted is counted in none and released for the next run. err joins the failures to claim
// or to record; the mails whose outcome could not be recorded are tried again after their lease.
func (q *Queue) RunOnce(ctx context.Context) (delivered, retried, bounced int, err error) {
	_, delivered, retried, bounced, err = q.runOnce(ctx)
	return delivered, retried, bounced, err
}

type outcome int

const (
	outDelivered outcome = iota
	outRetried
	outBounced
	outInterrupted
)

func (q *Queue) runOnce(ctx context.Context) (claimed, delivered, retried, bounced int, err error) {
	batch, err := q.claim(ctx)
	if err != nil {
		return 0, 0, 0, 0, err
	}
	var (
		mu   sync.Mutex
		errs []error
		wg   sync.WaitGroup
	)
	for i, m := range batch {
		q.slots <- struct{}{}
		if ctx.Err() != nil { // stopped: what has not started goes back at once
			<-q.slots
			if err := q.release(ctx, batch[i:]); err != nil {
				errs = append(errs, err)
			}
			break
		}
		wg.Go(func() {
			out, err := q.attempt(ctx, m, func() { <-q.slots })
			mu.Lock()
			defer mu.Unlock()
			if err != nil {
				errs = append(errs, err)
				return
			}
			switch out {
			case outDelivered:
				delivered++
			case outRetried:
				retried++
			case outBounced:
				bounced++
			}
		})
	}
	wg.Wait()
	return len(batch), delivered, retried, bounced, errors.Join(errs...)
}

// maxHanded bounds the handed mails waiting for the dispatcher. When deliveries fall behind,
// Hand gives the mails beyond it back to the store, due at once, for Run's next run to claim:
// the backlog waits on disk, not in memory.
const maxHanded = 1000

// dispatch delivers the handed mails, each once a slot is free, until stop is closed; then it
// gives back the mails it has not started.
func (q *Queue) dispatch(ctx context.Context, stop <-chan struct{}, deliveries *sync.WaitGroup) {
	for {
		select {
		case <-stop:
			q.giveBack(ctx, q.takeHanded())
			return
		case <-q.hand:
		}
		for ms := q.takeHanded(); len(ms) > 0; ms = q.takeHanded() {
			for len(ms) > 0 {
				select {
				case q.slots <- struct{}{}:
				case <-stop:
					q.giveBack(ctx, append(ms, q.takeHanded()...))
					return
				}
				// What was handed while the slots were busy joins the group.
				ms = append(ms, q.takeHanded()...)
				group := q.group(ms)
				ms = ms[len(group):]
				deliveries.Go(func() {
					// attempt logs what it cannot record. A mail that waits for a retry, or
					// was given back, is the runs' now: Run must look at when it is due.
					for _, out := range q.attemptGroup(ctx, group, func() { <-q.slots }) {
						if out != outDelivered && out != outBounced {
							q.Kick()
							break
						}
					}
				})
			}
		}
	}
}

// Limits of a group of mails handed to the smarthost in one round trip.
const (
	maxGroup      = 16
	maxGroupBytes = 1 << 20
)

// group is the mails at the head of ms to deliver together: to the smarthost, the first and
// those after it that go there too, up to maxGroup of them and maxGroupBytes; otherwise the
// first alone.
func (q *Queue) group(ms []store.Outbound) []store.Outbound {
	n, size := 0, 0
	for n < len(ms) && n < maxGroup && q.cfg.Mode == config.ModeSmarthost {
		if _, peer := q.peer(ms[n]); peer || (n > 0 && size+len(ms[n].Data) > maxGroupBytes) {
			break
		}
		size += len(ms[n].Data)
		n++
	}
	return ms[:max(n, 1)]
}

// peer says where m goes when it goes to a trusted peer agent rather than by mail.
func (q *Queue) peer(m store.Outbound) (PeerHop, bool) {
	if q.cfg.Peer == nil {
		return PeerHop{}, false
	}
	return q.cfg.Peer(m)
}

// giveBack makes handed mails that were not delivered due at once, for a run to claim.
func (q *Queue) giveBack(ctx context.Context, ms []store.Outbound) {
	if len(ms) == 0 {
		return
	}
	if err := q.release(ctx, ms); err != nil {
		q.log.Warn("outbound: handed mails not given back; due when their claim ends", "count", len(ms), "err", err)
	}
}

// release gives claimed mails back, due now, without counting an attempt: the run that claimed
// them was stopped. It writes even though ctx has ended.
func (q *Queue) release(ctx context.Context, ms []store.Outbound) error {
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), recordTimeout)
	defer cancel()
	now := q.cfg.Now()
	err := q.st.Update(ctx, func(tx store.Tx) error {
		for _, m := range ms {
			m.NextAttempt, m.Updated = now, now
			if err := tx.UpdateOutbound(m); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		return fmt.Errorf("mailout: release %d claimed mails: %w", len(ms), err)
	}
	return nil
}

// claim takes the mails due now and moves their next attempt a lease ahead, in one transaction.
func (q *Queue) claim(ctx context.Context) ([]store.Outbound, error) {
	now := q.cfg.Now()
	var batch []store.Outbound
	err := q.st.Update(ctx, func(tx store.Tx) error {
		due, err := tx.DueOutbound(now, q.cfg.Batch)
		if err != nil {
			return err
		}
		for _, m := range due {
			m.NextAttempt, m.Updated = now.Add(q.lease()), now
			if err := tx.UpdateOutbound(m); err != nil {
				return err
			}
		}
		batch = due
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("mailout: claim due mail: %w", err)
	}
	return batch, nil
}

// attempt delivers m once and records what came of it. It calls done once the delivery has
// ended, before it records the outcome: the slot it frees is for delivering, and recording
// waits for a commit.
func (q *Queue) attempt(ctx context.Context, m store.Outbound, done func()) (outcome, error) {
	dctx, cancel := context.WithTimeout(ctx, q.cfg.Timeout)
	r := q.deliver(dctx, m)
	done()
	r = q.timedOut(dctx, r)
	cancel()
	return q.record(ctx, m, r)
}

// attemptGroup delivers a group of mails (group) to the smarthost in one session, calls done,
// and records each mail's outcome, as attempt does one's.
func (q *Queue) attemptGroup(ctx context.Context, ms []store.Outbound, done func()) []outcome {
	if len(ms) == 1 {
		out, _ := q.attempt(ctx, ms[0], done)
		return []outcome{out}
	}
	dctx, cancel := context.WithTimeout(ctx, q.cfg.Timeout)
	rs := q.deliverSmarthost(dctx, ms)
	done()
	for i := range rs {
		rs[i] = q.timedOut(dctx, rs[i])
	}
	cancel()
	// Each record waits for its commit, which the others may share.
	outs := make([]outcome, len(ms))
	var wg sync.WaitGroup
	for i := range ms {
		wg.Go(func() { outs[i], _ = q.record(ctx, ms[i], rs[i]) })
	}
	wg.Wait()
	return outs
}

// timedOut says so when r failed because the delivery's time, dctx's, ran out.
func (q *Queue) timedOut(dctx context.Context, r result) result {
	if r.err != nil && errors.Is(dctx.Err(), context.DeadlineExceeded) {
		// The error is whatever the closed connection gave the command under way ("use of
		// closed network connection"): say what happened, so the sender and the log know.
		r.err = fmt.Errorf("no answer within %s: %w", q.cfg.Timeout, r.err)
	}
	return r
}

// record records the result r of one attempt to deliver m: delivered, to retry, or bounced.
func (q *Queue) record(ctx context.Context, m store.Outbound, r result) (outcome, error) {
	rctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), recordTimeout)
	defer cancel()
	now := q.cfg.Now()
	log := q.log.With("id", m.ID, "label", labelOf(m), "kind", m.Kind, "domain", domainOf(m.To),
		"attempt", m.Attempts+1, "host", r.host, "code", r.code)

	if r.err != nil && !r.permanent && ctx.Err() != nil {
		// Not the server's failure: the run was stopped. Release the claim so that the next
		// run, maybe after a restart, tries again at once; the attempt does not count.
		if err := q.release(ctx, []store.Outbound{m}); err != nil {
			log.Warn("outbound: interrupted; tried again when its claim ends", "err", err)
			return outInterrupted, err
		}
		log.Info("outbound: interrupted; released", "err", r.err)
		return outInterrupted, nil
	}

	m.Attempts++
	switch {
	case r.err == nil:
		if err := q.rec.Sent(rctx, m); err != nil {
			log.Error("outbound: delivered but not recorded; it will be sent again when its claim ends", "err", err)
			return outDelivered, fmt.Errorf("mailout: record outbound %d sent: %w", m.ID, err)
		}
		log.Info("outbound: delivered")
		return outDelivered, nil

	case r.permanent:
		return q.bounce(rctx, log, m, r.reason())
	}

	m.LastError = r.reason()
	if age := now.Sub(m.Created); age >= q.cfg.GiveUpAfter {
		log.Info("outbound: temporary failure", "err", r.err)
		return q.bounce(rctx, log, m, fmt.Sprintf("gave up after %s and %d attempts; the last: %s", span(age), m.Attempts, m.LastError))
	}
	// The last attempt falls at GiveUpAfter exactly, so a mail bounces on time.
	m.NextAttempt = now.Add(backoff(q.cfg.RetryInitial, q.cfg.RetryMax, m.Attempts, q.rand()))
	if end := m.Created.Add(q.cfg.GiveUpAfter); m.NextAttempt.After(end) {
		m.NextAttempt = end
	}
	m.Updated = now
	if err := q.st.Update(rctx, func(tx store.Tx) error { return tx.UpdateOutbound(m) }); err != nil {
		log.Error("outbound: temporary failure not recorded", "err", err)
		return outRetried, fmt.Errorf("mailout: record outbound %d retry: %w", m.ID, err)
	}
	log.Info("outbound: temporary failure; will retry", "err", r.err, "next", m.NextAttempt)
	return outRetried, nil
}

func (q *Queue) bounce(ctx context.Context, log *slog.Logger, m store.Outbound, why string) (outcome, error) {
	if err := q.rec.Bounced(ctx, m, why); err != nil {
		log.Error("outbound: bounce not recorded", "err", err)
		return outBounced, fmt.Errorf("mailout: record outbound %d bounced: %w", m.ID, err)
	}
	log.Info("outbound: bounced", "why", why)
	return outBounced, nil
}

func (q *Queue) rand() float64 {
	q.randMu.Lock()
	defer q.randMu.Unlock()
	return q.cfg.Rand()
}

// backoff is the wait after the given number of failed attempts: initial, doubling up to most,
// less r (in [0, 1)) times a fifth.
func backoff(initial, most time.Duration, attempts int, r float64) time.Duration {
	d := initial
	for i := 1; i < attempts && d < most; i++ {
		d *= 2
	}
	d = min(d, most)
	return d - time.Duration(r*float64(d/5))
}

// span writes a duration the way a person would: 120h, 1h30m, 45m.
func span(d time.Duration) string {
	d = d.Round(time.Minute)
	h, m := int(d/time.Hour), int(d%time.Hour/time.Minute)
	switch {
	case h == 0:
		return fmt.Sprintf("%dm", m)
	case m == 0:
		return fmt.Sprintf("%dh", h)
	}
	return fmt.Sprintf("%dh%dm", h, m)
}

// domainOf is the domain of an address, in lower case; "" when there is none.
func domainOf(addr string) string {
	i := strings.LastIndexByte(addr, '@')
	if i < 0 {
		return ""
	}
	return strings.ToLower(addr[i+1:])
}

func labelOf(m store.Outbound) string {
	if m.Label.IsZero() {
		return ""
	}
	return m.Label.String()
}
