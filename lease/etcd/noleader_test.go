package etcd

import (
	"testing"
	"time"

	"github.com/weftnet/weft/internal/etcdtest"
	"github.com/weftnet/weft/lease"
)

// TestNoLeader runs a three-member cluster and stops two members, leaving
// the one the nodes talk to without a leader. Watches that require a leader
// are cancelled, which clientv3 does not resume by itself: this exercises
// WatchLeases' and Keep's own resume paths. When the members return, the
// watcher gets every event once, with no second snapshot, and the kept
// lease is still held and renewed.
func TestNoLeader(t *testing.T) {
	t.Parallel()
	members := etcdtest.StartCluster(t, 3)
	e := &env{t: t, server: members[0], logs: &logBuffer{}}
	e.admin = etcdtest.NewClient(t, members[0].Endpoint(), members[1].Endpoint(), members[2].Endpoint())
	e.put(testPrefix+"/config", testConfig)

	owner := e.manager("node-a") // members[0] only
	la := mustAcquire(t, owner, 1)
	keepDone := keepAsync(ctxFor(t, 60*time.Second), owner, la)
	c := watchLeases(t, e.manager("watcher"))
	waitFor(t, 10*time.Second, "the snapshot", func() bool { return len(c.Batches()) >= 1 })

	var want []lease.Event
	x := e.putLease(mustKey(t, "10.244.201.0-24"), 201, "node-x")
	want = append(want, lease.Event{Type: lease.Added, Lease: x})
	c.WaitEvents(t, 1)

	members[1].Stop()
	members[2].Stop()
	waitFor(t, 10*time.Second, "WatchLeases to notice the lost leader", func() bool {
		return contains(e.logs.String(), "watch leases failed; retrying")
	})
	time.Sleep(500 * time.Millisecond)
	members[1].Restart()
	members[2].Restart()

	y := e.putLease(mustKey(t, "10.244.202.0-24"), 202, "node-y")
	want = append(want, lease.Event{Type: lease.Added, Lease: y})
	sameEvents(t, c.WaitEvents(t, 2), want)
	time.Sleep(300 * time.Millisecond)
	sameEvents(t, c.Events(), want)
	for _, b := range c.Batches()[1:] {
		if b.Snapshot {
			t.Error("resuming after the leader came back sent a second snapshot")
		}
	}

	before := e.get(subnetPath(la.Key))
	waitFor(t, 2*testTTL, "a renewal after the leader came back", func() bool {
		kv := e.get(subnetPath(la.Key))
		return kv != nil && kv.ModRevision > before.ModRevision
	})
	select {
	case err := <-keepDone:
		t.Fatalf("Keep ended: %v", err)
	default:
	}
	if !contains(e.logs.String(), "watch leases recovered") {
		t.Errorf("no recovery logged:\n%s", e.logs)
	}
}
