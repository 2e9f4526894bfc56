package etcd

import (
	"encoding/json"
	"fmt"
	"net/netip"
	"testing"
	"time"

	"github.com/weftnet/weft/internal/etcdtest"
	"github.com/weftnet/weft/internal/leasetest"
	"github.com/weftnet/weft/lease"

	pb "go.etcd.io/etcd/api/v3/etcdserverpb"
	"go.etcd.io/etcd/api/v3/mvccpb"
	clientv3 "go.etcd.io/etcd/client/v3"
)

// watchLeases runs m.WatchLeases for the rest of the test.
func watchLeases(t *testing.T, m *Manager) *leasetest.Watcher { return leasetest.Watch(t, m) }

// putLease writes a lease value for owner directly, as another node would.
func (e *env) putLease(k lease.Key, i int, owner string) lease.Lease {
	a := attrsFor(i)
	a.Owner = owner
	raw, _ := json.Marshal(a)
	e.put(subnetPath(k), string(raw))
	return lease.Lease{Key: k, Attrs: a}
}

func sameEvents(t *testing.T, got, want []lease.Event) {
	t.Helper()
	if len(got) != len(want) {
		t.Fatalf("got %d events %+v, want %d %+v", len(got), got, len(want), want)
	}
	for i := range got {
		g, w := got[i], want[i]
		// etcd's watcher keeps a digest of what it sent, not the
		// lease: a Removed event names the key, a Changed one no Prev.
		if g.Type == lease.Removed {
			w.Lease.Attrs = lease.Attrs{}
		}
		w.Prev = nil
		if g.Type != w.Type || g.Lease.Key != w.Lease.Key || !g.Lease.Attrs.Equal(w.Lease.Attrs) || !samePrev(g.Prev, w.Prev) {
			t.Fatalf("event %d: got %v %v %+v (prev %+v), want %v %v %+v (prev %+v)", i, g.Type, g.Lease.Key, g.Lease.Attrs, g.Prev, w.Type, w.Lease.Key, w.Lease.Attrs, w.Prev)
		}
	}
}

func TestWatchLeasesEvents(t *testing.T) {
	t.Parallel()
	e := newEnv(t, testConfig)
	owner := e.manager("node-a")
	la, err := owner.Acquire(ctxFor(t, 10*time.Second), lease.AcquireRequest{Attrs: attrsFor(1), Previous: mustKey(t, "10.244.1.0-24")})
	if err != nil {
		t.Fatal(err)
	}
	keepDone := keepAsync(ctxFor(t, 60*time.Second), owner, la) // renewals must not show up as events
	lb := e.putLease(mustKey(t, "10.244.2.0-24"), 2, "node-b")
	e.put(subnetPath(mustKey(t, "10.244.3.0-24")), "{not json")
	e.put(testPrefix+"/subnets/garbage", "{}")

	c := watchLeases(t, e.manager("watcher"))
	waitFor(t, 10*time.Second, "the snapshot", func() bool { return len(c.Batches()) >= 1 })
	snap := c.Batches()[0]
	if !snap.Snapshot {
		t.Fatal("first batch is not a snapshot")
	}
	sameEvents(t, snap.Events, []lease.Event{{Type: lease.Added, Lease: la}, {Type: lease.Added, Lease: lb}})
	for _, key := range []string{"subnets/10.244.3.0-24", "subnets/garbage"} {
		if !contains(e.logs.String(), key) {
			t.Errorf("no warning names %s", key)
		}
	}

	lc := e.putLease(mustKey(t, "10.244.4.0-24"), 4, "node-c")
	lbMoved := e.putLease(lb.Key, 22, "node-b")                        // new MAC and public IP on a known subnet
	e.put(subnetPath(mustKey(t, "10.244.3.0-24")), `{"PublicIP":"x"}`) // still malformed: nothing
	if _, err := e.admin.Delete(ctxFor(t, 5*time.Second), subnetPath(lc.Key)); err != nil {
		t.Fatal(err)
	}
	time.Sleep(2 * testTTL)              // node-a renews meanwhile
	e.put(subnetPath(lb.Key), "{broken") // a known lease turning malformed is removed
	got := c.WaitEvents(t, 4)
	sameEvents(t, got, []lease.Event{
		{Type: lease.Added, Lease: lc},
		{Type: lease.Changed, Lease: lbMoved, Prev: &lb},
		{Type: lease.Removed, Lease: lc},
		{Type: lease.Removed, Lease: lbMoved},
	})
	for _, b := range c.Batches()[1:] {
		if b.Snapshot {
			t.Error("a later batch is marked as a snapshot")
		}
	}
	select {
	case err := <-keepDone:
		t.Fatalf("node-a's Keep ended: %v", err)
	default:
	}
}

