//go:build linux

package vxlan

import (
	"context"
	"errors"
	"fmt"
	"hash/fnv"
	"net/netip"
	"strings"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/weftnet/weft/internal/netnstest"
)

// These tests place objects the datapath does not own next to the ones it
// does, and check that they survive everything it does.

func hashedID(s netip.Prefix) uint32 {
	h := fnv.New32a()
	h.Write(s.Addr().AsSlice())
	h.Write([]byte{byte(s.Bits())})
	return h.Sum32() | 0x10000000
}

// A nexthop of ours is deleted and another program creates its own under
// the id: Sync must not overwrite it, and moves our peer to a new id.
func TestForeignNexthopReusingOurID(t *testing.T) {
	t.Parallel()
	nodes := newNodes(t, 2, false)
	meshAll(t, nodes)
	a, b := nodes[0], nodes[1]
	id := a.rec.Status().Peers[0].NexthopID
	ip(t, a, "ip", "nexthop", "del", "id", fmt.Sprint(id))
	ip(t, a, "ip", "nexthop", "add", "id", fmt.Sprint(id), "via", "172.30.0.200", "dev", "eth0", "proto", "static")
	if _, err := a.rec.Sync(); err != nil {
		t.Fatal(err)
	}
	if out := ip(t, a, "ip", "nexthop", "show", "id", fmt.Sprint(id)); !strings.Contains(out, "via 172.30.0.200 dev eth0") || !strings.Contains(out, "proto static") {
		t.Fatalf("the other program's nexthop became %s", out)
	}
	if got := a.rec.Status().Peers[0].NexthopID; got == id || got == 0 {
		t.Errorf("peer still on id %d (now %d)", id, got)
	}
	if err := overlayReachable(t, a, b, 5*time.Second); err != nil {
		t.Fatal(err)
	}
}

// Another program holds the id SetPeer would pick: the route must not point
// at that program's nexthop, and RemovePeer must not delete it (nor its
// route in another table).
func TestSetPeerAvoidsForeignNexthop(t *testing.T) {
	t.Parallel()
	nodes := newNodes(t, 3, false)
	a, b, c := nodes[0], nodes[1], nodes[2]
	if err := a.rec.SetPeers([]Peer{b.peer()}); err != nil {
		t.Fatal(err)
	}
	if _, err := a.rec.Sync(); err != nil {
		t.Fatal(err)
	}
	if err := c.rec.SetPeers([]Peer{a.peer()}); err != nil { // the way back
		t.Fatal(err)
	}
	if _, err := c.rec.Sync(); err != nil {
		t.Fatal(err)
	}
	id := hashedID(c.subnet)
	ip(t, a, "ip", "nexthop", "add", "id", fmt.Sprint(id), "via", "172.30.0.200", "dev", "eth0", "proto", "static")
	ip(t, a, "ip", "route", "add", "192.0.2.0/24", "nhid", fmt.Sprint(id), "table", "100")
	if err := a.rec.SetPeer(c.peer()); err != nil {
		t.Fatal(err)
	}
	if out := ip(t, a, "ip", "route", "show", c.subnet.String()); !strings.Contains(out, "via 10.244.3.0 dev flannel.1") {
		t.Fatalf("peer route points elsewhere: %s", out)
	}
	if err := overlayReachable(t, a, c, 5*time.Second); err != nil {
		t.Fatal(err)
	}
	if err := a.rec.RemovePeer(c.subnet); err != nil {
		t.Fatal(err)
	}
	if out := ip(t, a, "ip", "nexthop", "show", "id", fmt.Sprint(id)); !strings.Contains(out, "172.30.0.200") {
		t.Errorf("RemovePeer deleted the other program's nexthop: %q", out)
	}
	if out := ip(t, a, "ip", "route", "show", "table", "100"); !strings.Contains(out, "192.0.2.0/24") {
		t.Errorf("RemovePeer deleted a route in table 100: %q", out)
	}
}

