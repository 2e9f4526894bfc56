package announce

import (
	"context"
	"net"
	"net/netip"
	"testing"

	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"

	"github.com/weftnet/weft/internal/netnstest"
)

// TestAnnounceOnlyHeldAddresses: the addresses come from the runtime's
// prevResult, which another plugin wrote. One the pod's interface does
// not hold (another pod's on the same bridge, a router's on the node's
// uplink) is not announced, and the node's neighbour entry for it is
// left as it is: a stale or hostile result must not move another pod's
// traffic, or the node's gateway's, to this pod.
func TestAnnounceOnlyHeldAddresses(t *testing.T) {
	netnstest.RequirePrivileged(t)
	node := netnstest.NewNamespace(t, "weft-node")
	bridge(t, node, "10.9.0.1/24")
	other := plugPod(t, node, "vb", "10.9.0.3/24")
	// The node's uplink, with its router's entry learnt.
	if err := node.Netlink().LinkAdd(&netlink.Veth{LinkAttrs: netlink.LinkAttrs{Name: "up0"}, PeerName: "up0p"}); err != nil {
		t.Fatal(err)
	}
	for _, name := range []string{"up0", "up0p"} {
		l, _ := node.Netlink().LinkByName(name)
		if err := node.Netlink().LinkSetUp(l); err != nil {
			t.Fatal(err)
		}
	}
	node.AddrAdd(t, "up0", netip.MustParsePrefix("192.0.2.1/24"))
	router, routerMAC := netip.MustParseAddr("192.0.2.254"), net.HardwareAddr{0x02, 0, 0, 0, 0, 0xfe}
	cache(t, node.Netlink(), "up0", router, routerMAC, unix.NUD_REACHABLE)
	oeth, _ := other.ns.Netlink().LinkByName("eth0")
	otherMAC := oeth.Attrs().HardwareAddr
	cache(t, node.Netlink(), "br0", other.addrs[0], otherMAC, unix.NUD_REACHABLE)

	pod := plugPod(t, node, "va", "10.9.0.2/24")
	var rep Report
	err := node.Do(func() error {
		var err error
		rep, err = Announce(context.Background(), Target{NetNS: "/var/run/netns/" + pod.ns.Name, IfName: "eth0",
			Addrs: []netip.Addr{pod.addrs[0], other.addrs[0], router}}, Options{Count: 1})
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("report: %+v", rep)
	if got, _ := cached(t, node.Netlink(), "br0", other.addrs[0]); got.String() != otherMAC.String() {
		t.Errorf("the node's entry of another pod's %s moved to %s, want %s (its own)", other.addrs[0], got, otherMAC)
	}
	if got, _ := cached(t, node.Netlink(), "up0", router); got.String() != routerMAC.String() {
		t.Errorf("the node's entry of its router %s moved to %s, want %s", router, got, routerMAC)
	}
	if rep.Sent != 1 {
		t.Errorf("%d frames sent, want 1: only for %s, the one address the pod holds", rep.Sent, pod.addrs[0])
	}
}