// TestWatchLeasesResumes: events written while the watcher is cut off, and
// across a server restart, all arrive, once each, without a new snapshot.
func TestWatchLeasesResumes(t *testing.T) {
	t.Parallel()
	e := newEnv(t, testConfig)
	link := etcdtest.NewProxy(t, e.server.Addr())
	c := watchLeases(t, e.manager("watcher", link.Endpoint()))
	waitFor(t, 10*time.Second, "the snapshot", func() bool { return len(c.Batches()) >= 1 })

	var want []lease.Event
	add := func(i int) {
		l := e.putLease(mustKey(t, fmt.Sprintf("10.244.%d.0-24", i)), i, fmt.Sprint("node-", i))
		want = append(want, lease.Event{Type: lease.Added, Lease: l})
	}
	add(1)
	link.Cut()
	add(2)
	add(3)
	link.Heal()
	c.WaitEvents(t, 3)
	e.server.Restart()
	add(4)
	add(5)
	sameEvents(t, c.WaitEvents(t, 5), want)
	time.Sleep(500 * time.Millisecond)
	sameEvents(t, c.Events(), want) // and nothing more
	for _, b := range c.Batches()[1:] {
		if b.Snapshot {
			t.Error("resuming sent a second snapshot")
		}
	}
}

// TestWatchLeasesCompaction: while the watcher is cut off, a lease is added,
// one changes its attributes, one is removed, and etcd compacts past it all.
// On return the watcher lists again and sends exactly that difference.
func TestWatchLeasesCompaction(t *testing.T) {
	t.Parallel()
	e := newEnv(t, testConfig)
	reservationIntact := e.reserve("10.244.250.0-24", "node-r")
	p := e.putLease(mustKey(t, "10.244.1.0-24"), 1, "node-p")
	q := e.putLease(mustKey(t, "10.244.2.0-24"), 2, "node-q")
	r := e.putLease(mustKey(t, "10.244.3.0-24"), 3, "node-r")
	link := etcdtest.NewProxy(t, e.server.Addr())
	c := watchLeases(t, e.manager("watcher", link.Endpoint()))
	waitFor(t, 10*time.Second, "the snapshot", func() bool { return len(c.Batches()) >= 1 })
	var keys []string
	for _, ev := range c.Batches()[0].Events {
		keys = append(keys, ev.Lease.Key.String())
	}
	if got := fmt.Sprint(keys); got != "[10.244.1.0-24 10.244.2.0-24 10.244.3.0-24 10.244.250.0-24]" {
		t.Fatalf("snapshot holds %s", got)
	}

	link.Cut()
	s := e.putLease(mustKey(t, "10.244.4.0-24"), 4, "node-s")
	qMoved := e.putLease(q.Key, 12, "node-q")
	if _, err := e.admin.Delete(ctxFor(t, 5*time.Second), subnetPath(r.Key)); err != nil {
		t.Fatal(err)
	}
	e.putLease(p.Key, 1, "node-p") // a rewrite with equal attributes: no event
	resp, err := e.admin.Get(ctxFor(t, 5*time.Second), "anything")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := e.admin.Compact(ctxFor(t, 5*time.Second), resp.Header.Revision); err != nil {
		t.Fatal(err)
	}
	link.Heal()

	// The difference, ordered by key.
	sameEvents(t, c.WaitEvents(t, 3), []lease.Event{
		{Type: lease.Changed, Lease: qMoved, Prev: &q},
		{Type: lease.Removed, Lease: r},
		{Type: lease.Added, Lease: s},
	})
	if !contains(e.logs.String(), "lease watch fell behind a compaction; listing again") {
		t.Error("the watcher did not go through the compaction path")
	}
	reservationIntact()
}

func TestWatchConfig(t *testing.T) {
	t.Parallel()
	e := newEnv(t, testConfig)
	w := leasetest.WatchConfig(t, e.manager("node-a"))
	if c := w.Next(t); c.Network != netip.MustParsePrefix("10.244.0.0/16") {
		t.Fatalf("initial config %+v", c)
	}
	// Seed 003: the network is widened while nodes run.
	e.put(testPrefix+"/config", `{"Network": "10.0.0.0/8", "Backend": {"Type": "vxlan"}}`)
	if c := w.Next(t); c.Network != netip.MustParsePrefix("10.0.0.0/8") || c.IPv4Range().Len().Int64() != 65535 {
		t.Fatalf("widened config %+v", c)
	}
	e.put(testPrefix+"/config", `{"Network": "10.0.0.0/8", "SubnetLen": 99}`)
	if _, err := e.admin.Delete(ctxFor(t, 5*time.Second), testPrefix+"/config"); err != nil {
		t.Fatal(err)
	}
	e.put(testPrefix+"/config", `{"Network": "10.0.0.0/8", "SubnetLen": 20}`)
	if c := w.Next(t); c.SubnetLen != 20 {
		t.Fatalf("config after a bad one: %+v", c)
	}
	select {
	case c := <-w.C:
		t.Fatalf("extra config delivered: %+v", c)
	case <-time.After(200 * time.Millisecond):
	}
	logs := e.logs.String()
	for _, want := range []string{"ignoring invalid network config", "SubnetLen 99", "network config was deleted"} {
		if !contains(logs, want) {
			t.Errorf("logs lack %q", want)
		}
	}
}

