package etcd

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"time"

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
// keeps the subnet its pods use unless another node holds it now.
//
// Keep does not give up a lease on its own clock: while etcd is out of
// reach it keeps retrying, and the node keeps its subnet (edge autonomy).
// Once etcd answers, the first renewal or watch event tells whether the key
// is still this node's.
func (m *Manager) Keep(ctx context.Context, l lease.Lease) error {
	k, err := m.newKeeper(ctx, l)
	if err != nil {
		return err
	}
	defer k.stop()
	for {
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-k.back:
			err = k.reconnected(ctx)
		case <-k.timer.C:
			err = k.renewDue(ctx)
		case resp, open := <-k.watch:
			err = k.watched(ctx, resp, open)
		}
		if err != nil {
			return err
		}
	}
}

// keeper is one Keep call: the key it keeps, the state it last saw, and
// the three things it waits on (a reconnection, the renewal timer, the
// watch of the key). Its methods run on Keep's goroutine alone.
type keeper struct {
	m           *Manager
	l           lease.Lease
	path        string
	attrs       lease.Attrs // l's, owned by this node
	value       []byte      // attrs as written
	renewRetry  *retrier
	watchRetry  *retrier
	h           heldLease
	timer       *time.Timer     // the next renewal
	back        <-chan struct{} // closed when the connection came back
	watch       clientv3.WatchChan
	delivered   bool               // whether the current watch has delivered anything
	cancelWatch context.CancelFunc // ends the current watch
}

// newKeeper prepares Keep for l: the value to renew with, the key's state
// (read if this Manager did not write it, e.g. the caller restarted with
// a lease it saved), the renewal armed and the watch started.
func (m *Manager) newKeeper(ctx context.Context, l lease.Lease) (*keeper, error) {
	k := &keeper{
		m: m, l: l, path: m.keyPath(l.Key), attrs: l.Attrs,
		renewRetry:  m.retrier("renew lease " + l.Key.String()),
		watchRetry:  m.retrier("watch own lease " + l.Key.String()),
		timer:       time.NewTimer(time.Hour),
		cancelWatch: func() {},
	}
	k.attrs.Owner = m.node
	var err error
	if k.value, err = json.Marshal(k.attrs); err != nil {
		k.timer.Stop()
		return nil, fmt.Errorf("etcd: keep %s: %w", l.Key, err)
	}
	// Taken first, and again only after it fired, so that a reconnection
	// signalled while Keep does something else (a Watch call blocks while
	// etcd is down) is not missed; and closed from the start if the
	// connection came back since the key was written.
	var returns uint64
	k.back, returns = m.history.reconnectedAfter()
	h, known := m.getHeld(l.Key)
	if known && h.returns != returns {
		k.back = closedChan
	}
	watchRev := h.rev + 1
	if !known {
		// Learn the key's state. renewedAt stays zero, so a leased key
		// is renewed at once, its age being unknown.
		for {
			h, watchRev, err = m.verify(ctx, k.path, k.attrs, k.value)
			if err == nil {
				break
			}
			if errors.Is(err, lease.ErrLeaseLost) {
				k.timer.Stop()
				return nil, m.lost(l.Key, err)
			}
			if werr := k.renewRetry.fail(ctx, err); werr != nil {
				k.timer.Stop()
				return nil, werr
			}
		}
		m.setHeld(l.Key, h)
	}
	k.h = h
	k.arm()
	k.watchFrom(ctx, watchRev)
	return k, nil
}

// stop ends the watch and the timer.
func (k *keeper) stop() {
	k.cancelWatch()
	k.timer.Stop()
}

// arm schedules the next renewal from k.h: none for a reservation, else
// RenewMargin before the lease this Manager attached runs out, or at once
// if its age is unknown.
func (k *keeper) arm() {
	if !k.timer.Stop() {
		select {
		case <-k.timer.C:
		default:
		}
	}
	if k.h.id == 0 {
		return
	}
	due := time.Now()
	if !k.h.renewedAt.IsZero() {
		due = k.h.renewedAt.Add(k.m.ttl - k.m.margin)
	}
	k.timer.Reset(time.Until(due))
}

// watchFrom replaces the watch of the key with one from rev.
func (k *keeper) watchFrom(ctx context.Context, rev int64) {
	k.cancelWatch()
	wctx, cancel := context.WithCancel(clientv3.WithRequireLeader(ctx))
	k.cancelWatch = cancel
	k.watch, k.delivered = k.m.client.Watch(wctx, k.path, clientv3.WithRev(rev)), false
}

// moved records k.h, changed since before by a read or a watch event: a
// key moved to an etcd lease this Manager did not grant is renewed by
// that lease's clock (see grantedAt).
func (k *keeper) moved(ctx context.Context, before heldLease) {
	if k.h.id != before.id {
		k.h.renewedAt = k.m.grantedAt(ctx, k.h.id)
		k.arm()
	}
	k.m.setHeld(k.l.Key, k.h)
}

