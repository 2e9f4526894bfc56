package etcd

// Acquire's conditional writes: carrying out a plan in one Txn, the
// conditions of a create, and deleting the keys a won lease leaves unused.

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"time"

	"go.etcd.io/etcd/api/v3/mvccpb"
	"go.etcd.io/etcd/api/v3/v3rpc/rpctypes"
	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/weftnet/weft/lease"
)

// write carries out a plan in one Txn. It reports whether the write won; if
// it lost, it returns the subnet keys modified since listRev, which the Txn
// read instead. *grant holds the etcd lease to attach, granted on first use;
// on a win it is handed over and zeroed so the caller does not revoke it.
func (m *Manager) write(ctx context.Context, p plan, listRev int64, attrs lease.Attrs, value []byte, grant *clientv3.LeaseID) (lease.Lease, bool, listing, error) {
	path := m.keyPath(p.key)
	_, returns := m.history.reconnectedAfter()
	if l, ok := m.unchanged(ctx, p, value, returns); ok {
		if p.existingLease != 0 && p.existingLease == *grant {
			// The key is on this Acquire's own grant: an earlier
			// write timed out here but was applied there. The
			// grant is the key's now, and must not be revoked
			// as unused (which would delete the key); it is this
			// Manager's, to revoke when it renews or releases.
			*grant = 0
			if h, ok := m.getHeld(p.key); ok {
				h.ours = true
				m.setHeld(p.key, h)
			}
		}
		return l, true, listing{}, nil
	}
	var putOpts []clientv3.OpOption
	if !p.reservation {
		if *grant == 0 {
			rctx, cancel := m.request(ctx)
			g, err := m.client.Grant(rctx, m.ttlSeconds())
			cancel()
			if err != nil {
				return lease.Lease{}, false, listing{}, fmt.Errorf("grant etcd lease: %w", err)
			}
			*grant = g.ID
		}
		putOpts = append(putOpts, clientv3.WithLease(*grant))
	}
	conds := []clientv3.Cmp{clientv3.Compare(clientv3.ModRevision(path), "=", p.existingRev)}
	since := clientv3.OpGet(m.subnetsPrefix(), clientv3.WithPrefix(), clientv3.WithMinModRev(listRev+1))
	then := []clientv3.Op{clientv3.OpPut(path, string(value), putOpts...)}
	if p.existingRev == 0 {
		conds = m.createConditions(p.key, listRev)
		// What was written since the listing, read in the same
		// revision as the create: another host with this node's name
		// may have created a key meanwhile (see yieldToTwin).
		then = append(then, since)
	}
	rctx, cancel := m.request(ctx)
	resp, err := m.client.Txn(rctx).
		If(conds...).
		Then(then...).
		Else(since).
		Commit()
	cancel()
	if err != nil {
		if errors.Is(err, rpctypes.ErrLeaseNotFound) {
			*grant = 0 // gone (e.g. etcd restored from a backup): grant anew
		}
		return lease.Lease{}, false, listing{}, fmt.Errorf("write %s: %w", path, err)
	}
	if !resp.Succeeded {
		return lease.Lease{}, false, listing{resp.Responses[0].GetResponseRange().Kvs, resp.Header.Revision}, nil
	}
	if p.existingRev == 0 {
		written := resp.Responses[1].GetResponseRange().Kvs
		if m.yieldToTwin(ctx, path, listRev, resp.Header.Revision, written) {
			return lease.Lease{}, false, listing{written, resp.Header.Revision}, nil
		}
	}
	h := heldLease{rev: resp.Header.Revision, returns: returns}
	l := lease.Lease{Key: p.key, Attrs: attrs}
	if !p.reservation {
		h.id, h.ours, h.renewedAt = *grant, true, time.Now()
		*grant = 0
		l.Expiration = h.renewedAt.Add(m.ttl)
	}
	m.setHeld(p.key, h)
	m.log.Info("acquired lease", "subnet", p.key, "how", p.how, "reservation", p.reservation)
	return l, true, listing{}, nil
}

// unchanged takes this node's own key as it is, writing nothing, when it
// already holds value and, unless it is a reservation, its etcd lease has
// more than RenewMargin left: a restart, or a reconnection after booting
// from local state, then costs etcd one read of the lease's TTL rather
// than a write that every peer's watch would carry. Keep renews it when
// due, by the TTL etcd reported.
func (m *Manager) unchanged(ctx context.Context, p plan, value []byte, returns uint64) (lease.Lease, bool) {
	if p.how != howKept || !bytes.Equal(p.existingValue, value) {
		return lease.Lease{}, false
	}
	h := heldLease{rev: p.existingRev, returns: returns}
	l := lease.Lease{Key: p.key}
	if err := json.Unmarshal(value, &l.Attrs); err != nil {
		return lease.Lease{}, false
	}
	// The listing may be older than the key (one this Acquire withdrew
	// since, say): a read-only Txn, which etcd applies without a new
	// revision, checks the key is still as listed.
	rctx, cancel := m.request(ctx)
	still, err := m.client.Txn(rctx).If(clientv3.Compare(clientv3.ModRevision(m.keyPath(p.key)), "=", p.existingRev)).Commit()
	cancel()
	if err != nil || !still.Succeeded {
		return lease.Lease{}, false
	}
	if !p.reservation {
		rctx, cancel := m.request(ctx)
		resp, err := m.client.TimeToLive(rctx, p.existingLease)
		cancel()
		left := time.Duration(0)
		if err == nil {
			left = time.Duration(resp.TTL) * time.Second
		}
		if left <= m.margin {
			return lease.Lease{}, false // renew it now, by writing
		}
		now := time.Now()
		h.id, h.renewedAt = p.existingLease, now.Add(left-m.ttl)
		l.Expiration = now.Add(left)
	}
	m.setHeld(p.key, h)
	m.log.Info("acquired lease", "subnet", p.key, "how", howKept, "reservation", p.reservation, "written", false)
	return l, true
}

