package etcd

import (
	"context"
	"errors"
	"fmt"
	"net/netip"
	"slices"
	"testing"
	"time"

	"go.etcd.io/etcd/api/v3/mvccpb"
	"go.etcd.io/etcd/api/v3/v3rpc/rpctypes"
	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/weftnet/weft/lease"
)

// putLeases writes n leases, 10.<i/256>.<i%256>.0/24 for i < n, under
// 10.0.0.0/8, in transactions of 100.
func (e *env) putLeases(n int) []lease.Lease {
	e.t.Helper()
	var all []lease.Lease
	var ops []clientv3.Op
	for i := range n {
		k := lease.Key{IPv4: netip.PrefixFrom(netip.AddrFrom4([4]byte{10, byte(i >> 8), byte(i), 0}), 24)}
		a := attrsFor(i)
		raw, err := a.MarshalJSON()
		if err != nil {
			e.t.Fatal(err)
		}
		ops = append(ops, clientv3.OpPut(subnetPath(k), string(raw)))
		all = append(all, lease.Lease{Key: k, Attrs: a})
		if len(ops) == 100 || i == n-1 {
			if _, err := e.admin.Txn(ctxFor(e.t, 10*time.Second)).Then(ops...).Commit(); err != nil {
				e.t.Fatal(err)
			}
			ops = ops[:0]
		}
	}
	return all
}

// TestListPagedOneRevision: a listing of more keys than one page holds is
// complete and reads one revision, whatever is written between pages.
func TestListPagedOneRevision(t *testing.T) {
	t.Parallel()
	e := newEnv(t, `{"Network": "10.0.0.0/8", "Backend": {"Type": "vxlan"}}`)
	n := 2*listPage + 17
	want := e.putLeases(n)
	m := e.manager("lister")

	var keys []string
	pages, totals := 0, map[int64]bool{}
	rev, err := m.listPaged(ctxFor(t, 30*time.Second), m.subnetsPrefix(), func(kvs []*mvccpb.KeyValue, total int64) {
		pages++
		totals[total] = true
		for _, kv := range kvs {
			keys = append(keys, string(kv.Key))
		}
		// Between pages: a new key, a deleted one and a changed one. The
		// listing must not see any of them.
		if pages == 1 {
			e.put(testPrefix+"/subnets/10.255.255.0-24", "{}")
			if _, err := e.admin.Delete(ctxFor(t, 5*time.Second), subnetPath(want[n-1].Key)); err != nil {
				t.Fatal(err)
			}
		}
	})
	if err != nil {
		t.Fatal(err)
	}
	if pages != 3 {
		t.Errorf("%d pages, want 3", pages)
	}
	if len(totals) != 1 || !totals[int64(n)] {
		t.Errorf("totals %v, want only %d", totals, n)
	}
	if len(keys) != n {
		t.Fatalf("listed %d keys, want %d", len(keys), n)
	}
	seen := map[string]bool{}
	for i, k := range keys {
		if seen[k] {
			t.Fatalf("key %s listed twice", k)
		}
		seen[k] = true
		if i > 0 && keys[i-1] >= k {
			t.Fatalf("keys out of order: %s before %s", keys[i-1], k)
		}
	}
	for _, l := range want {
		if !seen[subnetPath(l.Key)] {
			t.Errorf("%s not listed", l.Key)
		}
	}
	// The revision returned is the one listed, so a watch from rev+1 sees
	// exactly the writes made during the listing.
	w := e.admin.Watch(ctxFor(t, 10*time.Second), m.subnetsPrefix(), clientv3.WithPrefix(), clientv3.WithRev(rev+1))
	resp := <-w
	if len(resp.Events) != 2 || resp.Events[0].Type != clientv3.EventTypePut || resp.Events[1].Type != clientv3.EventTypeDelete {
		t.Errorf("events after rev %d: %v, want the put and the delete made during the listing", rev, resp.Events)
	}
}

