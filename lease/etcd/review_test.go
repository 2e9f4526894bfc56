package etcd

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	pb "go.etcd.io/etcd/api/v3/etcdserverpb"
	"go.etcd.io/etcd/api/v3/mvccpb"
	clientv3 "go.etcd.io/etcd/client/v3"
	"go.uber.org/zap"
	"google.golang.org/grpc"

	"github.com/weftnet/weft/lease"
)

// TestConcurrentAcquirersDualStack: nodes acquiring at once in a small
// dual-stack network end with distinct IPv4 and distinct IPv6 subnets. The
// two halves are picked independently, so the create must also guard
// against another key holding either one.
func TestConcurrentAcquirersDualStack(t *testing.T) {
	t.Parallel()
	e := newEnv(t, `{"EnableIPv6": true, "Network": "10.244.0.0/20", "IPv6Network": "fd00::/60", "Backend": {"Type": "vxlan"}}`)
	const n = 12 // of 15 subnets per family: collisions are all but certain
	leases := make([]lease.Lease, n)
	errs := make([]error, n)
	var wg sync.WaitGroup
	start := make(chan struct{})
	for i := range n {
		m := e.manager(fmt.Sprint("node-", i))
		m.ttl = time.Minute
		wg.Add(1)
		go func() {
			defer wg.Done()
			<-start
			leases[i], errs[i] = m.Acquire(ctxFor(t, 60*time.Second), lease.AcquireRequest{Attrs: attrsFor(i)})
		}()
	}
	close(start)
	wg.Wait()
	v4, v6 := map[string]int{}, map[string]int{}
	for i, l := range leases {
		if errs[i] != nil {
			t.Fatalf("node-%d: %v", i, errs[i])
		}
		for _, seen := range []struct {
			m map[string]int
			p string
		}{{v4, l.Key.IPv4.String()}, {v6, l.Key.IPv6.String()}} {
			if j, dup := seen.m[seen.p]; dup {
				t.Fatalf("node-%d and node-%d both hold %s", i, j, seen.p)
			}
			seen.m[seen.p] = i
		}
	}
}

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
	time.Sleep(200 * time.Millisecond)
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

// TestAcquireLogsOutage: with etcd down, Acquire says so within a request
// timeout instead of blocking in silence.
func TestAcquireLogsOutage(t *testing.T) {
	t.Parallel()
	e := newEnv(t, testConfig)
	e.server.Stop()
	m, err := New(Options{Endpoints: []string{e.server.Endpoint()}, Node: "node-a", RequestTimeout: 500 * time.Millisecond, Logger: slog.New(slog.NewTextHandler(e.logs, nil))})
	if err != nil {
		t.Fatal(err)
	}
	defer m.Close()
	ctx := ctxFor(t, 3*time.Second)
	if _, err := m.Acquire(ctx, lease.AcquireRequest{Attrs: attrsFor(1)}); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("Acquire with etcd down: %v", err)
	}
	if !contains(e.logs.String(), "acquire failed; retrying") || !contains(e.logs.String(), "context deadline exceeded") {
		t.Errorf("the outage was not logged:\n%s", e.logs)
	}
	if st := m.Stats(); st.Errors == 0 || !contains(st.Condition, "etcd unreachable") {
		t.Errorf("Stats during the outage: %+v", st)
	}
}

// TestAcquireFindsOwnKeyAfterPublicIPChange: a node that comes back with a
// new public IP finds its key by its owner name and republishes it.
func TestAcquireFindsOwnKeyAfterPublicIPChange(t *testing.T) {
	t.Parallel()
	e := newEnv(t, testConfig)
	first := mustAcquire(t, e.manager("node-a"), 1)
	moved := attrsFor(77)
	again, err := e.manager("node-a").Acquire(ctxFor(t, 10*time.Second), lease.AcquireRequest{Attrs: moved})
	if err != nil || again.Key != first.Key {
		t.Fatalf("after a public IP change got %v, %v; want %v\n%s", again.Key, err, first.Key, e.logs)
	}
	var stored lease.Attrs
	json.Unmarshal([]byte(e.get(subnetPath(first.Key)).Value), &stored)
	if stored.PublicIP != moved.PublicIP {
		t.Errorf("stored public IP %v, want %v", stored.PublicIP, moved.PublicIP)
	}
}

func TestPrefixIsCleaned(t *testing.T) {
	for _, p := range []string{"/", ".", "//"} {
		if _, err := New(Options{Endpoints: []string{"http://127.0.0.1:1"}, Node: "n", Prefix: p}); err == nil {
			t.Errorf("prefix %q accepted", p)
		}
	}
	m, err := New(Options{Endpoints: []string{"http://127.0.0.1:1"}, Node: "n", Prefix: "//coreos.com//network/", Logger: slog.New(slog.NewTextHandler(io.Discard, nil))})
	if err != nil {
		t.Fatal(err)
	}
	defer m.Close()
	if got := m.keyPath(mustKey(t, "10.1.0.0-24")); got != "/coreos.com/network/subnets/10.1.0.0-24" {
		t.Errorf("key path %q", got)
	}
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
