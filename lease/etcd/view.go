package etcd

import (
	"iter"
	"net/netip"

	"github.com/weftnet/weft/lease"
)

// leaseView holds what a watcher has sent of each lease: the attributes
// and seniority (peers' leases carry no expiration, see lease.Lease), to
// tell a change from a renewal and to send the lease as it was.
//
// It holds one entry for every usable subnet key, whoever wrote it, and is
// among the agent's largest structures: tens of thousands of leases in a
// large cluster, or as many as a hostile writer makes. Each entry is kept
// in about half of what a lease.Key and lease.Attrs take (130 bytes
// against 220, and one allocation rather than three): addresses as bytes,
// both backend data in one slice, and a known backend type not allocated
// at all. lease returns it as a lease.Lease again.
type leaseView struct{ m map[viewKey]viewed }

func newLeaseView() *leaseView { return &leaseView{m: map[viewKey]viewed{}} }

// viewKey is a lease.Key in 22 bytes rather than 64.
type viewKey struct {
	v4    [4]byte
	v6    [16]byte
	bits4 uint8 // noHalf: the key has no IPv4 half
	bits6 uint8
}

const noHalf = 0xff

func toViewKey(k lease.Key) viewKey {
	vk := viewKey{bits4: noHalf, bits6: noHalf}
	if k.IPv4.IsValid() {
		vk.v4, vk.bits4 = k.IPv4.Addr().As4(), uint8(k.IPv4.Bits())
	}
	if k.IPv6.IsValid() {
		vk.v6, vk.bits6 = k.IPv6.Addr().As16(), uint8(k.IPv6.Bits())
	}
	return vk
}

func (vk viewKey) key() lease.Key {
	var k lease.Key
	if vk.bits4 != noHalf {
		k.IPv4 = netip.PrefixFrom(netip.AddrFrom4(vk.v4), int(vk.bits4))
	}
	if vk.bits6 != noHalf {
		k.IPv6 = netip.PrefixFrom(netip.AddrFrom16(vk.v6), int(vk.bits6))
	}
	return k
}

// viewed is one lease's entry. The public addresses are plain (no zone,
// and the IPv4 one not mapped): lease.Attrs.UnmarshalJSON accepts no other.
type viewed struct {
	seniority  int64
	data       []byte // BackendData, then BackendV6Data
	owner      string
	typ        string
	invalid    string // lease.Lease.Invalid
	split      uint16 // len(BackendData); both are within lease.MaxBackendDataSize
	pub4       [4]byte
	pub6       [16]byte
	has4, has6 bool
}

func (v *leaseView) put(l lease.Lease) {
	a := l.Attrs
	e := viewed{seniority: l.Seniority, owner: a.Owner, typ: internType(a.BackendType), invalid: l.Invalid, split: uint16(len(a.BackendData))}
	if n := len(a.BackendData) + len(a.BackendV6Data); n > 0 {
		e.data = append(append(make([]byte, 0, n), a.BackendData...), a.BackendV6Data...)
	}
	if a.PublicIP.IsValid() {
		e.pub4, e.has4 = a.PublicIP.As4(), true
	}
	if a.PublicIPv6.IsValid() {
		e.pub6, e.has6 = a.PublicIPv6.As16(), true
	}
	v.m[toViewKey(l.Key)] = e
}

// lease returns the lease sent for k, if one was.
func (v *leaseView) lease(k lease.Key) (lease.Lease, bool) {
	e, ok := v.m[toViewKey(k)]
	if !ok {
		return lease.Lease{}, false
	}
	return e.lease(k), true
}

func (e viewed) lease(k lease.Key) lease.Lease {
	l := lease.Lease{Key: k, Seniority: e.seniority, Invalid: e.invalid}
	l.Attrs = lease.Attrs{BackendType: e.typ, Owner: e.owner}
	if e.split > 0 {
		l.Attrs.BackendData = e.data[:e.split:e.split]
	}
	if int(e.split) < len(e.data) {
		l.Attrs.BackendV6Data = e.data[e.split:]
	}
	if e.has4 {
		l.Attrs.PublicIP = netip.AddrFrom4(e.pub4)
	}
	if e.has6 {
		l.Attrs.PublicIPv6 = netip.AddrFrom16(e.pub6)
	}
	return l
}

func (v *leaseView) remove(k lease.Key) { delete(v.m, toViewKey(k)) }

func (v *leaseView) len() int { return len(v.m) }

func (v *leaseView) clear() { clear(v.m) }

// all yields every lease sent, in no order.
func (v *leaseView) all() iter.Seq[lease.Lease] {
	return func(yield func(lease.Lease) bool) {
		for vk, e := range v.m {
			if !yield(e.lease(vk.key())) {
				return
			}
		}
	}
}

// internType returns flannel's backend types as constants, so that the
// view does not keep a copy of "vxlan" for every lease.
func internType(t string) string {
	for _, known := range []string{"vxlan", "host-gw", "wireguard", "udp", "ipip", "alloc", "extension"} {
		if t == known {
			return known
		}
	}
	return t
}
