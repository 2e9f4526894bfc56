package etcd

import (
	"encoding/json"
	"net/netip"

	"github.com/weftnet/weft/lease"
)

// A key of this node's that overlaps an older key, another node's or its
// own, is never kept or adopted, reservation or not. Older is admission's
// order (lease.CompareSeniority: the create revision, then the key),
// which every node computes alike from the same keys: every peer's
// admission rejects the younger of two overlapping leases, whoever owns
// them. A node that took the younger one would route a subnet its peers
// send elsewhere, or only part of it; and as its own lease ranks first in
// its own admission, it would drop its route to the older lease's node.
// A key written later in the way of this node's is the younger: the other
// node's problem, and this node keeps its own.
//
// The rule is stricter than admission in one way: an older key that
// admission rejects (because it overlaps one older still) counts too, so
// that what a node keeps never depends on how its peers judge a chain of
// keys; it then takes a subnet that overlaps nothing.
//
// Such a key is reported by key, with the fix. A leased one is deleted
// once Acquire holds another (it is this node's, and no peer routes it to
// this node); a reservation is left to the operator, as this package
// never deletes one.

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

// olderOverlap returns the oldest key that overlaps r and is older than
// r, with its owner as stored ("" if flannel wrote it, or its value does
// not decode), or nil if there is none.
func olderOverlap(cfg lease.Config, r *record, records []record) (*record, string) {
	var oldest *record
	for i := range records {
		o := &records[i]
		if o.key == r.key || !overlapping(o.key, r.key) || !counts(cfg, o.key) ||
			lease.CompareSeniority(o.createRev, o.key, r.createRev, r.key) >= 0 {
			continue
		}
		if oldest == nil || lease.CompareSeniority(o.createRev, o.key, oldest.createRev, oldest.key) < 0 {
			oldest = o
		}
	}
	if oldest == nil {
		return nil, ""
	}
	var stored lease.Attrs
	_ = json.Unmarshal(oldest.value, &stored)
	return oldest, stored.Owner
}

// reportConflict logs, at most every ten minutes per key, that r is not
// used because it overlaps older, a key of owner's.
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
	m.log.Error("a "+what+" under this node's name overlaps an older lease, which wins on every node: not using it",
		"key", m.keyPath(r.key), "overlaps", m.keyPath(older.key), "owner", owner, "fix", fix)
}
