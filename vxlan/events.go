//go:build linux

package vxlan

import (
	"encoding/binary"
	"errors"
	"fmt"
	"time"

	"github.com/vishvananda/netns"
	"golang.org/x/sys/unix"
)

// notifier receives the kernel's link, neighbour, route and nexthop
// notifications for one namespace.
type notifier struct {
	fd   int
	rbuf []byte
}

func subscribe(ns netns.NsHandle, ipv6 bool) (*notifier, error) {
	fd, err := socketAt(ns)
	if err != nil {
		return nil, fmt.Errorf("netlink socket: %w", err)
	}
	// Bind first: binding sets the first 32 group memberships from the
	// address, so memberships added before it would be dropped.
	if err := unix.Bind(fd, &unix.SockaddrNetlink{Family: unix.AF_NETLINK}); err != nil {
		unix.Close(fd)
		return nil, fmt.Errorf("netlink bind: %w", err)
	}
	routes := unix.RTNLGRP_IPV4_ROUTE
	if ipv6 {
		routes = unix.RTNLGRP_IPV6_ROUTE
	}
	for _, g := range []int{unix.RTNLGRP_LINK, unix.RTNLGRP_NEIGH, routes, unix.RTNLGRP_NEXTHOP} {
		if err := unix.SetsockoptInt(fd, unix.SOL_NETLINK, unix.NETLINK_ADD_MEMBERSHIP, g); err != nil {
			unix.Close(fd)
			return nil, fmt.Errorf("netlink group %d: %w", g, err)
		}
	}
	unix.SetsockoptInt(fd, unix.SOL_SOCKET, unix.SO_RCVBUFFORCE, 4<<20)
	// Wake up regularly so that the reader notices when it should stop.
	tv := unix.NsecToTimeval(int64(250 * time.Millisecond))
	unix.SetsockoptTimeval(fd, unix.SOL_SOCKET, unix.SO_RCVTIMEO, &tv)
	return &notifier{fd: fd, rbuf: make([]byte, recvBufferSize)}, nil
}

func (n *notifier) close() { unix.Close(n.fd) }

// errOverrun means notifications were dropped: the receiver must assume
// anything changed.
var errOverrun = errors.New("netlink notifications overran the socket buffer")

// read waits for the next batch of notifications and calls f with each. It
// returns nil after a quiet receive timeout too, so that the caller can
// check whether to stop.
func (n *notifier) read(f func(typ uint16, data []byte)) error {
	k, _, err := unix.Recvfrom(n.fd, n.rbuf, unix.MSG_TRUNC)
	switch {
	case err == unix.EAGAIN || err == unix.EINTR:
		return nil
	case err == unix.ENOBUFS, err == nil && k > len(n.rbuf):
		// A notification cut short is as good as one dropped.
		return errOverrun
	case err != nil:
		return fmt.Errorf("netlink receive: %w", err)
	}
	b := n.rbuf[:k]
	for len(b) >= unix.SizeofNlMsghdr {
		l := int(binary.NativeEndian.Uint32(b[0:4]))
		if l < unix.SizeofNlMsghdr || l > len(b) {
			return nil
		}
		f(binary.NativeEndian.Uint16(b[4:6]), b[unix.SizeofNlMsghdr:l])
		b = b[min(nlmAlign(l), len(b)):]
	}
	return nil
}

// linkIndex returns the interface index of an RTM_NEWLINK or RTM_DELLINK
// message.
func linkIndex(data []byte) int {
	if len(data) < unix.SizeofIfInfomsg {
		return 0
	}
	return int(int32(binary.NativeEndian.Uint32(data[4:8])))
}

// linkName returns the name in a link message.
func linkName(data []byte) string {
	if len(data) < unix.SizeofIfInfomsg {
		return ""
	}
	name := ""
	forEachAttr(data[unix.SizeofIfInfomsg:], func(typ uint16, v []byte) {
		if typ == unix.IFLA_IFNAME {
			for i, c := range v {
				if c == 0 {
					v = v[:i]
					break
				}
			}
			name = string(v)
		}
	})
	return name
}

// expected reports whether a neighbour, route or nexthop notification
// leaves the device as desired: an object added exactly as wanted, or one
// removed that no peer wants. Anything else on the device, or tagged with
// the datapath's protocol, calls for a Sync. Notifications about other
// devices are expected.
func (r *Reconciler) expected(typ uint16, data []byte) bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	switch typ {
	case unix.RTM_NEWROUTE, unix.RTM_DELROUTE:
		rt, ok := parseRoute(data)
		if !ok || data[0] != r.fam || rt.proto == unix.RTPROT_KERNEL {
			return true
		}
		mine := rt.dev == r.cfg.Device || rt.proto == r.cfg.RouteProtocol
		p, want := r.peers.wanted(rt.dst)
		if typ == unix.RTM_DELROUTE {
			return !(want && mine && rt.metric == r.metric)
		}
		if want {
			// Another program's route to a peer's subnet may have
			// replaced ours without any deletion being announced.
			return routeMatches(rt, r.objects(p, r.peers.id(p.Subnet)).route)
		}
		return !mine
	case unix.RTM_NEWNEXTHOP, unix.RTM_DELNEXTHOP:
		n, ok := parseNexthop(data)
		if !ok || data[0] != r.fam || (n.dev != r.cfg.Device && n.proto != r.cfg.RouteProtocol) {
			return true
		}
		subnet, owned := r.peers.idOwner[n.id]
		if typ == unix.RTM_DELNEXTHOP {
			return !owned
		}
		p, want := r.peers.wanted(subnet)
		return owned && want && n == r.objects(p, n.id).nh
	case unix.RTM_NEWNEIGH, unix.RTM_DELNEIGH:
		if len(data) > 0 && data[0] == unix.AF_BRIDGE {
			f, ok := parseFDB(data)
			if !ok || f.dev != r.cfg.Device || r.cfg.Learning && f.state&unix.NUD_PERMANENT == 0 {
				return true
			}
			// Sync gives a shared MAC to the first of its peers in
			// subnet order (fdbPlan); expect what it would write.
			p, ok := r.peers.fdbHolder(f.mac)
			if !ok {
				return typ == unix.RTM_DELNEIGH
			}
			if typ == unix.RTM_DELNEIGH {
				return !f.sendsTo(p.PublicIP)
			}
			return f.sendsTo(p.PublicIP)
		}
		n, ok := parseNeigh(data)
		if !ok || n.dev != r.cfg.Device || n.state&unix.NUD_NOARP != 0 {
			return true
		}
		if p, ok := r.peers.byGateway(n.ip); ok {
			return typ == unix.RTM_NEWNEIGH && n.mac == p.VtepMAC && n.state == unix.NUD_PERMANENT
		}
		return typ == unix.RTM_DELNEIGH
	}
	return true
}
