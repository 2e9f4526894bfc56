package lease

import (
	"errors"
	"fmt"
	"math/big"
	"math/rand/v2"
	"net/netip"
	"slices"
	"sort"
)

var (
	// ErrOutOfSubnets means every subnet of the range is taken.
	ErrOutOfSubnets = errors.New("out of subnets")
	// ErrOutOfRange means a subnet is not one of the range's subnets: wrong
	// family or length, not aligned, or outside First..Last.
	ErrOutOfRange = errors.New("subnet is outside the allocation range")
	// ErrSubnetTaken means a subnet overlaps one that is taken.
	ErrSubnetTaken = errors.New("subnet is taken")
)

// A Range is the set of subnets an Allocator hands out: every subnet of
// First's length from First to Last, inclusive. Config.IPv4Range and
// Config.IPv6Range build it from SubnetMin, SubnetMax and SubnetLen. The zero
// Range is empty and not valid.
type Range struct {
	First netip.Prefix
	Last  netip.Prefix
}

// IsValid reports whether r is a non-empty range: First and Last are masked
// prefixes of the same family and length, First is not above Last, and the
// range holds fewer than 2^128 subnets.
func (r Range) IsValid() bool {
	f, l := r.First, r.Last
	if !f.IsValid() || !l.IsValid() || f.Bits() == 0 || f.Bits() != l.Bits() ||
		f != f.Masked() || l != l.Masked() || f.Addr().Is4() != l.Addr().Is4() {
		return false
	}
	if !f.Addr().Is4() && (!isPlain6(f.Addr()) || !isPlain6(l.Addr())) {
		return false
	}
	// Every /128 of the IPv6 space would be 2^128 subnets, one more than the
	// allocator's 128-bit counts can hold.
	return f.Addr().Compare(l.Addr()) <= 0 && r.span() != ones(128)
}

// Contains reports whether p is one of r's subnets.
func (r Range) Contains(p netip.Prefix) bool {
	return r.IsValid() && p.IsValid() && p.Bits() == r.First.Bits() && p == p.Masked() &&
		p.Addr().Is4() == r.First.Addr().Is4() && p.Addr().Zone() == "" &&
		r.First.Addr().Compare(p.Addr()) <= 0 && p.Addr().Compare(r.Last.Addr()) <= 0
}

// Len returns the number of subnets in r; zero if r is not valid.
func (r Range) Len() *big.Int {
	if !r.IsValid() {
		return new(big.Int)
	}
	return r.span().add1().big()
}

// span returns the index of Last, counting First as 0.
func (r Range) span() u128 {
	shift := uint(r.First.Addr().BitLen() - r.First.Bits())
	return u128FromAddr(r.Last.Addr()).shr(shift).sub(u128FromAddr(r.First.Addr()).shr(shift))
}

func (r Range) String() string {
	if !r.IsValid() {
		return "invalid Range"
	}
	return fmt.Sprintf("%s..%s", r.First, r.Last)
}

// An Allocator picks free subnets from a Range, given the subnets already
// taken. It is immutable and safe for concurrent use.
//
// It models the range as candidate indexes 0..N-1 and the taken subnets as
// merged, sorted intervals of blocked indexes, keeping the free intervals in
// between with a running count. Building it costs O(n log n) in the number of
// taken subnets; Pick and CheckFree cost O(log n), whatever the size of the
// range, so an IPv6 range with 2^64 candidates is as cheap as an IPv4 /16.
//
// Pick may be called concurrently only with a nil or per-goroutine
// *rand.Rand, since a *rand.Rand is not safe for concurrent use.
type Allocator struct {
	r     Range
	is4   bool
	shift uint // host bits of one subnet: index = address >> shift - base
	base  u128 // First's address >> shift
	size  u128 // number of candidates
	free  u128 // number of free candidates
	segs  []freeSegment
}

// span is a run of candidate indexes, first..last inclusive.
type span struct{ first, last u128 }

// freeSegment is a span of free candidates.
type freeSegment struct {
	span
	before u128 // free candidates in earlier segments
}

// NewAllocator returns an Allocator for r with taken removed. A taken subnet
// may have any length and lie partly or wholly outside r, as after the
// network was changed; it blocks every candidate it overlaps. Subnets of the
// other address family and invalid prefixes are ignored. The slice is not
// retained.
func NewAllocator(r Range, taken []netip.Prefix) (*Allocator, error) {
	if !r.IsValid() {
		return nil, fmt.Errorf("lease: allocator range %v..%v is not valid: First and Last must be masked prefixes of one family and length, with First not above Last", r.First, r.Last)
	}
	a := &Allocator{
		r:     r,
		is4:   r.First.Addr().Is4(),
		shift: uint(r.First.Addr().BitLen() - r.First.Bits()),
	}
	a.base = u128FromAddr(r.First.Addr()).shr(a.shift)
	a.size = r.span().add1()

	rangeLo := u128FromAddr(r.First.Addr())
	rangeHi := u128FromAddr(r.Last.Addr()).or(ones(a.shift))
	addrBits := r.First.Addr().BitLen()
	blocked := make([]span, 0, len(taken))
	for _, t := range taken {
		if !t.IsValid() || t.Addr().Is4() != a.is4 {
			continue
		}
		hostBits := uint(addrBits - t.Bits())
		lo := u128FromAddr(t.Addr()).andNot(ones(hostBits))
		hi := lo.or(ones(hostBits))
		if hi.cmp(rangeLo) < 0 || lo.cmp(rangeHi) > 0 {
			continue
		}
		lo, hi = maxU128(lo, rangeLo), minU128(hi, rangeHi)
		blocked = append(blocked, span{a.index(lo), a.index(hi)})
	}
	blocked = mergeSpans(sortSpans(blocked, a.size.sub1()))

	a.segs = make([]freeSegment, 0, len(blocked)+1)
	next := u128{} // lowest index not yet known to be blocked or free
	for _, b := range blocked {
		if b.first.cmp(next) > 0 {
			a.addFree(next, b.first.sub1())
		}
		next = b.last.add1()
	}
	if next.cmp(a.size) < 0 {
		a.addFree(next, a.size.sub1())
	}
	return a, nil
}

