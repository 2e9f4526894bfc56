package etcd

// Acquire's choice of the key to write, from one listing: pure, no I/O.

import (
	"bytes"
	"encoding/json"
	"net/netip"

	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/weftnet/weft/lease"
)

// A plan is the key Acquire will write and the condition that makes the
// write safe.
type plan struct {
	key         lease.Key
	how         string
	existingRev int64 // for howKept: the revision the key must still have
	reservation bool  // keep the key free of an etcd lease
	// For howKept: the key's stored value and etcd lease, to tell
	// whether it needs a write at all.
	existingValue []byte
	existingLease clientv3.LeaseID
	// outside are this node's leased keys the network config no longer
	// contains (the Network was moved): deleted once the new lease is
	// won, each only if unchanged since the listing.
	outside []record
	// superseded are, for howRunning, this node's older leases that
	// give way to the subnet it runs on (see running.go): deleted like
	// outside.
	superseded []record
	// conflicting are this node's leased keys that overlap an older
	// lease (see overlap.go): deleted once the new lease
	// is won, each only if unchanged since the listing.
	conflicting []record
	// For howChallenge: the holder's stored value and attributes.
	holderValue []byte
	holder      lease.Attrs
}

// plan chooses what to write, in the order lease.Manager.Acquire documents.
func (m *Manager) plan(cfg lease.Config, records []record, prev lease.Key, mine lease.Attrs) (plan, error) {
	var own, foreign *record
	var foreignAttrs lease.Attrs
	var outside, mineLeased, conflicting []record
	onlyLeased := true // every own key that fits is supersedable
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
		if fits(cfg, r.key) {
			if older, owner := olderOverlap(cfg, r, records); older != nil {
				m.reportConflict(r, older, owner)
				if r.etcdLease != 0 && (stored.Owner == "" || sameHost(stored, mine)) {
					conflicting = append(conflicting, *r)
				}
				continue
			}
		}
		if stored.Owner != "" && !sameHost(stored, mine) {
			// Another host's under this node's name, or this host's
			// from before its address changed: never deleted, never
			// taken without asking.
			if foreign == nil && fits(cfg, r.key) {
				foreign = r
				foreignAttrs = stored
			}
			continue
		}
		if !fits(cfg, r.key) {
			if r.etcdLease == 0 {
				m.log.Info("own reservation does not fit the network config; leaving it in place", "subnet", r.key, "network", cfg.Network, "ipv6_network", cfg.IPv6Network)
			} else {
				outside = append(outside, *r)
			}
			continue
		}
		if supersedable(*r, stored, mine, m.node) {
			mineLeased = append(mineLeased, *r)
		} else {
			onlyLeased = false
		}
		if own == nil || better(r, own, prev) {
			own = r
		}
	}
	if own != nil && onlyLeased && own.key != prev && prev.IsValid() && fits(cfg, prev) {
		if free, err := previousFree(cfg, records, prev); err == nil && free {
			return plan{key: prev, how: howRunning, outside: outside, superseded: mineLeased, conflicting: conflicting}, nil
		}
	}
	if own != nil {
		return plan{key: own.key, how: howKept, existingRev: own.modRev, reservation: own.etcdLease == 0, outside: outside,
			conflicting: conflicting, existingValue: own.value, existingLease: own.etcdLease}, nil
	}
	if foreign != nil {
		return plan{key: foreign.key, how: howChallenge, existingRev: foreign.modRev, reservation: foreign.etcdLease == 0,
			holderValue: foreign.value, holder: foreignAttrs}, nil
	}

	v4, v6, err := allocators(cfg, records)
	if err != nil {
		return plan{}, err
	}
	if prev.IsValid() && fits(cfg, prev) && (v4 == nil || v4.CheckFree(prev.IPv4) == nil) && (v6 == nil || v6.CheckFree(prev.IPv6) == nil) {
		return plan{key: prev, how: howPrevious, outside: outside, conflicting: conflicting}, nil
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
	return plan{key: k, how: howNew, outside: outside, conflicting: conflicting}, nil
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
// values: a subnet with a malformed value is still somebody's. A key as
// wide as the network or wider is nobody's: no node can route it, peer
// admission rejects it everywhere (package lease/admit), and counting it
// would let one hand-written key, 10.244.0.0-16 say, leave every new node
// without a subnet.
func takenOf(records []record, v4 bool, network netip.Prefix) []netip.Prefix {
	out := make([]netip.Prefix, 0, len(records))
	for _, r := range records {
		p := r.key.IPv6
		if v4 {
			p = r.key.IPv4
		}
		if p.IsValid() && (!network.IsValid() || p.Bits() > network.Bits()) {
			out = append(out, p)
		}
	}
	return out
}
