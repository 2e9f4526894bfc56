package admit

import (
	"net/netip"

	"github.com/google/btree"

	"github.com/weftnet/weft/lease"
)

// kind says what a candidate is to this node.
type kind uint8

const (
	peerKind kind = iota // another node's: judged by the rules
	ownKind              // this node's own lease: never a peer, and blocks every conflicting one
	selfKind             // another lease this node owns (an old one): ignored
)

// cand is one family's half of a lease, with its verdict.
type cand struct {
	decoded
	kind     kind
	static   Reason // the first static rule that fails, or ""
	why      string // what to fix, for static or the conflict found
	reason   Reason // the verdict: "" when admitted
	admitted bool

	// reported is the verdict last returned in a Delta; a new candidate
	// starts as admitted, so that only a rejection is news.
	reported struct {
		reason Reason
		why    string
	}
	fresh  bool // inserted in the pass in progress
	queued bool // in the pass's heap
	gone   bool // removed from the table
	pivot  bool // a search key, not a candidate
}

// eligible reports whether c takes part in conflicts: one that fails a
// static rule never blocks another, and is never blocked.
func (c *cand) eligible() bool {
	return c.kind == ownKind || c.kind == peerKind && c.static == ""
}

// blocks reports whether o, a conflicting candidate, keeps c out: this
// node's own lease always does; a peer does if it is admitted and older.
func (o *cand) blocks(c *cand) bool {
	return o != c && !o.gone && (o.kind == ownKind || o.admitted && o.older(c))
}

// older reports whether c ranks before o in the conflict order: this
// node's own lease first, then by seniority and key.
func (c *cand) older(o *cand) bool {
	if (c.kind == ownKind) != (o.kind == ownKind) {
		return c.kind == ownKind
	}
	return lease.CompareSeniority(c.peer.Seniority, c.peer.Key, o.peer.Seniority, o.peer.Key) < 0
}

// bySubnet orders candidates by subnet address, then length, with a search
// key first among equal subnets, then by rank: those contained in a prefix
// are then one run of the tree.
func bySubnet(a, b *cand) bool {
	if c := a.peer.Subnet.Addr().Compare(b.peer.Subnet.Addr()); c != 0 {
		return c < 0
	}
	if a.peer.Subnet.Bits() != b.peer.Subnet.Bits() {
		return a.peer.Subnet.Bits() < b.peer.Subnet.Bits()
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
	tree *btree.BTreeG[*cand]
	lens map[int]int // how many candidates have each subnet length
}

func newSubnetIndex() subnetIndex {
	return subnetIndex{tree: btree.NewG(32, bySubnet), lens: map[int]int{}}
}

func (x *subnetIndex) insert(c *cand) {
	if _, replaced := x.tree.ReplaceOrInsert(c); !replaced {
		x.lens[c.peer.Subnet.Bits()]++
	}
}

func (x *subnetIndex) delete(c *cand) {
	if _, ok := x.tree.Delete(c); ok {
		bits := c.peer.Subnet.Bits()
		if x.lens[bits]--; x.lens[bits] == 0 {
			delete(x.lens, bits)
		}
	}
}

// overlapping calls f with each candidate whose subnet overlaps s, until f
// returns false.
func (x *subnetIndex) overlapping(s netip.Prefix, f func(*cand) bool) {
	more := true
	visit := func(from netip.Prefix, in func(netip.Prefix) bool) {
		x.tree.AscendGreaterOrEqual(&cand{decoded: decoded{peer: Peer{Subnet: from}}, pivot: true}, func(c *cand) bool {
			if !in(c.peer.Subnet) {
				return false
			}
			more = f(c)
			return more
		})
	}
	for bits := range x.lens {
		if bits >= s.Bits() || !more {
			continue
		}
		up := netip.PrefixFrom(s.Addr(), bits).Masked()
		visit(up, func(p netip.Prefix) bool { return p == up })
	}
	if more {
		visit(s, func(p netip.Prefix) bool { return s.Contains(p.Addr()) })
	}
}

func (x *subnetIndex) clear() {
	x.tree.Clear(false)
	clear(x.lens)
}

// multiIndex finds candidates by a value they usually hold alone (a VTEP
// MAC, a public IP): the first in one map, any others in a second, so that
// the common case costs no slice per candidate.
type multiIndex[K comparable] struct {
	first map[K]*cand
	more  map[K][]*cand
}

func newMultiIndex[K comparable]() multiIndex[K] {
	return multiIndex[K]{first: map[K]*cand{}, more: map[K][]*cand{}}
}

func (x *multiIndex[K]) insert(k K, c *cand) {
	if _, ok := x.first[k]; !ok {
		x.first[k] = c
		return
	}
	x.more[k] = append(x.more[k], c)
}

func (x *multiIndex[K]) delete(k K, c *cand) {
	rest := x.more[k]
	if x.first[k] == c {
		if len(rest) == 0 {
			delete(x.first, k)
			return
		}
		x.first[k], rest = rest[0], rest[1:]
	} else {
		for i, o := range rest {
			if o == c {
				rest = append(rest[:i:i], rest[i+1:]...)
				break
			}
		}
	}
	if len(rest) == 0 {
		delete(x.more, k)
	} else {
		x.more[k] = rest
	}
}

// each calls f with every candidate under k, until f returns false.
func (x *multiIndex[K]) each(k K, f func(*cand) bool) {
	c, ok := x.first[k]
	if !ok || !f(c) {
		return
	}
	for _, c := range x.more[k] {
		if !f(c) {
			return
		}
	}
}

func (x *multiIndex[K]) clear() {
	clear(x.first)
	clear(x.more)
}