// createConditions make creating key safe: no key may hold any of its
// subnets. etcd compares keys, not subnets, so:
//
//   - the key itself must not exist (this covers IPv6-only keys, which all
//     start "0.0.0.0-0&");
//   - no dual-stack key may share its IPv4 subnet: none may start with
//     "<IPv4 part>&";
//   - for a dual-stack key, no subnet key may have been created since the
//     listing, because another node's key could hold the same IPv6 subnet
//     under a different IPv4 one, and a key cannot be found by its IPv6
//     part. Renewals do not change a key's creation revision, so they do
//     not get in the way.
//
// Keys of another length that overlap (possible only while nodes disagree
// about SubnetLen during a config change) are excluded by the listing but
// not by these conditions.
func (m *Manager) createConditions(k lease.Key, listRev int64) []clientv3.Cmp {
	conds := []clientv3.Cmp{clientv3.Compare(clientv3.CreateRevision(m.keyPath(k)), "=", 0)}
	if k.IPv4.IsValid() {
		v4 := m.keyPath(lease.Key{IPv4: k.IPv4}) + "&"
		conds = append(conds, clientv3.Compare(clientv3.CreateRevision(v4), "=", 0).WithPrefix())
		if k.IPv6.IsValid() {
			conds = append(conds, clientv3.Compare(clientv3.CreateRevision(m.subnetsPrefix()), "<", listRev+1).WithPrefix())
		}
	}
	return conds
}

func (m *Manager) ttlSeconds() int64 { return int64(math.Ceil(m.ttl.Seconds())) }

// revokeQuietly revokes an etcd lease that no key this node keeps is
// attached to. Failure only means it lapses at its TTL instead.
func (m *Manager) revokeQuietly(id clientv3.LeaseID) {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	if _, err := m.client.Revoke(ctx, id); err != nil {
		m.log.Debug("could not revoke unused etcd lease; it will lapse", "lease", int64(id), "err", err)
	}
}

// deleteStale deletes keys of this node's that it no longer uses, each
// only if unchanged since it was listed; why says what they are, for the
// log. Peers would keep routing them to this node until they lapsed, and
// no other node could be given them. A failure is logged; the key then
// lapses at its TTL.
func (m *Manager) deleteStale(ctx context.Context, keys []record, why string) {
	for _, r := range keys {
		path := m.keyPath(r.key)
		rctx, cancel := m.request(ctx)
		resp, err := m.client.Txn(rctx).
			If(clientv3.Compare(clientv3.ModRevision(path), "=", r.modRev)).
			Then(clientv3.OpDelete(path)).
			Commit()
		cancel()
		switch {
		case err != nil:
			m.log.Warn("could not delete a lease of this node's that it no longer uses; it will lapse", "subnet", r.key, "what", why, "err", err)
			continue
		case !resp.Succeeded:
			m.log.Info("a lease of this node's that it no longer uses changed since it was listed; leaving it", "subnet", r.key, "what", why)
			continue
		}
		m.log.Info("deleted a lease of this node's that it no longer uses", "subnet", r.key, "what", why)
		if h, ok := m.getHeld(r.key); ok && h.ours && h.id == r.etcdLease {
			m.revokeQuietly(h.id)
		}
		m.forget(r.key)
	}
}

// yieldToTwin handles two writers with this node's name creating keys at
// once, each before the other's create was in its listing: both Txns
// succeed, on different subnets. Each create reads, in its own revision,
// the keys written since its listing, so the later of the two always sees
// the earlier's key. The later deletes its own (if unchanged) and reports
// true, and Acquire plans again with the earlier key in view: its own if
// it is this host's (a second daemon), a challenge if another host's.
func (m *Manager) yieldToTwin(ctx context.Context, path string, listRev, rev int64, written []*mvccpb.KeyValue) bool {
	hint := ownershipHints(m.node, lease.Attrs{})
	twin := ""
	for _, kv := range written {
		if string(kv.Key) == path || kv.CreateRevision <= listRev || !mentionsAny(kv.Value, hint) {
			continue
		}
		var a lease.Attrs
		if json.Unmarshal(kv.Value, &a) == nil && a.Owner == m.node {
			twin = string(kv.Key)
			break
		}
	}
	if twin == "" {
		return false
	}
	rctx, cancel := m.request(ctx)
	defer cancel()
	_, err := m.client.Txn(rctx).
		If(clientv3.Compare(clientv3.ModRevision(path), "=", rev)).
		Then(clientv3.OpDelete(path)).
		Commit()
	if err != nil {
		// The key stays; the twin's Keep or this node's next plan
		// sorts the two out.
		m.log.Warn("could not withdraw a key created beside another of this node's name", "key", path, "other", twin, "err", err)
		return false
	}
	m.log.Info("another writer with this node's name created a key at the same time; withdrew this one", "key", path, "other", twin)
	return true
}
