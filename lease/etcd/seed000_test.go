package etcd

import (
	"context"
	"errors"
	"sync"
	"testing"
	"time"

	"github.com/weftnet/weft/internal/etcdtest"
	"github.com/weftnet/weft/lease"
)

// TestSeed000StolenSubnet is field report 000 exactly: host A holds S, is cut
// off past the TTL, and S lapses; host B is given S; A comes back, reads S
// from its subnet.env and asks for it again. A must not take S back, must
// learn it lost S without writing, and B's key must not change by a byte.
func TestSeed000StolenSubnet(t *testing.T) {
	t.Parallel()
	e := newEnv(t, testConfig)
	link := etcdtest.NewProxy(t, e.server.Addr()) // host A's network path to etcd
	a := e.manager("host-a", link.Endpoint())
	b := e.manager("host-b")

	held := mustAcquire(t, a, 1)
	s := held.Key
	keepA := keepAsync(ctxFor(t, 60*time.Second), a, held)

	// A goes offline; its lease lapses.
	link.Cut()
	waitFor(t, 3*testTTL, "A's key to expire", func() bool { return e.get(subnetPath(s)) == nil })

	// B is given S.
	got, err := b.Acquire(ctxFor(t, 10*time.Second), lease.AcquireRequest{Attrs: attrsFor(2), Previous: s})
	if err != nil || got.Key != s {
		t.Fatalf("B got %v, %v; want the lapsed %v", got.Key, err, s)
	}
	keepB := keepAsync(ctxFor(t, 60*time.Second), b, got)
	bKey := e.get(subnetPath(s))

	// A comes back. Its Keep learns of the loss and writes nothing.
	link.Heal()
	select {
	case err := <-keepA:
		if !errors.Is(err, lease.ErrLeaseLost) {
			t.Fatalf("A's Keep returned %v, want ErrLeaseLost", err)
		}
	case <-time.After(15 * time.Second):
		t.Fatal("A's Keep did not report the loss after the partition healed")
	}

	// A restarts with S from its subnet.env: it gets another subnet.
	again, err := e.manager("host-a", link.Endpoint()).Acquire(ctxFor(t, 10*time.Second), lease.AcquireRequest{Attrs: attrsFor(1), Previous: s})
	if err != nil {
		t.Fatal(err)
	}
	if again.Key == s {
		t.Fatalf("A took back %v, which B holds", s)
	}

	// A Keep of the old lease, after its expiry, reports the loss and does
	// not write.
	if err := a.Keep(ctxFor(t, 10*time.Second), held); !errors.Is(err, lease.ErrLeaseLost) || !contains(err.Error(), `held by "host-b"`) {
		t.Fatalf("A's Keep of the lapsed lease: %v", err)
	}

	// B kept S throughout; its key (value, etcd lease, revisions) is
	// unchanged except by B's own renewals, which it may have made.
	time.Sleep(testTTL)
	now := e.get(subnetPath(s))
	if now == nil || now.Value != bKey.Value || now.CreateRevision != bKey.CreateRevision {
		t.Fatalf("B's key changed: %+v -> %+v", bKey, now)
	}
	select {
	case err := <-keepB:
		t.Fatalf("B lost its lease: %v", err)
	default:
	}
}

