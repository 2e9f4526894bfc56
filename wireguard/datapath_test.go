//go:build linux

package wireguard

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"net/netip"
	"os/exec"
	"path/filepath"
	"runtime"
	"testing"
	"time"

	"github.com/vishvananda/netlink"

	"github.com/weftnet/weft/internal/netnstest"
	"github.com/weftnet/weft/internal/testutil"
	"github.com/weftnet/weft/lease"
)

var quietLog = slog.New(slog.NewTextHandler(io.Discard, nil))

var (
	network4 = netip.MustParsePrefix("10.244.0.0/16")
	network6 = netip.MustParsePrefix("fd00:244::/32")
)

// node is one simulated host running a WireGuard datapath.
type node struct {
	h          *netnstest.Host
	keyFile    string
	key        Key
	cfg        Config
	lease      lease.Lease
	pod4, pod6 netip.Addr
	uplink     int
	dp         *Datapath
	stop       func()
}

// newNodes makes n hosts on one segment, each with a "pod" (a bridge
// holding its subnet's first address, as a CNI bridge would), a key in its
// own state directory, and the lease it would publish.
func newNodes(t *testing.T, n int, cfg Config) (*netnstest.Segment, []*node) {
	seg := netnstest.NewSegment(t, n)
	var nodes []*node
	for _, h := range seg.Hosts {
		i := byte(h.Index)
		nd := &node{h: h, cfg: cfg, keyFile: filepath.Join(t.TempDir(), KeyFileName)}
		k, _, err := LoadOrCreateKey(nd.keyFile)
		if err != nil {
			t.Fatal(err)
		}
		nd.key = k
		key := lease.Key{
			IPv4: netip.PrefixFrom(netip.AddrFrom4([4]byte{10, 244, i, 0}), 24),
			IPv6: netip.PrefixFrom(netip.AddrFrom16([16]byte{0xfd, 0, 2, 0x44, 0, i}), 64),
		}
		attrs, err := cfg.Attrs(k.PublicKey(), h.Addr.Addr(), h.Addr6.Addr(), true, true)
		if err != nil {
			t.Fatal(err)
		}
		nd.lease = lease.Lease{Key: key, Attrs: attrs, Seniority: int64(i)}
		nd.pod4, nd.pod6 = key.IPv4.Addr().Next(), key.IPv6.Addr().Next()
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

// config is the datapath config nd runs with.
func (nd *node) config() DatapathConfig {
	return DatapathConfig{
		Namespace: nd.h.Handle, Config: nd.cfg, PrivateKey: nd.key, Lease: nd.lease,
		Network: network4, IPv6Network: network6, Uplink: nd.uplink,
		ResyncInterval: time.Hour, Logger: quietLog,
	}
}

// start runs a datapath on nd with the given peers, stopped by the test's
// cleanup if not before.
func (nd *node) start(t *testing.T, cfg DatapathConfig, peers []lease.Lease) {
	t.Helper()
	dp, err := NewDatapath(cfg)
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
		nd.stop = nil
	}
	t.Cleanup(func() {
		if nd.stop != nil {
			nd.stop()
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

// waitSynced waits until nd's datapath has applied its peers, with failed
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

// tunnelSettle bounds how long a new tunnel may take to carry traffic.
// Two nodes that start handshakes with each other at the same moment
// (their first packets cross) can each end up with a session the other
// does not use; WireGuard recovers once its rekey timeout (keepalive 10 s
// plus rekey 5 s) passes. The datapath's greeting avoids starting such
// crossings, but traffic can still start one on a loaded machine.
const tunnelSettle = 20 * time.Second

func ping(t *testing.T, ns *netnstest.Namespace, src, dst netip.Addr) {
	t.Helper()
	if err := ns.WaitPing(src, dst, tunnelSettle); err != nil {
		t.Fatal(err)
	}
}

// pingAll pings every pod from every other, over each family asked for.
func pingAll(t *testing.T, nodes []*node, v4, v6 bool) {
	t.Helper()
	for _, a := range nodes {
		for _, b := range nodes {
			if a == b {
				continue
			}
			for _, fam := range []struct {
				on       bool
				src, dst netip.Addr
			}{{v4, a.pod4, b.pod4}, {v6, a.pod6, b.pod6}} {
				if !fam.on {
					continue
				}
				if err := a.h.WaitPing(fam.src, fam.dst, tunnelSettle); err != nil {
					for _, n := range []*node{a, b} {
						n.dp.Reconcile()
						out, _ := exec.Command("sh", "-c", "ip -n "+n.h.Name+" route; ip -n "+n.h.Name+" -6 route; ip -n "+n.h.Name+" addr").CombinedOutput()
						t.Logf("%s: %+v\n%s", n.h.Name, n.dp.Status().Devices, out)
					}
					t.Fatal(err)
				}
			}
		}
	}
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

// TestThreeNodesEveryMode runs three nodes in each mode, dual-stack, and
// pings every pod from every other over both families: the devices are
// flannel's (flannel-wg, and flannel-wg-v6 in separate mode), addressed
// with the subnet's network address, MTU the uplink's minus 80, a route
// for each Network to its device, one peer per node with its subnets as
// AllowedIPs. This machine's kernel has no WireGuard, so the engine is
// user space, and Status says so.
func TestThreeNodesEveryMode(t *testing.T) {
	for _, mode := range []Mode{ModeSeparate, ModeAuto, ModeIPv4, ModeIPv6} {
		t.Run(string(mode), func(t *testing.T) {
			noLeaks(t)
			cfg, _ := ParseConfig(nil)
			cfg.Mode = mode
			_, nodes := newNodes(t, 3, cfg)
			for _, nd := range nodes {
				nd.start(t, nd.config(), leasesOf(nodes, nd))
			}
			for _, nd := range nodes {
				st := waitSynced(t, nd, 0)
				wantDevs := 1
				if mode == ModeSeparate {
					wantDevs = 2
				}
				if len(st.Devices) != wantDevs {
					t.Fatalf("%d devices, want %d: %+v", len(st.Devices), wantDevs, st.Devices)
				}
				for _, dv := range st.Devices {
					if dv.MTU != 1500-Overhead || len(dv.Peers) != 2 {
						t.Errorf("%s: MTU %d, %d peers; want 1420 and 2", dv.Name, dv.MTU, len(dv.Peers))
					}
					if dv.Engine == "" || (dv.Engine == EngineUserspace && dv.EngineReason == "") {
						t.Errorf("%s: engine %q, reason %q; want it said", dv.Name, dv.Engine, dv.EngineReason)
					}
					link, err := nd.h.Netlink().LinkByName(dv.Name)
					if err != nil {
						t.Fatal(err)
					}
					addrs, _ := nd.h.Netlink().AddrList(link, netlink.FAMILY_ALL)
					got := map[string]bool{}
					for _, a := range addrs {
						if !a.IP.IsLinkLocalUnicast() {
							got[a.IPNet.String()] = true
						}
					}
					if dv.Name == DeviceName && !got[nd.lease.Key.IPv4.Addr().String()+"/32"] {
						t.Errorf("%s addresses %v, want %s/32", dv.Name, got, nd.lease.Key.IPv4.Addr())
					}
				}
			}
			pingAll(t, nodes, true, true)
		})
	}
}

type netipPrefix = netip.Prefix

func mustPrefix(s string) netip.Prefix     { return netip.MustParsePrefix(s) }
func mustAddrPort(s string) netip.AddrPort { return netip.MustParseAddrPort(s) }