// Another program's route to a peer's subnet, at the metric ours would
// have: never replaced; the peer is reported in conflict.
func TestForeignRouteNotReplaced(t *testing.T) {
	t.Parallel()
	nodes := newNodes(t, 2, false)
	a, b := nodes[0], nodes[1]
	ip(t, a, "ip", "route", "add", b.subnet.String(), "via", "172.30.0.99", "dev", "eth0", "proto", "static")
	if err := a.rec.SetPeers([]Peer{b.peer()}); err != nil {
		t.Fatal(err)
	}
	// One peer's conflict is that peer's failure, not the Sync's.
	res, err := a.rec.Sync()
	if err != nil || res.Failed != 1 {
		t.Fatalf("Sync with a route in the way: %+v, %v; want 1 failed peer and no error", res, err)
	}
	if out := ip(t, a, "ip", "route", "show", b.subnet.String()); !strings.Contains(out, "via 172.30.0.99 dev eth0 proto static") {
		t.Errorf("the other program's route became %q", out)
	}
	if st := a.rec.Status().Peers[0]; st.Programmed || !strings.Contains(st.Err, "in the way") {
		t.Errorf("peer status %+v, want a conflict", st)
	}
	if err := a.rec.SetPeer(b.peer()); !isPeerFailure(err) {
		t.Errorf("SetPeer over another program's route: %v, want a PeerError", err)
	}
	if out := ip(t, a, "ip", "route", "show", b.subnet.String()); !strings.Contains(out, "via 172.30.0.99") {
		t.Errorf("SetPeer replaced the other program's route: %q", out)
	}
}

// Removing peers must not remove another program's route to the same
// prefix at another metric, on IPv6 (where ours sit at 1024) or on the IPv4
// fallback path.
func TestForeignRouteSurvivesRemoval(t *testing.T) {
	t.Parallel()
	t.Run("ipv6", func(t *testing.T) {
		nodes := newNodes(t, 2, true)
		meshAll(t, nodes)
		a, b := nodes[0], nodes[1]
		ip(t, a, "ip", "-6", "route", "add", b.subnet.String(), "via", "fd30::99", "dev", "eth0", "metric", "10", "proto", "static")
		if err := a.rec.SetPeers(nil); err != nil {
			t.Fatal(err)
		}
		if _, err := a.rec.Sync(); err != nil {
			t.Fatal(err)
		}
		out := ip(t, a, "ip", "-6", "route", "show", b.subnet.String())
		if !strings.Contains(out, "fd30::99") || strings.Contains(out, "proto 157") {
			t.Errorf("after removing the peer: %q", out)
		}
	})
	t.Run("ipv4 fallback", func(t *testing.T) {
		nodes := newNodes(t, 2, false)
		a, b := nodes[0], nodes[1]
		a.rec.nexthops = false
		meshAll(t, nodes)
		ip(t, a, "ip", "route", "del", b.subnet.String())
		ip(t, a, "ip", "route", "add", b.subnet.String(), "via", "172.30.0.99", "dev", "eth0", "metric", "100", "proto", "static")
		a.rec.RemovePeer(b.subnet)
		if out := ip(t, a, "ip", "route", "show", b.subnet.String()); !strings.Contains(out, "172.30.0.99") {
			t.Errorf("RemovePeer deleted the other program's route: %q", out)
		}
	})
}

// A second route of the datapath's to a peer, at another metric, is removed
// once; then Sync has nothing to do.
func TestSecondRouteRemoved(t *testing.T) {
	t.Parallel()
	nodes := newNodes(t, 2, false)
	meshAll(t, nodes)
	a, b := nodes[0], nodes[1]
	ip(t, a, "ip", "route", "add", b.subnet.String(), "dev", "flannel.1", "metric", "100")
	if res, err := a.rec.Sync(); err != nil || res.Writes != 1 {
		t.Fatalf("first Sync: %+v, %v", res, err)
	}
	if res, err := a.rec.Sync(); err != nil || res.Writes != 0 {
		t.Fatalf("second Sync: %+v, %v", res, err)
	}
	if out := ip(t, a, "ip", "route", "show", b.subnet.String()); strings.Contains(out, "metric 100") {
		t.Errorf("stray route kept: %s", out)
	}
}

