package etcd

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"math"
	"math/rand/v2"
	"net/netip"
	"time"

	"go.etcd.io/etcd/api/v3/mvccpb"
	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/weftnet/weft/lease"
)

// maxRaces bounds how many create races Acquire loses before giving up. Each
// lost race comes with a fresh listing, so a node only loses again if another
// node picks the same free subnet in the same instant; 32 losses in a row do
// not happen short of a bug.
const maxRaces = 32

// How Acquire obtained a lease, for the log.
const (
	howKept     = "kept its own lease"
	howPrevious = "reclaimed its previous subnet"
	howNew      = "allocated a free subnet"
)

// A plan is the key Acquire will write and the condition that makes the
// write safe.
type plan struct {
	key         lease.Key
	how         string
	existingRev int64 // for howKept: the revision the key must still have
	reservation bool  // keep the key free of an etcd lease
}

// Acquire implements lease.Manager. req.Attrs.Owner is set to Options.Node.
//
// It lists the prefix once, then writes one key with a Txn: a renewal of a
// key this node owns, conditional on its revision, or a create, conditional
// on the key not existing. A lost race returns a fresh listing in the same
// Txn and Acquire tries again. A missing or invalid config, an unreachable
// etcd and a full network are waited out, with one log line per change of
// condition.
func (m *Manager) Acquire(ctx context.Context, req lease.AcquireRequest) (lease.Lease, error) {
	attrs := req.Attrs
	attrs.Owner = m.node
	if err := attrs.Validate(); err != nil {
		return lease.Lease{}, fmt.Errorf("etcd: acquire: %w", err)
	}
	value, err := json.Marshal(attrs)
	if err != nil {
		return lease.Lease{}, fmt.Errorf("etcd: acquire: %w", err)
	}

	var (
		retry   = m.retrier("acquire")
		listing []*mvccpb.KeyValue
		listed  bool
		grant   clientv3.LeaseID // granted once, reused across races
		races   int
	)
	defer func() {
		// A grant no written key uses would live on, empty, for a TTL.
		if grant != 0 {
			m.revokeQuietly(grant)
		}
	}()
	for {
		if !listed {
			resp, err := m.client.Get(ctx, m.prefix+"/", clientv3.WithPrefix())
			if err != nil {
				if werr := retry.fail(ctx, fmt.Errorf("list %s: %w", m.prefix, err)); werr != nil {
					return lease.Lease{}, werr
				}
				continue
			}
			listing, listed = resp.Kvs, true
		}
		rawConfig, hasConfig, records := m.parseListing(listing)
		cfg, err := m.parseConfig(rawConfig, hasConfig)
		if err == nil {
			var p plan
			if p, err = m.plan(cfg, records, req.Previous, attrs); err == nil {
				var l lease.Lease
				var won bool
				l, won, listing, err = m.write(ctx, p, attrs, value, &grant)
				switch {
				case err == nil && won:
					retry.ok()
					return l, nil
				case err == nil:
					races++
					if races >= maxRaces {
						return lease.Lease{}, fmt.Errorf("etcd: acquire: lost %d races for a free subnet in a row", races)
					}
					// Another node took the subnet between our listing and
					// our write. Spread the retries of nodes that collided.
					if err := sleepCtx(ctx, time.Duration(rand.N(10*races+1))*time.Millisecond); err != nil {
						return lease.Lease{}, err
					}
					continue
				}
			}
		}
		// The listing gave no usable plan (no or bad config, no free
		// subnet) or the write failed: wait, then list afresh.
		listed = false
		if werr := retry.fail(ctx, err); werr != nil {
			return lease.Lease{}, werr
		}
	}
}

// plan chooses what to write, in the order lease.Manager.Acquire documents.
func (m *Manager) plan(cfg lease.Config, records []record, prev lease.Key, mine lease.Attrs) (plan, error) {
	var own *record
	hints := ownershipHints(m.node, mine)
	for i := range records {
		r := &records[i]
		if !mentionsAny(r.value, hints) {
			continue // cannot be this node's; skip decoding it
		}
		var stored lease.Attrs
		if err := json.Unmarshal(r.value, &stored); err != nil || !m.owns(stored, mine) {
			continue
		}
		if !fits(cfg, r.key) {
			m.log.Info("own lease no longer fits the network config; it will lapse", "subnet", r.key, "network", cfg.Network, "ipv6_network", cfg.IPv6Network)
			continue
		}
		if own == nil || better(r, own, prev) {
			own = r
		}
	}
	if own != nil {
		return plan{key: own.key, how: howKept, existingRev: own.modRev, reservation: own.etcdLease == 0}, nil
	}

	var v4, v6 *lease.Allocator
	var err error
	if cfg.EnableIPv4 {
		if v4, err = lease.NewAllocator(cfg.IPv4Range(), takenOf(records, true)); err != nil {
			return plan{}, err
		}
	}
	if cfg.EnableIPv6 {
		if v6, err = lease.NewAllocator(cfg.IPv6Range(), takenOf(records, false)); err != nil {
			return plan{}, err
		}
	}
	if prev.IsValid() && fits(cfg, prev) && (v4 == nil || v4.CheckFree(prev.IPv4) == nil) && (v6 == nil || v6.CheckFree(prev.IPv6) == nil) {
		return plan{key: prev, how: howPrevious}, nil
	}
	var k lease.Key
	if v4 != nil {
		if k.IPv4, err = v4.Pick(nil); err != nil {
			return plan{}, err
		}
	}
	if v6 != nil {
		if k.IPv6, err = v6.Pick(nil); err != nil {
			return plan{}, err
		}
	}
	return plan{key: k, how: howNew}, nil
}

