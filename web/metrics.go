package web

import (
	"fmt"
	"net/http"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
)

// metrics are the counters of one Server, served at /metrics in the Prometheus text exposition
// format (version 0.0.4). They belong to the Server, not to the process, so tests and several
// servers in one process each count their own. Counts are of what went through this HTTP face;
// the SMTP face counts its own submissions.
type metrics struct {
	submissions, acceptances, refusals, retrievals atomic.Uint64

	mu       sync.Mutex
	requests map[requestKey]uint64
}

type requestKey struct {
	route string // the ServeMux pattern, so the label's values are bounded
	code  int
}

func newMetrics() *metrics { return &metrics{requests: map[requestKey]uint64{}} }

func (m *metrics) request(route string, code int) {
	m.mu.Lock()
	m.requests[requestKey{route, code}]++
	m.mu.Unlock()
}

func (m *metrics) serve(w http.ResponseWriter, r *http.Request, appended uint64) {
	var b strings.Builder
	counter := func(name, help string, v uint64) {
		fmt.Fprintf(&b, "# HELP %s %s\n# TYPE %s counter\n%s %d\n", name, help, name, name, v)
	}
	counter("certmail_log_appended_total", "Evidence notes this process appended to the public evidence log.", appended)
	counter("certmail_web_submissions_total", "Submissions the API accepted (201).", m.submissions.Load())
	counter("certmail_web_acceptances_total", "Messages recipients accepted on the pickup pages.", m.acceptances.Load())
	counter("certmail_web_refusals_total", "Messages recipients refused on the pickup pages.", m.refusals.Load())
	counter("certmail_web_retrievals_total", "Times accepted content was shown or downloaded (each signed as RET).", m.retrievals.Load())
	// The process's goroutines, the standard Go collectors' go_goroutines: what a soak watches
	// for leaks.
	fmt.Fprintf(&b, "# HELP go_goroutines Number of goroutines that currently exist.\n# TYPE go_goroutines gauge\ngo_goroutines %d\n", runtime.NumGoroutine())

	m.mu.Lock()
	keys := make([]requestKey, 0, len(m.requests))
	for k := range m.requests {
		keys = append(keys, k)
	}
	counts := make(map[requestKey]uint64, len(keys))
	for _, k := range keys {
		counts[k] = m.requests[k]
	}
	m.mu.Unlock()
	slices.SortFunc(keys, func(a, b requestKey) int {
		if c := strings.Compare(a.route, b.route); c != 0 {
			return c
		}
		return a.code - b.code
	})
	const name = "certmail_http_requests_total"
	fmt.Fprintf(&b, "# HELP %s HTTP requests by route and status code.\n# TYPE %s counter\n", name, name)
	for _, k := range keys {
		fmt.Fprintf(&b, "%s{route=\"%s\",code=\"%s\"} %d\n", name, labelValue(k.route), strconv.Itoa(k.code), counts[k])
	}
	w.Header().Set("Content-Type", "text/plain; version=0.0.4; charset=utf-8")
	w.Write([]byte(b.String()))
}

// labelValue escapes a label value as the exposition format asks: backslash, quote, newline.
func labelValue(s string) string {
	return strings.NewReplacer(`\`, `\\`, `"`, `\"`, "\n", `\n`).Replace(s)
}
