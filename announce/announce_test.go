package announce

import (
	"context"
	"net"
	"net/netip"
	"testing"
	"time"

	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"

	"github.com/weftnet/weft/internal/netnstest"
)

// A bridged pod: a namespace with eth0, a veth whose peer in the node's
// namespace is a port of br0.
type bridgedPod struct {
	ns    *netnstest.Namespace
	addrs []netip.Addr
}

// bridge makes br0 in node with the given addresses, up.
func bridge(t *testing.T, node *netnstest.Namespace, addrs ...string) {
	t.Helper()
	// A MAC of its own, as bridge gives cni0: else the bridge takes its
	// lowest port's, and a change of it flushes its neighbour cache.
	br := &netlink.Bridge{LinkAttrs: netlink.LinkAttrs{Name: "br0", HardwareAddr: net.HardwareAddr{0x02, 0, 0, 0, 0, 1}}}
	if err := node.Netlink().LinkAdd(br); err != nil {
		t.Fatal(err)
	}
	if err := node.Netlink().LinkSetUp(br); err != nil {
		t.Fatal(err)
	}
	for _, a := range addrs {
		node.AddrAdd(t, "br0", netip.MustParsePrefix(a))
	}
}

// plugPod makes a pod namespace with eth0 holding addrs (of /24 and /64),
// its veth peer hostName a port of br0 in node, both up.
func plugPod(t *testing.T, node *netnstest.Namespace, hostName string, addrs ...string) *bridgedPod {
	t.Helper()
	p := &bridgedPod{ns: netnstest.NewNamespace(t, "weft-pod")}
	v := &netlink.Veth{LinkAttrs: netlink.LinkAttrs{Name: hostName}, PeerName: "eth0", PeerNamespace: netlink.NsFd(int(p.ns.Handle))}
	if err := node.Netlink().LinkAdd(v); err != nil {
		t.Fatal(err)
	}
	host, err := node.Netlink().LinkByName(hostName)
	if err != nil {
		t.Fatal(err)
	}
	br, _ := node.Netlink().LinkByName("br0")
	if err := node.Netlink().LinkSetMaster(host, br); err != nil {
		t.Fatal(err)
	}
	if err := node.Netlink().LinkSetUp(host); err != nil {
		t.Fatal(err)
	}
	eth, err := p.ns.Netlink().LinkByName("eth0")
	if err != nil {
		t.Fatal(err)
	}
	if err := p.ns.Netlink().LinkSetUp(eth); err != nil {
		t.Fatal(err)
	}
	for _, a := range addrs {
		pfx := netip.MustParsePrefix(a)
		p.ns.AddrAdd(t, "eth0", pfx)
		p.addrs = append(p.addrs, pfx.Addr())
	}
	return p
}

var staleMAC = net.HardwareAddr{0x02, 0, 0, 0, 0, 0x99}

// cache puts ip -> mac in ns's neighbour table on dev, in state.
func cache(t *testing.T, nl *netlink.Handle, dev string, ip netip.Addr, mac net.HardwareAddr, state int) {
	t.Helper()
	l, err := nl.LinkByName(dev)
	if err != nil {
		t.Fatal(err)
	}
	family := netlink.FAMILY_V4
	if ip.Is6() {
		family = netlink.FAMILY_V6
	}
	if err := nl.NeighSet(&netlink.Neigh{LinkIndex: l.Attrs().Index, Family: family, State: state, IP: ip.AsSlice(), HardwareAddr: mac}); err != nil {
		t.Fatalf("neighbour %s: %v", ip, err)
	}
}

// cached returns ns's neighbour entry for ip on dev.
func cached(t *testing.T, nl *netlink.Handle, dev string, ip netip.Addr) (net.HardwareAddr, int) {
	t.Helper()
	l, err := nl.LinkByName(dev)
	if err != nil {
		t.Fatal(err)
	}
	family := netlink.FAMILY_V4
	if ip.Is6() {
		family = netlink.FAMILY_V6
	}
	neighs, err := nl.NeighList(l.Attrs().Index, family)
	if err != nil {
		t.Fatal(err)
	}
	for _, n := range neighs {
		if a, ok := netip.AddrFromSlice(n.IP); ok && a.Unmap() == ip {
			return n.HardwareAddr, n.State
		}
	}
	return nil, 0
}

