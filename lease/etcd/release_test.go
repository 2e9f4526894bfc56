package etcd

import (
	"context"
	"errors"
	"log/slog"
	"testing"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/weftnet/weft/lease"
)

// TestRelease: a node frees its own subnet at once, and its Keep stopped
// first, nothing brings it back; a subnet another node holds, or that a
// clone of this name on another host holds, is left alone.
func TestRelease(t *testing.T) {
	t.Parallel()
	e := newEnv(t, testConfig)
	a, b := e.manager("node-a"), e.manager("node-b")
	la, lb := mustAcquire(t, a, 1), mustAcquire(t, b, 2)
	stop := keep(t, a, la)
	if err := stop(); !errors.Is(err, context.Canceled) {
		t.Fatalf("keep: %v", err)
	}
	ttl := e.get(subnetPath(la.Key)).Lease

	// node-a cannot release node-b's lease, even by naming its key.
	if err := a.Release(ctxFor(t, 5*time.Second), lb); !errors.Is(err, lease.ErrLeaseLost) {
		t.Errorf("releasing another node's lease: %v, want ErrLeaseLost", err)
	}
	if e.get(subnetPath(lb.Key)) == nil {
		t.Fatal("node-b's lease was deleted by node-a")
	}
	if err := a.Release(ctxFor(t, 5*time.Second), la); err != nil {
		t.Fatal(err)
	}
	if e.get(subnetPath(la.Key)) != nil {
		t.Fatal("the released key is still there")
	}
	if r, err := e.admin.TimeToLive(ctxFor(t, 5*time.Second), clientv3.LeaseID(ttl)); err != nil || r.TTL > 0 {
		t.Errorf("the released key's etcd lease was not revoked: ttl %d, %v", r.TTL, err)
	}
	// Already gone: nothing to do, and no error.
	if err := a.Release(ctxFor(t, 5*time.Second), la); err != nil {
		t.Errorf("releasing again: %v", err)
	}
	// The subnet is free: a newcomer asking for it gets it.
	c := e.manager("node-c")
	lc, err := c.Acquire(ctxFor(t, 10*time.Second), lease.AcquireRequest{Attrs: attrsFor(3), Previous: la.Key})
	if err != nil || lc.Key != la.Key {
		t.Errorf("a newcomer asking for the released subnet got %v, %v", lc.Key, err)
	}

	// A clone of node-b's name on another host cannot release its lease.
	clone := e.manager("node-b")
	other := lb
	other.Attrs = attrsFor(9)
	if err := clone.Release(ctxFor(t, 5*time.Second), other); !errors.Is(err, lease.ErrLeaseLost) {
		t.Errorf("a clone on another host releasing the name's lease: %v, want ErrLeaseLost", err)
	}
	if e.get(subnetPath(lb.Key)) == nil {
		t.Fatal("a clone on another host deleted the name's lease")
	}
}

// TestObserver: an Observer needs no node name, writes nothing, and a View
// fed by it follows every node's leases.
func TestObserver(t *testing.T) {
	t.Parallel()
	e := newEnv(t, testConfig)
	o, err := NewObserver(Options{Endpoints: []string{e.server.Endpoint()}, Logger: slog.New(slog.NewTextHandler(e.logs, nil))})
	if err != nil {
		t.Fatal(err)
	}
	defer o.Close()
	before, err := e.admin.Get(ctxFor(t, 5*time.Second), "/", clientv3.WithPrefix(), clientv3.WithCountOnly())
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	var v lease.View
	done := make(chan error, 1)
	go func() { done <- v.Run(ctx, o) }()
	waitFor(t, 10*time.Second, "the first snapshot", v.Synced)
	if v.Len() != 0 {
		t.Fatalf("leases before any node acquired: %v", v.List())
	}
	a := e.manager("node-a")
	la := mustAcquire(t, a, 1)
	waitFor(t, 10*time.Second, "node-a's lease in the view", func() bool { _, ok := v.Get(la.Key); return ok })
	if got, _ := v.Get(la.Key); got.Attrs.Owner != "node-a" {
		t.Errorf("the view holds %+v", got)
	}
	if err := a.Release(ctxFor(t, 5*time.Second), la); err != nil {
		t.Fatal(err)
	}
	waitFor(t, 10*time.Second, "the released lease gone from the view", func() bool { return v.Len() == 0 })
	cfg, err := o.Config(ctxFor(t, 5*time.Second))
	if err != nil || cfg.Network.String() != "10.244.0.0/16" {
		t.Errorf("config: %+v, %v", cfg, err)
	}
	cancel()
	if err := <-done; !errors.Is(err, context.Canceled) {
		t.Errorf("Run: %v", err)
	}
	// The observer wrote nothing: the store grew by node-a's writes only,
	// and none of them names the observer.
	after, err := e.admin.Get(ctxFor(t, 5*time.Second), "/", clientv3.WithPrefix())
	if err != nil {
		t.Fatal(err)
	}
	if after.Count != before.Count {
		t.Errorf("keys: %d before, %d after node-a released", before.Count, after.Count)
	}
	for _, kv := range after.Kvs {
		if contains(string(kv.Value), observerNode) {
			t.Errorf("%s names the observer: %s", kv.Key, kv.Value)
		}
	}
}

// TestReleaseRefusesReservation: a key with no TTL is an operator's
// reservation, which this package never deletes; Release says how to.
func TestReleaseRefusesReservation(t *testing.T) {
	t.Parallel()
	e := newEnv(t, testConfig)
	defer e.reserve("10.244.77.0-24", "node-a")()
	m := e.manager("node-a")
	l := lease.Lease{Key: mustKey(t, "10.244.77.0-24"), Attrs: attrsFor(1)}
	err := m.Release(ctxFor(t, 5*time.Second), l)
	if err == nil || !contains(err.Error(), "reservation") || !contains(err.Error(), "etcdctl del") {
		t.Errorf("Release of a reservation: %v", err)
	}
	if e.get(subnetPath(l.Key)) == nil {
		t.Error("the reservation was deleted")
	}
}
