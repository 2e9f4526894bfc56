package ipam

import (
	"encoding/binary"
	"fmt"
	"math"
	"math/bits"
	"net/netip"

	"github.com/weftnet/weft/subnetenv"
)

// A Range is where one address family's IPs come from: a subnet, the
// part of it handed out, and the gateway, which is never handed out.
// Fields left zero take host-local's defaults.
type Range struct {
	// Subnet is the pod subnet, e.g. 10.244.3.0/24. Required.
	Subnet netip.Prefix
	// Start and End bound the addresses handed out, inclusive. Default:
	// the subnet's first address after the network address, and its last
	// before the broadcast address (IPv4) or its last (IPv6).
	Start, End netip.Addr
	// Gateway is excluded. Default: the subnet's first address after the
	// network address, as flannel's bridge holds (FLANNEL_SUBNET is
	// 10.244.3.1/24).
	Gateway netip.Addr
}

// withDefaults fills in the defaults and checks r. The error names the
// field and the fix.
func (r Range) withDefaults() (Range, error) {
	if !r.Subnet.IsValid() {
		return Range{}, fmt.Errorf("ipam: a range needs a subnet")
	}
	r.Subnet = r.Subnet.Masked()
	first := r.Subnet.Addr().Next()
	last := lastAddr(r.Subnet)
	if r.Subnet.Addr().Is4() && r.Subnet.Bits() < 31 {
		last = last.Prev() // the broadcast address
	}
	if !first.IsValid() || !r.Subnet.Contains(first) || last.Less(first) {
		return Range{}, fmt.Errorf("ipam: subnet %s is too small to hand out addresses from; use a /30 or larger", r.Subnet)
	}
	if !r.Start.IsValid() {
		r.Start = first
	}
	if !r.End.IsValid() {
		r.End = last
	}
	if !r.Gateway.IsValid() {
		r.Gateway = first
	}
	for _, f := range []struct {
		name string
		a    netip.Addr
	}{{"rangeStart", r.Start}, {"rangeEnd", r.End}, {"gateway", r.Gateway}} {
		if !r.Subnet.Contains(f.a) {
			return Range{}, fmt.Errorf("ipam: %s %s is outside subnet %s", f.name, f.a, r.Subnet)
		}
	}
	if r.End.Less(r.Start) {
		return Range{}, fmt.Errorf("ipam: rangeEnd %s is before rangeStart %s", r.End, r.Start)
	}
	if r.size() == 0 {
		return Range{}, fmt.Errorf("ipam: range %s-%s of %s holds no address but the gateway; use a /30 or larger", r.Start, r.End, r.Subnet)
	}
	return r, nil
}

// lastAddr returns the last address of p.
func lastAddr(p netip.Prefix) netip.Addr {
	b := p.Addr().AsSlice()
	for i := p.Bits(); i < len(b)*8; i++ {
		b[i/8] |= 0x80 >> (i % 8)
	}
	a, _ := netip.AddrFromSlice(b)
	return a
}

// contains reports whether ip may be handed out from r.
func (r Range) contains(ip netip.Addr) bool {
	return ip.BitLen() == r.Start.BitLen() && !ip.Less(r.Start) && !r.End.Less(ip) && ip != r.Gateway
}

// next returns the address after ip in r, wrapping from End to Start;
// the gateway is left for the caller to skip.
func (r Range) next(ip netip.Addr) netip.Addr {
	if !ip.IsValid() || ip.BitLen() != r.Start.BitLen() || ip.Less(r.Start) || !ip.Less(r.End) {
		return r.Start
	}
	return ip.Next()
}

// size returns how many addresses r hands out, at most MaxUint64.
func (r Range) size() uint64 {
	s, e := r.Start.As16(), r.End.As16()
	sHi, sLo := binary.BigEndian.Uint64(s[:8]), binary.BigEndian.Uint64(s[8:])
	eHi, eLo := binary.BigEndian.Uint64(e[:8]), binary.BigEndian.Uint64(e[8:])
	lo, borrow := bits.Sub64(eLo, sLo, 0)
	hi, _ := bits.Sub64(eHi, sHi, borrow)
	if hi != 0 || lo == math.MaxUint64 {
		return math.MaxUint64
	}
	n := lo + 1
	if !r.Gateway.Less(r.Start) && !r.End.Less(r.Gateway) {
		n--
	}
	return n
}

// RangesFromSubnetEnv returns the ranges of the subnets in flannel's
// subnet.env at path: FLANNEL_SUBNET and FLANNEL_IPV6_SUBNET, each holding
// the gateway address with the subnet's length (10.244.3.1/24).
func RangesFromSubnetEnv(path string) ([]Range, error) {
	f, err := subnetenv.Read(path)
	if err != nil {
		return nil, fmt.Errorf("ipam: %w", err)
	}
	var out []Range
	for _, s := range []netip.Prefix{f.Subnet, f.IPv6Subnet} {
		if s.IsValid() {
			out = append(out, Range{Subnet: s.Masked()})
		}
	}
	if len(out) == 0 {
		return nil, fmt.Errorf("ipam: %s has no FLANNEL_SUBNET or FLANNEL_IPV6_SUBNET", path)
	}
	return out, nil
}
