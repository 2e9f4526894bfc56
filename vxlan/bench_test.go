//go:build linux

package vxlan

import (
	"fmt"
	"github.com/weftnet/weft/lease"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/weftnet/weft/internal/netnstest"
)

// benchPeers returns n distinct peers: 10.a.b.0/24 subnets, public IPs in
// 172.31/16, derived MACs.
func benchPeers(n int) []Peer {
	peers := make([]Peer, n)
	for i := range peers {
		j := i + 1
		peers[i] = Peer{
			Subnet:   netip.PrefixFrom(netip.AddrFrom4([4]byte{10, byte(j >> 8), byte(j), 0}), 24),
			PublicIP: netip.AddrFrom4([4]byte{172, 31, byte(j >> 8), byte(j)}),
			VtepMAC:  DeriveMAC(fmt.Sprint("peer-", j), 1),
		}
	}
	return peers
}

// benchHost is one namespace with a VTEP that can be reset to empty.
type benchHost struct {
	b   *testing.B
	h   *netnstest.Host
	cfg DeviceConfig
	dev Device
}

func newBenchHost(b *testing.B) *benchHost {
	h := netnstest.NewSegment(b, 1).Hosts[0]
	eth, err := h.Netlink().LinkByName(netnstest.Underlay)
	if err != nil {
		b.Fatal(err)
	}
	bh := &benchHost{b: b, h: h, cfg: DeviceConfig{VNI: 1, Local: h.Addr.Addr(), Underlay: eth.Attrs().Index, MAC: DeriveMAC(h.Name, 1)}}
	bh.reset()
	return bh
}

// reset deletes and re-creates the device, which takes every route,
// nexthop, neighbour and FDB entry on it along.
func (bh *benchHost) reset() {
	if link, err := bh.h.Netlink().LinkByName("flannel.1"); err == nil {
		bh.h.Netlink().LinkDel(link)
	}
	dev, _, err := EnsureDevice(bh.h.Netlink(), bh.cfg)
	if err != nil {
		bh.b.Fatal(err)
	}
	if _, err := EnsureAddress(bh.h.Netlink(), dev.Index, netip.MustParsePrefix("10.0.0.0/24")); err != nil {
		bh.b.Fatal(err)
	}
	bh.dev = dev
}

func (bh *benchHost) reconciler() *Reconciler {
	rec, err := NewReconciler(ReconcilerConfig{Namespace: bh.h.Handle, Device: bh.dev.Index, Underlay: bh.cfg.Underlay, Logger: quietLog})
	if err != nil {
		bh.b.Fatal(err)
	}
	return rec
}

// ipBatchFiles writes the same objects the reconciler programs as iproute2
// batch files: nexthops and routes for ip, FDB entries for bridge.
func ipBatchFiles(b *testing.B, peers []Peer) (ipFile, bridgeFile string) {
	dir := b.TempDir()
	var ipCmds, brCmds strings.Builder
	for i, p := range peers {
		fmt.Fprintf(&ipCmds, "nexthop add id %d via %s dev flannel.1 onlink proto 157\n", i+1, p.gateway())
		fmt.Fprintf(&ipCmds, "route add %s nhid %d proto 157\n", p.Subnet, i+1)
		fmt.Fprintf(&ipCmds, "neigh add %s lladdr %s dev flannel.1 nud permanent\n", p.gateway(), p.VtepMAC)
		fmt.Fprintf(&brCmds, "fdb add %s dev flannel.1 dst %s self permanent\n", p.VtepMAC, p.PublicIP)
	}
	ipFile, bridgeFile = filepath.Join(dir, "ip.batch"), filepath.Join(dir, "bridge.batch")
	if err := os.WriteFile(ipFile, []byte(ipCmds.String()), 0o644); err != nil {
		b.Fatal(err)
	}
	if err := os.WriteFile(bridgeFile, []byte(brCmds.String()), 0o644); err != nil {
		b.Fatal(err)
	}
	return ipFile, bridgeFile
}

