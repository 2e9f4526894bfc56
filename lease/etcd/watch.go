package etcd

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"time"

	"go.etcd.io/etcd/api/v3/mvccpb"

	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/weftnet/weft/internal/ctxutil"
	"github.com/weftnet/weft/lease"
)

// WatchLeases implements lease.Manager.
//
// It lists <prefix>/subnets/ and sends the listing as a snapshot, then
// watches from the listing's revision + 1. A broken watch is resumed from the
// last revision it delivered, so no event is lost across disconnects and
// server restarts. If etcd has compacted that revision away, WatchLeases
// lists again and sends the difference from what it had sent, so attribute
// changes made meanwhile arrive as Changed events. A renewal that rewrites a
// lease with equal attributes sends nothing.
func (m *Manager) WatchLeases(ctx context.Context, ch chan<- lease.Batch) error {
	var view *leaseView // what the receiver has been told; nil until the snapshot
	retry := m.retrier("watch leases")
	var (
		hold   bool             // the next listing follows a discontinuity
		settle <-chan time.Time // when the held-back removals are sent
	)
	for {
		// List, and send the difference from the view (everything, the
		// first time).
		snapshot := view == nil
		epoch := m.history.current()
		var (
			events []lease.Event
			rev    int64
			err    error
		)
		if snapshot {
			view, rev, err = m.snapshot(ctx, ch)
		} else {
			events, rev, err = m.relist(ctx, view, hold)
		}
		if err != nil {
			if ctx.Err() != nil {
				return ctx.Err()
			}
			if werr := retry.fail(ctx, fmt.Errorf("list %s: %w", m.subnetsPrefix(), err)); werr != nil {
				return werr
			}
			continue
		}
		retry.ok()
		if !snapshot && len(events) > 0 {
			// rev is the listing's: it holds every change up to rev.
			if err := ctxutil.Send(ctx, ch, lease.Batch{Snapshot: snapshot, Events: events, Revision: rev}); err != nil {
				return err
			}
		}
		switch {
		case hold:
			settle = time.After(m.settle)
		case !snapshot:
			settle = nil // this listing sent the removals
		}

		// Watch from just after the listing until the watch can no longer
		// be resumed, the store's history restarts, or the held-back
		// removals are due.
		why, err := m.watchFrom(ctx, rev+1, view, ch, epoch, settle)
		if err != nil {
			return err
		}
		hold = why == endDiscontinuity
		if why == endSettled {
			m.log.Info("the lease listing has settled after etcd's history restarted; dropping the leases it lacks")
		}
	}
}

// errHistoryRestarted ends a watch when etcd's history restarted.
var errHistoryRestarted = errors.New("etcd's history restarted")

// Why watchFrom ended without an error.
type watchEnd int

const (
	endCompacted     watchEnd = iota // list again and send the difference
	endDiscontinuity                 // list again, holding back removals
	endSettled                       // the removals held back are due
)

