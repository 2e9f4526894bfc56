package etcd

import (
	"testing"
	"time"

	"github.com/weftnet/weft/lease"
)

// TestWatchReusesAcquireListing: the first snapshot after Acquire is
// Acquire's own listing, not a second one (its revision is the listing's,
// from before a lease written in between), and the watch from just after
// it brings what was written since, Acquire's own lease included: nothing
// is lost by listing once.
func TestWatchReusesAcquireListing(t *testing.T) {
	t.Parallel()
	e := newEnv(t, testConfig)
	lb := e.putLease(mustKey(t, "10.244.2.0-24"), 2, "node-b")
	m := e.manager("node-a")
	la := mustAcquire(t, m, 1)
	between := e.putLease(mustKey(t, "10.244.3.0-24"), 3, "node-c")
	rev := e.get(subnetPath(between.Key)).ModRevision

	w := watchLeases(t, m)
	snap := w.Snapshot(t)
	if snap.Revision >= rev-1 {
		t.Errorf("snapshot at revision %d, after the lease written at %d: WatchLeases listed again", snap.Revision+1, rev)
	}
	got := map[lease.Key]bool{}
	for _, ev := range snap.Events {
		got[ev.Lease.Key] = true
	}
	// Acquire listed before writing its own lease, which the watch
	// brings with the one written after.
	if !got[lb.Key] || got[between.Key] {
		t.Errorf("snapshot holds %v; want Acquire's listing: node-b's lease, not node-c's", got)
	}
	w.WaitLeases(t, "the leases written after the listing", func(ls map[lease.Key]lease.Attrs) bool {
		_, own := ls[la.Key]
		_, later := ls[between.Key]
		return own && later && len(ls) == 3
	})

	// Later than listingReuse: a listing of its own (in which the lease
	// Acquire wrote, not kept, may have expired).
	time.Sleep(listingReuse + 100*time.Millisecond)
	w2 := watchLeases(t, m)
	snap2 := w2.Snapshot(t)
	has := false
	for _, ev := range snap2.Events {
		has = has || ev.Lease.Key == between.Key
	}
	if snap2.Revision < rev-1 || !has {
		t.Errorf("a later snapshot at revision %d (holding node-c's: %v); want a listing of its own", snap2.Revision+1, has)
	}
}
