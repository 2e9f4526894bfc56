package admit

import (
	"encoding/json"
	"fmt"
	"net/netip"
	"runtime"
	"testing"

	"github.com/weftnet/weft/lease"
)

// benchLeases returns n distinct honest leases in 10/8, each with its own
// MAC and address, as flanneld's benchmarks write them.
func benchLeases(n int) []lease.Event {
	evs := make([]lease.Event, n)
	for i := range evs {
		j := i + 1
		evs[i] = lease.Event{Type: lease.Added, Lease: lease.Lease{
			Key:       lease.Key{IPv4: netip.PrefixFrom(netip.AddrFrom4([4]byte{10, byte(j >> 8), byte(j), 0}), 24)},
			Seniority: int64(j),
			Attrs: lease.Attrs{
				PublicIP: netip.AddrFrom4([4]byte{172, 31, byte(j >> 8), byte(j)}), BackendType: "vxlan", Owner: fmt.Sprint("peer-", j),
				BackendData: json.RawMessage(fmt.Sprintf(`{"VNI":1,"VtepMAC":"0e:00:00:%02x:%02x:%02x"}`, j>>16, byte(j>>8), byte(j))),
			},
		}}
	}
	return evs
}

var benchFacts = Facts{Node: "me", Own: lease.Key{IPv4: netip.MustParsePrefix("11.0.0.0/24")}, Network: netip.MustParsePrefix("10.0.0.0/7"), VNI: 1}

// BenchmarkSnapshot judges a snapshot of N leases from scratch, and
// reports the table's live heap per lease.
func BenchmarkSnapshot(b *testing.B) {
	for _, n := range []int{5000, 20000} {
		b.Run(fmt.Sprintf("leases=%d", n), func(b *testing.B) {
			evs := benchLeases(n)
			var live float64
			for b.Loop() {
				var before, after runtime.MemStats
				runtime.GC()
				runtime.ReadMemStats(&before)
				tab := NewTable(benchFacts)
				tab.Apply(lease.Batch{Snapshot: true, Events: evs})
				runtime.GC()
				runtime.ReadMemStats(&after)
				live = float64(after.HeapAlloc-before.HeapAlloc) / float64(n)
				runtime.KeepAlive(tab)
			}
			b.ReportMetric(live, "live-B/lease")
		})
	}
}

// BenchmarkRemoveAll removes every one of N leases in one batch: the cost
// must grow as N, not N².
func BenchmarkRemoveAll(b *testing.B) {
	for _, n := range []int{5000, 20000} {
		b.Run(fmt.Sprintf("leases=%d", n), func(b *testing.B) {
			evs := benchLeases(n)
			gone := make([]lease.Event, n)
			for i, e := range evs {
				gone[i] = lease.Event{Type: lease.Removed, Lease: e.Lease}
			}
			for b.Loop() {
				b.StopTimer()
				tab := NewTable(benchFacts)
				tab.Apply(lease.Batch{Snapshot: true, Events: evs})
				b.StartTimer()
				if d := tab.Apply(lease.Batch{Events: gone}); len(d.Changes) != n {
					b.Fatalf("%d changes", len(d.Changes))
				}
			}
		})
	}
}

// BenchmarkOneEvent adds and removes one lease beside N others.
func BenchmarkOneEvent(b *testing.B) {
	evs := benchLeases(20001)
	tab := NewTable(benchFacts)
	tab.Apply(lease.Batch{Snapshot: true, Events: evs[:20000]})
	add := lease.Batch{Events: []lease.Event{evs[20000]}}
	del := lease.Batch{Events: []lease.Event{{Type: lease.Removed, Lease: evs[20000].Lease}}}
	for b.Loop() {
		tab.Apply(add)
		tab.Apply(del)
	}
}

// sharedLeases returns n leases, oldest first, that all share one subnet
// (dual-stack keys with one IPv4 half), one VTEP MAC or one public IP: what
// a hostile writer can make.
func sharedLeases(n int, mode string) []lease.Event {
	evs := benchLeases(n)
	for i := range evs {
		l := &evs[i].Lease
		switch mode {
		case "subnet":
			l.Key = lease.Key{IPv4: netip.MustParsePrefix("10.0.1.0/24"), IPv6: netip.PrefixFrom(netip.AddrFrom16([16]byte{0xfd, 14: byte(i >> 8), 15: byte(i)}), 128)}
		case "mac":
			l.Attrs.BackendData = json.RawMessage(`{"VNI":1,"VtepMAC":"0e:00:00:00:00:01"}`)
		case "ip":
			l.Attrs.PublicIP = netip.MustParseAddr("172.31.0.1")
		}
	}
	return evs
}

