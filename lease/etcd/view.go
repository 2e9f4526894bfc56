package etcd

import (
	"iter"
	"net/netip"

	"github.com/weftnet/weft/internal/leasekey"
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
// against 220, and one allocation rather than three): the key packed,
// addresses as bytes, both backend data in one slice, and a known backend
// type not allocated at all. lease returns it as a lease.Lease again.
type leaseView struct{ m map[leasekey.Packed]viewed }

func newLeaseView() *leaseView { return &leaseView{m: map[leasekey.Packed]viewed{}} }

// viewed is one lease's entry. The public addresses are plain (no zone,
// and the IPv4 one not mapped): lease.Attrs.UnmarshalJSON accepts no other.
type viewed struct {
	seniority int64
	data      []byte // BackendData, then BackendV6Data
	owner     string
	// typ is BackendType, or with invalid, lease.Lease.Invalid: a lease
	// its source could not take has no attributes.
	typ        string
	split      uint16 // len(BackendData); both are within lease.MaxBackendDataSize
	pub4       [4]byte
	pub6       [16]byte
	has4, has6 bool
	invalid    bool
}

func (v *leaseView) put(l lease.Lease) {
	a := l.Attrs
	if l.Invalid != "" {
		v.m[leasekey.Pack(l.Key)] = viewed{seniority: l.Seniority, typ: l.Invalid, invalid: true}
		return
	}
	e := viewed{seniority: l.Seniority, owner: a.Owner, typ: internType(a.BackendType), split: uint16(len(a.BackendData))}
	if n := len(a.BackendData) + len(a.BackendV6Data); n > 0 {
		e.data = append(append(make([]byte, 0, n), a.BackendData...), a.BackendV6Data...)
	}
	if a.PublicIP.IsValid() {
		e.pub4, e.has4 = a.PublicIP.As4(), true
	}
	if a.PublicIPv6.IsValid() {
		e.pub6, e.has6 = a.PublicIPv6.As16(), true
	}
	v.m[leasekey.Pack(l.Key)] = e
}

// lease returns the lease sent for k, if one was.
func (v *leaseView) lease(k lease.Key) (lease.Lease, bool) {
	e, ok := v.m[leasekey.Pack(k)]
	if !ok {
		return lease.Lease{}, false
	}
	return e.lease(k), true
}

func (e viewed) lease(k lease.Key) lease.Lease {
	l := lease.Lease{Key: k, Seniority: e.seniority}
	if e.invalid {
		l.Invalid = e.typ
		return l
	}
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

func (v *leaseView) remove(k lease.Key) { delete(v.m, leasekey.Pack(k)) }

func (v *leaseView) len() int { return len(v.m) }

func (v *leaseView) clear() { clear(v.m) }

// all yields every lease sent, in no order.
func (v *leaseView) all() iter.Seq[lease.Lease] {
	return func(yield func(lease.Lease) bool) {
		for vk, e := range v.m {
			if !yield(e.lease(vk.Key())) {
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
