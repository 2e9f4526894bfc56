//go:build linux

package vxlan

import (
	"context"
	"net/netip"
	"strings"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/weftnet/weft/internal/netnstest"
	"github.com/weftnet/weft/internal/testutil"
)

// dpNode is a simulated host running a Datapath.
type dpNode struct {
	*node
	dp *Datapath
}

// newDatapaths starts a Datapath on each of count hosts, each with the
// others as peers, with periodic resync effectively off: every repair the
// tests see comes from a kernel notification.
func newDatapaths(t *testing.T, count int) []*dpNode {
	t.Helper()
	seg := netnstest.NewSegment(t, count)
	var nodes []*dpNode
	for _, h := range seg.Hosts {
		dp, err := NewDatapath(DatapathConfig{
			Namespace:      h.Handle,
			Device:         hostDeviceConfig(t, h, false),
			Subnet:         netip.PrefixFrom(netip.AddrFrom4([4]byte{10, 244, byte(h.Index), 0}), 24),
			ResyncInterval: time.Hour,
			Logger:         quietLog,
		})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(dp.Close)
		n := &dpNode{node: &node{host: h, dev: dp.Device(), subnet: dp.cfg.Subnet}, dp: dp}
		nodes = append(nodes, n)
	}
	for _, n := range nodes {
		var peers []Peer
		for _, o := range nodes {
			if o != n {
				peers = append(peers, o.peer())
			}
		}
		if err := n.dp.SetPeers(peers); err != nil {
			t.Fatal(err)
		}
		ctx, cancel := context.WithCancel(context.Background())
		done := make(chan error, 1)
		go func() { done <- n.dp.Run(ctx) }()
		t.Cleanup(func() {
			cancel()
			if err := <-done; err != context.Canceled {
				t.Errorf("Run returned %v", err)
			}
		})
	}
	return nodes
}

func waitUntil(t *testing.T, d time.Duration, what string, cond func() bool) {
	t.Helper()
	testutil.WaitFor(t, d, what, cond)
}

// TestDatapathRepairsDriftOnItsOwn injects drift and waits for the running
// Datapath to notice (through kernel notifications, the periodic resync
// being an hour away) and repair it.
func TestDatapathRepairsDriftOnItsOwn(t *testing.T) {
	t.Parallel()
	nodes := newDatapaths(t, 2)
	a, b := nodes[0], nodes[1]
	waitUntil(t, 5*time.Second, "both datapaths to converge", func() bool { return a.dp.Synced() && b.dp.Synced() })
	requireMesh(t, []*node{a.node, b.node})
	bMAC := b.dev.MAC.String()

	for _, tc := range []struct {
		name   string
		inject []string
		check  []string // command whose output must come to contain want
		want   string
	}{
		{"neighbour with a wrong MAC (seed 001)",
			[]string{"ip", "neigh", "replace", "10.244.2.0", "lladdr", "0e:de:ad:be:ef:01", "nud", "permanent", "dev", "flannel.1"},
			[]string{"ip", "neigh", "show", "10.244.2.0", "dev", "flannel.1"}, "lladdr " + bMAC + " PERMANENT"},
		{"route deleted",
			[]string{"ip", "route", "del", "10.244.2.0/24"},
			[]string{"ip", "route", "show", "10.244.2.0/24"}, "proto 157"},
		{"FDB entry pointing elsewhere",
			[]string{"bridge", "fdb", "replace", bMAC, "dev", "flannel.1", "dst", "172.30.0.99", "self", "permanent"},
			[]string{"bridge", "fdb", "show", "dev", "flannel.1"}, bMAC + " dst 172.30.0.2 self permanent"},
		{"MTU changed",
			[]string{"ip", "link", "set", "flannel.1", "mtu", "1300"},
			[]string{"ip", "link", "show", "flannel.1"}, "mtu 1450"},
		{"device MAC changed",
			[]string{"ip", "link", "set", "flannel.1", "address", "0e:11:22:33:44:55"},
			[]string{"ip", "neigh", "show", "10.244.2.0", "dev", "flannel.1"}, "lladdr " + bMAC + " PERMANENT"},
	} {
		before := len(a.dp.Status().Repairs) + len(a.dp.Status().Reconciler.Repairs)
		ip(t, a.node, tc.inject...)
		waitUntil(t, 5*time.Second, tc.name+" to be repaired", func() bool {
			return strings.Contains(ip(t, a.node, tc.check...), tc.want)
		})
		waitUntil(t, 5*time.Second, tc.name+" to show in Status", func() bool {
			st := a.dp.Status()
			return len(st.Repairs)+len(st.Reconciler.Repairs) > before
		})
		if err := overlayReachable(t, a.node, b.node, 5*time.Second); err != nil {
			t.Fatalf("%s: traffic after the repair: %v", tc.name, err)
		}
	}
	if got := a.dp.Device().MAC; got != a.dev.MAC {
		t.Errorf("device MAC %s after repairs, want %s", got, a.dev.MAC)
	}
}

