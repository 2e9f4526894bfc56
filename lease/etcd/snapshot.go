package etcd

import (
	"context"
	"slices"

	"go.etcd.io/etcd/api/v3/mvccpb"

	"github.com/weftnet/weft/internal/ctxutil"
	"github.com/weftnet/weft/internal/leasekey"
	"github.com/weftnet/weft/lease"
)

// The watcher's listings: the first snapshot, sent in parts as it is
// listed, and the listing again after a compaction, sent as its
// difference from what was sent (see WatchLeases).

// snapshot lists the subnets and sends them to ch as a snapshot, one
// Added event per usable lease, in parts (see lease.Batch): one a page of
// the listing, each in key order. It returns the view they make and the
// revision listed. Neither the listing nor its events are held whole: at
// tens of thousands of leases, or the 100,000 keys a writer may make,
// holding them (about 250 bytes an event, and the receiver's admission
// table built from them at once) set a starting agent's peak memory.
//
// A listing that fails after parts were sent is listed again from the
// start, whose part 0 tells the receiver to drop the parts before.
func (m *Manager) snapshot(ctx context.Context, ch chan<- lease.Batch) (*leaseView, int64, error) {
	view := newLeaseView()
	var (
		part  int
		ready []lease.Event // the part being made
		rev   int64
	)
	// send sends the part made so far; last marks the snapshot's end.
	send := func(last bool) error {
		slices.SortFunc(ready, func(a, b lease.Event) int { return a.Lease.Key.Compare(b.Lease.Key) })
		// The listing's revision is known for sure at its end: the
		// parts before carry none.
		b := lease.Batch{Snapshot: true, Part: part, More: !last, Events: ready}
		if last {
			b.Revision = rev
		}
		part, ready = part+1, nil
		return ctxutil.Send(ctx, ch, b)
	}
	var sendErr error
	add := func(kvs []*mvccpb.KeyValue) {
		for i, kv := range kvs {
			kvs[i] = nil // the listing's values go as they are read
			if l, ok := m.peerLease(kv); ok {
				view.put(l)
				ready = append(ready, lease.Event{Type: lease.Added, Lease: l})
			}
		}
		if len(ready) >= snapshotPart && sendErr == nil {
			sendErr = send(false)
		}
	}
	// The listing Acquire made a moment ago, if there is one: the watch
	// from just after it brings whatever changed since.
	var err error
	if kept, ok := m.recent.take(m.history.current(), byAcquire); ok {
		rev = kept.rev
		kvs := kept.under(m.subnetsPrefix())
		kept.kvs = nil
		for len(kvs) > 0 && sendErr == nil {
			n := min(len(kvs), listPage)
			add(kvs[:n])
			kvs = kvs[n:]
		}
	} else {
		rev, err = m.listPaged(ctx, m.subnetsPrefix(), func(kvs []*mvccpb.KeyValue, _ int64) {
			if sendErr == nil {
				add(kvs)
			}
		})
	}
	if err == nil {
		err = sendErr
	}
	if err == nil {
		err = send(true)
	}
	m.skips.flush(m.log)
	if err != nil {
		return nil, 0, err
	}
	return view, rev, nil
}

// snapshotPart is how many events one part of a snapshot holds, at least:
// a page of the listing's.
const snapshotPart = listPage

// relist lists the subnets again after a compaction and returns how they
// differ from view, which it replaces, and the revision listed. With hold
// set (the store's history restarted), leases the listing lacks are kept
// in view, and no Removed event is sent for them yet: their nodes are
// about to re-assert them.
func (m *Manager) relist(ctx context.Context, view *leaseView, hold bool) ([]lease.Event, int64, error) {
	var listed []lease.Lease
	// Not sized by the keys listed, for the reason snapshot gives.
	rev, err := m.listPaged(ctx, m.subnetsPrefix(), func(kvs []*mvccpb.KeyValue, _ int64) {
		for _, kv := range kvs {
			if l, ok := m.peerLease(kv); ok {
				listed = append(listed, l)
			}
		}
	})
	if err != nil {
		return nil, 0, err
	}
	events := diffView(view, listed)
	if hold {
		kept := events[:0]
		for _, e := range events {
			if e.Type != lease.Removed {
				kept = append(kept, e)
			}
		}
		events = kept
	} else {
		view.clear()
	}
	for _, l := range listed {
		view.put(l)
	}
	return events, rev, nil
}

// diffView returns the events that turn what view says was sent into
// listed (at most one lease a key), ordered by key: lease.Diff, against
// the view's digests rather than the leases.
func diffView(view *leaseView, listed []lease.Lease) []lease.Event {
	var events []lease.Event
	in := make(map[leasekey.Packed]struct{}, len(listed))
	for _, l := range listed {
		in[leasekey.Pack(l.Key)] = struct{}{}
		switch known, same := view.known(l); {
		case !known:
			events = append(events, lease.Event{Type: lease.Added, Lease: l})
		case !same:
			events = append(events, lease.Event{Type: lease.Changed, Lease: l})
		}
	}
	for k, e := range view.m {
		if _, ok := in[k]; !ok {
			events = append(events, lease.Event{Type: lease.Removed, Lease: lease.Lease{Key: k.Key(), Seniority: e.seniority}})
		}
	}
	slices.SortFunc(events, func(a, b lease.Event) int { return a.Lease.Key.Compare(b.Lease.Key) })
	return events
}
