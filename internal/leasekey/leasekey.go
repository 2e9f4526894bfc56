// Package leasekey packs a lease.Key into 22 bytes rather than 64, for the
// maps that hold one entry for every subnet key in etcd or every Node:
// tens of thousands in a large cluster, or as many as a hostile writer
// makes. A Packed is comparable, a value, and safe to share.
package leasekey

import (
	"cmp"
	"encoding/binary"
	"net/netip"

	"github.com/weftnet/weft/lease"
)

// Packed is a lease.Key: each half's address as bytes and its length.
type Packed struct {
	v4    [4]byte
	v6    [16]byte
	bits4 uint8 // none: the key has no IPv4 half
	bits6 uint8
}

const none = 0xff

// Pack packs k. Key halves carry no zone, so nothing is lost.
func Pack(k lease.Key) Packed {
	p := Packed{bits4: none, bits6: none}
	if k.IPv4.IsValid() {
		p.v4, p.bits4 = k.IPv4.Addr().As4(), uint8(k.IPv4.Bits())
	}
	if k.IPv6.IsValid() {
		p.v6, p.bits6 = k.IPv6.Addr().As16(), uint8(k.IPv6.Bits())
	}
	return p
}

// Key unpacks p.
func (p Packed) Key() lease.Key { return lease.Key{IPv4: p.IPv4(), IPv6: p.IPv6()} }

// IPv4 returns the key's IPv4 half, or the zero Prefix.
func (p Packed) IPv4() netip.Prefix {
	if p.bits4 == none {
		return netip.Prefix{}
	}
	return netip.PrefixFrom(netip.AddrFrom4(p.v4), int(p.bits4))
}

// IPv6 returns the key's IPv6 half, or the zero Prefix.
func (p Packed) IPv6() netip.Prefix {
	if p.bits6 == none {
		return netip.Prefix{}
	}
	return netip.PrefixFrom(netip.AddrFrom16(p.v6), int(p.bits6))
}

// CompareHalf orders p and o by one half's address and then its length,
// without unpacking them, for the comparisons of a search tree. This is
// not netip.Prefix.Compare's order, which puts the length first: a tree
// ordered by address keeps the prefixes that can overlap one another
// next to each other, which the overlap searches walk. Both must have
// that half.
func (p Packed) CompareHalf(o Packed, ipv6 bool) int {
	be := binary.BigEndian
	if ipv6 {
		if c := cmp.Compare(be.Uint64(p.v6[:8]), be.Uint64(o.v6[:8])); c != 0 {
			return c
		}
		if c := cmp.Compare(be.Uint64(p.v6[8:]), be.Uint64(o.v6[8:])); c != 0 {
			return c
		}
		return cmp.Compare(p.bits6, o.bits6)
	}
	if c := cmp.Compare(be.Uint32(p.v4[:]), be.Uint32(o.v4[:])); c != 0 {
		return c
	}
	return cmp.Compare(p.bits4, o.bits4)
}
