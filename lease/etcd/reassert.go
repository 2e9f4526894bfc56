package etcd

import (
	"context"
	"encoding/json"

	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/weftnet/weft/lease"
)

// howReasserted is how a key that etcd forgot was obtained again.
const howReasserted = "re-asserted its lease, which etcd had forgotten"

// reassert creates l's key again after a reconnection found it missing: the
// store was wiped or restored from an older backup, or the key lapsed or
// was deleted while this node was cut off. It writes with Acquire's
// conditional create, from a fresh listing, so it never takes a subnet
// that another node holds now; then the node keeps routing what its pods
// already use, and nobody downstream sees a change.
//
// Leased keys of this node's that the listing holds besides l's, older
// leases a restored backup brought back, are deleted once the write wins,
// each only if unchanged since the listing: peers would otherwise route
// them here until they lapsed (a restore gives every lease its whole TTL
// again). Reservations among them are left to the operator.
//
// It reports false if the key cannot be had: another node holds one of
// its subnets now, another host with this node's name holds a lease, or
// the network config in force leaves it out. The
// caller then loses the lease, and Acquire finds the node another.
func (m *Manager) reassert(ctx context.Context, l lease.Lease, mine lease.Attrs, value []byte) (heldLease, bool, error) {
	var grant clientv3.LeaseID
	defer func() {
		if grant != 0 {
			m.revokeQuietly(grant)
		}
	}()
	hints := ownershipHints(m.node, mine)
	for range 3 {
		// Fresh (a wipe or restore brings every node here at once, so
		// paged: see listAll).
		listed, err := m.listAll(ctx, byNobody, byNobody, nil)
		if err != nil {
			return heldLease{}, false, err
		}
		p := listed.parsed(m)
		raw, hasConfig, records := p.config, p.hasConfig, p.records
		if hasConfig {
			// Without a config (a wiped store not yet set up again)
			// nothing says the key is wrong: keep it.
			if cfg, err := m.parseConfig(raw, true); err == nil && !fits(cfg, l.Key) {
				return heldLease{}, false, nil
			}
		}
		var stale []record
		for _, r := range records {
			overlaps := r.key.Overlaps(l.Key)
			if !overlaps && !mentionsAny(r.value, hints) {
				continue
			}
			var stored lease.Attrs
			ours := json.Unmarshal(r.value, &stored) == nil && stored.Owner == m.node && sameHost(stored, mine)
			switch {
			case r.key == l.Key && ours:
				// Written again meanwhile by this host (a second
				// daemon): follow it.
				return heldLease{rev: r.modRev, id: r.etcdLease}, true, nil
			case overlaps && !ours || r.key == l.Key:
				return heldLease{}, false, nil
			case !ours && stored.Owner == m.node:
				// Another host with this node's name acquired in the
				// window (see ErrIdentityCollision): the store has it
				// first now, so this host yields, and its Acquire then
				// asks that host and reports the collision.
				return heldLease{}, false, nil
			case ours && r.etcdLease != 0:
				stale = append(stale, r)
			}
		}
		_, won, _, err := m.write(ctx, plan{key: l.Key, how: howReasserted}, listed.rev, mine, value, &grant)
		if err != nil {
			return heldLease{}, false, err
		}
		if won {
			m.deleteStale(ctx, stale, "an older lease of this node's, which a restored backup brought back")
			h, _ := m.getHeld(l.Key)
			return h, true, nil
		}
		// Another key was written since the listing: look again.
	}
	return heldLease{}, false, nil
}