func (a *Allocator) index(addr u128) u128 { return addr.shr(a.shift).sub(a.base) }

func (a *Allocator) prefixAt(i u128) netip.Prefix {
	return netip.PrefixFrom(i.add(a.base).shl(a.shift).addr(a.is4), a.r.First.Bits())
}

func (a *Allocator) addFree(first, last u128) {
	a.segs = append(a.segs, freeSegment{span{first, last}, a.free})
	a.free = a.free.add(last.sub(first).add1())
}

// Range returns the range a allocates from.
func (a *Allocator) Range() Range { return a.r }

// FreeLen returns the number of free subnets.
func (a *Allocator) FreeLen() *big.Int { return a.free.big() }

// Pick returns a free subnet chosen uniformly at random, so that nodes
// acquiring at once rarely collide and freed subnets are not reused at once.
// rnd may be nil to use the runtime's random source. When no subnet is free
// the error matches ErrOutOfSubnets.
func (a *Allocator) Pick(rnd *rand.Rand) (netip.Prefix, error) {
	if a.free.isZero() {
		return netip.Prefix{}, fmt.Errorf("%w: all %s /%d subnets from %s to %s are taken; widen the network or release unused leases",
			ErrOutOfSubnets, a.size, a.r.First.Bits(), a.r.First.Addr(), a.r.Last.Addr())
	}
	x := uniform(rnd, a.free)
	i := sort.Search(len(a.segs), func(i int) bool { return a.segs[i].before.cmp(x) > 0 }) - 1
	s := a.segs[i]
	return a.prefixAt(s.first.add(x.sub(s.before))), nil
}

// CheckFree returns nil if p is one of the range's subnets and overlaps no
// taken subnet. Otherwise the error matches ErrOutOfRange or ErrSubnetTaken.
func (a *Allocator) CheckFree(p netip.Prefix) error {
	if !a.r.Contains(p) {
		return fmt.Errorf("%w: %s is not one of the /%d subnets from %s to %s", ErrOutOfRange, p, a.r.First.Bits(), a.r.First.Addr(), a.r.Last.Addr())
	}
	idx := a.index(u128FromAddr(p.Addr()))
	i := sort.Search(len(a.segs), func(i int) bool { return a.segs[i].last.cmp(idx) >= 0 })
	if i < len(a.segs) && a.segs[i].first.cmp(idx) <= 0 {
		return nil
	}
	return fmt.Errorf("%w: %s overlaps a subnet in use", ErrSubnetTaken, p)
}

// sortSpans sorts spans by first index, no index exceeding maxIndex. Large
// inputs use an LSD radix sort over just the bytes an index can occupy, one
// pass per byte, skipping bytes all spans share: two passes for a /8 cut into
// /24s, which makes building the allocator several times faster than a
// comparison sort.
func sortSpans(s []span, maxIndex u128) []span {
	if len(s) < 512 {
		slices.SortFunc(s, func(x, y span) int { return x.first.cmp(y.first) })
		return s
	}
	tmp := make([]span, len(s))
	for b := range uint((maxIndex.bitLen() + 7) / 8) {
		var count [257]int
		for _, x := range s {
			count[int(x.first.byteAt(b))+1]++
		}
		if slices.Contains(count[1:], len(s)) {
			continue // every span has the same byte here
		}
		for i := 1; i < len(count); i++ {
			count[i] += count[i-1]
		}
		for _, x := range s {
			d := x.first.byteAt(b)
			tmp[count[d]] = x
			count[d]++
		}
		s, tmp = tmp, s
	}
	return s
}

// mergeSpans merges overlapping and adjacent spans of a sorted slice, in
// place.
func mergeSpans(s []span) []span {
	out := s[:0]
	for _, x := range s {
		if n := len(out); n > 0 && x.first.cmp(out[n-1].last.add1()) <= 0 {
			out[n-1].last = maxU128(out[n-1].last, x.last)
			continue
		}
		out = append(out, x)
	}
	return out
}

// uniform returns a uniformly distributed value in [0, n), n > 0.
func uniform(rnd *rand.Rand, n u128) u128 {
	u64, u64n := rand.Uint64, rand.Uint64N
	if rnd != nil {
		u64, u64n = rnd.Uint64, rnd.Uint64N
	}
	if n.hi == 0 {
		return u128{lo: u64n(n.lo)}
	}
	// Rejection sampling over the smallest power of two >= n: fewer than two
	// draws on average.
	mask := ones(uint(n.sub1().bitLen()))
	for {
		v := u128{hi: u64() & mask.hi, lo: u64()}
		if v.cmp(n) < 0 {
			return v
		}
	}
}

func maxU128(x, y u128) u128 {
	if x.cmp(y) >= 0 {
		return x
	}
	return y
}

func minU128(x, y u128) u128 {
	if x.cmp(y) <= 0 {
		return x
	}
	return y
}