// BenchmarkSharedIdentity judges N leases that share one subnet, MAC or
// address (snapshot), then removes and restores the one admitted (flap):
// both must grow as N log N.
func BenchmarkSharedIdentity(b *testing.B) {
	for _, mode := range []string{"subnet", "mac", "ip"} {
		for _, n := range []int{4000, 16000} {
			evs := sharedLeases(n, mode)
			b.Run(fmt.Sprintf("%s/leases=%d/snapshot", mode, n), func(b *testing.B) {
				for b.Loop() {
					NewTable(benchFacts).Apply(lease.Batch{Snapshot: true, Events: evs})
				}
			})
			b.Run(fmt.Sprintf("%s/leases=%d/flap", mode, n), func(b *testing.B) {
				tab := NewTable(benchFacts)
				tab.Apply(lease.Batch{Snapshot: true, Events: evs})
				del := lease.Batch{Events: []lease.Event{{Type: lease.Removed, Lease: evs[0].Lease}}}
				add := lease.Batch{Events: []lease.Event{evs[0]}}
				for b.Loop() {
					tab.Apply(del)
					tab.Apply(add)
				}
			})
		}
	}
}

// BenchmarkAdversarial measures what a hostile writer's keys cost, per
// event, beside N honest leases (each must grow as log N, not N):
//   - wide: a key over the whole 10/8 run of admitted peers, rejected by
//     the oldest peer, which sits at the far end of the run, removed and
//     written again;
//   - one-node: one more lease for a node that holds N leases with one MAC
//     and address, removed and written again;
//   - shared-mac: one of N nodes' leases that all claim one MAC, removed
//     and written again.
func BenchmarkAdversarial(b *testing.B) {
	for _, n := range []int{5000, 20000} {
		b.Run(fmt.Sprintf("wide/leases=%d", n), func(b *testing.B) {
			evs := benchLeases(n)
			evs[0].Lease.Key.IPv4 = netip.MustParsePrefix("10.255.255.0/24")
			for i := 1; i < n; i++ {
				evs[i].Lease.Seniority = int64(i + 10)
			}
			wide := lease.Event{Type: lease.Added, Lease: lease.Lease{Key: lease.Key{IPv4: netip.MustParsePrefix("10.0.0.0/8")}, Seniority: 5,
				Attrs: lease.Attrs{PublicIP: netip.MustParseAddr("172.30.9.9"), BackendType: "vxlan", Owner: "w",
					BackendData: json.RawMessage(`{"VNI":1,"VtepMAC":"0e:99:00:00:00:01"}`)}}}
			flap(b, evs, wide)
		})
		b.Run(fmt.Sprintf("one-node/leases=%d", n), func(b *testing.B) {
			evs := benchLeases(n + 1)
			for i := range evs {
				evs[i].Lease.Attrs.PublicIP = netip.MustParseAddr("172.31.0.9")
				evs[i].Lease.Attrs.Owner = "x"
				evs[i].Lease.Attrs.BackendData = json.RawMessage(`{"VNI":1,"VtepMAC":"0e:00:00:00:00:09"}`)
			}
			flap(b, evs[:n], evs[n])
		})
		b.Run(fmt.Sprintf("shared-mac/leases=%d", n), func(b *testing.B) {
			evs := sharedLeases(n+1, "mac")
			flap(b, evs[:n], evs[n/2])
		})
	}
}

// flap judges a snapshot of evs, then removes and writes again e.
func flap(b *testing.B, evs []lease.Event, e lease.Event) {
	tab := NewTable(benchFacts)
	tab.Apply(lease.Batch{Snapshot: true, Events: evs})
	tab.Apply(lease.Batch{Events: []lease.Event{e}})
	del := lease.Batch{Events: []lease.Event{{Type: lease.Removed, Lease: e.Lease}}}
	add := lease.Batch{Events: []lease.Event{e}}
	for b.Loop() {
		tab.Apply(del)
		tab.Apply(add)
	}
}
