package admit

import (
	"net/netip"

	"github.com/weftnet/weft/internal/leasekey"
	"github.com/weftnet/weft/lease"
)

// kind says what a candidate is to this node.
type kind uint8

const (
	peerKind kind = iota // another node's: judged by the rules
	ownKind              // this node's own lease: never a peer, and blocks every conflicting one
	selfKind             // another lease this node owns (an old one): ignored
)

// code is a Reason as a candidate keeps it: 0 for admitted, then the
// rules in the order of reasons, and pending for a candidate queued to be
// judged (no pass ends with one).
type code uint8

const pending code = 255

func codeOf(r Reason) code {
	for i, x := range reasons {
		if x == r {
			return code(i + 1)
		}
	}
	return 0
}

func (c code) reason() Reason {
	if c == 0 || int(c) > len(reasons) {
		return ""
	}
	return reasons[c-1]
}

// cand is one family's half of a lease, with its verdict. A table holds one
// per node in the cluster, so the common case is kept small: what only a
// lease with something wrong needs is in extra, nil otherwise.
type cand struct {
	public    netip.Addr
	owner     string
	seniority int64
	blocker   *cand // what blocked c when it was last judged, tried first the next time
	x         *extra
	vni       int32 // 0 to 1<<24-1: decode refuses others
	// why and reportedWhy fingerprint what to fix when a static rule
	// fails, now and as last reported, so that a changed fault is news
	// again. The text is made again when a verdict is asked for: kept,
	// it would cost a string for each of the leases a writer may make.
	why, reportedWhy uint32
	mac              MAC
	key              leasekey.Packed // the lease's: 22 bytes rather than 64
	ipv6             bool
	kind             kind
	static           code // the first static rule that fails, or 0
	verdict          code // 0 when admitted
	reported         code // the rule last returned in a Delta; a new candidate starts as admitted, so that only a rejection is news
	fresh            bool // inserted in the pass in progress
	queued           bool // in the pass's heap
	shadowed         bool // in the family's shadowed index
	bySubnet         bool // blocker overlaps c's subnet, rather than sharing its identity
	gone             bool // removed from the table
	pivot            bool // a search key, not a candidate
}

// extra is what a candidate needs only when its lease has something wrong
// with it that the rules cannot tell again from the candidate alone.
type extra struct {
	otherBackend bool   // BackendType is not lease.DefaultBackendType but backendType
	backendType  string //
	decodeErr    string // why the backend data does not decode
	invalid      string // lease.Lease.Invalid: why the source could not take the value
}

// fingerprint hashes what to fix for cand.why (FNV-1a): two texts that
// collide make a changed fault not news, and nothing else.
func fingerprint(s string) uint32 {
	h := uint32(2166136261)
	for i := 0; i < len(s); i++ {
		h ^= uint32(s[i])
		h *= 16777619
	}
	return h
}

func (c *cand) ext() *extra {
	if c.x == nil {
		c.x = &extra{}
	}
	return c.x
}

func (c *cand) subnet() netip.Prefix {
	if c.ipv6 {
		return c.key.IPv6()
	}
	return c.key.IPv4()
}

func (c *cand) admitted() bool { return c.verdict == 0 }

// peer returns the candidate as a Peer.
func (c *cand) peer() Peer {
	return Peer{Key: c.key.Key(), IPv6: c.ipv6, Subnet: c.subnet(), PublicIP: c.public, VtepMAC: c.mac, Owner: c.owner, Seniority: c.seniority}
}

// sameNode reports whether c and o are two leases of one node: the same
// owner, VTEP and address, as while a node moves from one subnet to another.
func (c *cand) sameNode(o *cand) bool {
	return c.owner == o.owner && c.mac == o.mac && c.public == o.public
}

// eligible reports whether c takes part in conflicts: one that fails a
// static rule never blocks another, and is never blocked.
func (c *cand) eligible() bool {
	return c.kind == ownKind || c.kind == peerKind && c.static == 0
}

// blocks reports whether o, a conflicting candidate, keeps c out: this
// node's own lease always does; a peer does if it is admitted and older.
func (o *cand) blocks(c *cand) bool {
	return o != c && !o.gone && (o.kind == ownKind || o.kind == peerKind && o.admitted() && o.older(c))
}

// older reports whether c ranks before o in the conflict order: this
// node's own lease first, then by seniority and key.
func (c *cand) older(o *cand) bool {
	if (c.kind == ownKind) != (o.kind == ownKind) {
		return c.kind == ownKind
	}
	if c.seniority != o.seniority {
		// The keys decide ties alone: unpacked only then.
		return lease.CompareSeniority(c.seniority, lease.Key{}, o.seniority, lease.Key{}) < 0
	}
	return c.key.Key().Compare(o.key.Key()) < 0
}
