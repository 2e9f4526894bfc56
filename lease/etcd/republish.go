package etcd

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"

	"go.etcd.io/etcd/api/v3/v3rpc/rpctypes"
	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/weftnet/weft/lease"
)

// Republish implements lease.Republisher: l's key gets attrs' value, on the
// same etcd lease, with a Txn conditional on the key's revision being the
// one this Manager last saw. If the key moved on meanwhile it is read:
// still this node's and this host's by l.Attrs (a renewal, an answered
// claim), the write is tried again at the new revision; gone or another's,
// it is a loss, and nothing is written. An unreachable etcd is waited out.
//
// A host whose address changed publishes its new address this way, in
// place: Acquire would see the key as written from another host (its old
// address) and challenge it, which costs ChallengeTimeout.
func (m *Manager) Republish(ctx context.Context, l lease.Lease, attrs lease.Attrs) (lease.Lease, error) {
	attrs.Owner = m.node
	if err := attrs.Validate(); err != nil {
		return lease.Lease{}, fmt.Errorf("etcd: republish %s: %w", l.Key, err)
	}
	value, err := json.Marshal(attrs)
	if err != nil {
		return lease.Lease{}, fmt.Errorf("etcd: republish %s: %w", l.Key, err)
	}
	was := l.Attrs
	was.Owner = m.node
	wasValue, err := json.Marshal(was)
	if err != nil {
		return lease.Lease{}, fmt.Errorf("etcd: republish %s: %w", l.Key, err)
	}
	path := m.keyPath(l.Key)
	retry := m.retrier("republish lease " + l.Key.String())
	for {
		h, known := m.getHeld(l.Key)
		if !known {
			// Not written or kept by this Manager: learn the key.
			var verr error
			if h, _, verr = m.verify(ctx, path, was, wasValue); verr != nil {
				if errors.Is(verr, lease.ErrLeaseLost) {
					return lease.Lease{}, m.lost(l.Key, verr)
				}
				if werr := retry.fail(ctx, verr); werr != nil {
					return lease.Lease{}, werr
				}
				continue
			}
			m.setHeld(l.Key, h)
		}
		_, returns := m.history.reconnectedAfter()
		var opts []clientv3.OpOption
		if h.id != 0 {
			opts = append(opts, clientv3.WithLease(h.id))
		}
		rctx, cancel := m.request(ctx)
		resp, err := m.client.Txn(rctx).
			If(clientv3.Compare(clientv3.ModRevision(path), "=", h.rev)).
			Then(clientv3.OpPut(path, string(value), opts...)).
			Else(clientv3.OpGet(path)).
			Commit()
		cancel()
		switch {
		case errors.Is(err, rpctypes.ErrLeaseNotFound):
			// The key's etcd lease ran out (etcd was away longer than the
			// TTL): the key went with it.
			return lease.Lease{}, m.lost(l.Key, fmt.Errorf("%w: %s: its etcd lease expired", lease.ErrLeaseLost, path))
		case err != nil:
			if werr := retry.fail(ctx, fmt.Errorf("republish %s: %w", path, err)); werr != nil {
				return lease.Lease{}, werr
			}
			continue
		}
		retry.ok()
		if resp.Succeeded {
			h.rev, h.returns = resp.Header.Revision, returns
			m.setHeld(l.Key, h)
			m.log.Info("republished this node's lease", "subnet", l.Key, "public_ip", attrs.PublicIP, "public_ipv6", attrs.PublicIPv6,
				"was_public_ip", was.PublicIP, "was_public_ipv6", was.PublicIPv6)
			l.Attrs = attrs
			return l, nil
		}
		kvs := resp.Responses[0].GetResponseRange().Kvs
		if len(kvs) == 0 {
			return lease.Lease{}, m.lost(l.Key, fmt.Errorf("%w: %s %w", lease.ErrLeaseLost, path, errKeyGone))
		}
		answered, err := m.checkOwner(ctx, kvs[0], was, wasValue)
		if err != nil {
			return lease.Lease{}, m.lost(l.Key, err)
		}
		m.setHeld(l.Key, adopt(h, heldLease{rev: max(kvs[0].ModRevision, answered), id: clientv3.LeaseID(kvs[0].Lease)}))
	}
}
