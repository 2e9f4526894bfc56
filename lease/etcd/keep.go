package etcd

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"time"

	"go.etcd.io/etcd/api/v3/mvccpb"
	"go.etcd.io/etcd/api/v3/v3rpc/rpctypes"
	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/weftnet/weft/lease"
)

// Keep implements lease.Manager.
//
// It renews l every TTL-RenewMargin with a Txn that moves the key to a fresh
// etcd lease only if the key's revision is still the one this node last
// saw. Between renewals it watches the key, so a deletion, an expiry seen
// after a partition, or a write by another owner is reported at once rather
// than at the next renewal.
//
// A reservation (a key with no etcd lease) is never renewed, only watched.
// Keep follows the key if an operator turns a lease into a reservation or
// back: it never attaches a lease to a key that has none, and it starts
// renewing a key that gained one.
//
// A key that a read finds missing, rather than a deletion the watch
// delivers, is what a store that forgot looks like (wiped, or restored
// from a backup): whichever read finds it (the check after a
// reconnection, a renewal, the read after the watch ended), the key is
// created again as it was, with Acquire's conditional create, so the node
// keeps the subnet its pods use unless another node holds it now (see
// reassert).
//
// Keep does not give up a lease on its own clock: while etcd is out of
// reach it keeps retrying, and the node keeps its subnet (edge autonomy).
// Once etcd answers, the first renewal or watch event tells whether the key
// is still this node's.
func (m *Manager) Keep(ctx context.Context, l lease.Lease) error {
	path := m.keyPath(l.Key)
	attrs := l.Attrs
	attrs.Owner = m.node
	value, err := json.Marshal(attrs)
	if err != nil {
		return fmt.Errorf("etcd: keep %s: %w", l.Key, err)
	}
	renewRetry := m.retrier("renew lease " + l.Key.String())
	watchRetry := m.retrier("watch own lease " + l.Key.String())
	// Taken first, and again only after it fired, so that a reconnection
	// signalled while this loop does something else (a Watch call blocks
	// while etcd is down) is not missed; and closed from the start if the
	// connection came back since the key was written.
	back, returns := m.history.reconnectedAfter()

	h, known := m.getHeld(l.Key)
	if known && h.returns != returns {
		back = closedChan
	}
	watchRev := h.rev + 1
	if !known {
		// Not written by this Manager, e.g. the caller restarted with a
		// lease it saved: learn the key's state. renewedAt stays zero, so
		// a leased key is renewed at once, its age being unknown.
		for {
			h, watchRev, err = m.verify(ctx, path, attrs, value)
			if err == nil {
				break
			}
			if errors.Is(err, lease.ErrLeaseLost) {
				return m.lost(l.Key, err)
			}
			if werr := renewRetry.fail(ctx, err); werr != nil {
				return werr
			}
		}
		m.setHeld(l.Key, h)
	}

	renewEvery := m.ttl - m.margin
	timer := time.NewTimer(time.Hour)
	defer timer.Stop()
	// arm schedules the next renewal from h: none for a reservation, else
	// RenewMargin before the lease this Manager attached runs out, or at
	// once if its age is unknown.
	arm := func() {
		if !timer.Stop() {
			select {
			case <-timer.C:
			default:
			}
		}
		if h.id == 0 {
			return
		}
		due := time.Now()
		if !h.renewedAt.IsZero() {
			due = h.renewedAt.Add(renewEvery)
		}
		timer.Reset(time.Until(due))
	}
	arm()

	// The watch is replaced after each break; stopWatch ends the current one.
	stopWatch := func() {}
	defer func() { stopWatch() }()
	watchFrom := func(rev int64) clientv3.WatchChan {
		stopWatch()
		wctx, cancel := context.WithCancel(clientv3.WithRequireLeader(ctx))
		stopWatch = cancel
		return m.client.Watch(wctx, path, clientv3.WithRev(rev))
	}
	watch := watchFrom(watchRev)
	delivered := false // whether the current watch has delivered anything

	for {
		select {
		case <-ctx.Done():
			return ctx.Err()

		case <-back:
			// The connection broke and came back: the client resumed the
			// watch from its revision, which an emptied or restored store
			// would answer with silence. Read the key, until a read
			// answers: the watch cannot be trusted to tell.
			back = m.history.reconnected()
			var nh heldLease
			var rev int64
			for {
				nh, rev, err = m.verify(ctx, path, attrs, value)
				if err == nil || errors.Is(err, lease.ErrLeaseLost) {
					break
				}
				if werr := watchRetry.fail(ctx, err); werr != nil {
					return werr
				}
			}
			if errors.Is(err, errKeyGone) {
				m.history.restart() // the store lacks what it had: list again everywhere
				if h, err = m.recreate(ctx, l, attrs, value, renewRetry, err); err != nil {
					return err
				}
				arm()
				watch, delivered = watchFrom(h.rev+1), false
				continue
			}
			switch {
			case err != nil:
				return m.lost(l.Key, err)
			case nh.rev != h.rev || nh.id != h.id:
				before := h
				h = adopt(h, nh)
				if h.id != before.id {
					h.renewedAt = m.grantedAt(ctx, h.id)
					arm()
				}
				m.setHeld(l.Key, h)
			}
			watch, delivered = watchFrom(rev), false

		case <-timer.C:
			nh, err := m.renew(ctx, path, attrs, value, h)
			switch {
			case errors.Is(err, errKeyGone):
				// Found missing by a read, not deleted in a history
				// this node watched: the store may have forgotten it
				// (wiped, or restored from a backup) before the history
				// check after the reconnection ran. As there: the
				// subnet the node runs on is created again, and lost
				// only if another node holds it now.
				if h, err = m.recreate(ctx, l, attrs, value, renewRetry, err); err != nil {
					return err
				}
				arm()
				watch, delivered = watchFrom(h.rev+1), false
			case errors.Is(err, lease.ErrLeaseLost):
				return m.lost(l.Key, err)
			case err != nil:
				// Unreachable or slow: try again soon; the lease has
				// RenewMargin to spare before it lapses.
				if werr := renewRetry.fail(ctx, err); werr != nil {
					return werr
				}
				timer.Reset(0)
			default:
				renewRetry.ok()
				if nh.id != 0 {
					m.renewals.Add(1)
					m.log.Debug("renewed lease", "subnet", l.Key, "revision", nh.rev)
				}
				h = nh
				m.setHeld(l.Key, h)
				arm()
			}

		case resp, open := <-watch:
			if open && resp.Err() == nil {
				delivered = true
				watchRetry.ok()
				before := h
				for _, ev := range resp.Events {
					if err := m.checkOwnEvent(ctx, ev, &h, attrs, value); err != nil {
						return m.lost(l.Key, err)
					}
				}
				if h.id != before.id {
					h.renewedAt = m.grantedAt(ctx, h.id)
					arm()
				}
				m.setHeld(l.Key, h)
				continue
			}
			// The watch ended: the stream broke (etcd restarted, no
			// leader) or the revision was compacted. Pause if it ended
			// without delivering anything, then read the key to catch up
			// and watch again from the revision of that read.
			cause := errors.New("watch channel closed")
			if open {
				cause = resp.Err()
			}
			if !delivered {
				if werr := watchRetry.fail(ctx, cause); werr != nil {
					return werr
				}
			}
			if !m.history.readAfterWatch() {
				watch, delivered = watchFrom(h.rev+1), false
				continue
			}
			nh, rev, err := m.verify(ctx, path, attrs, value)
			switch {
			case errors.Is(err, errKeyGone):
				// Deleted while the stream was down, or the store
				// restarted empty (an embedded or restarting etcd ends
				// watches rather than resuming them): as on a
				// reconnection.
				if h, err = m.recreate(ctx, l, attrs, value, renewRetry, err); err != nil {
					return err
				}
				arm()
				rev = h.rev + 1
			case errors.Is(err, lease.ErrLeaseLost):
				return m.lost(l.Key, err)
			case err != nil:
				if werr := watchRetry.fail(ctx, fmt.Errorf("%v; then %w", cause, err)); werr != nil {
					return werr
				}
				rev = h.rev + 1
			case nh.rev != h.rev:
				before := h
				h = adopt(h, nh)
				if h.id != before.id {
					h.renewedAt = m.grantedAt(ctx, h.id)
					arm()
				}
				m.setHeld(l.Key, h)
			}
			watch, delivered = watchFrom(rev), false
		}
	}
}

