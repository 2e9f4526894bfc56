package etcd

import (
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"net/netip"
	"strings"
	"testing"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/weftnet/weft/internal/etcdtest"
	"github.com/weftnet/weft/internal/testutil"
	"github.com/weftnet/weft/lease"
)

const (
	testPrefix = "/coreos.com/network"
	testConfig = `{"Network": "10.244.0.0/16", "Backend": {"Type": "vxlan"}}`
	// testTTL is short enough for tests that wait for expiry, and long
	// enough that renewals every testTTL/2 survive a loaded 2-core machine
	// running suites in parallel.
	testTTL = 4 * time.Second
)

// logBuffer collects log output so tests can assert what was logged.
type logBuffer = testutil.SyncBuffer

// env is one etcd server with the network config written.
type env struct {
	t      *testing.T
	server *etcdtest.Server
	admin  *clientv3.Client
	logs   *logBuffer
}

func newEnv(t *testing.T, config string) *env {
	t.Helper()
	s := etcdtest.Start(t)
	e := &env{t: t, server: s, admin: s.Client(t), logs: &logBuffer{}}
	if config != "" {
		e.put(testPrefix+"/config", config)
	}
	return e
}

var ctxFor = testutil.Context

func (e *env) put(key, value string, opts ...clientv3.OpOption) {
	e.t.Helper()
	if _, err := e.admin.Put(ctxFor(e.t, 10*time.Second), key, value, opts...); err != nil {
		e.t.Fatal(err)
	}
}

// get returns the stored key-value, or nil.
func (e *env) get(key string) *kvSnapshot {
	e.t.Helper()
	resp, err := e.admin.Get(ctxFor(e.t, 10*time.Second), key)
	if err != nil {
		e.t.Fatal(err)
	}
	if len(resp.Kvs) == 0 {
		return nil
	}
	kv := resp.Kvs[0]
	return &kvSnapshot{Value: string(kv.Value), Lease: kv.Lease, ModRevision: kv.ModRevision, CreateRevision: kv.CreateRevision, Version: kv.Version}
}

type kvSnapshot struct {
	Value                                       string
	Lease, ModRevision, CreateRevision, Version int64
}

// manager returns a Manager for node with its own client to endpoint (the
// server's unless given), short TTL, and logs captured in e.logs.
func (e *env) manager(node string, endpoint ...string) *Manager {
	e.t.Helper()
	if len(endpoint) == 0 {
		endpoint = []string{e.server.Endpoint()}
	}
	return e.managerWith(node, func(o *Options) { o.Endpoints = endpoint })
}

// managerWith is manager, with the options changed by tweak.
func (e *env) managerWith(node string, tweak func(*Options)) *Manager {
	e.t.Helper()
	o := Options{
		Endpoints:   []string{e.server.Endpoint()},
		Node:        node,
		TTL:         testTTL,
		RenewMargin: testTTL / 2,
		// Short, so that a takeover fits in a test's lease TTL.
		ChallengeTimeout: 300 * time.Millisecond,
		Logger:           slog.New(slog.NewTextHandler(e.logs, &slog.HandlerOptions{Level: slog.LevelDebug})).With("test_node", node),
	}
	tweak(&o)
	m, err := New(o)
	if err != nil {
		e.t.Fatal(err)
	}
	e.t.Cleanup(func() { m.Close() })
	return m
}

// attrsFor returns the attributes node i publishes.
func attrsFor(i int) lease.Attrs {
	return lease.Attrs{
		PublicIP:    netip.AddrFrom4([4]byte{198, 18, byte(i >> 8), byte(i)}),
		BackendType: "vxlan",
		BackendData: json.RawMessage(fmt.Sprintf(`{"VNI":1,"VtepMAC":"0e:00:00:00:%02x:%02x"}`, byte(i>>8), byte(i))),
	}
}

func mustKey(t *testing.T, s string) lease.Key {
	t.Helper()
	k, err := lease.ParseKey(s)
	if err != nil {
		t.Fatal(err)
	}
	return k
}

// reserve writes a reservation (a key with no etcd lease) for owner and
// returns a check that it is unchanged, byte for byte and revision for
// revision.
func (e *env) reserve(key, owner string) func() {
	e.t.Helper()
	a := attrsFor(250)
	a.Owner = owner
	raw, _ := json.Marshal(a)
	path := subnetPath(mustKey(e.t, key))
	e.put(path, string(raw))
	before := e.get(path)
	return func() {
		e.t.Helper()
		if after := e.get(path); after == nil || *after != *before {
			e.t.Errorf("reservation %s changed: %+v -> %+v", key, before, after)
		}
	}
}

func subnetPath(k lease.Key) string { return testPrefix + "/subnets/" + k.String() }

// expire revokes the etcd lease of the key at path, which is what the server
// does when its TTL runs out.
func (e *env) expire(path string) {
	e.t.Helper()
	kv := e.get(path)
	if kv == nil || kv.Lease == 0 {
		e.t.Fatalf("expire %s: no key with a lease (%+v)", path, kv)
	}
	if _, err := e.admin.Revoke(ctxFor(e.t, 5*time.Second), clientv3.LeaseID(kv.Lease)); err != nil {
		e.t.Fatal(err)
	}
}

func waitFor(t *testing.T, d time.Duration, what string, cond func() bool) {
	t.Helper()
	testutil.WaitFor(t, d, what, cond)
}

// keepAsync runs Keep in the background; the returned channel yields its
// result.
func keepAsync(ctx context.Context, m *Manager, l lease.Lease) <-chan error {
	done := make(chan error, 1)
	go func() { done <- m.Keep(ctx, l) }()
	return done
}

func contains(s, sub string) bool { return strings.Contains(s, sub) }

// mustAcquire acquires a lease for m with attrsFor(i), failing the test if
// it cannot.
func mustAcquire(t *testing.T, m *Manager, i int) lease.Lease {
	t.Helper()
	l, err := m.Acquire(ctxFor(t, 10*time.Second), lease.AcquireRequest{Attrs: attrsFor(i)})
	if err != nil {
		t.Fatal(err)
	}
	return l
}
