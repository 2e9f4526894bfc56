package etcd

// Keep beside what others do to its key: an etcd lease shared with another node's key, a compaction, a lease turned into a reservation and back, a second Keep soon after.

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"
	"go.uber.org/zap"
	"google.golang.org/grpc"
)

// TestKeepNeverRevokesSharedLease: an operator attached two nodes' keys to
// one etcd lease. node-a renewing its key must not revoke that lease, which
// would delete node-b's key with it.
func TestKeepNeverRevokesSharedLease(t *testing.T) {
	t.Parallel()
	e := newEnv(t, testConfig)
	g, err := e.admin.Grant(ctxFor(t, 5*time.Second), 600)
	if err != nil {
		t.Fatal(err)
	}
	la := e.putLease(mustKey(t, "10.244.1.0-24"), 1, "node-a")
	e.putLease(mustKey(t, "10.244.2.0-24"), 2, "node-b")
	for _, k := range []string{"10.244.1.0-24", "10.244.2.0-24"} {
		path := subnetPath(mustKey(t, k))
		e.put(path, e.get(path).Value, clientv3.WithLease(g.ID))
	}
	m := e.manager("node-a")
	ctx, cancel := context.WithCancel(context.Background())
	done := keepAsync(ctx, m, la) // not acquired by m: renews at once
	waitFor(t, testTTL, "node-a's renewal", func() bool { return e.get(subnetPath(la.Key)).Lease != int64(g.ID) })
	// A renewal's revoke of the lease it left runs on Keep's goroutine,
	// whatever its context: once Keep has returned, it has happened.
	cancel()
	<-done
	if kv := e.get(subnetPath(mustKey(t, "10.244.2.0-24"))); kv == nil || kv.Lease != int64(g.ID) {
		t.Fatalf("node-b's key after node-a's renewal: %+v", kv)
	}
}

// countingManager returns a Manager whose client counts Range requests.
func (e *env) countingManager(node string, ranges *atomic.Int64) *Manager {
	e.t.Helper()
	count := func(ctx context.Context, method string, req, reply any, cc *grpc.ClientConn, invoker grpc.UnaryInvoker, opts ...grpc.CallOption) error {
		if strings.HasSuffix(method, "/Range") {
			ranges.Add(1)
		}
		return invoker(ctx, method, req, reply, cc, opts...)
	}
	c, err := clientv3.New(clientv3.Config{
		Endpoints: []string{e.server.Endpoint()}, DialTimeout: 5 * time.Second, Logger: zap.NewNop(),
		DialOptions: []grpc.DialOption{grpc.WithChainUnaryInterceptor(count)},
	})
	if err != nil {
		e.t.Fatal(err)
	}
	e.t.Cleanup(func() { c.Close() })
	m, err := New(Options{Client: c, Node: node, TTL: testTTL, RenewMargin: testTTL / 2, Logger: slog.New(slog.NewTextHandler(e.logs, nil))})
	if err != nil {
		e.t.Fatal(err)
	}
	return m
}

// TestKeepAfterCompactionDoesNotSpin: a reservation's revision is compacted
// away and etcd restarts; Keep must resume from the revision of its re-read,
// not loop on a compacted one.
func TestKeepAfterCompactionDoesNotSpin(t *testing.T) {
	t.Parallel()
	e := newEnv(t, testConfig)
	res := e.putLease(mustKey(t, "10.244.9.0-24"), 9, "node-a") // no etcd lease: a reservation
	var ranges atomic.Int64
	m := e.countingManager("node-a", &ranges)
	ctx, cancel := context.WithCancel(context.Background())
	done := keepAsync(ctx, m, res)
	time.Sleep(300 * time.Millisecond)
	for i := range 20 {
		e.put(fmt.Sprint("/unrelated/", i), "x")
	}
	resp, err := e.admin.Get(ctxFor(t, 5*time.Second), "/unrelated/0")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := e.admin.Compact(ctxFor(t, 5*time.Second), resp.Header.Revision); err != nil {
		t.Fatal(err)
	}
	e.server.Restart()
	start := ranges.Load()
	time.Sleep(3 * time.Second)
	if n := ranges.Load() - start; n > 3 {
		t.Errorf("Keep made %d reads in 3s after a compaction and restart; it is spinning", n)
	}
	cancel()
	if err := <-done; !errors.Is(err, context.Canceled) {
		t.Fatalf("Keep: %v", err)
	}
}

// TestKeepFollowsReservationChanges: an operator turns the kept lease into a
// reservation (Keep must not put a lease back), then back into a lease
// (Keep must renew it rather than let it lapse).
func TestKeepFollowsReservationChanges(t *testing.T) {
	t.Parallel()
	e := newEnv(t, testConfig)
	m := e.manager("node-a")
	l := mustAcquire(t, m, 1)
	path := subnetPath(l.Key)
	done := keepAsync(ctxFor(t, 60*time.Second), m, l)

	e.put(path, e.get(path).Value) // flannel's documented way to reserve a subnet
	time.Sleep(testTTL)            // past the next renewal
	if kv := e.get(path); kv == nil || kv.Lease != 0 {
		t.Fatalf("after being made a reservation the key is %+v; Keep attached a lease", kv)
	}

	g, err := e.admin.Grant(ctxFor(t, 5*time.Second), int64(testTTL.Seconds()))
	if err != nil {
		t.Fatal(err)
	}
	e.put(path, e.get(path).Value, clientv3.WithLease(g.ID))
	time.Sleep(2 * testTTL) // the operator's lease alone would have lapsed
	if kv := e.get(path); kv == nil || kv.Lease == 0 || kv.Lease == int64(g.ID) {
		t.Fatalf("after getting a lease again the key is %+v; Keep did not renew it", kv)
	}
	select {
	case err := <-done:
		t.Fatalf("Keep ended: %v", err)
	default:
	}
}

// TestKeepAgainSoonAfter: a second Keep of a lease this Manager renewed a
// while ago renews on the original schedule, not a full period later.
func TestKeepAgainSoonAfter(t *testing.T) {
	t.Parallel()
	e := newEnv(t, testConfig)
	m := e.manager("node-a")
	l := mustAcquire(t, m, 1)
	time.Sleep(testTTL * 3 / 4) // past the renewal point, before expiry
	ctx, cancel := context.WithTimeout(context.Background(), testTTL)
	defer cancel()
	if err := m.Keep(ctx, l); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("second Keep: %v", err)
	}
	if e.get(subnetPath(l.Key)) == nil {
		t.Fatal("the lease lapsed under a second Keep")
	}
}