// TestDatapathRecreatesDeletedDevice deletes the device under a running
// Datapath: it comes back with the same MAC and every peer replayed.
func TestDatapathRecreatesDeletedDevice(t *testing.T) {
	t.Parallel()
	nodes := newDatapaths(t, 3)
	a := nodes[0]
	waitUntil(t, 5*time.Second, "convergence", func() bool { return a.dp.Synced() })
	oldIndex := a.dp.Device().Index
	ip(t, a.node, "ip", "link", "del", "flannel.1")
	waitUntil(t, 5*time.Second, "the device to come back with its peers", func() bool {
		dev := a.dp.Device()
		st := a.dp.Status().Reconciler
		return dev.Index != oldIndex && a.dp.Synced() && len(st.Peers) == 2 && st.Peers[0].Programmed && st.Peers[1].Programmed
	})
	if dev := a.dp.Device(); dev.MAC != a.dev.MAC {
		t.Errorf("re-created device has MAC %s, want %s", dev.MAC, a.dev.MAC)
	}
	for _, n := range nodes {
		n.dev = n.dp.Device()
	}
	requireMesh(t, []*node{nodes[0].node, nodes[1].node, nodes[2].node})
}

// TestDatapathSetSubnet moves a node to a new subnet: the device is
// re-addressed and the old address removed.
func TestDatapathSetSubnet(t *testing.T) {
	t.Parallel()
	nodes := newDatapaths(t, 1)
	a := nodes[0]
	a.dp.SetSubnet(netip.MustParsePrefix("10.244.99.0/24"))
	waitUntil(t, 5*time.Second, "the new address", func() bool {
		out := ip(t, a.node, "ip", "-4", "addr", "show", "dev", "flannel.1")
		return strings.Contains(out, "10.244.99.0/32") && !strings.Contains(out, "10.244.1.0/32")
	})
}

// TestFailedWriteIsRetried: a peer whose route another program holds cannot
// be programmed; it alone is failed, the Datapath stays converged, keeps
// retrying, and programs it as soon as the way is clear, with no further
// prompting.
func TestFailedWriteIsRetried(t *testing.T) {
	t.Parallel()
	nodes := newDatapaths(t, 2)
	a, b := nodes[0], nodes[1]
	waitUntil(t, 5*time.Second, "convergence", func() bool { return a.dp.Synced() })
	// Another program replaces the peer's route with its own.
	ip(t, a.node, "ip", "route", "replace", b.subnet.String(), "via", "172.30.0.99", "dev", "eth0", "proto", "static")
	waitUntil(t, 5*time.Second, "the conflict to show", func() bool {
		st := a.dp.Status()
		return st.FailedPeers == 1 && len(st.Reconciler.Peers) == 1 && strings.Contains(st.Reconciler.Peers[0].Err, "in the way")
	})
	if !a.dp.Synced() {
		t.Error("one peer's failure made the datapath unconverged")
	}
	if p := a.dp.Status().Reconciler.Peers[0]; p.Missing != ObjectRoute || p.Programmed || !p.Wanted || p.Desired != p.Peer {
		t.Errorf("status of the blocked peer: %+v, want only the route missing", p)
	}
	ip(t, a.node, "ip", "route", "del", b.subnet.String(), "proto", "static")
	waitUntil(t, 15*time.Second, "the retry to program the peer", func() bool {
		st := a.dp.Status()
		return a.dp.Synced() && st.FailedPeers == 0 && st.Reconciler.Peers[0].Programmed && st.Reconciler.Peers[0].Missing == 0
	})
	if err := overlayReachable(t, a.node, b.node, 5*time.Second); err != nil {
		t.Fatal(err)
	}
}