// adopt moves k.h to the state seen, and records it.
func (k *keeper) adopt(ctx context.Context, seen heldLease) {
	before := k.h
	k.h = adopt(k.h, seen)
	k.moved(ctx, before)
}

// recreate creates the key again after a read found it missing (see
// Manager.recreate), and watches it from the new write; the error is the
// loss if it cannot be.
func (k *keeper) recreate(ctx context.Context, gone error) error {
	h, err := k.m.recreate(ctx, k.l, k.attrs, k.value, k.renewRetry, gone)
	if err != nil {
		return err
	}
	k.h = h
	k.arm()
	k.watchFrom(ctx, h.rev+1)
	return nil
}

// reconnected handles a connection that broke and came back: the client
// resumed the watch from its revision, which an emptied or restored store
// would answer with silence. It reads the key until a read answers, as
// the watch cannot be trusted to tell.
func (k *keeper) reconnected(ctx context.Context) error {
	k.back = k.m.history.reconnected()
	var nh heldLease
	var rev int64
	var err error
	for {
		nh, rev, err = k.m.verify(ctx, k.path, k.attrs, k.value)
		if err == nil || errors.Is(err, lease.ErrLeaseLost) {
			break
		}
		if werr := k.watchRetry.fail(ctx, err); werr != nil {
			return werr
		}
	}
	switch {
	case errors.Is(err, errKeyGone):
		k.m.history.restart() // the store lacks what it had: list again everywhere
		return k.recreate(ctx, err)
	case err != nil:
		return k.m.lost(k.l.Key, err)
	case nh.rev != k.h.rev || nh.id != k.h.id:
		k.adopt(ctx, nh)
	}
	k.watchFrom(ctx, rev)
	return nil
}

// renewDue renews the key when its timer fires.
func (k *keeper) renewDue(ctx context.Context) error {
	nh, err := k.m.renew(ctx, k.path, k.attrs, k.value, k.h)
	switch {
	case errors.Is(err, errKeyGone):
		// Found missing by a read, not deleted in a history this node
		// watched: the store may have forgotten it (wiped, or restored
		// from a backup) before the history check after the reconnection
		// ran. As there: the subnet the node runs on is created again,
		// and lost only if another node holds it now.
		return k.recreate(ctx, err)
	case errors.Is(err, lease.ErrLeaseLost):
		return k.m.lost(k.l.Key, err)
	case err != nil:
		// Unreachable or slow: try again soon; the lease has RenewMargin
		// to spare before it lapses.
		if werr := k.renewRetry.fail(ctx, err); werr != nil {
			return werr
		}
		k.timer.Reset(0)
		return nil
	}
	k.renewRetry.ok()
	if nh.id != 0 {
		k.m.renewals.Add(1)
		k.m.log.Debug("renewed lease", "subnet", k.l.Key, "revision", nh.rev)
	}
	k.h = nh
	k.m.setHeld(k.l.Key, k.h)
	k.arm()
	return nil
}

// watched handles what the watch of the key delivered: events, or its
// end.
func (k *keeper) watched(ctx context.Context, resp clientv3.WatchResponse, open bool) error {
	if open && resp.Err() == nil {
		k.delivered = true
		k.watchRetry.ok()
		before := k.h
		for _, ev := range resp.Events {
			if err := k.m.checkOwnEvent(ctx, ev, &k.h, k.attrs, k.value); err != nil {
				return k.m.lost(k.l.Key, err)
			}
		}
		k.moved(ctx, before)
		return nil
	}
	// The watch ended: the stream broke (etcd restarted, no leader) or the
	// revision was compacted. Pause if it ended without delivering
	// anything, then read the key to catch up and watch again from the
	// revision of that read.
	cause := errors.New("watch channel closed")
	if open {
		cause = resp.Err()
	}
	if !k.delivered {
		if werr := k.watchRetry.fail(ctx, cause); werr != nil {
			return werr
		}
	}
	if !k.m.history.readAfterWatch() {
		k.watchFrom(ctx, k.h.rev+1)
		return nil
	}
	nh, rev, err := k.m.verify(ctx, k.path, k.attrs, k.value)
	switch {
	case errors.Is(err, errKeyGone):
		// Deleted while the stream was down, or the store restarted
		// empty (an embedded or restarting etcd ends watches rather than
		// resuming them): as on a reconnection.
		return k.recreate(ctx, err)
	case errors.Is(err, lease.ErrLeaseLost):
		return k.m.lost(k.l.Key, err)
	case err != nil:
		if werr := k.watchRetry.fail(ctx, fmt.Errorf("%v; then %w", cause, err)); werr != nil {
			return werr
		}
		rev = k.h.rev + 1
	case nh.rev != k.h.rev:
		k.adopt(ctx, nh)
	}
	k.watchFrom(ctx, rev)
	return nil
}
