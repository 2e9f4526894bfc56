//go:build linux

package hostgw

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/netip"
	"os/exec"
	"runtime"
	"strings"
	"testing"
	"time"

	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"

	"github.com/weftnet/weft/internal/netnstest"
	"github.com/weftnet/weft/internal/testutil"
	"github.com/weftnet/weft/lease"
)

var quietLog = slog.New(slog.NewTextHandler(io.Discard, nil))

// node is one simulated host running a host-gw datapath.
type node struct {
	h      *netnstest.Host
	lease  lease.Lease
	pod4   netip.Addr
	pod6   netip.Addr
	uplink int
	dp     *Datapath
	stop   func()
}

// hostLease is host i's lease: 10.244.i.0/24 and fd00:244:i::/64, with its
// underlay addresses as public ones.
func hostLease(h *netnstest.Host) lease.Lease {
	i := byte(h.Index)
	return lease.Lease{
		Key: lease.Key{
			IPv4: netip.PrefixFrom(netip.AddrFrom4([4]byte{10, 244, i, 0}), 24),
			IPv6: netip.PrefixFrom(netip.AddrFrom16([16]byte{0xfd, 0, 2, 0x44, 0, i}), 64),
		},
		Attrs:     Attrs(h.Addr.Addr(), h.Addr6.Addr()),
		Seniority: int64(i),
	}
}

// newNodes makes n hosts on one segment, each with a "pod" (a dummy
// device holding its subnet's first address, as a CNI bridge would).
func newNodes(t *testing.T, n int) (*netnstest.Segment, []*node) {
	seg := netnstest.NewSegment(t, n)
	var nodes []*node
	for _, h := range seg.Hosts {
		l := hostLease(h)
		nd := &node{h: h, lease: l, pod4: l.Key.IPv4.Addr().Next(), pod6: l.Key.IPv6.Addr().Next()}
		nl := h.Netlink()
		if err := nl.LinkAdd(&netlink.Bridge{LinkAttrs: netlink.LinkAttrs{Name: "pods"}}); err != nil {
			t.Fatal(err)
		}
		h.AddrAdd(t, "pods", netip.PrefixFrom(nd.pod4, 24))
		h.AddrAdd(t, "pods", netip.PrefixFrom(nd.pod6, 64))
		pods, _ := nl.LinkByName("pods")
		if err := nl.LinkSetUp(pods); err != nil {
			t.Fatal(err)
		}
		eth, err := nl.LinkByName(netnstest.Underlay)
		if err != nil {
			t.Fatal(err)
		}
		nd.uplink = eth.Attrs().Index
		nodes = append(nodes, nd)
	}
	return seg, nodes
}

// start runs a datapath on nd with the given peers.
func (nd *node) start(t *testing.T, peers []lease.Lease) {
	t.Helper()
	dp, err := NewDatapath(DatapathConfig{Namespace: nd.h.Handle, Lease: nd.lease, Uplink: nd.uplink, ResyncInterval: time.Hour, Logger: quietLog})
	if err != nil {
		t.Fatal(err)
	}
	dp.SetPeers(peers)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- dp.Run(ctx) }()
	nd.dp = dp
	nd.stop = func() {
		cancel()
		if err := <-done; err != context.Canceled {
			t.Errorf("Run: %v", err)
		}
		dp.Close()
	}
	t.Cleanup(func() {
		if nd.stop != nil {
			nd.stop()
			nd.stop = nil
		}
	})
}

func leasesOf(nodes []*node, except *node) []lease.Lease {
	var out []lease.Lease
	for _, n := range nodes {
		if n != except {
			out = append(out, n.lease)
		}
	}
	return out
}

// waitSynced waits until nd's datapath has applied its peers, with want
// of them not programmed.
func waitSynced(t *testing.T, nd *node, failed int) Status {
	t.Helper()
	var st Status
	testutil.WaitFor(t, 10*time.Second, fmt.Sprintf("%s synced with %d failed", nd.h.Name, failed), func() bool {
		st = nd.dp.Status()
		return st.Synced && st.Failed == failed
	})
	return st
}

// ping checks that dst answers src's ICMP echoes within ten seconds.
func ping(t *testing.T, ns *netnstest.Namespace, src, dst netip.Addr) {
	t.Helper()
	if err := ns.WaitPing(src, dst, 10*time.Second); err != nil {
		t.Fatal(err)
	}
}

