package etcd

import (
	"encoding/json"
	"net/netip"

	"github.com/weftnet/weft/lease"
)

// A key of this node's that overlaps an older lease of another node is
// never kept or adopted, reservation or not. Older is admission's order
// (lease.CompareSeniority: the create revision, then the key), which
// every node computes alike from the same keys: every peer's admission
// rejects the younger of two overlapping leases, so a node that took the
// younger one would route a subnet nobody sends it, and (as its own lease
// ranks first in its own admission) drop its route to the older lease's
// node. A key another node wrote in the way of this node's older one is
// the other node's problem, and this node keeps its own.
//
// Such a key is reported by key, with the fix. A leased one is deleted
// once Acquire holds another (it is this node's, and no peer uses it);
// a reservation is left to the operator, as this package never deletes
// one.

// overlapping reports whether two keys share an address in any family.
func overlapping(a, b lease.Key) bool {
	return a.IPv4.IsValid() && b.IPv4.IsValid() && a.IPv4.Overlaps(b.IPv4) ||
		a.IPv6.IsValid() && b.IPv6.IsValid() && a.IPv6.Overlaps(b.IPv6)
}

// counts reports whether k can be a lease in cfg's network at all: a key
// as wide as a network or wider is nobody's (see takenOf), and no peer
// admits it, so it stands in no one's way.
func counts(cfg lease.Config, k lease.Key) bool {
	wide := func(network, p netip.Prefix) bool {
		return p.IsValid() && network.IsValid() && p.Bits() <= network.Bits()
	}
	return !wide(cfg.Network, k.IPv4) && !wide(cfg.IPv6Network, k.IPv6)
}

// olderOverlap returns the oldest key of another node's that overlaps r
// and is older than r, with its owner as stored ("" if flannel wrote it,
// or its value does not decode), or nil if there is none. Keys this node
// owns (by m.owns, whichever host wrote them) are not another node's. A
// key whose value does not decode counts as another node's, as its
// subnet counts as taken.
func (m *Manager) olderOverlap(cfg lease.Config, r *record, records []record, hints [][]byte, mine lease.Attrs) (*record, string) {
	var oldest *record
	owner := ""
	for i := range records {
		o := &records[i]
		if o.key == r.key || !overlapping(o.key, r.key) || !counts(cfg, o.key) ||
			lease.CompareSeniority(o.createRev, o.key, r.createRev, r.key) >= 0 {
			continue
		}
		if oldest != nil && lease.CompareSeniority(o.createRev, o.key, oldest.createRev, oldest.key) >= 0 {
			continue
		}
		var stored lease.Attrs
		decoded := json.Unmarshal(o.value, &stored) == nil
		if decoded && mentionsAny(o.value, hints) && m.owns(stored, mine) {
			continue // this node's own
		}
		oldest, owner = o, ""
		if decoded {
			owner = stored.Owner
		}
	}
	return oldest, owner
}

// reportConflict logs, at most every ten minutes per key, that r is not
// used because it overlaps older, another node's key.
func (m *Manager) reportConflict(r, older *record, owner string) {
	if !m.conflictLog.due(r.key.String()) {
		return
	}
	m.conflicts.Add(1)
	what := "lease"
	fix := "it is deleted once this node holds another"
	if r.etcdLease == 0 {
		what = "reservation"
		fix = "delete it (etcdctl del " + m.keyPath(r.key) + ") or move it to a free subnet"
	}
	m.log.Error("a "+what+" under this node's name overlaps an older lease of another node, which wins on every node: not using it",
		"key", m.keyPath(r.key), "overlaps", m.keyPath(older.key), "owner", owner, "fix", fix)
}
