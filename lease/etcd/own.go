package etcd

import (
	"context"
	"encoding/json"
	"fmt"

	"github.com/weftnet/weft/lease"
)

var _ lease.OwnLeaseReader = (*Manager)(nil)

// OwnLease implements lease.OwnLeaseReader: the lease Acquire would keep,
// as the store holds it now, from one listing. req.Attrs.Owner is set to
// Options.Node. A lease under this node's name written from another host
// is not this host's, and is not returned.
func (m *Manager) OwnLease(ctx context.Context, req lease.AcquireRequest) (lease.Lease, bool, error) {
	mine := req.Attrs
	mine.Owner = m.node
	kept, err := m.listAll(ctx, byNobody, byOwnLease)
	if err != nil {
		return lease.Lease{}, false, fmt.Errorf("etcd: %w", err)
	}
	raw, hasConfig, records := m.parseListing(kept.kvs)
	cfg, err := m.parseConfig(raw, hasConfig)
	if err != nil {
		return lease.Lease{}, false, nil // no config yet: Acquire would wait
	}
	hints := ownershipHints(m.node, mine)
	var best *record
	var bestAttrs lease.Attrs
	for i := range records {
		r := &records[i]
		if !mentionsAny(r.value, hints) {
			continue
		}
		var stored lease.Attrs
		if json.Unmarshal(r.value, &stored) != nil || !m.owns(stored, mine) || stored.Owner != "" && !sameHost(stored, mine) || !fits(cfg, r.key) {
			continue
		}
		if best == nil || better(r, best, req.Previous) {
			best, bestAttrs = r, stored
		}
	}
	if best == nil {
		return lease.Lease{}, false, nil
	}
	return lease.Lease{Key: best.key, Attrs: bestAttrs}, true, nil
}
