package etcd

import (
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"

	"go.etcd.io/etcd/api/v3/mvccpb"

	"github.com/weftnet/weft/lease"
)

// TestStartListsOnce: a starting node's OwnLease, Acquire and first
// WatchLeases snapshot read one listing, OwnLease's, not three: the
// snapshot's revision is from before a lease written between OwnLease and
// Acquire, and the watch from just after it brings what was written
// since, Acquire's own lease included: nothing is lost by listing once.
func TestStartListsOnce(t *testing.T) {
	t.Parallel()
	e := newEnv(t, testConfig)
	lb := e.putLease(mustKey(t, "10.244.2.0-24"), 2, "node-b")
	m := e.manager("node-a")
	if _, found, err := m.OwnLease(ctxFor(t, 10*time.Second), lease.AcquireRequest{Attrs: attrsFor(1)}); err != nil || found {
		t.Fatalf("OwnLease: found %v, %v", found, err)
	}
	between := e.putLease(mustKey(t, "10.244.3.0-24"), 3, "node-c")
	rev := e.get(subnetPath(between.Key)).ModRevision
	la := mustAcquire(t, m, 1)
	if la.Key == between.Key {
		t.Fatalf("Acquire took node-c's subnet %v", la.Key)
	}

	w := watchLeases(t, m)
	snap := w.Snapshot(t)
	if snap.Revision >= rev {
		t.Errorf("snapshot at revision %d, after the lease written at %d: WatchLeases listed again", snap.Revision, rev)
	}
	got := map[lease.Key]bool{}
	for _, ev := range snap.Events {
		got[ev.Lease.Key] = true
	}
	// The listing is from before Acquire wrote its own lease and
	// node-c wrote its: the watch brings both.
	if !got[lb.Key] || got[between.Key] {
		t.Errorf("snapshot holds %v; want OwnLease's listing: node-b's lease, not node-c's", got)
	}
	w.WaitLeases(t, "the leases written after the listing", func(ls map[lease.Key]lease.Attrs) bool {
		_, own := ls[la.Key]
		_, later := ls[between.Key]
		return own && later && len(ls) == 3
	})

	// A second snapshot lists afresh: the listing served one of each.
	w2 := watchLeases(t, m)
	snap2 := w2.Snapshot(t)
	has := false
	for _, ev := range snap2.Events {
		has = has || ev.Lease.Key == between.Key
	}
	if snap2.Revision < rev || !has {
		t.Errorf("a later snapshot at revision %d (holding node-c's: %v); want a listing of its own", snap2.Revision, has)
	}
}

// TestRecentListing: a kept listing serves one reader, the next in the
// chain, only in the store's history it was made in, and only while it
// is recent: for Acquire, listingReuse; for the first snapshot, longer.
func TestRecentListing(t *testing.T) {
	epoch, later := make(chan struct{}), make(chan struct{})
	kvs := []*mvccpb.KeyValue{{Key: []byte(testPrefix + "/subnets/10.244.1.0-24")}, {Key: []byte(testPrefix + "/config")}}
	kept := func(by lister, age time.Duration) keptListing {
		return keptListing{kvs: kvs, rev: 7, epoch: epoch, at: time.Now().Add(-age), by: by}
	}
	var r recentListing
	for _, tc := range []struct {
		name  string
		kept  keptListing
		epoch <-chan struct{}
		from  lister
		want  bool
	}{
		{"OwnLease's, recent, same history", kept(byOwnLease, 0), epoch, byOwnLease, true},
		{"OwnLease's, the store's history restarted since", kept(byOwnLease, 0), later, byOwnLease, false},
		{"OwnLease's, just under listingReuse", kept(byOwnLease, listingReuse-time.Second), epoch, byOwnLease, true},
		{"OwnLease's, older than listingReuse", kept(byOwnLease, listingReuse), epoch, byOwnLease, false},
		{"Acquire's, older than listingReuse", kept(byAcquire, listingReuse+time.Second), epoch, byAcquire, true},
		{"Acquire's, older than snapshotReuse", kept(byAcquire, snapshotReuse), epoch, byAcquire, false},
		{"Acquire's, the store's history restarted since", kept(byAcquire, 0), later, byAcquire, false},
		{"Acquire's, asked for OwnLease's", kept(byAcquire, 0), epoch, byOwnLease, false},
		{"OwnLease's, asked for Acquire's", kept(byOwnLease, 0), epoch, byAcquire, false},
		{"asked for nobody's", kept(byNobody, 0), epoch, byNobody, false},
		{"nothing kept", keptListing{}, epoch, byOwnLease, false},
	} {
		r.keep(tc.kept)
		l, ok := r.take(tc.epoch, tc.from)
		if ok != tc.want || ok && (l.rev != 7 || len(l.under(testPrefix+"/subnets/")) != 1) {
			t.Errorf("%s: took %v (%+v), want %v", tc.name, ok, l, tc.want)
		}
		if _, again := r.take(tc.epoch, tc.from); again {
			t.Errorf("%s: served a second reader", tc.name)
		}
	}
}

