//go:build linux

package vxlan

import (
	"fmt"
	"io"
	"log/slog"
	"net/netip"
	"os/exec"
	"strings"
	"testing"
	"time"

	"github.com/vishvananda/netns"

	"github.com/weftnet/weft/internal/netnstest"
)

// quietLog keeps repair logs out of test output; tests check Status.
var quietLog = slog.New(slog.NewTextHandler(io.Discard, nil))

// node is one simulated host running the datapath.
type node struct {
	host   *netnstest.Host
	dev    Device
	under  int
	subnet netip.Prefix
	rec    *Reconciler
	ipv6   bool
}

func (n *node) peer() Peer {
	pub := n.host.Addr.Addr()
	if n.ipv6 {
		pub = n.host.Addr6.Addr()
	}
	return Peer{Subnet: n.subnet, PublicIP: pub, VtepMAC: n.dev.MAC}
}

// addr is the node's overlay address: its subnet's network address, on the
// VTEP device.
func (n *node) addr() netip.Addr { return n.subnet.Addr() }

// newNodes builds hosts on one segment, each with its VTEP, its subnet
// address and a reconciler, but no peers yet.
func newNodes(t *testing.T, count int, ipv6 bool) []*node {
	t.Helper()
	seg := netnstest.NewSegment(t, count)
	var nodes []*node
	for _, h := range seg.Hosts {
		nodes = append(nodes, newNode(t, h, ipv6))
	}
	return nodes
}

// newNode builds the datapath of one family on host h: its VTEP, its
// subnet's address (10.244.<i>.0/24 or fd00:1024:0:<i>::/64) and a
// reconciler with no peers.
func newNode(t *testing.T, h *netnstest.Host, ipv6 bool) *node {
	t.Helper()
	cfg := hostDeviceConfig(t, h, ipv6)
	dev, _, err := EnsureDevice(h.Netlink(), cfg)
	if err != nil {
		t.Fatal(err)
	}
	subnet := netip.PrefixFrom(netip.AddrFrom4([4]byte{10, 244, byte(h.Index), 0}), 24)
	if ipv6 {
		subnet = netip.PrefixFrom(netip.AddrFrom16([16]byte{0xfd, 0, 0x10, 0x24, 0, 0, 0, byte(h.Index)}), 64)
	}
	if _, err := EnsureAddress(h.Netlink(), dev.Index, subnet); err != nil {
		t.Fatal(err)
	}
	rec, err := NewReconciler(ReconcilerConfig{Namespace: h.Handle, Device: dev.Index, IPv6: ipv6, Underlay: cfg.Underlay, Logger: quietLog})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(rec.Close)
	return &node{host: h, dev: dev, under: cfg.Underlay, subnet: subnet, rec: rec, ipv6: ipv6}
}

// meshAll gives every node all the others as peers and syncs.
func meshAll(t *testing.T, nodes []*node) {
	t.Helper()
	for _, n := range nodes {
		var peers []Peer
		for _, o := range nodes {
			if o != n {
				peers = append(peers, o.peer())
			}
		}
		if err := n.rec.SetPeers(peers); err != nil {
			t.Fatal(err)
		}
		if _, err := n.rec.Sync(); err != nil {
			t.Fatal(err)
		}
	}
}

// overlayReachable sends real UDP from a's overlay address to an echo on
// b's, which only the VXLAN path can carry.
func overlayReachable(t *testing.T, a, b *node, within time.Duration) error {
	t.Helper()
	echo := b.host.ListenEcho(t, b.addr())
	return a.host.WaitExchange(a.addr(), echo.Addr, within)
}

func requireMesh(t *testing.T, nodes []*node) {
	t.Helper()
	for _, a := range nodes {
		for _, b := range nodes {
			if a != b {
				if err := overlayReachable(t, a, b, 5*time.Second); err != nil {
					t.Fatalf("host %d -> host %d over the overlay: %v", a.host.Index, b.host.Index, err)
				}
			}
		}
	}
}

// ip runs an iproute2 command in n's namespace, for injecting drift the
// way an administrator or a buggy tool would.
func ip(t *testing.T, n *node, args ...string) string {
	t.Helper()
	cmd := args[0]
	out, err := exec.Command(cmd, append([]string{"-n", n.host.Name}, args[1:]...)...).CombinedOutput()
	if err != nil {
		t.Fatalf("%s %s: %v\n%s", cmd, strings.Join(args[1:], " "), err, out)
	}
	return string(out)
}