// watchFrom watches subnets from rev, applying events to view and sending
// them, and resuming after every break. It returns, with a nil error, why
// the caller must list again: rev was compacted away, epoch ended (the
// store's history restarted), or settle fired; or ctx.Err().
func (m *Manager) watchFrom(ctx context.Context, rev int64, view *leaseView, ch chan<- lease.Batch, epoch <-chan struct{}, settle <-chan time.Time) (watchEnd, error) {
	retry := m.retrier("watch leases")
	// Events decoded but not yet taken by the receiver. Responses are
	// read and decoded as they come, whether or not the receiver is
	// ready: left unread, the client would queue them whole, values and
	// all (a writer's megabytes each), for as long as the receiver is
	// busy. The receiver gets what piled up in one batch.
	var pending []lease.Event
	pendingRev := int64(0)
	flush := func() error {
		if len(pending) == 0 {
			return nil
		}
		err := ctxutil.Send(ctx, ch, lease.Batch{Events: pending, Revision: pendingRev})
		pending = nil
		return err
	}
	for {
		wctx, cancel := context.WithCancel(clientv3.WithRequireLeader(ctx))
		w := m.client.Watch(wctx, m.subnetsPrefix(), clientv3.WithPrefix(), clientv3.WithRev(rev), clientv3.WithProgressNotify())
		var cause error
	receive:
		for {
			var resp clientv3.WatchResponse
			var open bool
			var out chan<- lease.Batch
			in := w
			if len(pending) > 0 {
				out = ch
				if len(pending) >= maxPending {
					in = nil // the receiver's turn: decoded events cost memory too
				}
			}
			select {
			case resp, open = <-in:
			case out <- lease.Batch{Events: pending, Revision: pendingRev}:
				pending = nil
				continue
			case <-epoch:
				cancel()
				return endDiscontinuity, flush()
			case <-settle:
				cancel()
				return endSettled, flush()
			case <-ctx.Done():
				cancel()
				return 0, ctx.Err()
			}
			if !open {
				break receive
			}
			if err := resp.Err(); err != nil {
				cause = err
				break receive
			}
			retry.ok()
			rev = resumeRevision(rev, resp)
			if events := m.apply(view, resp.Events); len(events) > 0 {
				pending, pendingRev = append(pending, events...), rev-1
			}
		}
		if err := flush(); err != nil {
			cancel()
			return 0, err
		}
		cancel()
		if ctx.Err() != nil {
			return 0, ctx.Err()
		}
		if isCompacted(cause) {
			m.log.Info("lease watch fell behind a compaction; listing again", "revision", rev)
			return endCompacted, nil
		}
		if isTooBig(cause) {
			// Resuming would bring the same response again: a listing
			// comes in pages the client can take, and the watch after
			// it starts past the response refused.
			m.log.Warn("a lease watch response was over the client's receive limit; listing again",
				"revision", rev, "limit", MaxRecvBytes, "err", cause)
			return endCompacted, nil
		}
		if cause == nil {
			cause = errors.New("watch channel closed")
		}
		if err := retry.fail(ctx, fmt.Errorf("watch %s from revision %d: %w", m.subnetsPrefix(), rev, cause)); err != nil {
			return 0, err
		}
	}
}

// maxPending is how many decoded events a watcher holds for a busy
// receiver before it stops reading (about 500 bytes each, and a
// verdict each downstream, in one batch).
const maxPending = 512

// resumeRevision returns the revision to resume a watch from after resp,
// given the one it would resume from before. A response with events moves it
// just past its last event; only an event-free response (a progress
// notification) may move it to its header's revision. The header does not
// bound the events: a watcher catching up gets events in chunks, each
// stamped with the store's current revision, so resuming from a header
// would skip the rest of the backlog.
func resumeRevision(rev int64, resp clientv3.WatchResponse) int64 {
	if n := len(resp.Events); n > 0 {
		return max(rev, resp.Events[n-1].Kv.ModRevision+1)
	}
	if resp.Header != nil && resp.Header.Revision >= rev {
		return resp.Header.Revision + 1
	}
	return rev
}

// apply turns raw watch events into lease events against view, updating it.
// A put whose value does not parse removes the lease, as a listing would
// not include it.
func (m *Manager) apply(view *leaseView, evs []*clientv3.Event) []lease.Event {
	var out []lease.Event
	for _, ev := range evs {
		k, err := lease.ParseKey(string(bytes.TrimPrefix(ev.Kv.Key, []byte(m.subnetsPrefix()))))
		if err != nil {
			m.skips.warn(m.log, "skipping etcd key that is not a subnet key", string(ev.Kv.Key), "err", err)
			continue
		}
		var l lease.Lease
		ok := false
		if ev.Type == clientv3.EventTypePut {
			l, ok = m.peerValue(k, ev.Kv)
		}
		if !ok {
			if prev, known := view.stub(k); known {
				out = append(out, lease.Event{Type: lease.Removed, Lease: prev})
				view.remove(k)
			}
			continue
		}
		switch known, same := view.known(l); {
		case !known:
			out = append(out, lease.Event{Type: lease.Added, Lease: l})
		case !same:
			out = append(out, lease.Event{Type: lease.Changed, Lease: l})
		}
		view.put(l)
	}
	m.skips.flush(m.log)
	return out
}

// peerLease decodes a listed subnet key and value for a watcher, logging
// and skipping what is malformed.
func (m *Manager) peerLease(kv *mvccpb.KeyValue) (lease.Lease, bool) {
	k, err := lease.ParseKey(string(bytes.TrimPrefix(kv.Key, []byte(m.subnetsPrefix()))))
	if err != nil {
		m.skips.warn(m.log, "skipping etcd key that is not a subnet key", string(kv.Key), "err", err)
		return lease.Lease{}, false
	}
	return m.peerValue(k, kv)
}