// An FDB entry to the right address but the wrong port and VNI is wrong.
func TestFDBPortAndVNI(t *testing.T) {
	t.Parallel()
	nodes := newNodes(t, 2, false)
	meshAll(t, nodes)
	a, b := nodes[0], nodes[1]
	ip(t, a, "bridge", "fdb", "replace", b.dev.MAC.String(), "dev", "flannel.1", "dst", "172.30.0.2", "port", "4789", "vni", "7", "self", "permanent")
	if res, err := a.rec.Sync(); err != nil || res.Repairs == 0 {
		t.Fatalf("Sync: %+v, %v", res, err)
	}
	if out := ip(t, a, "bridge", "fdb", "show", "dev", "flannel.1"); strings.Contains(out, "port 4789") || strings.Contains(out, "vni 7") {
		t.Errorf("after repair:\n%s", out)
	}
	if err := overlayReachable(t, a, b, 5*time.Second); err != nil {
		t.Fatal(err)
	}
	if res, err := a.rec.Sync(); err != nil || res.Writes != 0 {
		t.Errorf("second Sync: %+v, %v", res, err)
	}
}

// A closed reconciler fails; it never writes through a socket that reused
// its descriptor.
func TestClosedReconcilerFails(t *testing.T) {
	t.Parallel()
	nodes := newNodes(t, 2, false)
	a, b := nodes[0], nodes[1]
	r1, err := NewReconciler(ReconcilerConfig{Namespace: a.host.Handle, Device: a.dev.Index, Underlay: a.under, Logger: quietLog})
	if err != nil {
		t.Fatal(err)
	}
	r1.Close()
	r2, err := NewReconciler(ReconcilerConfig{Namespace: a.host.Handle, Device: a.dev.Index, Underlay: a.under, Logger: quietLog})
	if err != nil {
		t.Fatal(err)
	}
	defer r2.Close()
	if err := r1.SetPeer(b.peer()); !errors.Is(err, errReconcilerClosed) {
		t.Errorf("SetPeer on a closed reconciler: %v", err)
	}
	if _, err := r1.Sync(); !errors.Is(err, errReconcilerClosed) {
		t.Errorf("Sync on a closed reconciler: %v", err)
	}
	if out := ip(t, a, "ip", "route", "show", b.subnet.String()); out != "" {
		t.Errorf("a closed reconciler wrote: %s", out)
	}
}

// Two leases of one node (same MAC and address) share the FDB entry:
// removing one keeps it for the other.
func TestSharedMACSurvivesRemoval(t *testing.T) {
	t.Parallel()
	nodes := newNodes(t, 2, false)
	meshAll(t, nodes)
	a, b := nodes[0], nodes[1]
	old := b.peer()
	old.Subnet = netip.MustParsePrefix("10.244.50.0/24")
	if err := a.rec.SetPeer(old); err != nil {
		t.Fatal(err)
	}
	if err := a.rec.RemovePeer(old.Subnet); err != nil {
		t.Fatal(err)
	}
	if out := ip(t, a, "bridge", "fdb", "show", "dev", "flannel.1"); !strings.Contains(out, b.dev.MAC.String()) {
		t.Fatalf("the remaining lease's FDB entry is gone:\n%s", out)
	}
	if err := overlayReachable(t, a, b, 5*time.Second); err != nil {
		t.Fatal(err)
	}
	// Two peers claiming one MAC at different addresses is a conflict, not
	// an entry flipping between them on every Sync.
	clash := Peer{Subnet: netip.MustParsePrefix("10.244.60.0/24"), PublicIP: netip.MustParseAddr("172.30.0.77"), VtepMAC: b.dev.MAC}
	if err := a.rec.SetPeers([]Peer{b.peer(), clash}); err != nil {
		t.Fatal(err)
	}
	if res, err := a.rec.Sync(); err != nil || res.Failed != 1 {
		t.Fatalf("Sync with a MAC clash: %+v, %v; want 1 failed peer and no error", res, err)
	}
	if st := a.rec.Status().Peers; len(st) != 2 || !strings.Contains(st[1].Err, "also peer") || !st[0].Programmed {
		t.Fatalf("statuses %+v, want the clash failed and the first programmed", st)
	}
	res, _ := a.rec.Sync()
	if res.Writes != 0 {
		t.Errorf("the clash keeps Sync writing: %+v", res)
	}
}