// noPing checks that dst does not answer src (one echo, a second's wait).
func noPing(t *testing.T, ns *netnstest.Namespace, src, dst netip.Addr) {
	t.Helper()
	if err := ns.Ping(src, dst); err == nil {
		t.Fatalf("ping %s -> %s in %s answered, want no answer", src, dst, ns.Name)
	}
}

// ownRoutes lists the datapath's routes in ns, as `ip route` would.
func ownRoutes(t *testing.T, ns *netnstest.Namespace, fam int) map[netip.Prefix]netip.Addr {
	t.Helper()
	rs, err := ns.Netlink().RouteListFiltered(fam, &netlink.Route{Protocol: DefaultRouteProtocol, Table: unix.RT_TABLE_MAIN}, netlink.RT_FILTER_PROTOCOL|netlink.RT_FILTER_TABLE)
	if err != nil {
		t.Fatal(err)
	}
	out := map[netip.Prefix]netip.Addr{}
	for _, r := range rs {
		gw, _ := netip.AddrFromSlice(r.Gw)
		out[prefix(r)] = gw.Unmap()
	}
	return out
}

func prefix(r netlink.Route) netip.Prefix {
	a, _ := netip.AddrFromSlice(r.Dst.IP)
	ones, _ := r.Dst.Mask.Size()
	return netip.PrefixFrom(a.Unmap(), ones)
}

// noLeaks fails t if goroutines started during the test outlive it.
func noLeaks(t *testing.T) {
	before := runtime.NumGoroutine()
	t.Cleanup(func() {
		deadline := time.Now().Add(5 * time.Second)
		for runtime.NumGoroutine() > before && time.Now().Before(deadline) {
			time.Sleep(20 * time.Millisecond)
		}
		if n := runtime.NumGoroutine(); n > before {
			buf := make([]byte, 1<<20)
			t.Errorf("%d goroutines left running (had %d):\n%s", n-before, before, buf[:runtime.Stack(buf, true)])
		}
	})
}

func ipRoute(t *testing.T, ns *netnstest.Namespace, args ...string) {
	t.Helper()
	if out, err := exec.Command("ip", append([]string{"-n", ns.Name, "route"}, args...)...).CombinedOutput(); err != nil {
		t.Fatalf("ip route %s: %v\n%s", strings.Join(args, " "), err, out)
	}
}

// TestThreeNodesTrafficEveryDirection runs host-gw on three hosts of one
// segment, dual-stack, and pings every pod from every other over IPv4 and
// IPv6: the routes are flannel's, <subnet> via <PublicIP> dev eth0, and
// the MTU is the uplink's.
func TestThreeNodesTrafficEveryDirection(t *testing.T) {
	noLeaks(t)
	_, nodes := newNodes(t, 3)
	for _, nd := range nodes {
		nd.start(t, leasesOf(nodes, nd))
	}
	for _, nd := range nodes {
		st := waitSynced(t, nd, 0)
		if len(st.Peers) != 4 || st.MTU != 1500 {
			t.Fatalf("%s: %d peers, MTU %d; want 4 (2 per family) and the uplink's 1500: %+v", nd.h.Name, len(st.Peers), st.MTU, st)
		}
		for _, fam := range []int{netlink.FAMILY_V4, netlink.FAMILY_V6} {
			got := ownRoutes(t, nd.h.Namespace, fam)
			for _, p := range nodes {
				if p == nd {
					continue
				}
				sub, via := p.lease.Key.IPv4, p.h.Addr.Addr()
				if fam == netlink.FAMILY_V6 {
					sub, via = p.lease.Key.IPv6, p.h.Addr6.Addr()
				}
				if got[sub] != via {
					t.Errorf("%s: route %s via %v, want via %s (all: %v)", nd.h.Name, sub, got[sub], via, got)
				}
			}
		}
	}
	for _, a := range nodes {
		for _, b := range nodes {
			if a != b {
				ping(t, a.h.Namespace, a.pod4, b.pod4)
				ping(t, a.h.Namespace, a.pod6, b.pod6)
			}
		}
	}
}

