//go:build linux

package vxlan

import (
	"encoding/binary"
	"github.com/weftnet/weft/lease"
	"net/netip"

	"golang.org/x/sys/unix"
)

// The kernel objects the datapath owns, in the form the reconciler compares
// and the rtconn writes. Each has a key that identifies it and a value the
// reconciler checks.

// nexthop is a nexthop object: via gw on dev, onlink when the gateway is
// not on a connected network (the VXLAN case).
type nexthop struct {
	id     uint32
	gw     netip.Addr
	dev    int
	onlink bool
	proto  uint8
}

const nexthopCreate = unix.NLM_F_CREATE | unix.NLM_F_REPLACE

func (n nexthop) addRequest() request {
	body := make([]byte, 8, 48) // struct nhmsg, then room for the attributes
	body[0] = family(n.gw)
	body[2] = n.proto
	if n.onlink {
		binary.NativeEndian.PutUint32(body[4:], unix.RTNH_F_ONLINK)
	}
	body = attr(body, unix.NHA_ID, u32(n.id))
	body = attr(body, unix.NHA_OIF, u32(uint32(n.dev)))
	body = attr(body, unix.NHA_GATEWAY, addrBytes(n.gw))
	return request{typ: unix.RTM_NEWNEXTHOP, flags: nexthopCreate, body: body}
}

func deleteNexthopRequest(id uint32) request {
	body := attr(make([]byte, 8, 16), unix.NHA_ID, u32(id))
	return request{typ: unix.RTM_DELNEXTHOP, body: body}
}

func parseNexthop(data []byte) (nexthop, bool) {
	if len(data) < 8 {
		return nexthop{}, false
	}
	n := nexthop{proto: data[2], onlink: binary.NativeEndian.Uint32(data[4:8])&unix.RTNH_F_ONLINK != 0}
	forEachAttr(data[8:], func(typ uint16, v []byte) {
		switch {
		case typ == unix.NHA_ID && len(v) == 4:
			n.id = binary.NativeEndian.Uint32(v)
		case typ == unix.NHA_OIF && len(v) == 4:
			n.dev = int(binary.NativeEndian.Uint32(v))
		case typ == unix.NHA_GATEWAY:
			n.gw = addrFrom(v)
		}
	})
	return n, n.id != 0
}

// route is a unicast route in the main table: to dst through nexthop nhid,
// or, without nexthop objects, via gw on dev. metric is the route's
// priority; routes to one destination with different metrics are distinct.
type route struct {
	dst    netip.Prefix
	metric uint32
	nhid   uint32
	gw     netip.Addr
	dev    int
	onlink bool
	proto  uint8
}

// defaultMetric is the priority the kernel gives a route that names none:
// 0 for IPv4, 1024 for IPv6. The datapath's routes use it explicitly.
func defaultMetric(ipv6 bool) uint32 {
	if ipv6 {
		return 1024
	}
	return 0
}

func rtmsg(dst netip.Prefix, proto uint8, scope uint8) []byte {
	b := make([]byte, unix.SizeofRtMsg, unix.SizeofRtMsg+64)
	b[0] = family(dst.Addr())
	b[1] = uint8(dst.Bits())
	b[4] = unix.RT_TABLE_MAIN
	b[5] = proto
	b[6] = scope
	b[7] = unix.RTN_UNICAST
	return b
}

// addRequest writes the route. With replace false the kernel refuses to
// overwrite a route to the same destination and metric, which is how the
// datapath avoids taking over a route it does not own.
func (r route) addRequest(replace bool) request {
	flags := uint16(unix.NLM_F_CREATE | unix.NLM_F_EXCL)
	if replace {
		flags = unix.NLM_F_CREATE | unix.NLM_F_REPLACE
	}
	body := rtmsg(r.dst, r.proto, unix.RT_SCOPE_UNIVERSE)
	body = attr(body, unix.RTA_DST, addrBytes(r.dst.Addr()))
	body = attr(body, unix.RTA_PRIORITY, u32(r.metric))
	if r.nhid != 0 {
		body = attr(body, rtaNHID, u32(r.nhid))
	} else {
		if r.onlink {
			binary.NativeEndian.PutUint32(body[8:], unix.RTNH_F_ONLINK)
		}
		body = attr(body, unix.RTA_GATEWAY, addrBytes(r.gw))
		body = attr(body, unix.RTA_OIF, u32(uint32(r.dev)))
	}
	return request{typ: unix.RTM_NEWROUTE, flags: flags, body: body}
}

