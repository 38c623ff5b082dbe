package storetest

import (
	"bytes"
	"context"
	"errors"
	"sync"
	"testing"

	"certmail/evidence"
	"certmail/store"
)

// RunBlobs runs the behaviour tests of a store.Blobs. open returns a new, empty blob store each
// time it is called. What a backend does with a damaged blob is its own test's business; here,
// Get of a hash never put is store.ErrNotFound, and Put is idempotent and safe to race.
func RunBlobs(t *testing.T, open func(t *testing.T) store.Blobs) {
	t.Run("RoundTrip", func(t *testing.T) {
		t.Parallel()
		b := open(t)
		big := make([]byte, 1<<20+17)
		for i := range big {
			big[i] = byte(i * 7)
		}
		for _, data := range [][]byte{[]byte("From: a@a.example\r\n\r\nhello\r\n"), {}, big} {
			h, err := b.Put(t.Context(), data)
			if err != nil {
				t.Fatalf("Put %d bytes: %v", len(data), err)
			}
			if h != evidence.Sum(data) {
				t.Errorf("Put %d bytes returned %v, want its SHA-256 %v", len(data), h, evidence.Sum(data))
			}
			got, err := b.Get(t.Context(), h)
			if err != nil {
				t.Fatalf("Get %v: %v", h, err)
			}
			if !bytes.Equal(got, data) {
				t.Errorf("Get %v: %d bytes, not the %d put", h, len(got), len(data))
			}
			// Again: same hash, same bytes.
			if h2, err := b.Put(t.Context(), data); err != nil || h2 != h {
				t.Errorf("second Put of the same bytes: %v, %v", h2, err)
			}
		}
	})
	t.Run("NotFound", func(t *testing.T) {
		t.Parallel()
		b := open(t)
		for _, h := range []evidence.Hash{evidence.Sum([]byte("never put")), {}} {
			if _, err := b.Get(t.Context(), h); !errors.Is(err, store.ErrNotFound) {
				t.Errorf("Get %v: %v, want ErrNotFound", h, err)
			}
		}
	})
	t.Run("ConcurrentPuts", func(t *testing.T) {
		t.Parallel()
		b := open(t)
		data := bytes.Repeat([]byte("same content from many submitters\n"), 1000)
		var wg sync.WaitGroup
		errs := make(chan error, 16)
		for i := range 16 {
			wg.Go(func() {
				d := data
				if i%2 == 1 {
					d = append([]byte{byte(i)}, data...)
				}
				h, err := b.Put(t.Context(), d)
				if err == nil && h != evidence.Sum(d) {
					err = errors.New("wrong hash")
				}
				if err != nil {
					errs <- err
				}
			})
		}
		wg.Wait()
		close(errs)
		for err := range errs {
			t.Errorf("concurrent Put: %v", err)
		}
		if got, err := b.Get(t.Context(), evidence.Sum(data)); err != nil || !bytes.Equal(got, data) {
			t.Errorf("Get after concurrent Puts: %d bytes, %v", len(got), err)
		}
	})
	t.Run("Context", func(t *testing.T) {
		t.Parallel()
		b := open(t)
		ctx, cancel := context.WithCancel(t.Context())
		cancel()
		data := []byte("put with a cancelled context")
		if _, err := b.Put(ctx, data); !errors.Is(err, context.Canceled) {
			t.Errorf("Put with a cancelled context: %v, want context.Canceled", err)
		}
		if _, err := b.Get(t.Context(), evidence.Sum(data)); !errors.Is(err, store.ErrNotFound) {
			t.Errorf("Get of a blob whose Put was cancelled: %v, want ErrNotFound", err)
		}
		if _, err := b.Get(ctx, evidence.Sum(data)); !errors.Is(err, context.Canceled) {
			t.Errorf("Get with a cancelled context: %v, want context.Canceled", err)
		}
	})
}