// TestPeerOnAnotherSegmentIsNotProgrammed gives a node a peer whose
// public address is on no network it is connected to: host-gw cannot
// reach it, so it gets no route (which would send its traffic to the
// default gateway) and is listed failed, naming the reason; the other
// peer is programmed. Once the node joins that network, the peer is
// programmed without anything else changing.
func TestPeerOnAnotherSegmentIsNotProgrammed(t *testing.T) {
	noLeaks(t)
	_, nodes := newNodes(t, 2)
	a := nodes[0]
	far := lease.Lease{
		Key:   lease.Key{IPv4: netip.MustParsePrefix("10.244.9.0/24")},
		Attrs: Attrs(netip.MustParseAddr("192.0.2.9"), netip.Addr{}),
	}
	// A default route, so that the kernel would take a route via the far
	// address on its own: only the datapath's rule keeps it out.
	ipRoute(t, a.h.Namespace, "add", "default", "via", "172.30.0.254", "dev", netnstest.Underlay)
	a.start(t, []lease.Lease{nodes[1].lease, far})
	nodes[1].start(t, []lease.Lease{a.lease})
	st := waitSynced(t, a, 1)
	var bad *PeerStatus
	for i, p := range st.Peers {
		if p.Subnet == far.Key.IPv4 {
			bad = &st.Peers[i]
		} else if !p.Programmed && !p.IPv6 {
			t.Errorf("peer %s not programmed: %+v", p.Subnet, p)
		}
	}
	if bad == nil || bad.Programmed || bad.Reason != ReasonNotOnLink || !strings.Contains(bad.Err, "192.0.2.9") {
		t.Fatalf("far peer status %+v; want not programmed, %s, naming 192.0.2.9", bad, ReasonNotOnLink)
	}
	if via, ok := ownRoutes(t, a.h.Namespace, netlink.FAMILY_V4)[far.Key.IPv4]; ok {
		t.Fatalf("far peer routed via %s", via)
	}
	ping(t, a.h.Namespace, a.pod4, nodes[1].pod4)

	// The node joins the far peer's network: the peer is programmed.
	a.h.AddrAdd(t, netnstest.Underlay, netip.MustParsePrefix("192.0.2.1/24"))
	waitSynced(t, a, 0)
	if via := ownRoutes(t, a.h.Namespace, netlink.FAMILY_V4)[far.Key.IPv4]; via != far.Attrs.PublicIP {
		t.Fatalf("far peer via %v after joining its network, want %s", via, far.Attrs.PublicIP)
	}
}

// TestDriftRepaired deletes one route by hand and replaces another by
// hand (under the datapath's protocol, as a confused script might): both
// are repaired from the notifications alone (resync is an hour), and
// traffic flows again.
func TestDriftRepaired(t *testing.T) {
	noLeaks(t)
	_, nodes := newNodes(t, 3)
	for _, nd := range nodes {
		nd.start(t, leasesOf(nodes, nd))
	}
	for _, nd := range nodes {
		waitSynced(t, nd, 0)
	}
	a, b, c := nodes[0], nodes[1], nodes[2]
	ipRoute(t, a.h.Namespace, "del", b.lease.Key.IPv4.String())
	ipRoute(t, a.h.Namespace, "replace", c.lease.Key.IPv4.String(), "via", b.h.Addr.Addr().String(), "dev", netnstest.Underlay, "proto", "157")
	ipRoute(t, a.h.Namespace, "del", b.lease.Key.IPv6.String())
	testutil.WaitFor(t, 10*time.Second, "routes repaired", func() bool {
		got := ownRoutes(t, a.h.Namespace, netlink.FAMILY_V4)
		got6 := ownRoutes(t, a.h.Namespace, netlink.FAMILY_V6)
		return got[b.lease.Key.IPv4] == b.h.Addr.Addr() && got[c.lease.Key.IPv4] == c.h.Addr.Addr() && got6[b.lease.Key.IPv6] == b.h.Addr6.Addr()
	})
	st := waitSynced(t, a, 0)
	if st.Repaired < 3 {
		t.Fatalf("%d repairs recorded, want 3: %+v", st.Repaired, st.Repairs)
	}
	ping(t, a.h.Namespace, a.pod4, b.pod4)
	ping(t, a.h.Namespace, a.pod4, c.pod4)
	ping(t, a.h.Namespace, a.pod6, b.pod6)
}

