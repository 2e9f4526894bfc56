package admit

import (
	"runtime"
	"testing"

	"github.com/weftnet/weft/lease"
)

// maxLiveBytesPerLease bounds what the table keeps per admitted lease. It
// measured 384 B, and 287 B since the leaner records (BenchmarkSnapshot,
// go1.26); at 20,000 peers each 100 B over the bound is 1.9 MiB of an
// agent's resident memory, on every node.
const maxLiveBytesPerLease = 384

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