// TestAcquireRelistsWhenTheListingIsNotTheStore: a listing that shows a
// subnet free which the store has held since before it (a listing from
// before a wipe that this Manager has not noticed yet) makes the create
// lose with nothing written since. Acquire then lists afresh and takes
// another subnet, rather than retrying the same write forever.
func TestAcquireRelistsWhenTheListingIsNotTheStore(t *testing.T) {
	t.Parallel()
	e := newEnv(t, testConfig)
	held := e.putLease(mustKey(t, "10.244.5.0-24"), 5, "node-b")
	m := e.manager("node-a")
	config := e.get(testPrefix + "/config")
	kv := &mvccpb.KeyValue{Key: []byte(testPrefix + "/config"), Value: []byte(config.Value), ModRevision: config.ModRevision, CreateRevision: config.CreateRevision}
	m.recent.keep(keptListing{kvs: []*mvccpb.KeyValue{kv}, rev: config.ModRevision + 1000,
		epoch: m.history.current(), at: time.Now(), by: byOwnLease})
	l, err := m.Acquire(ctxFor(t, 10*time.Second), lease.AcquireRequest{Attrs: attrsFor(1), Previous: held.Key})
	if err != nil {
		t.Fatal(err)
	}
	if l.Key == held.Key {
		t.Fatalf("node-a took node-b's %v", l.Key)
	}
}

// TestRecentListingKeptAgain: a listing Acquire took from OwnLease and
// kept for the first snapshot serves it for snapshotReuse, not until
// OwnLease's keeping of it would have ended.
func TestRecentListingKeptAgain(t *testing.T) {
	epoch := make(chan struct{})
	kvs := []*mvccpb.KeyValue{{Key: []byte(testPrefix + "/subnets/10.244.1.0-24")}}
	var r recentListing
	// OwnLease's, made so long ago that its keeping ends in 100 ms.
	r.keep(keptListing{kvs: kvs, rev: 7, epoch: epoch, at: time.Now().Add(-listingReuse + 100*time.Millisecond), by: byOwnLease})
	l, ok := r.take(epoch, byOwnLease)
	if !ok {
		t.Fatal("Acquire could not take OwnLease's listing")
	}
	l.by = byAcquire
	r.keep(l)
	time.Sleep(300 * time.Millisecond)
	if _, ok := r.take(epoch, byAcquire); !ok {
		t.Error("the first snapshot could not take Acquire's listing: OwnLease's timer dropped it")
	}
}

// TestKeptListingHoldsOnlyLeaseKeys: a listing kept for the next reader
// holds the config and the subnet keys, not the other keys a writer put
// under the prefix (issue 29 item 6: a starting node held 100,000 such
// keys, values and all, for up to a minute), and says once how many it
// skipped; a subnet key whose value does not parse is kept, as Acquire
// must not take its subnet.
func TestKeptListingHoldsOnlyLeaseKeys(t *testing.T) {
	t.Parallel()
	e := newEnv(t, testConfig)
	lb := e.putLease(mustKey(t, "10.244.2.0-24"), 2, "node-b")
	bad := mustKey(t, "10.244.3.0-24")
	e.put(subnetPath(bad), `{"PublicIP":`)
	for i := range 3 {
		e.put(fmt.Sprintf("%s/subnets/not-a-subnet-%d", testPrefix, i), "x")
	}
	e.put(testPrefix+"/elsewhere", "y")
	m := e.manager("node-a")
	l, err := m.listAll(ctxFor(t, 10*time.Second), byNobody, byOwnLease, nil)
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, kv := range l.kvs {
		got = append(got, string(kv.Key))
	}
	want := []string{testPrefix + "/config", subnetPath(lb.Key), subnetPath(bad)}
	slices.Sort(want)
	if !slices.Equal(got, want) {
		t.Errorf("the kept listing holds %q; want %q", got, want)
	}
	if logs := e.logs.String(); strings.Count(logs, "neither its config nor subnet keys") != 1 || !strings.Contains(logs, "count=4") {
		t.Errorf("want one line counting the 4 keys skipped; logs:\n%s", logs)
	}
}
