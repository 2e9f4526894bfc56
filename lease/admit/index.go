package admit

import (
	"net/netip"

	"github.com/google/btree"

	"github.com/weftnet/weft/internal/leasekey"
	"github.com/weftnet/weft/lease"
)

// bySubnet orders candidates by subnet address, then length, with a search
// key first among equal subnets, then by rank: those contained in a prefix
// are then one run of the tree.
func bySubnet(a, b *cand) bool {
	// The keys packed, compared as they are: one tree holds one family.
	if c := a.key.CompareHalf(b.key, a.ipv6); c != 0 {
		return c < 0
	}
	if a.pivot != b.pivot {
		return a.pivot
	}
	return a.older(b)
}

// subnetIndex finds the eligible candidates whose subnets overlap a prefix.
// Of two overlapping prefixes one contains the other: those s contains are
// a run of the tree from s onwards, and those containing s are found by
// looking up s cut to each shorter length in use.
type subnetIndex struct {
	tree  *btree.BTreeG[*cand]
	lens  map[int]int // how many candidates have each subnet length
	pivot cand        // the search key, reused: a Table is used by one goroutine at a time
}

func newSubnetIndex() subnetIndex {
	return subnetIndex{tree: btree.NewG(32, bySubnet), lens: map[int]int{}}
}

func (x *subnetIndex) insert(c *cand) {
	if _, replaced := x.tree.ReplaceOrInsert(c); !replaced {
		x.lens[c.subnet().Bits()]++
	}
}

func (x *subnetIndex) delete(c *cand) {
	if _, ok := x.tree.Delete(c); ok {
		bits := c.subnet().Bits()
		if x.lens[bits]--; x.lens[bits] == 0 {
			delete(x.lens, bits)
		}
	}
}

// overlapping calls f with each candidate whose subnet overlaps s, until f
// returns false.
func (x *subnetIndex) overlapping(s netip.Prefix, f func(*cand) bool) {
	more := true
	for bits := range x.lens {
		if bits >= s.Bits() || !more {
			continue
		}
		up := netip.PrefixFrom(s.Addr(), bits).Masked()
		x.ascend(up, func(c *cand) bool {
			if c.subnet() != up {
				return false
			}
			more = f(c)
			return more
		})
	}
	if more {
		x.ascend(s, func(c *cand) bool { return s.Contains(c.subnet().Addr()) && f(c) })
	}
}

// exactly calls f with each candidate whose subnet is s, until f returns
// false.
func (x *subnetIndex) exactly(s netip.Prefix, f func(*cand) bool) {
	x.ascend(s, func(c *cand) bool { return c.subnet() == s && f(c) })
}

// ascend calls f with the candidates from the first at subnet s on.
func (x *subnetIndex) ascend(s netip.Prefix, f func(*cand) bool) {
	x.pivot = cand{pivot: true, ipv6: s.Addr().Is6()}
	if x.pivot.ipv6 {
		x.pivot.key = leasekey.Pack(lease.Key{IPv6: s})
	} else {
		x.pivot.key = leasekey.Pack(lease.Key{IPv4: s})
	}
	x.tree.AscendGreaterOrEqual(&x.pivot, f)
}

// multiIndex finds candidates by a value they usually hold alone (a VTEP
// MAC, a public IP): one in a map, any others in a set of their own, so that
// the common case costs no allocation per candidate and a shared value,
// however many hold it, costs O(1) to add to or delete from. For a shared
// value it also counts the candidates of each node, so that whether all
// are one node's leases is one lookup.
type multiIndex[K comparable] struct {
	first map[K]*cand
	more  map[K]map[*cand]struct{}
	nodes map[K]map[nodeID]int
}

// nodeID is what sameNode compares.
type nodeID struct {
	owner  string
	mac    MAC
	public [16]byte
}

func (c *cand) node() nodeID { return nodeID{c.owner, c.mac, c.public.As16()} }

func newMultiIndex[K comparable](size int) multiIndex[K] {
	return multiIndex[K]{first: make(map[K]*cand, size), more: map[K]map[*cand]struct{}{}, nodes: map[K]map[nodeID]int{}}
}

func (x *multiIndex[K]) insert(k K, c *cand) {
	first, ok := x.first[k]
	if !ok {
		x.first[k] = c
		return
	}
	set := x.more[k]
	if set == nil {
		set = map[*cand]struct{}{}
		x.more[k] = set
		x.nodes[k] = map[nodeID]int{first.node(): 1}
	}
	set[c] = struct{}{}
	x.nodes[k][c.node()]++
}

func (x *multiIndex[K]) delete(k K, c *cand) {
	set := x.more[k]
	if x.first[k] == c {
		delete(x.first, k)
		for o := range set {
			x.first[k] = o
			delete(set, o)
			break
		}
	} else {
		delete(set, c)
	}
	if set == nil {
		return
	}
	if len(set) == 0 {
		delete(x.more, k)
		delete(x.nodes, k)
		return
	}
	nodes := x.nodes[k]
	if nodes[c.node()]--; nodes[c.node()] == 0 {
		delete(nodes, c.node())
	}
}

// onlyNodeOf reports whether every candidate under k is a lease of c's
// node (c among them or not), and at least one is there.
func (x *multiIndex[K]) onlyNodeOf(k K, c *cand) bool {
	first, ok := x.first[k]
	if !ok {
		return false
	}
	nodes, shared := x.nodes[k]
	if !shared {
		return first.sameNode(c)
	}
	return len(nodes) == 1 && nodes[c.node()] > 0
}

// each calls f with every candidate under k, until f returns false.
func (x *multiIndex[K]) each(k K, f func(*cand) bool) {
	c, ok := x.first[k]
	if !ok || !f(c) {
		return
	}
	for c := range x.more[k] {
		if !f(c) {
			return
		}
	}
}

// index finds candidates by subnet, VTEP MAC and public IP.
type index struct {
	subnets subnetIndex
	byMAC   multiIndex[MAC]
	byIP    multiIndex[[16]byte]
}

func newIndex(size int) index {
	return index{subnets: newSubnetIndex(), byMAC: newMultiIndex[MAC](size), byIP: newMultiIndex[[16]byte](size)}
}

func (x *index) add(c *cand) {
	x.subnets.insert(c)
	x.byMAC.insert(c.mac, c)
	x.byIP.insert(c.public.As16(), c)
}

func (x *index) drop(c *cand) {
	x.subnets.delete(c)
	x.byMAC.delete(c.mac, c)
	x.byIP.delete(c.public.As16(), c)
}

// conflicting calls fn with every candidate of the index that conflicts
// with c (an overlapping subnet, or the same VTEP MAC or public IP as
// another node's), subnets first, until fn returns false. A candidate may
// be called more than once.
func (x *index) conflicting(c *cand, fn func(o *cand, r Reason) bool) {
	more := true
	x.subnets.overlapping(c.subnet(), func(o *cand) bool {
		if o != c {
			more = fn(o, ReasonSubnetConflict)
		}
		return more
	})
	identity := func(o *cand) bool {
		if o != c && !o.sameNode(c) {
			more = fn(o, ReasonIdentityConflict)
		}
		return more
	}
	// One node's many leases under one MAC or address cost one look.
	if more && !x.byMAC.onlyNodeOf(c.mac, c) {
		x.byMAC.each(c.mac, identity)
	}
	if more && !x.byIP.onlyNodeOf(c.public.As16(), c) {
		x.byIP.each(c.public.As16(), identity)
	}
}
