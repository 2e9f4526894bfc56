package etcd

import (
	"context"
	"encoding/json"
	"fmt"

	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/weftnet/weft/lease"
)

var _ lease.OwnLeaseReader = (*Manager)(nil)

// OwnLease implements lease.OwnLeaseReader. req.Attrs.Owner is set to
// Options.Node. A lease under this node's name written from another host
// is not this host's, and is not returned.
//
// When req.Previous names a lease of this host's, OwnLease returns it from
// one read of two keys (the config and that lease); otherwise, the lease
// Acquire would keep, from one listing, which it hands on to Acquire
// (which then lists no more). The two differ only when this node also holds a
// reservation elsewhere, which Acquire prefers: OwnLease then names the
// lease the node ran with; or when that lease overlaps an older lease of
// another node, which two keys cannot show and which Acquire does not
// keep. From a listing, a key that overlaps an older lease is not
// returned. A node that restarts with its subnet.env thus
// reads two keys here, not every lease: when a whole cluster restarts at
// once, the one listing each node makes is the one it watches from.
func (m *Manager) OwnLease(ctx context.Context, req lease.AcquireRequest) (lease.Lease, bool, error) {
	mine := req.Attrs
	mine.Owner = m.node
	if req.Previous.IsValid() {
		l, found, err := m.previousLease(ctx, req.Previous, mine)
		if err != nil || found {
			return l, found, err
		}
	}
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
		stored, ok := m.ownStored(cfg, r, mine)
		if !ok {
			continue
		}
		if older, _ := olderOverlap(cfg, r, records); older != nil {
			continue // Acquire does not keep it (see overlap.go)
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

// previousLease reads the config and the lease at prev, and returns that
// lease if it is this host's and fits the config.
func (m *Manager) previousLease(ctx context.Context, prev lease.Key, mine lease.Attrs) (lease.Lease, bool, error) {
	rctx, cancel := m.request(ctx)
	defer cancel()
	path := m.keyPath(prev)
	floor := m.history.floor()
	resp, err := m.client.Txn(rctx).Then(clientv3.OpGet(m.configKey()), clientv3.OpGet(path)).Commit()
	if err != nil {
		return lease.Lease{}, false, fmt.Errorf("etcd: read %s: %w", path, err)
	}
	// Like every read that may be the first since a wipe.
	m.observe(resp.Header, floor)
	config, subnet := resp.Responses[0].GetResponseRange().Kvs, resp.Responses[1].GetResponseRange().Kvs
	if len(config) == 0 || len(subnet) == 0 {
		return lease.Lease{}, false, nil
	}
	cfg, err := m.parseConfig(config[0].Value, true)
	if err != nil {
		return lease.Lease{}, false, nil
	}
	r, err := m.parseKV(subnet[0])
	if err != nil {
		return lease.Lease{}, false, nil
	}
	stored, ok := m.ownStored(cfg, &r, mine)
	if !ok {
		return lease.Lease{}, false, nil
	}
	return lease.Lease{Key: r.key, Attrs: stored}, true, nil
}

// ownStored decodes r's value and reports whether it is a lease of this
// host's that fits cfg: one Acquire would keep.
func (m *Manager) ownStored(cfg lease.Config, r *record, mine lease.Attrs) (lease.Attrs, bool) {
	var stored lease.Attrs
	if json.Unmarshal(r.value, &stored) != nil || !m.owns(stored, mine) || stored.Owner != "" && !sameHost(stored, mine) || !fits(cfg, r.key) {
		return lease.Attrs{}, false
	}
	return stored, true
}
