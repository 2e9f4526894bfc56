package lease

import (
	"context"
	"maps"
	"slices"
	"sync"
)

// A View folds a stream of Batches into the set of leases that holds now,
// for a reader that wants the current state rather than the changes: a
// status tool, a monitor, a test. A snapshot replaces everything it knew;
// an incremental batch adds, replaces and removes by key. A snapshot in
// parts (see Batch) replaces it once its last part is applied.
//
// A View is safe for concurrent use: one goroutine applies batches (Run,
// or Apply from the caller's own watch loop) while any number read. Reads
// return copies; a Lease's Attrs share their BackendData bytes with the
// View, which never modifies them. The zero View is empty and ready to
// use.
type View struct {
	mu      sync.RWMutex
	leases  map[Key]Lease
	staged  map[Key]Lease // a snapshot's parts so far, nil between snapshots
	synced  bool
	version uint64
	changed chan struct{} // closed and replaced at each Apply
}

// Apply folds one batch in.
func (v *View) Apply(b Batch) {
	v.mu.Lock()
	defer v.mu.Unlock()
	if b.Snapshot {
		// A snapshot in parts is kept aside until its last part: the
		// readers go on seeing what held before it.
		if b.Part == 0 || v.staged == nil {
			v.staged = make(map[Key]Lease, len(b.Events))
		}
		for _, e := range b.Events {
			v.staged[e.Lease.Key] = e.Lease
		}
		if b.More {
			return
		}
		v.leases, v.staged = v.staged, nil
	} else {
		if v.leases == nil {
			v.leases = make(map[Key]Lease, len(b.Events))
		}
		for _, e := range b.Events {
			if e.Type == Removed {
				delete(v.leases, e.Lease.Key)
				continue
			}
			v.leases[e.Lease.Key] = e.Lease
		}
	}
	v.synced = v.synced || b.Snapshot
	v.version++
	if v.changed != nil {
		close(v.changed)
		v.changed = nil
	}
}

// Run watches w's leases into v until ctx is done, and returns what
// w.WatchLeases returns: ctx.Err(), or an error retrying cannot fix.
func (v *View) Run(ctx context.Context, w Watcher) error {
	ch := make(chan Batch, 16)
	done := make(chan error, 1)
	go func() { done <- w.WatchLeases(ctx, ch) }()
	for {
		select {
		case b := <-ch:
			v.Apply(b)
		case err := <-done:
			for { // what the watch sent before it returned
				select {
				case b := <-ch:
					v.Apply(b)
				default:
					return err
				}
			}
		}
	}
}

// Synced reports whether a snapshot has been applied: before it, the View
// holds only what incremental batches said, which is not the whole set.
func (v *View) Synced() bool {
	v.mu.RLock()
	defer v.mu.RUnlock()
	return v.synced
}

// Get returns the lease at k.
func (v *View) Get(k Key) (Lease, bool) {
	v.mu.RLock()
	defer v.mu.RUnlock()
	l, ok := v.leases[k]
	return l, ok
}

// List returns every lease, ordered by key.
func (v *View) List() []Lease {
	v.mu.RLock()
	defer v.mu.RUnlock()
	out := slices.Collect(maps.Values(v.leases))
	slices.SortFunc(out, func(a, b Lease) int { return a.Key.Compare(b.Key) })
	return out
}

// Len returns how many leases the View holds.
func (v *View) Len() int {
	v.mu.RLock()
	defer v.mu.RUnlock()
	return len(v.leases)
}

// Version counts the batches applied. With Changed it lets a reader notice
// every change: several applied between two reads are seen as one.
func (v *View) Version() uint64 {
	v.mu.RLock()
	defer v.mu.RUnlock()
	return v.version
}

// Changed returns a channel that is closed at the next Apply after the
// call: a reader waits on it, then reads the View again.
func (v *View) Changed() <-chan struct{} {
	v.mu.Lock()
	defer v.mu.Unlock()
	if v.changed == nil {
		v.changed = make(chan struct{})
	}
	return v.changed
}