// TestWatchLeasesSeniority: every lease carries its key's create revision,
// which every node reads alike. A change of value keeps it; a key deleted
// and created again is younger; a relist after compaction sends a changed
// seniority as a Changed event.
func TestWatchLeasesSeniority(t *testing.T) {
	t.Parallel()
	e := newEnv(t, testConfig)
	ka, kb := mustKey(t, "10.244.1.0-24"), mustKey(t, "10.244.2.0-24")
	e.putLease(ka, 1, "node-a")
	e.putLease(kb, 2, "node-b")
	created := func(k lease.Key) int64 {
		resp, err := e.admin.Get(ctxFor(t, 5*time.Second), subnetPath(k))
		if err != nil || len(resp.Kvs) != 1 {
			t.Fatalf("get %v: %v", k, err)
		}
		return resp.Kvs[0].CreateRevision
	}
	c := watchLeases(t, e.manager("watcher"))
	snap := c.Snapshot(t)
	for _, ev := range snap.Events {
		if ev.Lease.Seniority == 0 || ev.Lease.Seniority != created(ev.Lease.Key) {
			t.Fatalf("snapshot lease %v has seniority %d, want its create revision %d", ev.Lease.Key, ev.Lease.Seniority, created(ev.Lease.Key))
		}
	}
	if !snap.Events[0].Lease.Older(snap.Events[1].Lease) {
		t.Fatal("the first key written is not the older")
	}
	before := created(ka)
	e.putLease(ka, 11, "node-a") // a new value on the same key
	if _, err := e.admin.Delete(ctxFor(t, 5*time.Second), subnetPath(kb)); err != nil {
		t.Fatal(err)
	}
	e.putLease(kb, 2, "node-b")
	got := c.WaitEvents(t, 3)
	if got[0].Type != lease.Changed || got[0].Lease.Seniority != before {
		t.Errorf("a changed value: %v seniority %d, want Changed keeping %d", got[0].Type, got[0].Lease.Seniority, before)
	}
	if got[1].Type != lease.Removed || got[2].Type != lease.Added || got[2].Lease.Seniority != created(kb) || !got[0].Lease.Older(got[2].Lease) {
		t.Errorf("a re-created key: %+v, want Removed then Added with its new create revision %d", got[1:], created(kb))
	}
}

// samePrev reports whether two events' previous leases are the same by
// key and attributes, or both absent.
func samePrev(a, b *lease.Lease) bool {
	if a == nil || b == nil {
		return a == b
	}
	return a.Key == b.Key && a.Attrs.Equal(b.Attrs)
}

// TestResumeRevision: a watcher catching up gets events in chunks stamped
// with the store's current revision; resuming must continue after the last
// event, not after the header.
func TestResumeRevision(t *testing.T) {
	ev := func(rev int64) *clientv3.Event { return &clientv3.Event{Kv: &mvccpb.KeyValue{ModRevision: rev}} }
	hdr := func(rev int64) *pb.ResponseHeader { return &pb.ResponseHeader{Revision: rev} }
	tests := []struct {
		rev  int64
		resp clientv3.WatchResponse
		want int64
	}{
		{3, clientv3.WatchResponse{Header: hdr(1503), Events: []*clientv3.Event{ev(3), ev(1002)}}, 1003},
		{1003, clientv3.WatchResponse{Header: hdr(1503)}, 1504}, // progress notification
		{2000, clientv3.WatchResponse{Header: hdr(1503)}, 2000}, // a stale header never moves it back
		{10, clientv3.WatchResponse{Header: hdr(20), Events: []*clientv3.Event{ev(5)}}, 10},
	}
	for _, tt := range tests {
		if got := resumeRevision(tt.rev, tt.resp); got != tt.want {
			t.Errorf("resumeRevision(%d, header %d, %d events) = %d, want %d", tt.rev, tt.resp.Header.Revision, len(tt.resp.Events), got, tt.want)
		}
	}
}
