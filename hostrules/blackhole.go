package hostrules

import (
	"fmt"
	"net"
	"net/netip"

	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"
)

// The blackhole routes (flanneld's --ip-blackhole-route): a blackhole route for the node's own subnets, so
// that traffic to an address of them that no pod holds is dropped here
// instead of leaving by the default route (where a CNI without a bridge,
// such as Canal's, has no route covering the whole subnet). The routes
// carry their own protocol number, apart from the datapath's 157, and a
// metric of BlackholeMetric, so that a bridge's connected route for the
// same subnet (metric 0) coexists with them and wins.
const (
	// BlackholeProtocol is the routing protocol number of the blackhole
	// routes: weft owns every blackhole route with it.
	BlackholeProtocol = 158
	// BlackholeMetric is the blackhole routes' metric.
	BlackholeMetric = 4096
)

// ensureBlackholes makes this protocol's blackhole routes exactly want:
// missing ones are added, others (a subnet the node no longer holds)
// removed. It reports what it changed.
func ensureBlackholes(h *netlink.Handle, want []netip.Prefix) (added, removed []netip.Prefix, err error) {
	have := map[netip.Prefix]*netlink.Route{}
	for _, fam := range []int{netlink.FAMILY_V4, netlink.FAMILY_V6} {
		routes, err := h.RouteListFiltered(fam, &netlink.Route{Protocol: BlackholeProtocol}, netlink.RT_FILTER_PROTOCOL)
		if err != nil {
			return nil, nil, fmt.Errorf("list blackhole routes: %w", err)
		}
		for i := range routes {
			r := &routes[i]
			if r.Type != unix.RTN_BLACKHOLE || r.Dst == nil {
				continue
			}
			if p, ok := prefixOf(r.Dst); ok {
				have[p] = r
			}
		}
	}
	wanted := map[netip.Prefix]bool{}
	for _, p := range want {
		p = p.Masked()
		wanted[p] = true
		if have[p] != nil {
			continue
		}
		r := &netlink.Route{
			Dst:      prefixNet(p),
			Type:     unix.RTN_BLACKHOLE,
			Protocol: BlackholeProtocol,
			Priority: BlackholeMetric,
		}
		if err := h.RouteReplace(r); err != nil {
			return added, removed, fmt.Errorf("add blackhole route %s: %w", p, err)
		}
		added = append(added, p)
	}
	for p, r := range have {
		if wanted[p] {
			continue
		}
		if err := h.RouteDel(r); err != nil {
			return added, removed, fmt.Errorf("remove blackhole route %s: %w", p, err)
		}
		removed = append(removed, p)
	}
	return added, removed, nil
}

func prefixOf(n *net.IPNet) (netip.Prefix, bool) {
	a, ok := netip.AddrFromSlice(n.IP)
	if !ok {
		return netip.Prefix{}, false
	}
	ones, _ := n.Mask.Size()
	return netip.PrefixFrom(a.Unmap(), ones), true
}

// prefixNet is p as netlink takes it.
func prefixNet(p netip.Prefix) *net.IPNet {
	return &net.IPNet{IP: p.Addr().AsSlice(), Mask: net.CIDRMask(p.Bits(), p.Addr().BitLen())}
}