// recreate handles this node's key found missing (gone, a loss): it is
// created again as it was (see reassert), and the new state returned, or
// the loss is returned if that cannot be done.
func (m *Manager) recreate(ctx context.Context, l lease.Lease, attrs lease.Attrs, value []byte, retry *retrier, gone error) (heldLease, error) {
	nh, ok, err := m.reassertRetrying(ctx, l, attrs, value, retry)
	switch {
	case err != nil:
		return heldLease{}, err
	case !ok:
		return heldLease{}, m.lost(l.Key, fmt.Errorf("%w, and it cannot be re-created: another node holds its subnet now, another host holds a lease under this node's name, or the network config leaves it out", gone))
	}
	if nh.id != 0 && nh.renewedAt.IsZero() {
		nh.renewedAt = m.grantedAt(ctx, nh.id)
	}
	m.setHeld(l.Key, nh)
	return nh, nil
}

// reassertRetrying is reassert, retried with backoff while etcd does not
// answer. It returns an error only when ctx ends.
func (m *Manager) reassertRetrying(ctx context.Context, l lease.Lease, attrs lease.Attrs, value []byte, retry *retrier) (heldLease, bool, error) {
	for {
		h, ok, err := m.reassert(ctx, l, attrs, value)
		if err == nil {
			retry.ok()
			if ok {
				m.log.Warn("this node's lease was missing from etcd after a reconnection (etcd wiped or restored from a backup, or the lease lapsed meanwhile); re-created it", "subnet", l.Key)
			}
			return h, ok, nil
		}
		if werr := retry.fail(ctx, err); werr != nil {
			return heldLease{}, false, werr
		}
	}
}

