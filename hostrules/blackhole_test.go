package hostrules

import (
	"errors"
	"net"
	"net/netip"
	"testing"

	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"

	"github.com/weftnet/weft/internal/netnstest"
)

// TestBlackholeRoutes: in a host with a default route, an address of the
// node's subnet that no pod holds resolves to the blackhole, not the
// default route; a bridge's connected route for the subnet coexists and
// wins for the pods; a new subnet replaces the old one's route, and
// nothing else is touched.
func TestBlackholeRoutes(t *testing.T) {
	h := netnstest.NewSegment(t, 1).Hosts[0]
	nl := h.Netlink()
	eth, err := nl.LinkByName(netnstest.Underlay)
	if err != nil {
		t.Fatal(err)
	}
	if err := nl.RouteAdd(&netlink.Route{LinkIndex: eth.Attrs().Index, Gw: net.IPv4(172, 30, 0, 254)}); err != nil {
		t.Fatal(err)
	}
	v4, v6 := netip.MustParsePrefix("10.244.5.0/24"), netip.MustParsePrefix("fd00:10:244:5::/64")
	resolve := func(addr string) (int, string) {
		t.Helper()
		routes, err := nl.RouteGet(net.ParseIP(addr))
		if errors.Is(err, unix.EINVAL) {
			return unix.RTN_BLACKHOLE, "" // the kernel refuses a lookup that ends in a blackhole
		}
		if err != nil {
			t.Fatalf("route get %s: %v", addr, err)
		}
		dev := ""
		if l, err := nl.LinkByIndex(routes[0].LinkIndex); err == nil {
			dev = l.Attrs().Name
		}
		return routes[0].Type, dev
	}
	if typ, dev := resolve("10.244.5.77"); typ == unix.RTN_BLACKHOLE || dev != netnstest.Underlay {
		t.Fatalf("before: 10.244.5.77 goes %d via %q; want the default route, or the test proves nothing", typ, dev)
	}

	added, removed, err := ensureBlackholes(nl, []netip.Prefix{v4, v6})
	if err != nil || len(added) != 2 || len(removed) != 0 {
		t.Fatalf("ensure: added %v removed %v: %v", added, removed, err)
	}
	if typ, _ := resolve("10.244.5.77"); typ != unix.RTN_BLACKHOLE {
		t.Errorf("10.244.5.77 resolves to type %d, want the blackhole", typ)
	}

	// A bridge holding the subnet, as the bridge CNI plugin makes it.
	br := &netlink.Bridge{LinkAttrs: netlink.LinkAttrs{Name: "cni0"}}
	if err := nl.LinkAdd(br); err != nil {
		t.Fatal(err)
	}
	h.AddrAdd(t, "cni0", netip.MustParsePrefix("10.244.5.1/24"))
	if err := nl.LinkSetUp(br); err != nil {
		t.Fatal(err)
	}
	if typ, dev := resolve("10.244.5.9"); typ == unix.RTN_BLACKHOLE || dev != "cni0" {
		t.Errorf("with the bridge, 10.244.5.9 goes %d via %q; want cni0", typ, dev)
	}
	if added, removed, err := ensureBlackholes(nl, []netip.Prefix{v4, v6}); err != nil || len(added)+len(removed) != 0 {
		t.Errorf("again: added %v removed %v: %v", added, removed, err)
	}

	moved := netip.MustParsePrefix("10.244.9.0/24")
	added, removed, err = ensureBlackholes(nl, []netip.Prefix{moved})
	if err != nil || len(added) != 1 || len(removed) != 2 {
		t.Fatalf("after a move: added %v removed %v: %v", added, removed, err)
	}
	if typ, dev := resolve("10.244.9.3"); typ != unix.RTN_BLACKHOLE {
		t.Errorf("the new subnet resolves %d via %q", typ, dev)
	}
	if routes, _ := nl.RouteList(nil, netlink.FAMILY_V4); !hasDefault(routes) {
		t.Error("the default route was touched")
	}
}

func hasDefault(routes []netlink.Route) bool {
	for _, r := range routes {
		if r.Dst == nil || r.Dst.IP.IsUnspecified() {
			return true
		}
	}
	return false
}