// The IPv6 reconciler takes no notice of IPv4 objects carrying the shared
// protocol number, and the other way round.
func TestFamiliesIgnoreEachOther(t *testing.T) {
	t.Parallel()
	v6 := newNodes(t, 1, true)[0]
	v4 := newNodes(t, 1, false)[0]
	nh4 := nexthop{id: 5, gw: netip.MustParseAddr("10.244.2.0"), dev: 99, onlink: true, proto: DefaultRouteProtocol}.addRequest().body
	rt4 := route{dst: netip.MustParsePrefix("10.244.2.0/24"), nhid: 5, proto: DefaultRouteProtocol}.addRequest(false).body
	nh6 := nexthop{id: 6, gw: netip.MustParseAddr("fd00::1"), dev: 99, onlink: true, proto: DefaultRouteProtocol}.addRequest().body
	if !v6.rec.expected(unix.RTM_NEWNEXTHOP, nh4) || !v6.rec.expected(unix.RTM_NEWROUTE, rt4) {
		t.Error("the IPv6 reconciler reacts to IPv4 objects")
	}
	if !v4.rec.expected(unix.RTM_NEWNEXTHOP, nh6) {
		t.Error("the IPv4 reconciler reacts to IPv6 objects")
	}
}

// A restarted agent's new Datapath keeps the routes, neighbours and FDB
// entries of the last run until it knows its peers again: a node cut off
// from the control plane keeps forwarding.
func TestNewDatapathKeepsPeersUntilTold(t *testing.T) {
	t.Parallel()
	seg := netnstest.NewSegment(t, 2)
	h := seg.Hosts[0]
	cfg := DatapathConfig{
		Namespace: h.Handle, Device: hostDeviceConfig(t, h, false),
		Subnet: netip.MustParsePrefix("10.244.1.0/24"), Logger: quietLog,
	}
	peer := Peer{Subnet: netip.MustParsePrefix("10.244.2.0/24"), PublicIP: seg.Hosts[1].Addr.Addr(), VtepMAC: DeriveMAC(seg.Hosts[1].Name, 1)}
	first, err := NewDatapath(cfg)
	if err != nil {
		t.Fatal(err)
	}
	if err := first.SetPeers([]Peer{peer}); err != nil {
		t.Fatal(err)
	}
	if err := first.Reconcile(); err != nil {
		t.Fatal(err)
	}
	first.Close()
	n := &node{host: h}
	before := ip(t, n, "ip", "route", "show", "proto", "157") + ip(t, n, "bridge", "fdb", "show", "dev", "flannel.1")

	second, err := NewDatapath(cfg)
	if err != nil {
		t.Fatal(err)
	}
	defer second.Close()
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- second.Run(ctx) }()
	time.Sleep(200 * time.Millisecond)
	after := ip(t, n, "ip", "route", "show", "proto", "157") + ip(t, n, "bridge", "fdb", "show", "dev", "flannel.1")
	if !strings.Contains(after, "10.244.2.0/24") || after != before {
		t.Errorf("a restarted datapath changed peer state before learning its peers:\nbefore %s\nafter %s", before, after)
	}
	if second.Synced() {
		t.Error("Synced before the peers are known")
	}
	cancel()
	<-done
}

// A node is never its own peer: a peer overlapping its subnet is ignored.
func TestOwnSubnetIsNotAPeer(t *testing.T) {
	t.Parallel()
	nodes := newDatapaths(t, 2)
	a := nodes[0]
	self := a.peer()
	self.PublicIP = netip.MustParseAddr("172.30.0.9")
	if err := a.dp.SetPeer(self); err != nil {
		t.Fatal(err)
	}
	if err := a.dp.SetPeers([]Peer{nodes[1].peer(), self}); err != nil {
		t.Fatal(err)
	}
	waitUntil(t, 5*time.Second, "convergence", func() bool { return a.dp.Synced() })
	if out := ip(t, a.node, "ip", "route", "show", a.subnet.String()); strings.Contains(out, "proto 157") {
		t.Errorf("own subnet routed to the overlay: %s", out)
	}
}