// TestFilterNeverWaitsForWrites: the notification filter answers while a
// reconcile holds the datapath and a sync holds the reconciler's writer
// lock, as both do across their netlink round trips. Were it made to wait,
// the notifications a large sync causes would back up and overrun the
// socket, and every large sync would cost a second, verifying one.
func TestFilterNeverWaitsForWrites(t *testing.T) {
	t.Parallel()
	nodes := newDatapaths(t, 2)
	n, other := nodes[0], nodes[1]
	waitUntil(t, 10*time.Second, "sync", func() bool { return n.dp.Synced() })
	rec := n.dp.filter.Load().rec
	peer := other.peer()
	ours := rec.objects(peer, rec.peers.id(peer.Subnet)).route.addRequest(true).body
	foreign := route{dst: peer.Subnet, metric: rec.metric, gw: peer.PublicIP, dev: n.dp.cfg.Device.Underlay, proto: 4}.addRequest(false).body

	n.dp.mu.Lock()
	rec.write.Lock()
	answers := make(chan [2]bool, 1)
	go func() {
		answers <- [2]bool{n.dp.expected(unix.RTM_NEWROUTE, ours), n.dp.expected(unix.RTM_NEWROUTE, foreign)}
	}()
	select {
	case got := <-answers:
		if got != [2]bool{true, false} {
			t.Errorf("expected(our route, another's route in its place) = %v, want [true false]", got)
		}
	case <-time.After(5 * time.Second):
		t.Error("the notification filter waited for the writers")
	}
	rec.write.Unlock()
	n.dp.mu.Unlock()
}

// TestStatusNeverWaitsForReconcile: Status, Synced, Device and Counts
// answer while a reconcile holds the datapath and a sync holds the
// reconciler's writer lock, as they do across a whole sync of tens of
// thousands of peers.
func TestStatusNeverWaitsForReconcile(t *testing.T) {
	t.Parallel()
	nodes := newDatapaths(t, 2)
	n := nodes[0]
	waitUntil(t, 10*time.Second, "sync", func() bool { return n.dp.Synced() })
	rec := n.dp.filter.Load().rec

	n.dp.mu.Lock()
	rec.write.Lock()
	answers := make(chan DatapathStatus, 1)
	go func() {
		_ = n.dp.Synced()
		_ = n.dp.Device()
		_ = n.dp.Counts()
		answers <- n.dp.Status()
	}()
	select {
	case st := <-answers:
		if !st.Synced || st.Device.Index == 0 || len(st.Reconciler.Peers) != 1 || !st.Reconciler.Peers[0].Programmed {
			t.Errorf("status during a reconcile: %+v", st)
		}
	case <-time.After(5 * time.Second):
		t.Error("Status waited for the reconcile")
	}
	rec.write.Unlock()
	n.dp.mu.Unlock()
	if c := n.dp.Counts(); c.Wanted != 1 || c.Programmed != 1 || c.Failed != 0 || c.LastSync.Peers != 1 {
		t.Errorf("Counts = %+v, want one peer wanted and programmed", c)
	}
}
