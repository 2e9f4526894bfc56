//go:build linux

package wireguard

import (
	"encoding/json"
	"net/netip"
	"testing"
	"time"

	"github.com/weftnet/weft/internal/netnstest"
	"github.com/weftnet/weft/lease"
)

// Targets of the benchmarks: peer changes reach the device in well under
// a second (design.md), and a node programs a 5,000-node cluster from
// empty in a few seconds.
const (
	fromEmptyTarget = 3 * time.Second
	oneChangeTarget = 250 * time.Millisecond
)

// benchPeers returns n WireGuard peers: 10.a.b.0/24 subnets, public
// addresses in 172.31/16, a key each.
func benchPeers(b *testing.B, n int) []lease.Lease {
	out := make([]lease.Lease, n)
	for i := range out {
		j := i + 1
		k, err := GenerateKey()
		if err != nil {
			b.Fatal(err)
		}
		data, _ := BackendData{PublicKey: k.PublicKey(), Port: 51820}.MarshalJSON()
		out[i] = lease.Lease{
			Key: lease.Key{IPv4: netip.PrefixFrom(netip.AddrFrom4([4]byte{10, byte(j >> 8), byte(j), 0}), 24)},
			Attrs: lease.Attrs{PublicIP: netip.AddrFrom4([4]byte{172, 31, byte(j >> 8), byte(j)}), BackendType: BackendType,
				BackendData: json.RawMessage(data)},
			Seniority: int64(j),
		}
	}
	return out
}

func benchDatapath(b *testing.B) *Datapath {
	h := netnstest.NewSegment(b, 1).Hosts[0]
	eth, err := h.Netlink().LinkByName(netnstest.Underlay)
	if err != nil {
		b.Fatal(err)
	}
	key, _ := GenerateKey()
	cfg, _ := ParseConfig(nil)
	own := lease.Lease{Key: lease.Key{IPv4: netip.MustParsePrefix("10.255.255.0/24")}}
	dp, err := NewDatapath(DatapathConfig{Namespace: h.Handle, Config: cfg, PrivateKey: key, Lease: own,
		Network: netip.MustParsePrefix("10.0.0.0/8"), Uplink: eth.Attrs().Index, Logger: quietLog, noGreet: true})
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(dp.Close)
	return dp
}

// reconcileAll sets the peers and reconciles as Run does after a change
// of desired peers (full: as after a notification of drift, or a resync).
func reconcileAll(b *testing.B, dp *Datapath, peers []lease.Lease, full bool) {
	dp.SetPeers(peers)
	if _, err := dp.reconcile(full); err != nil {
		b.Fatal(err)
	}
	if st := dp.Status(); !st.Synced || st.Failed != 0 || len(st.Devices[0].Peers) != len(peers) {
		b.Fatalf("synced %v, %d failed, %d peers: %s", st.Synced, st.Failed, len(st.Devices[0].Peers), st.Err)
	}
}

// BenchmarkProgram5000 programs 5,000 WireGuard peers on the user-space
// device from empty and reports the time.
func BenchmarkProgram5000(b *testing.B) {
	dp := benchDatapath(b)
	peers := benchPeers(b, 5000)
	var total time.Duration
	for b.Loop() {
		b.StopTimer()
		reconcileAll(b, dp, nil, true)
		b.StartTimer()
		start := time.Now()
		reconcileAll(b, dp, peers, false)
		total += time.Since(start)
	}
	per := total / time.Duration(b.N)
	b.ReportMetric(per.Seconds()*1000, "program-ms")
	if per > fromEmptyTarget {
		b.Fatalf("5,000 peers took %v from empty; the target is %v", per, fromEmptyTarget)
	}
}

// BenchmarkOnePeerChange moves one of 5,000 programmed peers to another
// endpoint and reports the time until the device has it, as Run's
// reconcile after a change of peers does it (work out every peer, write
// the one that changed), and the time of a full resync of the 5,000
// (which reads the device back whole).
func BenchmarkOnePeerChange(b *testing.B) {
	dp := benchDatapath(b)
	peers := benchPeers(b, 5000)
	reconcileAll(b, dp, peers, true)
	var total, resync time.Duration
	i := 0
	for b.Loop() {
		i++
		p := &peers[i%len(peers)]
		a := p.Attrs.PublicIP.As4()
		a[2] ^= 0x80
		p.Attrs.PublicIP = netip.AddrFrom4(a)
		start := time.Now()
		reconcileAll(b, dp, peers, false)
		total += time.Since(start)
		start = time.Now()
		reconcileAll(b, dp, peers, true)
		resync += time.Since(start)
	}
	per := total / time.Duration(b.N)
	b.ReportMetric(per.Seconds()*1000, "change-ms")
	// A resync of the 5,000 unchanged peers: reads the device back whole.
	b.ReportMetric(resync.Seconds()*1000/float64(b.N), "resync-ms")
	if per > oneChangeTarget {
		b.Fatalf("one peer's change took %v; the target is %v", per, oneChangeTarget)
	}
}