// TestAnotherProgramsRouteIsOnePeersFailure puts another program's route
// to one peer's subnet in the way, before start and by hand while
// running: that peer is failed as a conflict and its route left alone;
// the other peer is programmed and reached. When the other route goes,
// the peer is programmed.
func TestAnotherProgramsRouteIsOnePeersFailure(t *testing.T) {
	noLeaks(t)
	_, nodes := newNodes(t, 3)
	a, b, c := nodes[0], nodes[1], nodes[2]
	// Before start: a static route to c's subnet through a blackhole.
	ipRoute(t, a.h.Namespace, "add", "blackhole", c.lease.Key.IPv4.String())
	for _, nd := range nodes {
		nd.start(t, leasesOf(nodes, nd))
	}
	st := waitSynced(t, a, 1)
	for _, p := range st.Peers {
		if p.Subnet == c.lease.Key.IPv4 {
			if p.Programmed || p.Reason != ReasonConflict {
				t.Fatalf("c's peer %+v; want failed as %s", p, ReasonConflict)
			}
		} else if !p.Programmed {
			t.Fatalf("peer %+v not programmed", p)
		}
	}
	ping(t, a.h.Namespace, a.pod4, b.pod4)
	noPing(t, a.h.Namespace, a.pod4, c.pod4)

	// Taken over by hand while running (replace without proto: another
	// program's now): left alone, failed, the rest untouched.
	ipRoute(t, a.h.Namespace, "replace", b.lease.Key.IPv6.String(), "via", c.h.Addr6.Addr().String(), "dev", netnstest.Underlay)
	st = waitSynced(t, a, 2)
	rs, _ := a.h.Netlink().RouteListFiltered(netlink.FAMILY_V6, &netlink.Route{Dst: ipnet(b.lease.Key.IPv6), Table: unix.RT_TABLE_MAIN}, netlink.RT_FILTER_DST|netlink.RT_FILTER_TABLE)
	if len(rs) != 1 || rs[0].Protocol == DefaultRouteProtocol {
		t.Fatalf("the other program's route was touched: %v", rs)
	}
	ping(t, a.h.Namespace, a.pod6, c.pod6)

	ipRoute(t, a.h.Namespace, "del", "blackhole", c.lease.Key.IPv4.String())
	ipRoute(t, a.h.Namespace, "del", b.lease.Key.IPv6.String())
	waitSynced(t, a, 0)
	ping(t, a.h.Namespace, a.pod4, c.pod4)
	ping(t, a.h.Namespace, a.pod6, b.pod6)
}

// TestPublicAddressNotOnUplink: a lease whose public address is not the
// uplink's (a NAT's) is a reconcile error naming the fix, not a crash;
// the datapath recovers when the lease is corrected.
func TestPublicAddressNotOnUplink(t *testing.T) {
	noLeaks(t)
	_, nodes := newNodes(t, 2)
	a := nodes[0]
	a.lease.Attrs.PublicIP = netip.MustParseAddr("203.0.113.7")
	a.start(t, []lease.Lease{nodes[1].lease})
	testutil.WaitFor(t, 5*time.Second, "a NAT error", func() bool {
		return strings.Contains(a.dp.Status().Err, "NAT")
	})
	if a.dp.Synced() {
		t.Fatal("synced behind NAT")
	}
	a.dp.SetLease(hostLease(a.h))
	waitSynced(t, a, 0)
}

// TestRestartKeepsRoutes: Close leaves the routes; a new datapath leaves
// them until it learns its peers, then drops the ones gone.
func TestRestartKeepsRoutes(t *testing.T) {
	noLeaks(t)
	_, nodes := newNodes(t, 3)
	a := nodes[0]
	a.start(t, leasesOf(nodes, a))
	waitSynced(t, a, 0)
	a.stop()
	a.stop = nil
	if n := len(ownRoutes(t, a.h.Namespace, netlink.FAMILY_V4)); n != 2 {
		t.Fatalf("%d routes after Close, want 2", n)
	}
	dp, err := NewDatapath(DatapathConfig{Namespace: a.h.Handle, Lease: a.lease, Uplink: a.uplink, Logger: quietLog})
	if err != nil {
		t.Fatal(err)
	}
	defer dp.Close()
	if n := len(ownRoutes(t, a.h.Namespace, netlink.FAMILY_V4)); n != 2 {
		t.Fatalf("%d routes before the peers are known, want 2 kept", n)
	}
	dp.SetPeers([]lease.Lease{nodes[1].lease})
	if err := dp.Reconcile(); err != nil {
		t.Fatal(err)
	}
	got := ownRoutes(t, a.h.Namespace, netlink.FAMILY_V4)
	if len(got) != 1 || got[nodes[1].lease.Key.IPv4] != nodes[1].h.Addr.Addr() {
		t.Fatalf("routes %v, want only node 2's", got)
	}
}

func ipnet(p netip.Prefix) *net.IPNet {
	return &net.IPNet{IP: p.Addr().AsSlice(), Mask: net.CIDRMask(p.Bits(), p.Addr().BitLen())}
}