// deleteRequest deletes exactly this route: the kernel matches the
// protocol, metric and nexthop given, so another program's route to the
// same destination is never taken instead.
func (r route) deleteRequest() request {
	body := rtmsg(r.dst, r.proto, unix.RT_SCOPE_NOWHERE)
	body = attr(body, unix.RTA_DST, addrBytes(r.dst.Addr()))
	body = attr(body, unix.RTA_PRIORITY, u32(r.metric))
	if r.nhid != 0 {
		body = attr(body, rtaNHID, u32(r.nhid))
	} else {
		if r.gw.IsValid() {
			body = attr(body, unix.RTA_GATEWAY, addrBytes(r.gw))
		}
		if r.dev != 0 {
			body = attr(body, unix.RTA_OIF, u32(uint32(r.dev)))
		}
	}
	return request{typ: unix.RTM_DELROUTE, body: body}
}

// parseRoute reads a route from a dump or notification; ok is false for
// routes outside the main table, of another type, or without a destination.
func parseRoute(data []byte) (r route, ok bool) {
	if len(data) < unix.SizeofRtMsg {
		return route{}, false
	}
	table := uint32(data[4])
	var dst netip.Addr
	forEachAttr(data[unix.SizeofRtMsg:], func(typ uint16, v []byte) {
		switch {
		case typ == unix.RTA_TABLE && len(v) == 4:
			table = binary.NativeEndian.Uint32(v)
		case typ == unix.RTA_DST:
			dst = addrFrom(v)
		case typ == unix.RTA_GATEWAY:
			r.gw = addrFrom(v)
		case typ == unix.RTA_OIF && len(v) == 4:
			r.dev = int(binary.NativeEndian.Uint32(v))
		case typ == unix.RTA_PRIORITY && len(v) == 4:
			r.metric = binary.NativeEndian.Uint32(v)
		case typ == rtaNHID && len(v) == 4:
			r.nhid = binary.NativeEndian.Uint32(v)
		}
	})
	if table != unix.RT_TABLE_MAIN || data[7] != unix.RTN_UNICAST || !dst.IsValid() {
		return route{}, false // another table, or a default route: never ours
	}
	r.dst = netip.PrefixFrom(dst, int(data[1]))
	r.proto = data[5]
	r.onlink = binary.NativeEndian.Uint32(data[8:12])&unix.RTNH_F_ONLINK != 0
	return r, true
}

// neigh is a permanent neighbour entry: ip is at mac on dev.
type neigh struct {
	ip    netip.Addr
	mac   lease.MAC
	dev   int
	state uint16
}

func ndmsg(fam uint8, dev int, state uint16, flags uint8) []byte {
	b := make([]byte, 12, 64)
	b[0] = fam
	binary.NativeEndian.PutUint32(b[4:], uint32(dev))
	binary.NativeEndian.PutUint16(b[8:], state)
	b[10] = flags
	return b
}

func (n neigh) addRequest() request {
	body := ndmsg(family(n.ip), n.dev, unix.NUD_PERMANENT, 0)
	body = attr(body, unix.NDA_DST, addrBytes(n.ip))
	body = attr(body, unix.NDA_LLADDR, n.mac[:])
	return request{typ: unix.RTM_NEWNEIGH, flags: unix.NLM_F_CREATE | unix.NLM_F_REPLACE, body: body}
}

