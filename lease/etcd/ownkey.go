package etcd

// Keep's reads and writes of this node's own key: verify, renew, the owner
// check of what a read or a watch returns, and re-creating a key a store
// forgot.

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