// adopt moves h to a newer state of the key, as seen by a read or a watch.
// A changed etcd lease is not one this Manager granted, and its age is
// unknown.
func adopt(h, seen heldLease) heldLease {
	if seen.id == h.id {
		seen.ours, seen.renewedAt = h.ours, h.renewedAt
	}
	return seen
}

// checkOwnEvent applies one watch event on this node's key: a deletion, or
// a write by another owner or by another host under this node's name, is
// a loss; a claim by another host is answered; any other write moves h
// along.
func (m *Manager) checkOwnEvent(ctx context.Context, ev *clientv3.Event, h *heldLease, mine lease.Attrs, value []byte) error {
	if ev.Type == clientv3.EventTypeDelete {
		return fmt.Errorf("%w: %s was deleted or expired at revision %d", lease.ErrLeaseLost, ev.Kv.Key, ev.Kv.ModRevision)
	}
	answered, err := m.checkOwner(ctx, ev.Kv, mine, value)
	if err != nil {
		return err
	}
	rev := max(ev.Kv.ModRevision, answered)
	if rev > h.rev {
		*h = adopt(*h, heldLease{rev: rev, id: clientv3.LeaseID(ev.Kv.Lease)})
	}
	return nil
}

// checkOwner returns a loss unless kv is this node's, written from this
// host. A claim on it by another host with this node's name is answered
// (see ErrIdentityCollision), and the revision of the answer returned.
func (m *Manager) checkOwner(ctx context.Context, kv *mvccpb.KeyValue, mine lease.Attrs, value []byte) (int64, error) {
	var stored lease.Attrs
	if err := json.Unmarshal(kv.Value, &stored); err != nil {
		return 0, fmt.Errorf("%w: %s now holds a value that does not parse: %v", lease.ErrLeaseLost, kv.Key, err)
	}
	if stored.Owner != m.node {
		return 0, fmt.Errorf("%w: %s is now held by %q (public IP %s)", lease.ErrLeaseLost, kv.Key, stored.Owner, stored.PublicIP)
	}
	if !sameHost(stored, mine) {
		return 0, fmt.Errorf("%w: %w: %s was taken over by another host under this node's name, at %s",
			lease.ErrLeaseLost, ErrIdentityCollision, kv.Key, addrsString(stored.PublicIP, stored.PublicIPv6))
	}
	if c, ok := decodeClaim(kv.Value); ok && !c.SameHost(mine) {
		rev, err := m.answer(ctx, string(kv.Key), value, kv.ModRevision, c)
		if err != nil {
			// Unanswered, the claimant takes the key over, and its
			// write is then a loss here.
			m.log.Warn("could not answer another host's claim on this node's lease", "key", string(kv.Key), "err", err)
		}
		return rev, nil
	}
	return 0, nil
}