func (n neigh) deleteRequest() request {
	body := attr(ndmsg(family(n.ip), n.dev, 0, 0), unix.NDA_DST, addrBytes(n.ip))
	return request{typ: unix.RTM_DELNEIGH, body: body}
}

func parseNeigh(data []byte) (neigh, bool) {
	if len(data) < 12 {
		return neigh{}, false
	}
	n := neigh{
		dev:   int(binary.NativeEndian.Uint32(data[4:8])),
		state: binary.NativeEndian.Uint16(data[8:10]),
	}
	forEachAttr(data[12:], func(typ uint16, v []byte) {
		switch typ {
		case unix.NDA_DST:
			n.ip = addrFrom(v)
		case unix.NDA_LLADDR:
			copy(n.mac[:], v)
		}
	})
	return n, n.ip.IsValid()
}

// fdb is a forwarding database entry of the VXLAN device: frames for mac go
// to the VTEP at dst. port, vni and ifindex are zero when the entry uses the
// device's defaults, as the datapath's entries do.
type fdb struct {
	mac     lease.MAC
	dst     netip.Addr
	dev     int
	state   uint16
	self    bool
	port    uint16
	vni     uint32
	ifindex int
}

// sendsTo reports whether the entry is one the datapath writes: a
// permanent entry of the device itself that sends to dst with the device's
// port, VNI and interface.
func (f fdb) sendsTo(dst netip.Addr) bool {
	return f.dst == dst && f.port == 0 && f.vni == 0 && f.ifindex == 0 && f.self && f.state&unix.NUD_PERMANENT != 0
}

func (f fdb) addRequest() request {
	body := ndmsg(unix.AF_BRIDGE, f.dev, unix.NUD_PERMANENT, unix.NTF_SELF)
	body = attr(body, unix.NDA_LLADDR, f.mac[:])
	body = attr(body, unix.NDA_DST, addrBytes(f.dst))
	return request{typ: unix.RTM_NEWNEIGH, flags: unix.NLM_F_CREATE | unix.NLM_F_REPLACE, body: body}
}

// deleteRequest deletes exactly this remote of the entry: the kernel
// matches destination, port, VNI and interface.
func (f fdb) deleteRequest() request {
	body := ndmsg(unix.AF_BRIDGE, f.dev, 0, unix.NTF_SELF)
	body = attr(body, unix.NDA_LLADDR, f.mac[:])
	if f.dst.IsValid() {
		body = attr(body, unix.NDA_DST, addrBytes(f.dst))
	}
	if f.port != 0 {
		body = attr(body, unix.NDA_PORT, binary.BigEndian.AppendUint16(nil, f.port))
	}
	if f.vni != 0 {
		body = attr(body, unix.NDA_VNI, u32(f.vni))
	}
	if f.ifindex != 0 {
		body = attr(body, unix.NDA_IFINDEX, u32(uint32(f.ifindex)))
	}
	return request{typ: unix.RTM_DELNEIGH, body: body}
}

func parseFDB(data []byte) (fdb, bool) {
	if len(data) < 12 || data[0] != unix.AF_BRIDGE {
		return fdb{}, false
	}
	f := fdb{
		dev:   int(binary.NativeEndian.Uint32(data[4:8])),
		state: binary.NativeEndian.Uint16(data[8:10]),
		self:  data[10]&unix.NTF_SELF != 0,
	}
	macLen := 0
	forEachAttr(data[12:], func(typ uint16, v []byte) {
		switch {
		case typ == unix.NDA_DST:
			f.dst = addrFrom(v)
		case typ == unix.NDA_LLADDR:
			macLen = copy(f.mac[:], v)
		case typ == unix.NDA_PORT && len(v) == 2:
			f.port = binary.BigEndian.Uint16(v)
		case typ == unix.NDA_VNI && len(v) == 4:
			f.vni = binary.NativeEndian.Uint32(v)
		case typ == unix.NDA_IFINDEX && len(v) == 4:
			f.ifindex = int(binary.NativeEndian.Uint32(v))
		}
	})
	return f, macLen == 6
}