// BenchmarkProgram programs N peers onto an empty device: weft's Sync, and
// iproute2's ip -batch plus bridge -batch applying the same objects, in the
// same namespace, as the yardstick.
func BenchmarkProgram(b *testing.B) {
	netnstest.RequirePrivileged(b)
	for _, n := range []int{1000, 5000, 20000} {
		peers := benchPeers(n)
		b.Run(fmt.Sprintf("peers=%d/weft", n), func(b *testing.B) {
			bh := newBenchHost(b)
			for b.Loop() {
				b.StopTimer()
				bh.reset()
				rec := bh.reconciler()
				if err := rec.SetPeers(peers); err != nil {
					b.Fatal(err)
				}
				b.StartTimer()
				res, err := rec.Sync()
				b.StopTimer()
				if err != nil || res.Writes != 4*n {
					b.Fatalf("Sync: %+v, %v", res, err)
				}
				rec.Close()
				b.StartTimer()
			}
		})
		b.Run(fmt.Sprintf("peers=%d/ip-batch", n), func(b *testing.B) {
			if _, err := exec.LookPath("ip"); err != nil {
				b.Skip("iproute2 is not installed")
			}
			bh := newBenchHost(b)
			ipFile, brFile := ipBatchFiles(b, peers)
			for b.Loop() {
				b.StopTimer()
				bh.reset()
				b.StartTimer()
				if out, err := exec.Command("ip", "-n", bh.h.Name, "-batch", ipFile).CombinedOutput(); err != nil {
					b.Fatalf("ip -batch: %v\n%s", err, out)
				}
				if out, err := exec.Command("bridge", "-n", bh.h.Name, "-batch", brFile).CombinedOutput(); err != nil {
					b.Fatalf("bridge -batch: %v\n%s", err, out)
				}
			}
		})
	}
}

// BenchmarkResyncUnchanged lists and diffs 5,000 programmed peers with
// nothing to change: the cost of a periodic resync.
func BenchmarkResyncUnchanged(b *testing.B) {
	netnstest.RequirePrivileged(b)
	bh := newBenchHost(b)
	rec := bh.reconciler()
	defer rec.Close()
	if err := rec.SetPeers(benchPeers(5000)); err != nil {
		b.Fatal(err)
	}
	if _, err := rec.Sync(); err != nil {
		b.Fatal(err)
	}
	for b.Loop() {
		res, err := rec.Sync()
		if err != nil || res.Writes != 0 {
			b.Fatalf("resync: %+v, %v", res, err)
		}
	}
}

// BenchmarkOnePeerChange changes one peer's VTEP MAC with 5,000 peers
// programmed: the event-to-kernel cost of SetPeer.
func BenchmarkOnePeerChange(b *testing.B) {
	netnstest.RequirePrivileged(b)
	bh := newBenchHost(b)
	rec := bh.reconciler()
	defer rec.Close()
	peers := benchPeers(5000)
	if err := rec.SetPeers(peers); err != nil {
		b.Fatal(err)
	}
	if _, err := rec.Sync(); err != nil {
		b.Fatal(err)
	}
	p := peers[2500]
	macs := [2]lease.MAC{DeriveMAC("x", 1), p.VtepMAC}
	i := 0
	for b.Loop() {
		p.VtepMAC = macs[i%2]
		i++
		if err := rec.SetPeer(p); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkRemove removes every one of N programmed peers at once: by one
// Sync of the empty set (what a Network does with a mass removal), and by
// RemovePeer for each (what it does with a few). Both must cost O(N): the
// kernel flushes its whole FIB whenever a nexthop that a route still uses
// is deleted, so each route goes before its nexthop.
func BenchmarkRemove(b *testing.B) {
	netnstest.RequirePrivileged(b)
	for _, n := range []int{5000, 20000} {
		peers := benchPeers(n)
		for _, how := range []string{"sync", "each"} {
			b.Run(fmt.Sprintf("peers=%d/%s", n, how), func(b *testing.B) {
				bh := newBenchHost(b)
				for b.Loop() {
					b.StopTimer()
					bh.reset()
					rec := bh.reconciler()
					if err := rec.SetPeers(peers); err != nil {
						b.Fatal(err)
					}
					if _, err := rec.Sync(); err != nil {
						b.Fatal(err)
					}
					b.StartTimer()
					if how == "sync" {
						if err := rec.SetPeers(nil); err != nil {
							b.Fatal(err)
						}
						if _, err := rec.Sync(); err != nil {
							b.Fatal(err)
						}
					} else {
						for _, p := range peers {
							if err := rec.RemovePeer(p.Subnet); err != nil {
								b.Fatal(err)
							}
						}
					}
					b.StopTimer()
					if st := rec.Status(); len(st.Peers) != 0 {
						b.Fatalf("%d peers left", len(st.Peers))
					}
					rec.Close()
					b.StartTimer()
				}
			})
		}
	}
}
