//go:build linux

package vxlan

import (
	"net"
	"net/netip"
	"slices"
	"testing"
	"time"

	"github.com/vishvananda/netlink"
	"github.com/vishvananda/netlink/nl"
	"github.com/vishvananda/netns"
	"golang.org/x/sys/unix"
)

// kernelOrder records, in the order the kernel made them, the neighbour,
// FDB and route additions in h's namespace, from one socket subscribed to
// both groups (two sockets would lose the order between them).
type kernelOrder struct {
	sock *nl.NetlinkSocket
}

func watchOrder(t *testing.T, n *node) *kernelOrder {
	t.Helper()
	sock, err := nl.SubscribeAt(n.host.Handle, netns.None(), unix.NETLINK_ROUTE, unix.RTNLGRP_IPV4_ROUTE, unix.RTNLGRP_NEIGH)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(sock.Close)
	tv := unix.NsecToTimeval(int64(200 * time.Millisecond))
	if err := sock.SetReceiveTimeout(&tv); err != nil {
		t.Fatal(err)
	}
	return &kernelOrder{sock: sock}
}

// until reads additions until one is want or the deadline passes, and
// returns what it read: "neigh <ip>", "fdb <mac>", "route <dst>".
func (k *kernelOrder) until(t *testing.T, want string, within time.Duration) []string {
	t.Helper()
	var seen []string
	deadline := time.Now().Add(within)
	for time.Now().Before(deadline) {
		msgs, _, err := k.sock.Receive()
		if err != nil {
			continue // the receive timeout: look at the deadline again
		}
		for _, m := range msgs {
			switch m.Header.Type {
			case unix.RTM_NEWNEIGH:
				nb, err := netlink.NeighDeserialize(m.Data)
				if err != nil {
					continue
				}
				if nb.Family == unix.AF_BRIDGE {
					seen = append(seen, "fdb "+nb.HardwareAddr.String())
				} else if nb.IP != nil {
					seen = append(seen, "neigh "+nb.IP.String())
				}
			case unix.RTM_NEWROUTE:
				rt := nl.DeserializeRtMsg(m.Data)
				attrs, err := nl.ParseRouteAttr(m.Data[unix.SizeofRtMsg:])
				if err != nil || rt.Table == unix.RT_TABLE_LOCAL {
					continue
				}
				for _, a := range attrs {
					if a.Attr.Type == unix.RTA_DST {
						if ip, ok := netip.AddrFromSlice(a.Value); ok {
							seen = append(seen, "route "+netip.PrefixFrom(ip.Unmap(), int(rt.Dst_len)).String())
						}
					}
				}
			}
		}
		if slices.Contains(seen, want) {
			return seen
		}
	}
	t.Fatalf("no %q within %v; saw %v", want, within, seen)
	return nil
}

// requireRouteLast waits for peer's route and fails t unless the peer's
// neighbour and FDB entries came before it.
func (k *kernelOrder) requireRouteLast(t *testing.T, peer *node) {
	t.Helper()
	route := "route " + peer.subnet.String()
	seen := k.until(t, route, 5*time.Second)
	at := slices.Index(seen, route)
	for _, before := range []string{"neigh " + peer.subnet.Addr().String(), "fdb " + net.HardwareAddr(peer.dev.MAC[:]).String()} {
		if i := slices.Index(seen, before); i < 0 || i > at {
			t.Errorf("%s not before %s: the kernel saw %v", before, route, seen)
		}
	}
}

// TestRouteWrittenLast: a new peer's route is written after its
// neighbour and FDB entries, so that no packet takes the route before the
// overlay can carry it: with the route first, traffic in between is
// dropped (no FDB entry for the VTEP's MAC) or parked behind an ARP the
// device cannot answer.
func TestRouteWrittenLast(t *testing.T) {
	nodes := newNodes(t, 2, false)
	a, b := nodes[0], nodes[1]
	order := watchOrder(t, a)
	if err := a.rec.SetPeers([]Peer{b.peer()}); err != nil {
		t.Fatal(err)
	}
	if _, err := a.rec.Sync(); err != nil {
		t.Fatal(err)
	}
	order.requireRouteLast(t, b)
}

// TestRouteWrittenLastOnSetPeer: the same for a peer added on its own, as
// a running Network adds the leases the watch brings.
func TestRouteWrittenLastOnSetPeer(t *testing.T) {
	nodes := newNodes(t, 2, false)
	a, b := nodes[0], nodes[1]
	if _, err := a.rec.Sync(); err != nil {
		t.Fatal(err)
	}
	order := watchOrder(t, a)
	if err := a.rec.SetPeer(b.peer()); err != nil {
		t.Fatal(err)
	}
	order.requireRouteLast(t, b)
}
