package etcd

import (
	"context"
	"encoding/json"
	"fmt"

	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/weftnet/weft/lease"
)

// Release implements lease.Releaser: it deletes l's key if the store
// still holds it for this node, with a delete conditional on the key being
// unchanged since the read that checked so. A reservation (a key with no
// etcd lease, which this package never deletes) is refused, naming the
// command that removes it. A key under this node's name
// written from another host (a clone, see ErrIdentityCollision) is not
// this host's to free, unless l carries no public address to tell. The
// etcd lease the key rode is revoked if this Manager granted it. Keep must
// have stopped first: one still running sees the key vanish and re-creates
// it.
func (m *Manager) Release(ctx context.Context, l lease.Lease) error {
	path := m.keyPath(l.Key)
	mine := l.Attrs
	mine.Owner = m.node
	for {
		rctx, cancel := m.request(ctx)
		resp, err := m.client.Get(rctx, path)
		cancel()
		if err != nil {
			return fmt.Errorf("etcd: read %s to release it: %w", path, err)
		}
		if len(resp.Kvs) == 0 {
			m.forget(l.Key)
			return nil
		}
		kv := resp.Kvs[0]
		var stored lease.Attrs
		if err := json.Unmarshal(kv.Value, &stored); err != nil {
			return fmt.Errorf("%w: %s holds a value that does not parse (%v); not releasing what this node cannot show is its own", lease.ErrLeaseLost, path, err)
		}
		if kv.Lease == 0 {
			return fmt.Errorf("etcd: %s is a reservation (a key with no TTL), which an operator made and only an operator removes: delete it with etcdctl del %s if this node is gone for good", path, path)
		}
		hasAddr := mine.PublicIP.IsValid() || mine.PublicIPv6.IsValid()
		if !m.owns(stored, mine) || stored.Owner != "" && hasAddr && !sameHost(stored, mine) {
			return fmt.Errorf("%w: %s is held by node %q at %s, not this one; nothing released", lease.ErrLeaseLost, path, stored.Owner, addrsString(stored.PublicIP, stored.PublicIPv6))
		}
		rctx, cancel = m.request(ctx)
		txn, err := m.client.Txn(rctx).
			If(clientv3.Compare(clientv3.ModRevision(path), "=", kv.ModRevision)).
			Then(clientv3.OpDelete(path)).
			Commit()
		cancel()
		if err != nil {
			return fmt.Errorf("etcd: release %s: %w", path, err)
		}
		if !txn.Succeeded {
			continue // changed since the read: check again
		}
		if h, ok := m.getHeld(l.Key); ok && h.ours && h.id != 0 {
			m.revokeQuietly(h.id)
		}
		m.forget(l.Key)
		m.log.Info("released lease", "subnet", l.Key)
		return nil
	}
}