// peerValue decodes the value of subnet key k, logging and skipping it if
// it is malformed or names no reachable peer. Its seniority is the key's
// create revision: the same on every node, and kept across renewals and
// changes of the value.
//
// A value over a size limit (see lease.MaxValueSize) is not skipped but
// passed on as lease.Lease.Invalid, with nothing of the value, so that
// admission reports it by key and rule with the other rejections.
func (m *Manager) peerValue(k lease.Key, kv *mvccpb.KeyValue) (lease.Lease, bool) {
	l := lease.Lease{Key: k, Seniority: kv.CreateRevision}
	err := valueSizeError(kv.Value)
	if err == nil {
		err = l.Attrs.UnmarshalJSON(kv.Value)
	}
	if errors.Is(err, lease.ErrTooLarge) {
		return lease.Lease{Key: k, Seniority: kv.CreateRevision, Invalid: err.Error()}, true
	}
	if err != nil {
		m.skips.warn(m.log, "skipping lease with a malformed value", string(kv.Key), "err", err)
		return lease.Lease{}, false
	}
	if err := l.Attrs.Validate(); err != nil {
		m.skips.warn(m.log, "skipping lease that names no reachable peer", string(kv.Key), "err", err)
		return lease.Lease{}, false
	}
	return l, true
}

// WatchConfig implements lease.Manager. It sends the config at
// <prefix>/config, then each change. A missing config is waited for; a
// change that does not parse, or a deletion, is logged and skipped, leaving
// the last good config in force.
func (m *Manager) WatchConfig(ctx context.Context, ch chan<- lease.Config) error {
	var last []byte
	retry := m.retrier("watch network config")
	for {
		// Taken before the read, so that a discontinuity the read itself
		// reveals ends the watch that follows it.
		epoch := m.history.current()
		floor := m.history.floor()
		rctx, cancel := m.request(ctx)
		resp, err := m.client.Get(rctx, m.configKey())
		cancel()
		if err == nil {
			m.observe(resp.Header, floor)
		}
		if err != nil {
			if werr := retry.fail(ctx, fmt.Errorf("read %s: %w", m.configKey(), err)); werr != nil {
				return werr
			}
			continue
		}
		deliver := func(raw []byte) error {
			if bytes.Equal(raw, last) {
				return nil
			}
			c, err := m.parseConfig(raw, true)
			if err != nil {
				m.log.Error("ignoring invalid network config; the last good one stays in force", "err", err)
				last = raw
				return nil
			}
			last = raw
			select {
			case ch <- c:
				return nil
			case <-ctx.Done():
				return ctx.Err()
			}
		}
		if len(resp.Kvs) == 0 {
			_, err := m.parseConfig(nil, false)
			m.log.Warn("waiting for the network config", "err", err)
		} else if err := deliver(resp.Kvs[0].Value); err != nil {
			return err
		}

		rev := resp.Header.Revision + 1
		wctx, cancel := context.WithCancel(clientv3.WithRequireLeader(ctx))
		var cause error
		w := m.client.Watch(wctx, m.configKey(), clientv3.WithRev(rev), clientv3.WithProgressNotify())
	receive:
		for {
			var wresp clientv3.WatchResponse
			var open bool
			select {
			case wresp, open = <-w:
			case <-epoch:
				// The store's history restarted: read the config
				// afresh, as the watch would wait for a revision the new
				// store has not reached.
				cause = errHistoryRestarted
				break receive
			}
			if !open {
				break receive
			}
			if cause = wresp.Err(); cause != nil {
				break receive
			}
			retry.ok() // only a working watch resets the backoff
			for _, ev := range wresp.Events {
				if ev.Type == clientv3.EventTypeDelete {
					m.log.Error("network config was deleted; the last good one stays in force", "key", m.configKey())
					continue
				}
				if err := deliver(ev.Kv.Value); err != nil {
					cancel()
					return err
				}
			}
		}
		cancel()
		if ctx.Err() != nil {
			return ctx.Err()
		}
		if cause == nil {
			cause = errors.New("watch channel closed")
		}
		if !isCompacted(cause) && cause != errHistoryRestarted {
			if werr := retry.fail(ctx, fmt.Errorf("watch %s: %w", m.configKey(), cause)); werr != nil {
				return werr
			}
		}
	}
}