// grantedAt returns the renewedAt that schedules the next renewal of a key
// that another writer of this host (a second daemon, an operator) moved to
// an etcd lease of its own: RenewMargin before that lease runs out, by the
// TTL etcd says it has left, which may be far shorter than this Manager's.
// Renewing at once instead would have the two writers move the key back
// and forth as fast as etcd allows. If etcd cannot say, the lease is taken
// as fresh and as long as this Manager's: should it lapse first, the key's
// deletion is a loss, and the subnet is acquired again.
func (m *Manager) grantedAt(ctx context.Context, id clientv3.LeaseID) time.Time {
	if id == 0 {
		return time.Time{}
	}
	rctx, cancel := m.request(ctx)
	defer cancel()
	resp, err := m.client.TimeToLive(rctx, id)
	if err != nil || resp.TTL <= 0 {
		return time.Now()
	}
	// arm renews at renewedAt + TTL - RenewMargin of this Manager's TTL.
	return time.Now().Add(time.Duration(resp.TTL)*time.Second - m.ttl)
}

// verify reads this node's key and returns its state and the revision to
// watch from, or a loss if it is gone or someone else's.
func (m *Manager) verify(ctx context.Context, path string, mine lease.Attrs, value []byte) (heldLease, int64, error) {
	rctx, cancel := m.request(ctx)
	defer cancel()
	resp, err := m.client.Get(rctx, path)
	if err != nil {
		return heldLease{}, 0, fmt.Errorf("read %s: %w", path, err)
	}
	if len(resp.Kvs) == 0 {
		return heldLease{}, 0, fmt.Errorf("%w: %s %w", lease.ErrLeaseLost, path, errKeyGone)
	}
	kv := resp.Kvs[0]
	answered, err := m.checkOwner(ctx, kv, mine, value)
	if err != nil {
		return heldLease{}, 0, err
	}
	if answered > 0 {
		// Watch from after the answer, which this Manager wrote.
		return heldLease{rev: answered, id: clientv3.LeaseID(kv.Lease)}, answered + 1, nil
	}
	return heldLease{rev: kv.ModRevision, id: clientv3.LeaseID(kv.Lease)}, resp.Header.Revision + 1, nil
}

// renew moves the key to a fresh etcd lease, conditional on its revision
// being h.rev. If the condition fails it inspects the key: gone or another
// owner's is a loss; still this node's is adopted and, unless it has become
// a reservation, the renewal retried.
func (m *Manager) renew(ctx context.Context, path string, attrs lease.Attrs, value []byte, h heldLease) (heldLease, error) {
	for attempt := 0; attempt < 3; attempt++ {
		rctx, cancel := m.request(ctx)
		g, err := m.client.Grant(rctx, m.ttlSeconds())
		cancel()
		if err != nil {
			return h, fmt.Errorf("grant etcd lease: %w", err)
		}
		rctx, cancel = m.request(ctx)
		resp, err := m.client.Txn(rctx).
			If(clientv3.Compare(clientv3.ModRevision(path), "=", h.rev)).
			Then(clientv3.OpPut(path, string(value), clientv3.WithLease(g.ID))).
			Else(clientv3.OpGet(path)).
			Commit()
		cancel()
		if err != nil {
			// The Txn may have been applied even though the reply was
			// lost, so the new grant may now carry the key: never revoke
			// it here. The next attempt's compare sorts it out.
			return h, fmt.Errorf("renew %s: %w", path, err)
		}
		if resp.Succeeded {
			if h.ours {
				m.revokeQuietly(h.id) // granted by this Manager for this key alone, which has left it
			}
			return heldLease{rev: resp.Header.Revision, id: g.ID, ours: true, renewedAt: time.Now()}, nil
		}
		m.revokeQuietly(g.ID) // the Txn did not apply: nothing uses it
		kvs := resp.Responses[0].GetResponseRange().Kvs
		if len(kvs) == 0 {
			return h, fmt.Errorf("%w: %s %w", lease.ErrLeaseLost, path, errKeyGone)
		}
		answered, err := m.checkOwner(ctx, kvs[0], attrs, value)
		if err != nil {
			return h, err
		}
		h = adopt(h, heldLease{rev: max(kvs[0].ModRevision, answered), id: clientv3.LeaseID(kvs[0].Lease)})
		if h.id == 0 {
			return h, nil // now a reservation: it must not get a lease back
		}
	}
	return h, fmt.Errorf("renew %s: the key kept changing under this node's own name", path)
}

// lost logs the loss of a lease once and forgets it.
func (m *Manager) lost(k lease.Key, err error) error {
	m.losses.Add(1)
	m.forget(k)
	m.log.Warn("lease lost", "subnet", k, "err", err)
	return err
}

// errKeyGone is the loss of a key that a read found missing.
var errKeyGone = errors.New("no longer exists (expired or deleted)")

// isCompacted reports whether err says a revision was compacted away.
func isCompacted(err error) bool { return errors.Is(err, rpctypes.ErrCompacted) }