// TestListPagedCompacted: a compaction of the listing's revision between
// pages fails the listing with ErrCompacted rather than mixing revisions.
func TestListPagedCompacted(t *testing.T) {
	t.Parallel()
	e := newEnv(t, `{"Network": "10.0.0.0/8", "Backend": {"Type": "vxlan"}}`)
	e.putLeases(listPage + 1)
	m := e.manager("lister")
	pages := 0
	_, err := m.listPaged(ctxFor(t, 30*time.Second), m.subnetsPrefix(), func([]*mvccpb.KeyValue, int64) {
		pages++
		e.put(testPrefix+"/subnets/10.255.255.0-24", fmt.Sprint(pages))
		resp, err := e.admin.Get(ctxFor(t, 5*time.Second), "x")
		if err != nil {
			t.Fatal(err)
		}
		if _, err := e.admin.Compact(ctxFor(t, 5*time.Second), resp.Header.Revision); err != nil {
			t.Fatal(err)
		}
	})
	if !errors.Is(err, rpctypes.ErrCompacted) {
		t.Fatalf("err = %v after %d pages, want ErrCompacted", err, pages)
	}
	if pages != 1 {
		t.Errorf("%d pages delivered, want 1", pages)
	}
}

// TestWatchLeasesSnapshotPaged: a snapshot larger than a page comes in
// parts (Part counting from 0, More on all but the last, the listing's
// revision on the last), each in address order, together holding every
// lease once.
func TestWatchLeasesSnapshotPaged(t *testing.T) {
	t.Parallel()
	e := newEnv(t, `{"Network": "10.0.0.0/8", "Backend": {"Type": "vxlan"}}`)
	want := e.putLeases(2*listPage + 500)
	ctx, cancel := context.WithCancel(context.Background())
	ch := make(chan lease.Batch)
	done := make(chan error, 1)
	go func() { done <- e.manager("watcher").WatchLeases(ctx, ch) }()
	defer func() {
		cancel()
		<-done
	}()
	var events []lease.Event
	for part := 0; ; part++ {
		var b lease.Batch
		select {
		case b = <-ch:
		case <-time.After(15 * time.Second):
			t.Fatalf("part %d of the snapshot did not come", part)
		}
		if !b.Snapshot || b.Part != part {
			t.Fatalf("batch %d: Snapshot %v, Part %d", part, b.Snapshot, b.Part)
		}
		if !slices.IsSortedFunc(b.Events, func(a, b lease.Event) int { return a.Lease.Key.Compare(b.Lease.Key) }) {
			t.Errorf("part %d is not in address order", part)
		}
		events = append(events, b.Events...)
		if (b.Revision != 0) == b.More {
			t.Errorf("part %d: More %v with revision %d; only the last carries it", part, b.More, b.Revision)
		}
		if !b.More {
			if part < 2 {
				t.Errorf("%d leases came in %d parts, want 3 or more", len(want), part+1)
			}
			break
		}
	}
	slices.SortFunc(events, func(a, b lease.Event) int { return a.Lease.Key.Compare(b.Lease.Key) })
	var wantEvents []lease.Event
	for _, l := range want {
		wantEvents = append(wantEvents, lease.Event{Type: lease.Added, Lease: l})
	}
	sameEvents(t, events, wantEvents)
}

// TestListPagedResumes: a page that times out (here etcd is down for
// longer than the request timeout after the first page) is asked for
// again, at the listing's revision: the listing completes, each key once,
// rather than failing and starting over. The client's own retries of a
// read end at the request's deadline.
func TestListPagedResumes(t *testing.T) {
	t.Parallel()
	e := newEnv(t, `{"Network": "10.0.0.0/8", "Backend": {"Type": "vxlan"}}`)
	n := 2*listPage + 17
	e.putLeases(n)
	m := e.managerWith("lister", func(o *Options) { o.RequestTimeout = 300 * time.Millisecond })
	seen := map[string]int{}
	pages := 0
	_, err := m.listPaged(ctxFor(t, 60*time.Second), m.subnetsPrefix(), func(kvs []*mvccpb.KeyValue, total int64) {
		pages++
		for _, kv := range kvs {
			seen[string(kv.Key)]++
		}
		if pages == 1 {
			e.server.Stop()
			go func() {
				time.Sleep(600 * time.Millisecond)
				e.server.Restart()
			}()
		}
	})
	if err != nil {
		t.Fatalf("after %d pages: %v", pages, err)
	}
	if len(seen) != n || pages != 3 {
		t.Errorf("%d keys in %d pages, want %d in 3", len(seen), pages, n)
	}
	for k, c := range seen {
		if c != 1 {
			t.Errorf("%s listed %d times", k, c)
		}
	}
}
