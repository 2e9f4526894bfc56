package admit

import (
	"fmt"
	"runtime"
	"slices"
	"testing"

	"github.com/weftnet/weft/lease"
)

// rejectedTable returns a table that rejects n leases, each news, by the
// rule of its subnet outside the Network, and n/2 by a conflict with an
// older lease (whose detail names the other).
func rejectedTable(n int) *Table {
	var events []lease.Event
	for i := range n {
		l := mkLease(fmt.Sprintf("10.9.%d.%d-32", i/256, i%256), "172.30.0.9", fmt.Sprintf("0e:00:00:00:%02x:%02x", i/256, i%256), int64(i+1), fmt.Sprint("n", i))
		events = append(events, lease.Event{Type: lease.Added, Lease: l})
	}
	tab := NewTable(baseFacts)
	tab.Apply(lease.Batch{Snapshot: true, Events: events})
	return tab
}

// maxPageBytesPerRejected bounds what a page of AllRejected allocates for
// each rejected lease of its family: the candidates' order, a pointer
// each. Rejected, every verdict with its detail, measured about 330 B.
const maxPageBytesPerRejected = 24

// TestRejectedPage: a page of a family's rejected verdicts is the start
// of Rejected, details and all, and costs a pointer a rejected lease, not
// a verdict and its detail (issue 29 item 6: the status view built
// every verdict on each call, 16 MB at 50,000 rejected). RejectedCount
// counts them without building any.
func TestRejectedPage(t *testing.T) {
	const n, page = 5000, 10
	tab := rejectedTable(n)
	all := tab.Rejected()
	if len(all) != n || tab.RejectedCount(false) != n || tab.RejectedCount(true) != 0 {
		t.Fatalf("Rejected lists %d, RejectedCount %d (IPv6 %d); want %d", len(all), tab.RejectedCount(false), tab.RejectedCount(true), n)
	}
	var got []Verdict
	for v := range tab.AllRejected(false) {
		got = append(got, v)
		if len(got) == page {
			break
		}
	}
	if !slices.Equal(got, all[:page]) {
		t.Errorf("a page of AllRejected is %+v; want Rejected's first %d, %+v", got, page, all[:page])
	}
	if all[0].Detail == "" {
		t.Errorf("a rejected verdict without its detail: %+v", all[0])
	}

	measure := func(f func()) int64 {
		var before, after runtime.MemStats
		runtime.GC()
		runtime.ReadMemStats(&before)
		f()
		runtime.ReadMemStats(&after)
		return int64(after.TotalAlloc-before.TotalAlloc) / n
	}
	whole := measure(func() { all = tab.Rejected() })
	paged := measure(func() {
		got = got[:0]
		for v := range tab.AllRejected(false) {
			got = append(got, v)
			if len(got) == page {
				break
			}
		}
	})
	t.Logf("Rejected allocates %d B a rejected lease, a page of %d %d B", whole, page, paged)
	if !raceEnabled && paged > maxPageBytesPerRejected {
		t.Errorf("a page of %d rejected verdicts allocates %d B for each of the %d rejected; the bound is %d", page, paged, n, maxPageBytesPerRejected)
	}
}

// BenchmarkRejected reports what a status page of rejected leases costs at
// 50,000 rejected: all of them (Rejected), or a page of 100 (AllRejected).
func BenchmarkRejected(b *testing.B) {
	tab := rejectedTable(50000)
	b.Run("all", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			_ = tab.Rejected()
		}
	})
	b.Run("page=100", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			n := 0
			for range tab.AllRejected(false) {
				if n++; n == 100 {
					break
				}
			}
		}
	})
}
