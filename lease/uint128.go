package lease

import (
	"math/big"
	"math/bits"
	"net/netip"
)

// u128 is an unsigned 128-bit integer. The allocator maps addresses of both
// families onto it so that one code path serves a /8 of IPv4 /24s and an IPv6
// range with 2^64 candidate subnets alike. An IPv4 address occupies the low 32
// bits.
type u128 struct{ hi, lo uint64 }

func u128From64(v uint64) u128 { return u128{lo: v} }

func u128FromAddr(a netip.Addr) u128 {
	if a.Is4() {
		b := a.As4()
		return u128{lo: uint64(b[0])<<24 | uint64(b[1])<<16 | uint64(b[2])<<8 | uint64(b[3])}
	}
	b := a.As16()
	var u u128
	for i := 0; i < 8; i++ {
		u.hi = u.hi<<8 | uint64(b[i])
		u.lo = u.lo<<8 | uint64(b[8+i])
	}
	return u
}

// addr converts u back to an address of the given family; for IPv4 only the
// low 32 bits are used.
func (u u128) addr(is4 bool) netip.Addr {
	if is4 {
		return netip.AddrFrom4([4]byte{byte(u.lo >> 24), byte(u.lo >> 16), byte(u.lo >> 8), byte(u.lo)})
	}
	var b [16]byte
	for i := 0; i < 8; i++ {
		b[7-i] = byte(u.hi >> (8 * i))
		b[15-i] = byte(u.lo >> (8 * i))
	}
	return netip.AddrFrom16(b)
}

func (u u128) isZero() bool { return u.hi == 0 && u.lo == 0 }

func (u u128) cmp(v u128) int {
	switch {
	case u.hi < v.hi:
		return -1
	case u.hi > v.hi:
		return 1
	case u.lo < v.lo:
		return -1
	case u.lo > v.lo:
		return 1
	}
	return 0
}

func (u u128) add(v u128) u128 {
	lo, carry := bits.Add64(u.lo, v.lo, 0)
	hi, _ := bits.Add64(u.hi, v.hi, carry)
	return u128{hi, lo}
}

func (u u128) sub(v u128) u128 {
	lo, borrow := bits.Sub64(u.lo, v.lo, 0)
	hi, _ := bits.Sub64(u.hi, v.hi, borrow)
	return u128{hi, lo}
}

func (u u128) add1() u128 { return u.add(u128{lo: 1}) }
func (u u128) sub1() u128 { return u.sub(u128{lo: 1}) }

func (u u128) shr(n uint) u128 {
	switch {
	case n == 0:
		return u
	case n >= 128:
		return u128{}
	case n >= 64:
		return u128{lo: u.hi >> (n - 64)}
	}
	return u128{hi: u.hi >> n, lo: u.lo>>n | u.hi<<(64-n)}
}

func (u u128) shl(n uint) u128 {
	switch {
	case n == 0:
		return u
	case n >= 128:
		return u128{}
	case n >= 64:
		return u128{hi: u.lo << (n - 64)}
	}
	return u128{hi: u.hi<<n | u.lo>>(64-n), lo: u.lo << n}
}

// ones returns a value with the low n bits set.
func ones(n uint) u128 {
	switch {
	case n == 0:
		return u128{}
	case n >= 128:
		return u128{^uint64(0), ^uint64(0)}
	case n >= 64:
		return u128{hi: ^uint64(0) >> (128 - n), lo: ^uint64(0)}
	}
	return u128{lo: ^uint64(0) >> (64 - n)}
}

func (u u128) or(v u128) u128     { return u128{u.hi | v.hi, u.lo | v.lo} }
func (u u128) and(v u128) u128    { return u128{u.hi & v.hi, u.lo & v.lo} }
func (u u128) andNot(v u128) u128 { return u128{u.hi &^ v.hi, u.lo &^ v.lo} }

// byteAt returns byte i of u, counting from the least significant.
func (u u128) byteAt(i uint) byte {
	if i < 8 {
		return byte(u.lo >> (8 * i))
	}
	return byte(u.hi >> (8 * (i - 8)))
}

func (u u128) bitLen() int {
	if u.hi != 0 {
		return 64 + bits.Len64(u.hi)
	}
	return bits.Len64(u.lo)
}

func (u u128) big() *big.Int {
	b := new(big.Int).SetUint64(u.hi)
	b.Lsh(b, 64)
	return b.Or(b, new(big.Int).SetUint64(u.lo))
}

func (u u128) String() string { return u.big().String() }