func TestThreeHostsTraffic(t *testing.T) {
	t.Parallel()
	nodes := newNodes(t, 3, false)
	meshAll(t, nodes)
	requireMesh(t, nodes)
	st := nodes[0].rec.Status()
	if len(st.Peers) != 2 || !st.Peers[0].Programmed || !st.Peers[1].Programmed || len(st.Repairs) != 0 || !st.Nexthops {
		t.Errorf("status after programming: %+v", st)
	}
	routes := ip(t, nodes[0], "ip", "route", "show", "proto", "157")
	for _, want := range []string{"10.244.2.0/24 nhid", "10.244.3.0/24 nhid", "via 10.244.2.0 dev flannel.1", "onlink"} {
		if !strings.Contains(routes, want) {
			t.Errorf("routes lack %q:\n%s", want, routes)
		}
	}
}

func TestThreeHostsTrafficIPv6(t *testing.T) {
	t.Parallel()
	nodes := newNodes(t, 3, true)
	meshAll(t, nodes)
	requireMesh(t, nodes)
	if n := nodes[0]; n.dev.Name != "flannel-v6.1" {
		t.Errorf("IPv6 device %s", n.dev.Name)
	}
}

// TestDriftRepaired injects each kind of drift the issue lists and checks
// that one Sync repairs it, says why, and that traffic flows again.
func TestDriftRepaired(t *testing.T) {
	t.Parallel()
	nodes := newNodes(t, 3, false)
	meshAll(t, nodes)
	requireMesh(t, nodes)
	a, b := nodes[0], nodes[1]
	bp := b.peer()

	for _, tc := range []struct {
		name   string
		inject func()
		want   string // in a Repair's What
	}{
		{"route deleted", func() { ip(t, a, "ip", "route", "del", bp.Subnet.String()) }, "route 10.244.2.0/24"},
		{"nexthop deleted", func() { ip(t, a, "ip", "nexthop", "del", "id", fmt.Sprint(a.rec.Status().Peers[0].NexthopID)) }, "nexthop"},
		// Seed 001: a permanent neighbour entry with the wrong MAC.
		{"neighbour with a wrong MAC", func() {
			ip(t, a, "ip", "neigh", "replace", "10.244.2.0", "lladdr", "0e:de:ad:be:ef:01", "nud", "permanent", "dev", "flannel.1")
		}, "neighbour 10.244.2.0"},
		{"FDB entry pointing elsewhere", func() {
			ip(t, a, "bridge", "fdb", "replace", bp.VtepMAC.String(), "dev", "flannel.1", "dst", "172.30.0.99", "self", "permanent")
		}, "fdb " + bp.VtepMAC.String()},
		{"stray FDB entry", func() {
			ip(t, a, "bridge", "fdb", "append", "0e:de:ad:be:ef:02", "dev", "flannel.1", "dst", "172.30.0.98", "self", "permanent")
		}, "delete fdb 0e:de:ad:be:ef:02"},
		{"stray route on the device", func() {
			ip(t, a, "ip", "route", "add", "10.244.77.0/24", "via", "10.244.77.0", "dev", "flannel.1", "onlink")
		}, "delete route 10.244.77.0/24"},
		{"stray neighbour", func() {
			ip(t, a, "ip", "neigh", "add", "10.244.78.0", "lladdr", "0e:de:ad:be:ef:03", "nud", "permanent", "dev", "flannel.1")
		}, "delete neighbour 10.244.78.0"},
	} {
		before := len(a.rec.Status().Repairs)
		tc.inject()
		res, err := a.rec.Sync()
		if err != nil {
			t.Fatalf("%s: %v", tc.name, err)
		}
		repairs := a.rec.Status().Repairs[before:]
		found := false
		for _, r := range repairs {
			if strings.Contains(r.What, tc.want) && r.Why != "" {
				found = true
			}
		}
		if !found || res.Repairs == 0 {
			t.Errorf("%s: repairs %+v (result %+v), want one for %q", tc.name, repairs, res, tc.want)
		}
		if err := overlayReachable(t, a, b, 5*time.Second); err != nil {
			t.Errorf("%s: traffic after the repair: %v", tc.name, err)
		}
		// A second Sync finds nothing to do.
		if res, err := a.rec.Sync(); err != nil || res.Writes != 0 {
			t.Errorf("%s: second Sync %+v, %v; want no writes", tc.name, res, err)
		}
	}
}

