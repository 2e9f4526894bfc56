package admit

import (
	"fmt"
	"runtime"
	"testing"

	"github.com/weftnet/weft/lease"
)

// maxLiveBytesPerLease bounds what the table keeps per admitted lease. It
// measured 384 B, then 279-287 B since the leaner records (go1.26): the
// bound is a tenth above, so that a record that grows is seen. At 20,000
// peers each 100 B is 1.9 MiB of an agent's resident memory, on every
// node.
const maxLiveBytesPerLease = 310

// TestLiveBytesPerLease: the table's live heap, after a snapshot of 5,000
// honest leases, stays within maxLiveBytesPerLease a lease.
func TestLiveBytesPerLease(t *testing.T) {
	const n = 5000
	evs := benchLeases(n)
	var before, after runtime.MemStats
	runtime.GC()
	runtime.ReadMemStats(&before)
	tab := NewTable(benchFacts)
	tab.Apply(lease.Batch{Snapshot: true, Events: evs})
	runtime.GC()
	runtime.ReadMemStats(&after)
	if got := tab.Len(); got != n {
		t.Fatalf("the table holds %d candidates, want %d", got, n)
	}
	per := (int64(after.HeapAlloc) - int64(before.HeapAlloc)) / n
	runtime.KeepAlive(tab)
	runtime.KeepAlive(evs)
	t.Logf("%d live bytes per lease", per)
	if per > maxLiveBytesPerLease {
		t.Errorf("the table keeps %d bytes per lease, more than %d: see BenchmarkSnapshot and what the table's records hold", per, maxLiveBytesPerLease)
	}
}

// TestDeltaListsAtMostMaxNews: a snapshot with more news than MaxNews (a
// writer's many bad leases) lists MaxNews of them and counts the rest;
// Rejected still lists every one.
func TestDeltaListsAtMostMaxNews(t *testing.T) {
	var events []lease.Event
	for i := range MaxNews + 50 {
		// Outside the Network: rejected, each news.
		l := mkLease(fmt.Sprintf("10.9.%d.%d-32", i/256, i%256), "172.30.0.9", fmt.Sprintf("0e:00:00:00:%02x:%02x", i/256, i%256), int64(i+1), fmt.Sprint("n", i))
		events = append(events, lease.Event{Type: lease.Added, Lease: l})
	}
	tab := NewTable(baseFacts)
	d := tab.Apply(lease.Batch{Snapshot: true, Events: events})
	if len(d.Verdicts) != MaxNews || d.Unlisted != 50 {
		t.Errorf("the delta lists %d verdicts and counts %d more, want %d and 50", len(d.Verdicts), d.Unlisted, MaxNews)
	}
	if n := len(tab.Rejected()); n != MaxNews+50 {
		t.Errorf("Rejected lists %d, want %d", n, MaxNews+50)
	}
}