// TestAnnounce: a pod's MAC replaces a stale one, IPv4 and IPv6, in the
// node's cache (refreshed through netlink) and in another pod's on the
// same bridge (through the frames alone, which the kernel must accept:
// hop limit, checksum, flags). The announcement is sent right after the
// veth is made, so it also waits for the links to come up.
func TestAnnounce(t *testing.T) {
	netnstest.RequirePrivileged(t)
	node := netnstest.NewNamespace(t, "weft-node")
	bridge(t, node, "10.9.0.1/24", "fd09::1/64")
	other := plugPod(t, node, "vb", "10.9.0.3/24", "fd09::3/64")
	a4, a6 := netip.MustParseAddr("10.9.0.2"), netip.MustParseAddr("fd09::2")
	// The caches hold a MAC the pod's old sandbox had.
	for _, ip := range []netip.Addr{a4, a6} {
		cache(t, node.Netlink(), "br0", ip, staleMAC, unix.NUD_REACHABLE)
		cache(t, other.ns.Netlink(), "eth0", ip, staleMAC, unix.NUD_REACHABLE)
	}
	pod := plugPod(t, node, "va", "10.9.0.2/24", "fd09::2/64")
	eth, _ := pod.ns.Netlink().LinkByName("eth0")
	mac := eth.Attrs().HardwareAddr

	var rep Report
	err := node.Do(func() error {
		var err error
		rep, err = Announce(context.Background(), Target{NetNS: "/var/run/netns/" + pod.ns.Name, IfName: "eth0", Addrs: pod.addrs}, Options{})
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("report: %+v", rep)
	if !rep.Up || rep.Sent != 2*DefaultCount || rep.MAC.String() != mac.String() || len(rep.Refreshed) != 2 {
		t.Errorf("report %+v; want up, %d frames sent, MAC %s, both addresses refreshed", rep, 2*DefaultCount, mac)
	}
	for _, ip := range []netip.Addr{a4, a6} {
		if got, state := cached(t, node.Netlink(), "br0", ip); got.String() != mac.String() {
			t.Errorf("the node caches %s at %s (state %#x), want %s", ip, got, state, mac)
		}
		// The frames reach the other pod a moment after they are sent.
		deadline := time.Now().Add(2 * time.Second)
		for {
			got, state := cached(t, other.ns.Netlink(), "eth0", ip)
			if got.String() == mac.String() {
				break
			}
			if time.Now().After(deadline) {
				t.Errorf("the other pod caches %s at %s (state %#x), want %s", ip, got, state, mac)
				break
			}
			time.Sleep(10 * time.Millisecond)
		}
	}
}

// TestAnnounceLeavesPermanentEntries: a permanent entry on the node is
// someone's configuration, and stays as it is.
func TestAnnounceLeavesPermanentEntries(t *testing.T) {
	netnstest.RequirePrivileged(t)
	node := netnstest.NewNamespace(t, "weft-node")
	bridge(t, node, "10.9.0.1/24")
	a4 := netip.MustParseAddr("10.9.0.2")
	cache(t, node.Netlink(), "br0", a4, staleMAC, unix.NUD_PERMANENT)
	pod := plugPod(t, node, "va", "10.9.0.2/24")
	var rep Report
	err := node.Do(func() error {
		var err error
		rep, err = Announce(context.Background(), Target{NetNS: "/var/run/netns/" + pod.ns.Name, IfName: "eth0", Addrs: pod.addrs}, Options{Count: 1})
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	if got, state := cached(t, node.Netlink(), "br0", a4); got.String() != staleMAC.String() || state != unix.NUD_PERMANENT || len(rep.Refreshed) != 0 {
		t.Errorf("the permanent entry is now %s (state %#x); refreshed %v", got, state, rep.Refreshed)
	}
}

// TestAnnounceErrors: a namespace or interface that is not there is an
// error naming it.
func TestAnnounceErrors(t *testing.T) {
	netnstest.RequirePrivileged(t)
	pod := netnstest.NewNamespace(t, "weft-pod")
	for _, tc := range []struct{ netns, ifname string }{
		{"/var/run/netns/weft-none", "eth0"},
		{"/var/run/netns/" + pod.Name, "eth9"},
	} {
		_, err := Announce(context.Background(), Target{NetNS: tc.netns, IfName: tc.ifname, Addrs: []netip.Addr{netip.MustParseAddr("10.9.0.2")}}, Options{})
		if err == nil {
			t.Errorf("%s %s: no error", tc.netns, tc.ifname)
		}
	}
}

// TestUnsolicitedNAChecksum: the ICMPv6 checksum sums to zero over the
// pseudo-header and the message, as a receiver checks it.
func TestUnsolicitedNAChecksum(t *testing.T) {
	mac := net.HardwareAddr{2, 1, 2, 3, 4, 5}
	ip := netip.MustParseAddr("fd00:10:244:3::7")
	f := unsolicitedNA(mac, ip)
	icmp := f[14+40 : 14+40+32]
	if sum := icmpv6Checksum(ip.As16(), allNodes.As16(), icmp); sum != 0 {
		t.Errorf("checksum over the message with its checksum: %#x, want 0", sum)
	}
	if f[14+7] != 255 || icmp[0] != 136 || icmp[4] != 0x20 {
		t.Errorf("hop limit %d, type %d, flags %#x; want 255, 136, override", f[14+7], icmp[0], icmp[4])
	}
}
