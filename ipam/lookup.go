package ipam

import (
	"net/netip"
	"slices"
)

// Lookup returns the IPs attachment at holds, for CNI's CHECK: those in
// the ranges first, in range order, with their subnet's length and
// gateway, then any held outside them (reserved under earlier ranges, or
// by a network sharing the directory) as single addresses. As with
// host-local, holding any IP is holding one.
func (a *Allocator) Lookup(at Attachment) ([]IP, error) {
	unlock, err := a.s.lock()
	if err != nil {
		return nil, err
	}
	defer unlock()
	reserved, err := a.s.reservations()
	if err != nil {
		return nil, err
	}
	var out, outside []IP
	for ip, h := range reserved {
		if h != at {
			continue
		}
		i := slices.IndexFunc(a.ranges, func(r Range) bool { return r.contains(ip) })
		if i < 0 {
			outside = append(outside, IP{Address: netip.PrefixFrom(ip, ip.BitLen())})
			continue
		}
		out = append(out, IP{Address: netip.PrefixFrom(ip, a.ranges[i].Subnet.Bits()), Gateway: a.ranges[i].Gateway})
	}
	rangeOf := func(ip IP) int {
		return slices.IndexFunc(a.ranges, func(r Range) bool { return r.contains(ip.Address.Addr()) })
	}
	slices.SortFunc(out, func(x, y IP) int { return rangeOf(x) - rangeOf(y) })
	slices.SortFunc(outside, func(x, y IP) int { return x.Address.Addr().Compare(y.Address.Addr()) })
	return append(out, outside...), nil
}

// Usage is how full a range is.
type Usage struct {
	Range     Range
	Size      uint64 // addresses the range hands out, at most MaxUint64
	Reserved  int
	Remembers int // free addresses remembered for a pod
}

// Free returns the addresses left, counting remembered ones as free (a
// hint gives way when it must).
func (u Usage) Free() uint64 { return u.Size - uint64(u.Reserved) }

// Usage reports each range's use, for CNI's STATUS. Runtimes call that
// every few seconds, so it reads two directory listings; like Allocate, it
// sweeps the store only when the ranges changed or an hour has passed.
func (a *Allocator) Usage() ([]Usage, error) {
	unlock, err := a.lockInRanges()
	if err != nil {
		return nil, err
	}
	defer unlock()
	taken, marked, _, err := a.names()
	if err != nil {
		return nil, err
	}
	var out []Usage
	for _, r := range a.ranges {
		u := Usage{Range: r, Size: r.size()}
		for ip := range taken {
			if r.contains(ip) {
				u.Reserved++
			}
		}
		for ip := range marked {
			if !taken[ip] && r.contains(ip) {
				u.Remembers++
			}
		}
		out = append(out, u)
	}
	return out, nil
}