// TestDeviceDrift: the device's MAC and MTU are changed behind the
// datapath's back. EnsureDevice sets them back; since a MAC change flushes
// the device's neighbours, Sync then replays them; traffic flows again.
func TestDeviceDrift(t *testing.T) {
	t.Parallel()
	nodes := newNodes(t, 2, false)
	meshAll(t, nodes)
	a, b := nodes[0], nodes[1]
	ip(t, a, "ip", "link", "set", "flannel.1", "address", "0e:11:22:33:44:55", "mtu", "1400")
	if out := ip(t, a, "ip", "neigh", "show", "dev", "flannel.1"); strings.Contains(out, "PERMANENT") {
		t.Logf("kernel kept neighbours across a MAC change:\n%s", out)
	}
	dev, changes, err := EnsureDevice(a.host.Netlink(), hostDeviceConfig(t, a.host, false))
	if err != nil || dev.MAC != a.dev.MAC || dev.MTU != 1450 || len(changes) != 2 {
		t.Fatalf("EnsureDevice after drift: %+v %q %v", dev, changes, err)
	}
	res, err := a.rec.Sync()
	if err != nil || res.Repairs == 0 {
		t.Fatalf("Sync after the MAC change: %+v, %v; want the flushed neighbours repaired", res, err)
	}
	requireMesh(t, []*node{a, b})
}

// TestDeviceRecreated: the device is deleted; EnsureDevice brings it back
// with the same MAC and a new reconciler replays every peer.
func TestDeviceRecreated(t *testing.T) {
	t.Parallel()
	nodes := newNodes(t, 3, false)
	meshAll(t, nodes)
	a := nodes[0]
	ip(t, a, "ip", "link", "del", "flannel.1")
	dev, changes, err := EnsureDevice(a.host.Netlink(), hostDeviceConfig(t, a.host, false))
	if err != nil || len(changes) != 1 || changes[0] != "created" || dev.MAC != a.dev.MAC {
		t.Fatalf("re-create: %+v %q %v", dev, changes, err)
	}
	if _, err := EnsureAddress(a.host.Netlink(), dev.Index, a.subnet); err != nil {
		t.Fatal(err)
	}
	rec, err := NewReconciler(ReconcilerConfig{Namespace: a.host.Handle, Device: dev.Index, Underlay: a.under, Logger: quietLog})
	if err != nil {
		t.Fatal(err)
	}
	defer rec.Close()
	a.dev, a.rec = dev, rec
	if err := rec.SetPeers([]Peer{nodes[1].peer(), nodes[2].peer()}); err != nil {
		t.Fatal(err)
	}
	if res, err := rec.Sync(); err != nil || res.Writes != 8 {
		t.Fatalf("replay: %+v, %v; want 2 peers x 4 objects", res, err)
	}
	requireMesh(t, nodes)
}

// TestPeerMACChange: a peer comes back with a new VTEP MAC. The old FDB
// entry goes, the new one comes, and traffic follows.
func TestPeerMACChange(t *testing.T) {
	t.Parallel()
	nodes := newNodes(t, 2, false)
	meshAll(t, nodes)
	a, b := nodes[0], nodes[1]
	oldMAC := b.dev.MAC
	cfg := hostDeviceConfig(t, b.host, false)
	cfg.MAC = DeriveMAC("rebuilt", 1)
	if _, _, err := EnsureDevice(b.host.Netlink(), cfg); err != nil {
		t.Fatal(err)
	}
	b.dev.MAC = cfg.MAC
	// Changing a device's MAC makes the kernel flush its neighbours,
	// permanent ones included: b must replay its own peers.
	if res, err := b.rec.Sync(); err != nil || res.Writes == 0 {
		t.Fatalf("b's Sync after its MAC change: %+v, %v", res, err)
	}
	if err := a.rec.SetPeer(b.peer()); err != nil {
		t.Fatal(err)
	}
	fdbs := ip(t, a, "bridge", "fdb", "show", "dev", "flannel.1")
	if strings.Contains(fdbs, oldMAC.String()) || !strings.Contains(fdbs, cfg.MAC.String()+" dst 172.30.0.2 self permanent") {
		t.Fatalf("FDB after the MAC change:\n%s", fdbs)
	}
	if err := overlayReachable(t, a, b, 5*time.Second); err != nil {
		t.Fatal(err)
	}
	if res, err := a.rec.Sync(); err != nil || res.Writes != 0 {
		t.Errorf("Sync after SetPeer: %+v, %v; want nothing left to do", res, err)
	}
}