// TestSeed000ByteIdentical checks the seed's strictest clause with no
// renewals in the way: B's key is byte-identical, revision included, before
// and after A's return, restart and reacquisition.
func TestSeed000ByteIdentical(t *testing.T) {
	t.Parallel()
	e := newEnv(t, testConfig)
	link := etcdtest.NewProxy(t, e.server.Addr())
	a := e.manager("host-a", link.Endpoint())
	held := mustAcquire(t, a, 1)
	keepA := keepAsync(ctxFor(t, 60*time.Second), a, held)
	link.Cut()
	e.expire(subnetPath(held.Key)) // what the TTL would do, without the wait

	b := e.manager("host-b")
	b.ttl = time.Minute // no renewal during the test
	if got, err := b.Acquire(ctxFor(t, 10*time.Second), lease.AcquireRequest{Attrs: attrsFor(2), Previous: held.Key}); err != nil || got.Key != held.Key {
		t.Fatalf("B got %v, %v", got.Key, err)
	}
	before := e.get(subnetPath(held.Key))

	link.Heal()
	if err := <-keepA; !errors.Is(err, lease.ErrLeaseLost) {
		t.Fatalf("A's Keep: %v", err)
	}
	if _, err := a.Acquire(ctxFor(t, 10*time.Second), lease.AcquireRequest{Attrs: attrsFor(1), Previous: held.Key}); err != nil {
		t.Fatal(err)
	}
	if err := a.Keep(ctxFor(t, 10*time.Second), held); !errors.Is(err, lease.ErrLeaseLost) {
		t.Fatalf("A's Keep after expiry: %v", err)
	}
	if after := e.get(subnetPath(held.Key)); after == nil || *after != *before {
		t.Fatalf("B's key changed:\n%+v\n%+v", before, after)
	}
}

// TestHoldReacquiresAfterPartition: with lease.Hold, a node whose subnet was
// taken during a partition is handed a new subnet, and the taker is
// untouched. A reservation held by a third node survives all of it.
func TestHoldReacquiresAfterPartition(t *testing.T) {
	t.Parallel()
	e := newEnv(t, testConfig)
	res := mustKey(t, "10.244.200.0-24")
	resOwner := e.manager("host-r")
	resOwner.ttl = time.Minute
	if _, err := resOwner.Acquire(ctxFor(t, 10*time.Second), lease.AcquireRequest{Attrs: attrsFor(9), Previous: res}); err != nil {
		t.Fatal(err)
	}
	// Turn it into a reservation the way an operator would: drop the etcd
	// lease by rewriting the value without one.
	e.put(subnetPath(res), e.get(subnetPath(res)).Value)
	resBefore := e.get(subnetPath(res))

	link := etcdtest.NewProxy(t, e.server.Addr())
	a := e.manager("host-a", link.Endpoint())
	var mu sync.Mutex
	var got []lease.Lease
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	holdDone := make(chan error, 1)
	go func() {
		holdDone <- lease.Hold(ctx, a, lease.AcquireRequest{Attrs: attrsFor(1)}, func(l lease.Lease) {
			mu.Lock()
			got = append(got, l)
			mu.Unlock()
		})
	}()
	leases := func() []lease.Lease {
		mu.Lock()
		defer mu.Unlock()
		return append([]lease.Lease(nil), got...)
	}
	waitFor(t, 10*time.Second, "A's first lease", func() bool { return len(leases()) == 1 })
	s := leases()[0].Key

	link.Cut()
	e.expire(subnetPath(s))
	b := e.manager("host-b")
	b.ttl = time.Minute
	if l, err := b.Acquire(ctxFor(t, 10*time.Second), lease.AcquireRequest{Attrs: attrsFor(2), Previous: s}); err != nil || l.Key != s {
		t.Fatalf("B got %v, %v", l.Key, err)
	}
	bBefore := e.get(subnetPath(s))
	link.Heal()

	waitFor(t, 15*time.Second, "A's second lease", func() bool { return len(leases()) == 2 })
	second := leases()[1].Key
	if second == s || second == res {
		t.Fatalf("A was handed %v after losing %v", second, s)
	}
	if after := e.get(subnetPath(s)); *after != *bBefore {
		t.Errorf("B's key changed: %+v -> %+v", bBefore, after)
	}
	if after := e.get(subnetPath(res)); after == nil || *after != *resBefore {
		t.Errorf("reservation changed: %+v -> %+v", resBefore, after)
	}
	cancel()
	if err := <-holdDone; !errors.Is(err, context.Canceled) {
		t.Errorf("Hold returned %v", err)
	}
}