// A node that moves into a subnet a peer held (the peer's lease lapsed
// and this node was given it) stops routing that subnet to the overlay.
// SetPeers leaves the caller's slice as it was.
func TestMovingIntoAPeerSubnetDropsThePeer(t *testing.T) {
	t.Parallel()
	nodes := newDatapaths(t, 2)
	a, b := nodes[0], nodes[1]
	waitUntil(t, 5*time.Second, "convergence", func() bool { return a.dp.Synced() })
	if out := ip(t, a.node, "ip", "route", "show", b.subnet.String()); !strings.Contains(out, "proto 157") {
		t.Fatalf("no overlay route to the peer before the move: %q", out)
	}
	a.dp.SetSubnet(b.subnet)
	waitUntil(t, 5*time.Second, "the peer's route to go", func() bool {
		out := ip(t, a.node, "ip", "route", "show", b.subnet.String())
		return a.dp.Synced() && !strings.Contains(out, "proto 157") && len(a.dp.Status().Reconciler.Peers) == 0
	})

	peers := []Peer{b.peer()}
	if err := a.dp.SetPeers(peers); err != nil {
		t.Fatal(err)
	}
	if peers[0] != b.peer() {
		t.Errorf("SetPeers changed the caller's slice: %+v", peers)
	}
	waitUntil(t, 5*time.Second, "convergence", func() bool { return a.dp.Synced() })
	if n := len(a.dp.Status().Reconciler.Peers); n != 0 {
		t.Errorf("%d peers after SetPeers with only the node's own subnet, want 0", n)
	}
}

// With learning on, learned FDB entries are the kernel's: the datapath
// neither deletes them nor resyncs over them.
func TestLearnedEntriesLeftAlone(t *testing.T) {
	t.Parallel()
	nodes := newNodes(t, 2, false)
	a := nodes[0]
	rec, err := NewReconciler(ReconcilerConfig{Namespace: a.host.Handle, Device: a.dev.Index, Underlay: a.under, Learning: true, Logger: quietLog})
	if err != nil {
		t.Fatal(err)
	}
	defer rec.Close()
	if err := rec.SetPeers([]Peer{nodes[1].peer()}); err != nil {
		t.Fatal(err)
	}
	ip(t, a, "bridge", "fdb", "add", "0e:aa:bb:cc:dd:ee", "dev", "flannel.1", "dst", "172.30.0.55", "self", "dynamic")
	if _, err := rec.Sync(); err != nil {
		t.Fatal(err)
	}
	if out := ip(t, a, "bridge", "fdb", "show", "dev", "flannel.1"); !strings.Contains(out, "0e:aa:bb:cc:dd:ee") {
		t.Errorf("learned entry deleted:\n%s", out)
	}
	if res, err := rec.Sync(); err != nil || res.Writes != 0 {
		t.Errorf("second Sync: %+v, %v", res, err)
	}
}

// Once converged, a quiet pair of datapaths (IPv4 and IPv6 in one
// namespace) stays quiet: no resync triggered by its own or the other's
// notifications.
func TestQuietDatapathStaysQuiet(t *testing.T) {
	t.Parallel()
	nodes := newDatapaths(t, 2)
	a := nodes[0]
	waitUntil(t, 5*time.Second, "convergence", func() bool { return a.dp.Synced() })
	time.Sleep(300 * time.Millisecond)
	before := a.dp.Status().Reconciler.Syncs
	// A change on the other host, and one of a's peers set again.
	if err := a.dp.SetPeer(nodes[1].peer()); err != nil {
		t.Fatal(err)
	}
	time.Sleep(time.Second)
	if after := a.dp.Status().Reconciler.Syncs; after != before {
		t.Errorf("%d resyncs in a quiet second", after-before)
	}
}