// TestRestartWritesNothing: a new reconciler on a programmed namespace
// (the agent restarted) finds everything in place and writes nothing.
func TestRestartWritesNothing(t *testing.T) {
	t.Parallel()
	nodes := newNodes(t, 3, false)
	meshAll(t, nodes)
	a := nodes[0]
	rec, err := NewReconciler(ReconcilerConfig{Namespace: a.host.Handle, Device: a.dev.Index, Underlay: a.under, Logger: quietLog})
	if err != nil {
		t.Fatal(err)
	}
	defer rec.Close()
	if err := rec.SetPeers([]Peer{nodes[1].peer(), nodes[2].peer()}); err != nil {
		t.Fatal(err)
	}
	res, err := rec.Sync()
	if err != nil || res.Writes != 0 {
		t.Fatalf("Sync after a restart: %+v, %v; want no writes", res, err)
	}
}

// TestRemovePeer removes a peer through the fast path: its objects go, the
// other peer's stay.
func TestRemovePeer(t *testing.T) {
	t.Parallel()
	nodes := newNodes(t, 3, false)
	meshAll(t, nodes)
	a := nodes[0]
	gone := nodes[2].peer()
	if err := a.rec.RemovePeer(gone.Subnet); err != nil {
		t.Fatal(err)
	}
	for _, cmd := range [][]string{{"ip", "route"}, {"ip", "nexthop"}, {"ip", "neigh", "show", "dev", "flannel.1"}, {"bridge", "fdb", "show", "dev", "flannel.1"}} {
		out := ip(t, a, cmd...)
		if strings.Contains(out, "10.244.3.0") || strings.Contains(out, gone.VtepMAC.String()) {
			t.Errorf("%s still shows the removed peer:\n%s", strings.Join(cmd, " "), out)
		}
	}
	if err := overlayReachable(t, a, nodes[1], 5*time.Second); err != nil {
		t.Fatal(err)
	}
	if res, err := a.rec.Sync(); err != nil || res.Writes != 0 {
		t.Errorf("Sync after RemovePeer: %+v, %v", res, err)
	}
}

// TestDirectRouting: a peer on the same L2 is routed via its public IP on
// the underlay, without neighbour or FDB entries, and reachable.
func TestDirectRouting(t *testing.T) {
	t.Parallel()
	nodes := newNodes(t, 2, false)
	a, b := nodes[0], nodes[1]
	for _, pair := range [][2]*node{{a, b}, {b, a}} {
		p := pair[1].peer()
		p.Direct = true
		if err := pair[0].rec.SetPeers([]Peer{p}); err != nil {
			t.Fatal(err)
		}
		if _, err := pair[0].rec.Sync(); err != nil {
			t.Fatal(err)
		}
	}
	if out := ip(t, a, "ip", "route", "show", "10.244.2.0/24"); !strings.Contains(out, "via 172.30.0.2 dev eth0") {
		t.Errorf("direct route: %s", out)
	}
	if out := ip(t, a, "bridge", "fdb", "show", "dev", "flannel.1"); strings.Contains(out, "dst") {
		t.Errorf("a direct peer has FDB entries:\n%s", out)
	}
	if err := overlayReachable(t, a, b, 5*time.Second); err != nil {
		t.Fatal(err)
	}
	// Switching to encapsulation moves the route back onto the device.
	if err := a.rec.SetPeers([]Peer{b.peer()}); err != nil {
		t.Fatal(err)
	}
	if _, err := a.rec.Sync(); err != nil {
		t.Fatal(err)
	}
	if out := ip(t, a, "ip", "route", "show", "10.244.2.0/24"); !strings.Contains(out, "dev flannel.1") {
		t.Errorf("after switching to VXLAN: %s", out)
	}
}

