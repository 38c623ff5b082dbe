package evlog

import (
	"sync"

	"certmail/evidence"
)

// request is one Append waiting for its entries to be sequenced.
type request struct {
	leaves []evidence.Hash
	idx    []uint64
	err    error
	done   chan struct{} // closed when idx or err is set
}

// committer is group commit in front of tessera's batching queue. tessera flushes a batch when
// it is full or when its first entry has waited the batch age; whatever the age, a lone step
// waits for it, and steps arriving while a batch is being written make batches of their own
// that queue behind it, each paying the full cost of writing tiles and syncing. The committer
// instead hands tessera everything that arrived while the previous group was being written, at
// once: a lone step waits only for its own write, and under load the groups grow by themselves,
// so the fsyncs are shared by as many steps as are waiting (BENCHMARKS.md, evidence log).
type committer struct {
	mu      sync.Mutex
	waiting []*request
	running bool
}

// submit queues r, and runs commit on groups of waiting requests until none is left unless a
// goroutine is doing so already.
func (c *committer) submit(r *request, commit func([]*request)) {
	c.mu.Lock()
	c.waiting = append(c.waiting, r)
	if c.running {
		c.mu.Unlock()
		return
	}
	c.running = true
	c.mu.Unlock()
	go func() {
		for {
			c.mu.Lock()
			group := c.waiting
			c.waiting = nil
			if len(group) == 0 {
				c.running = false
				c.mu.Unlock()
				return
			}
			c.mu.Unlock()
			commit(group)
		}
	}()
}