// ownershipHints returns byte strings one of which a value must contain to
// be this node's: its owner name or its public addresses, JSON-encoded as
// encoding/json writes them. A value spelling them with other escapes is not
// recognised as this node's, and the node then takes a new subnet: a waste,
// never a theft.
func ownershipHints(node string, mine lease.Attrs) [][]byte {
	var hints [][]byte
	add := func(s string) {
		b, _ := json.Marshal(s)
		hints = append(hints, b)
	}
	add(node)
	if mine.PublicIP.IsValid() {
		add(mine.PublicIP.String())
	}
	if mine.PublicIPv6.IsValid() {
		add(mine.PublicIPv6.String())
	}
	return hints
}

func mentionsAny(value []byte, hints [][]byte) bool {
	for _, h := range hints {
		if bytes.Contains(value, h) {
			return true
		}
	}
	return false
}

// owns reports whether a stored value belongs to this node: it names this
// node as owner or, written by flannel without an owner, carries this node's
// public address.
func (m *Manager) owns(stored, mine lease.Attrs) bool {
	if stored.Owner != "" {
		return stored.Owner == m.node
	}
	return mine.PublicIP.IsValid() && stored.PublicIP == mine.PublicIP ||
		mine.PublicIPv6.IsValid() && stored.PublicIPv6 == mine.PublicIPv6
}

// better prefers, among this node's own keys, a reservation, then the
// previous subnet, then the lowest key, so that the choice is stable.
func better(a, b *record, prev lease.Key) bool {
	if (a.etcdLease == 0) != (b.etcdLease == 0) {
		return a.etcdLease == 0
	}
	if (a.key == prev) != (b.key == prev) {
		return a.key == prev
	}
	return a.key.Compare(b.key) < 0
}

// fits reports whether k has exactly the families cfg enables, each inside
// its network. A subnet outside SubnetMin..SubnetMax or of another length
// still fits: a node keeps its subnet when the network is widened.
func fits(cfg lease.Config, k lease.Key) bool {
	inside := func(network, p netip.Prefix) bool {
		return network.Bits() <= p.Bits() && network.Contains(p.Addr())
	}
	return k.IPv4.IsValid() == cfg.EnableIPv4 && k.IPv6.IsValid() == cfg.EnableIPv6 &&
		(!cfg.EnableIPv4 || inside(cfg.Network, k.IPv4)) &&
		(!cfg.EnableIPv6 || inside(cfg.IPv6Network, k.IPv6))
}

// takenOf lists the subnets of one family that keys hold, whatever their
// values: a subnet with a malformed value is still somebody's.
func takenOf(records []record, v4 bool) []netip.Prefix {
	out := make([]netip.Prefix, 0, len(records))
	for _, r := range records {
		p := r.key.IPv6
		if v4 {
			p = r.key.IPv4
		}
		if p.IsValid() {
			out = append(out, p)
		}
	}
	return out
}

// write carries out a plan in one Txn. It reports whether the write won; if
// it lost, it returns the fresh listing the Txn read instead. *grant holds
// the etcd lease to attach, granted on first use; on a win it is handed over
// and zeroed so the caller does not revoke it.
func (m *Manager) write(ctx context.Context, p plan, attrs lease.Attrs, value []byte, grant *clientv3.LeaseID) (lease.Lease, bool, []*mvccpb.KeyValue, error) {
	path := m.keyPath(p.key)
	var putOpts []clientv3.OpOption
	if !p.reservation {
		if *grant == 0 {
			g, err := m.client.Grant(ctx, m.ttlSeconds())
			if err != nil {
				return lease.Lease{}, false, nil, fmt.Errorf("grant etcd lease: %w", err)
			}
			*grant = g.ID
		}
		putOpts = append(putOpts, clientv3.WithLease(*grant))
	}
	cond := clientv3.Compare(clientv3.CreateRevision(path), "=", 0)
	if p.how == howKept {
		cond = clientv3.Compare(clientv3.ModRevision(path), "=", p.existingRev)
	}
	resp, err := m.client.Txn(ctx).
		If(cond).
		Then(clientv3.OpPut(path, string(value), putOpts...)).
		Else(clientv3.OpGet(m.prefix+"/", clientv3.WithPrefix())).
		Commit()
	if err != nil {
		return lease.Lease{}, false, nil, fmt.Errorf("write %s: %w", path, err)
	}
	if !resp.Succeeded {
		return lease.Lease{}, false, resp.Responses[0].GetResponseRange().Kvs, nil
	}
	h := heldLease{rev: resp.Header.Revision}
	l := lease.Lease{Key: p.key, Attrs: attrs}
	if !p.reservation {
		h.id, *grant = *grant, 0
		l.Expiration = time.Now().Add(m.ttl)
	}
	m.setHeld(p.key, h)
	m.log.Info("acquired lease", "subnet", p.key, "how", p.how, "reservation", p.reservation)
	return l, true, nil, nil
}

func (m *Manager) ttlSeconds() int64 { return int64(math.Ceil(m.ttl.Seconds())) }

func (m *Manager) setHeld(k lease.Key, h heldLease) {
	m.mu.Lock()
	m.held[k] = h
	m.mu.Unlock()
}

func (m *Manager) getHeld(k lease.Key) (heldLease, bool) {
	m.mu.Lock()
	defer m.mu.Unlock()
	h, ok := m.held[k]
	return h, ok
}

// revokeQuietly revokes an etcd lease that no key this node keeps is
// attached to. Failure only means it lapses at its TTL instead.
func (m *Manager) revokeQuietly(id clientv3.LeaseID) {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	if _, err := m.client.Revoke(ctx, id); err != nil {
		m.log.Debug("could not revoke unused etcd lease; it will lapse", "lease", int64(id), "err", err)
	}
}
