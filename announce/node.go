package announce

import (
	"fmt"
	"net"
	"net/netip"
	"slices"

	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"
)

// refreshNode moves the node's neighbour entry of each of addrs to mac,
// where the kernel learnt another MAC for it. It looks only on the device
// the node routes the address through, and only if that is the pod's
// link's veth peer or the bridge it is a port of (cni0 for a bridged
// pod): an address routed anywhere else is not the pod's to announce
// there. It never
// touches a permanent or static entry: those are someone's configuration.
// The entry is set STALE, so that the kernel confirms the new MAC on first
// use; one still resolving (or failed) gets the MAC it was asking for,
// and sends what it queued. It returns the addresses refreshed.
func refreshNode(node *netlink.Handle, link netlink.Link, addrs []netip.Addr, mac net.HardwareAddr) ([]netip.Addr, error) {
	peer, err := vethPeer(node, link)
	if err != nil {
		return nil, nil // no peer here: the node does not reach the pod through one
	}
	var out []netip.Addr
	for _, a := range addrs {
		a = a.Unmap()
		routes, err := node.RouteGet(a.AsSlice())
		if err != nil || len(routes) == 0 {
			continue // no route to the pod here: nothing cached either
		}
		dev := routes[0].LinkIndex
		if dev != peer.Attrs().Index && (dev != peer.Attrs().MasterIndex || dev == 0) {
			continue // routed elsewhere: not through the pod's link
		}
		family := netlink.FAMILY_V4
		if a.Is6() {
			family = netlink.FAMILY_V6
		}
		neighs, err := node.NeighList(dev, family)
		if err != nil {
			return out, fmt.Errorf("announce: neighbours of device %d: %w", dev, err)
		}
		for _, n := range neighs {
			ip, ok := netip.AddrFromSlice(n.IP)
			if !ok || ip.Unmap() != a || n.State&(unix.NUD_PERMANENT|unix.NUD_NOARP) != 0 {
				continue
			}
			if slices.Equal(n.HardwareAddr, mac) {
				continue
			}
			err := node.NeighSet(&netlink.Neigh{LinkIndex: dev, Family: family, State: unix.NUD_STALE, IP: a.AsSlice(), HardwareAddr: mac})
			if err != nil {
				return out, fmt.Errorf("announce: node's neighbour entry of %s: %w", a, err)
			}
			out = append(out, a)
		}
	}
	return out, nil
}
