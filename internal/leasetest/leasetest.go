// Package leasetest runs a lease.Manager's WatchLeases in tests and keeps
// what it sends, for every lease source's tests to assert on alike.
package leasetest

import (
	"context"
	"errors"
	"sync"
	"testing"
	"time"

	"github.com/weftnet/weft/internal/testutil"
	"github.com/weftnet/weft/lease"
)

// A Watcher records the batches of one WatchLeases.
type Watcher struct {
	mu      sync.Mutex
	batches []lease.Batch
	partial *lease.Batch // a snapshot's parts so far
}

// Watch runs m.WatchLeases until the end of the test, which then checks
// that it returned context.Canceled.
func Watch(t testing.TB, m lease.Manager) *Watcher {
	ctx, cancel := context.WithCancel(context.Background())
	w := &Watcher{}
	ch := make(chan lease.Batch)
	done := make(chan error, 1)
	go func() { done <- m.WatchLeases(ctx, ch) }()
	go func() {
		for {
			select {
			case b := <-ch:
				w.mu.Lock()
				w.add(b)
				w.mu.Unlock()
			case <-ctx.Done():
				return
			}
		}
	}()
	t.Cleanup(func() {
		cancel()
		if err := <-done; !errors.Is(err, context.Canceled) {
			t.Errorf("WatchLeases returned %v, want context.Canceled", err)
		}
	})
	return w
}

// add records b. The parts of a snapshot (see lease.Batch) are recorded
// as one batch, once the last has come, so that tests assert on a
// snapshot whatever its size; a part 0 drops the parts before it.
func (w *Watcher) add(b lease.Batch) {
	if !b.Snapshot {
		w.batches = append(w.batches, b)
		return
	}
	if b.Part == 0 || w.partial == nil {
		w.partial = &lease.Batch{Snapshot: true}
	}
	w.partial.Events = append(w.partial.Events, b.Events...)
	if b.More {
		return
	}
	w.partial.Revision = b.Revision
	w.batches = append(w.batches, *w.partial)
	w.partial = nil
}

// Batches returns every batch so far.
func (w *Watcher) Batches() []lease.Batch {
	w.mu.Lock()
	defer w.mu.Unlock()
	return append([]lease.Batch(nil), w.batches...)
}

// Snapshot waits up to 15s for the first batch and returns it.
func (w *Watcher) Snapshot(t testing.TB) lease.Batch {
	t.Helper()
	return w.Batch(t, 0)
}

// Batch waits up to 15s for batch i (0 is the snapshot) and returns it.
func (w *Watcher) Batch(t testing.TB, i int) lease.Batch {
	t.Helper()
	testutil.WaitFor(t, 15*time.Second, "a batch", func() bool { return len(w.Batches()) > i })
	return w.Batches()[i]
}

// Events returns every event after the snapshot.
func (w *Watcher) Events() []lease.Event {
	var out []lease.Event
	for i, b := range w.Batches() {
		if i > 0 {
			out = append(out, b.Events...)
		}
	}
	return out
}

// WaitEvents waits up to 15s for n events after the snapshot and returns
// all there are.
func (w *Watcher) WaitEvents(t testing.TB, n int) []lease.Event {
	t.Helper()
	testutil.WaitFor(t, 15*time.Second, "events", func() bool { return len(w.Events()) >= n })
	return w.Events()
}

// Leases replays the batches into the set of leases they describe.
func (w *Watcher) Leases() map[lease.Key]lease.Attrs {
	out := map[lease.Key]lease.Attrs{}
	for _, b := range w.Batches() {
		if b.Snapshot {
			clear(out)
		}
		for _, e := range b.Events {
			if e.Type == lease.Removed {
				delete(out, e.Lease.Key)
			} else {
				out[e.Lease.Key] = e.Lease.Attrs
			}
		}
	}
	return out
}

// WaitLeases waits up to 20s for the leases to satisfy cond.
func (w *Watcher) WaitLeases(t testing.TB, what string, cond func(map[lease.Key]lease.Attrs) bool) {
	t.Helper()
	testutil.WaitFor(t, 20*time.Second, what, func() bool { return cond(w.Leases()) })
}

// A ConfigWatcher receives what one WatchConfig sends.
type ConfigWatcher struct {
	// C carries the configs sent, for a test that checks none follows.
	C <-chan lease.Config
}

// WatchConfig runs m.WatchConfig until the end of the test, which then
// checks that it returned context.Canceled.
func WatchConfig(t testing.TB, m lease.Manager) *ConfigWatcher {
	ctx, cancel := context.WithCancel(context.Background())
	ch := make(chan lease.Config, 10)
	done := make(chan error, 1)
	go func() { done <- m.WatchConfig(ctx, ch) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; !errors.Is(err, context.Canceled) {
			t.Errorf("WatchConfig returned %v, want context.Canceled", err)
		}
	})
	return &ConfigWatcher{C: ch}
}

// Next waits up to 10 seconds for the next config, and fails the test if
// none comes.
func (w *ConfigWatcher) Next(t testing.TB) lease.Config {
	t.Helper()
	select {
	case c := <-w.C:
		return c
	case <-time.After(10 * time.Second):
		t.Fatal("WatchConfig sent no config in 10s")
		return lease.Config{}
	}
}