// TestWithoutNexthops forces the fallback for kernels before 5.3: routes
// carry their own onlink gateway. Traffic flows, a resync writes nothing,
// and drift is repaired the same way.
func TestWithoutNexthops(t *testing.T) {
	t.Parallel()
	nodes := newNodes(t, 2, false)
	for _, n := range nodes {
		n.rec.nexthops = false
	}
	meshAll(t, nodes)
	requireMesh(t, nodes)
	a := nodes[0]
	if out := ip(t, a, "ip", "route", "show", "10.244.2.0/24"); strings.Contains(out, "nhid") || !strings.Contains(out, "via 10.244.2.0 dev flannel.1 proto 157 onlink") {
		t.Errorf("fallback route: %s", out)
	}
	if out := ip(t, a, "ip", "nexthop"); strings.TrimSpace(out) != "" {
		t.Errorf("nexthops created in fallback mode:\n%s", out)
	}
	if res, err := a.rec.Sync(); err != nil || res.Writes != 0 {
		t.Fatalf("resync: %+v, %v", res, err)
	}
	ip(t, a, "ip", "route", "del", "10.244.2.0/24")
	if res, err := a.rec.Sync(); err != nil || res.Repairs != 1 {
		t.Fatalf("repair: %+v, %v", res, err)
	}
	requireMesh(t, nodes)
}

// TestDualStack runs the IPv4 and the IPv6 datapath side by side in the
// same namespaces, as a dual-stack node does: flannel.1 carries the IPv4
// peers and flannel-v6.1 the IPv6 ones, and neither disturbs the other.
func TestDualStack(t *testing.T) {
	t.Parallel()
	seg := netnstest.NewSegment(t, 2)
	var v4, v6 []*node
	for _, h := range seg.Hosts {
		v4 = append(v4, newNode(t, h, false))
		v6 = append(v6, newNode(t, h, true))
	}
	meshAll(t, v4)
	meshAll(t, v6)
	requireMesh(t, v4)
	requireMesh(t, v6)
	for _, n := range append(v4, v6...) {
		if res, err := n.rec.Sync(); err != nil || res.Writes != 0 {
			t.Errorf("host %d ipv6=%v: resync beside the other family: %+v, %v", n.host.Index, n.ipv6, res, err)
		}
	}
}

// TestZeroNamespaceIsTheCallers: the zero NsHandle is descriptor 0, which
// NsHandle.IsOpen calls open; it must mean the caller's namespace, not an
// attempt to enter stdin.
func TestZeroNamespaceIsTheCallers(t *testing.T) {
	var zero netns.NsHandle
	if inNamespace(zero) || inNamespace(netns.None()) {
		t.Fatal("the zero or None handle is taken for a namespace to enter")
	}
	c, err := dialRoute(zero)
	if err != nil {
		t.Fatalf("dial in the caller's namespace: %v", err)
	}
	c.close()
}

// TestSetPeerAfterUnsyncedSetPeers: SetPeers changes a peer but no Sync has
// programmed the change when SetPeer changes it again. SetPeer must write
// against what the kernel holds, not against the unprogrammed desired
// state, so that nothing is left for the next Sync to find as drift.
func TestSetPeerAfterUnsyncedSetPeers(t *testing.T) {
	t.Parallel()
	nodes := newNodes(t, 2, false)
	meshAll(t, nodes)
	a, b := nodes[0], nodes[1]
	moved := b.peer()
	moved.VtepMAC = DeriveMAC("rebuilt", 1)
	if err := a.rec.SetPeers([]Peer{moved}); err != nil {
		t.Fatal(err)
	}
	moved.PublicIP = netip.MustParseAddr("172.30.0.77")
	if err := a.rec.SetPeer(moved); err != nil {
		t.Fatal(err)
	}
	neigh := ip(t, a, "ip", "neigh", "show", "dev", "flannel.1", moved.gateway().String())
	if !strings.Contains(neigh, moved.VtepMAC.String()) {
		t.Errorf("neighbour after SetPeer: %q, want lladdr %s", neigh, moved.VtepMAC)
	}
	if res, err := a.rec.Sync(); err != nil || res.Writes != 0 {
		t.Errorf("Sync after SetPeer: %+v, %v; want nothing left to do", res, err)
	}
}
