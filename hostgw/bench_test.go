//go:build linux

package hostgw

import (
	"net/netip"
	"testing"
	"time"

	"github.com/weftnet/weft/internal/netnstest"
	"github.com/weftnet/weft/lease"
)

// Targets of the benchmarks: peer changes reach the kernel in well under
// a second (design.md), and a node programs a 5,000-node cluster from
// empty in a few seconds.
const (
	fromEmptyTarget = 3 * time.Second
	oneChangeTarget = 250 * time.Millisecond
)

// benchPeers returns n host-gw peers: 10.a.b.0/24 subnets, public
// addresses in 172.31/16, a network the host is connected to.
func benchPeers(n int) []lease.Lease {
	out := make([]lease.Lease, n)
	for i := range out {
		j := i + 1
		out[i] = lease.Lease{
			Key:       lease.Key{IPv4: netip.PrefixFrom(netip.AddrFrom4([4]byte{10, byte(j >> 8), byte(j), 0}), 24)},
			Attrs:     Attrs(netip.AddrFrom4([4]byte{172, 31, byte(j >> 8), byte(j)}), netip.Addr{}),
			Seniority: int64(j),
		}
	}
	return out
}

func benchDatapath(b *testing.B) *Datapath {
	h := netnstest.NewSegment(b, 1).Hosts[0]
	h.AddrAdd(b, netnstest.Underlay, netip.MustParsePrefix("172.31.255.254/16"))
	eth, err := h.Netlink().LinkByName(netnstest.Underlay)
	if err != nil {
		b.Fatal(err)
	}
	own := lease.Lease{Key: lease.Key{IPv4: netip.MustParsePrefix("10.255.255.0/24")}, Attrs: Attrs(h.Addr.Addr(), netip.Addr{})}
	dp, err := NewDatapath(DatapathConfig{Namespace: h.Handle, Lease: own, Uplink: eth.Attrs().Index, Logger: quietLog})
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(dp.Close)
	return dp
}

func reconcileAll(b *testing.B, dp *Datapath, peers []lease.Lease, failed int) {
	dp.SetPeers(peers)
	if err := dp.Reconcile(); err != nil {
		b.Fatal(err)
	}
	if st := dp.Status(); !st.Synced || st.Failed != failed {
		b.Fatalf("synced %v, %d failed: %s", st.Synced, st.Failed, st.Err)
	}
}

// BenchmarkProgram5000 programs 5,000 host-gw peers from empty (the
// datapath's routes removed between runs) and reports the time.
func BenchmarkProgram5000(b *testing.B) {
	dp := benchDatapath(b)
	peers := benchPeers(5000)
	var total time.Duration
	for b.Loop() {
		b.StopTimer()
		reconcileAll(b, dp, nil, 0)
		b.StartTimer()
		start := time.Now()
		reconcileAll(b, dp, peers, 0)
		total += time.Since(start)
	}
	per := total / time.Duration(b.N)
	b.ReportMetric(per.Seconds()*1000, "program-ms")
	if per > fromEmptyTarget {
		b.Fatalf("5,000 peers took %v from empty; the target is %v", per, fromEmptyTarget)
	}
}

// BenchmarkOnePeerChange moves one of 5,000 programmed peers to another
// public address and reports the time until the kernel has it: a whole
// level-based reconcile (list, compare, one write).
func BenchmarkOnePeerChange(b *testing.B) {
	dp := benchDatapath(b)
	peers := benchPeers(5000)
	reconcileAll(b, dp, peers, 0)
	var total time.Duration
	i := 0
	for b.Loop() {
		i++
		p := &peers[i%len(peers)]
		a := p.Attrs.PublicIP.As4()
		a[2] ^= 0x80
		p.Attrs.PublicIP = netip.AddrFrom4(a)
		start := time.Now()
		reconcileAll(b, dp, peers, 0)
		total += time.Since(start)
	}
	per := total / time.Duration(b.N)
	b.ReportMetric(per.Seconds()*1000, "change-ms")
	if per > oneChangeTarget {
		b.Fatalf("one peer's change took %v; the target is %v", per, oneChangeTarget)
	}
}
