package etcd

import (
	"encoding/json"
	"errors"
	"fmt"
	"maps"
	"sync"
	"testing"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"

	"context"
	"io"
	"log/slog"

	"github.com/weftnet/weft/lease"
)

func TestAcquireNewSubnet(t *testing.T) {
	t.Parallel()
	e := newEnv(t, testConfig)
	m := e.manager("node-a")
	l := mustAcquire(t, m, 1)
	cfg, _ := lease.ParseConfig([]byte(testConfig))
	if !cfg.IPv4Range().Contains(l.Key.IPv4) || l.Key.IPv6.IsValid() {
		t.Fatalf("acquired %v outside %v", l.Key, cfg.IPv4Range())
	}
	if l.Attrs.Owner != "node-a" || l.Expiration.IsZero() {
		t.Errorf("lease %+v: want owner node-a and an expiration", l)
	}
	kv := e.get(subnetPath(l.Key))
	if kv == nil || kv.Lease == 0 {
		t.Fatalf("stored %+v, want a key attached to an etcd lease", kv)
	}
	var stored lease.Attrs
	if err := json.Unmarshal([]byte(kv.Value), &stored); err != nil || !stored.Equal(l.Attrs) {
		t.Errorf("stored value %s (%v), want %+v", kv.Value, err, l.Attrs)
	}
	ttl, err := e.admin.TimeToLive(ctxFor(t, 5*time.Second), clientv3.LeaseID(kv.Lease))
	if err != nil || ttl.GrantedTTL != int64(testTTL.Seconds()) {
		t.Errorf("etcd lease TTL %+v, %v; want granted %v", ttl, err, testTTL)
	}
}

// TestAcquireKeepsOwnLease restarts a node (a new Manager and client): it
// gets the subnet it holds back, with no previous subnet or a previous
// one another node holds, and creates no other key. (Asked for a free
// previous subnet, the one it runs on, it gets that one instead and its
// older lease goes: TestRestoreRestartedNodeKeepsItsSubnet.)
func TestAcquireKeepsOwnLease(t *testing.T) {
	t.Parallel()
	e := newEnv(t, testConfig)
	// Nothing renews the first lease here: a TTL far above a loaded
	// machine's pauses keeps its expiry out of what is tested.
	longTTL := func(o *Options) { o.TTL, o.RenewMargin = time.Minute, 30*time.Second }
	first := mustAcquire(t, e.managerWith("node-a", longTTL), 1)
	other := mustKey(t, "10.244.77.0-24")
	if other == first.Key {
		other = mustKey(t, "10.244.78.0-24")
	}
	for _, prev := range []lease.Key{{}, other} {
		if prev.IsValid() {
			taker := attrsFor(2)
			taker.Owner = "node-b"
			raw, _ := json.Marshal(taker)
			e.put(subnetPath(other), string(raw))
		}
		before := storedOwners(t, e.admin)
		again, err := e.managerWith("node-a", longTTL).Acquire(ctxFor(t, 10*time.Second), lease.AcquireRequest{Attrs: attrsFor(1), Previous: prev})
		if err != nil {
			t.Fatal(err)
		}
		if again.Key != first.Key {
			t.Errorf("previous %v: restarted node got %v, want its own %v", prev, again.Key, first.Key)
		}
		if after := storedOwners(t, e.admin); !maps.Equal(before, after) {
			t.Errorf("previous %v: the keys went from %v to %v", prev, before, after)
		}
	}
}

// TestAcquireAdoptsFlannelLease: a key written by flanneld (no owner) is
// matched by public IP, and then carries the owner.
func TestAcquireAdoptsFlannelLease(t *testing.T) {
	t.Parallel()
	e := newEnv(t, testConfig)
	k := mustKey(t, "10.244.9.0-24")
	g, err := e.admin.Grant(ctxFor(t, 5*time.Second), 60)
	if err != nil {
		t.Fatal(err)
	}
	e.put(subnetPath(k), `{"PublicIP":"198.18.0.1","PublicIPv6":null,"BackendType":"vxlan","BackendData":{"VNI":1,"VtepMAC":"5a:9d:8e:3f:21:c4"}}`, clientv3.WithLease(g.ID))
	// Another flannel node's key, with a different public IP, is not ours.
	e.put(subnetPath(mustKey(t, "10.244.10.0-24")), `{"PublicIP":"198.18.0.99","PublicIPv6":null,"BackendType":"vxlan","BackendData":{"VNI":1,"VtepMAC":"5a:9d:8e:3f:21:c5"}}`, clientv3.WithLease(g.ID))

	l := mustAcquire(t, e.manager("node-a"), 1)
	if l.Key != k {
		t.Fatalf("got %v, want the flannel lease %v with this node's public IP", l.Key, k)
	}
	var stored lease.Attrs
	json.Unmarshal([]byte(e.get(subnetPath(k)).Value), &stored)
	if stored.Owner != "node-a" {
		t.Errorf("adopted key has owner %q", stored.Owner)
	}
}

func TestAcquirePrevious(t *testing.T) {
	t.Parallel()
	e := newEnv(t, testConfig)
	prev := mustKey(t, "10.244.42.0-24")
	l, err := e.manager("node-a").Acquire(ctxFor(t, 10*time.Second), lease.AcquireRequest{Attrs: attrsFor(1), Previous: prev})
	if err != nil || l.Key != prev {
		t.Fatalf("got %v, %v; want the free previous subnet %v", l.Key, err, prev)
	}

	// Taken by someone else, outside the network, misaligned, or of the
	// wrong shape: a new subnet instead.
	for _, p := range []string{"10.244.42.0-24", "10.99.1.0-24", "10.244.0.0-24", "10.244.42.0-24&fd00::-64", "10.244.40.0-22"} {
		node := "node-" + p
		l, err := e.manager(node).Acquire(ctxFor(t, 10*time.Second), lease.AcquireRequest{Attrs: attrsFor(2), Previous: mustKey(t, p)})
		if err != nil {
			t.Fatal(err)
		}
		if l.Key.String() == p {
			t.Errorf("previous %s was granted although it is not free or not in range", p)
		}
		if l.Key == prev {
			t.Errorf("%s was given the subnet node-a holds", node)
		}
	}
}

// TestReservation: a key with no etcd lease is kept by its owner, renewed
// by no one, and never given to another node.
func TestReservation(t *testing.T) {
	t.Parallel()
	e := newEnv(t, `{"Network": "10.244.0.0/22"}`) // 3 subnets: .1, .2, .3
	res := mustKey(t, "10.244.2.0-24")
	a := attrsFor(1)
	a.Owner = "node-res"
	raw, _ := json.Marshal(a)
	e.put(subnetPath(res), string(raw))

	// Other nodes fill the network and never get the reservation.
	for i := 2; i <= 3; i++ {
		l, err := e.manager(fmt.Sprint("node-", i)).Acquire(ctxFor(t, 10*time.Second), lease.AcquireRequest{Attrs: attrsFor(i), Previous: res})
		if err != nil {
			t.Fatal(err)
		}
		if l.Key == res {
			t.Fatalf("node-%d was given the reservation", i)
		}
	}

	// Its owner gets it and it stays a reservation.
	m := e.manager("node-res")
	l, err := m.Acquire(ctxFor(t, 10*time.Second), lease.AcquireRequest{Attrs: attrsFor(1)})
	if err != nil || l.Key != res || !l.Expiration.IsZero() {
		t.Fatalf("owner got %+v, %v; want the reservation with no expiration", l, err)
	}
	if kv := e.get(subnetPath(res)); kv == nil || kv.Lease != 0 {
		t.Fatalf("reservation now %+v, want no etcd lease", kv)
	}
	// Keeping it past a renewal period neither expires nor renews it.
	before := e.get(subnetPath(res))
	ctx := ctxFor(t, testTTL)
	if err := m.Keep(ctx, l); !errors.Is(err, ctx.Err()) || ctx.Err() == nil {
		t.Fatalf("Keep of a reservation returned %v", err)
	}
	if after := e.get(subnetPath(res)); *after != *before {
		t.Errorf("reservation changed while kept: %+v -> %+v", before, after)
	}
}

// TestAcquireWaitsForConfig: no config is a condition to wait out, not an
// error; the log says what to do.
func TestAcquireWaitsForConfig(t *testing.T) {
	t.Parallel()
	e := newEnv(t, "")
	m := e.manager("node-a")
	done := make(chan error, 1)
	go func() {
		_, err := m.Acquire(ctxFor(t, 20*time.Second), lease.AcquireRequest{Attrs: attrsFor(1)})
		done <- err
	}()
	waitFor(t, 5*time.Second, "a log line about the missing config", func() bool {
		return contains(e.logs.String(), "no network config in etcd at /coreos.com/network/config: write one, e.g. etcdctl put")
	})
	select {
	case err := <-done:
		t.Fatalf("Acquire returned %v before the config existed", err)
	default:
	}
	e.put(testPrefix+"/config", testConfig)
	if err := <-done; err != nil {
		t.Fatal(err)
	}
}

// TestAcquireFullNetworkWaits: a full network is logged plainly and waited
// out; a lease that lapses frees a subnet.
func TestAcquireFullNetworkWaits(t *testing.T) {
	t.Parallel()
	e := newEnv(t, `{"Network": "10.244.0.0/23", "SubnetLen": 25}`) // 3 subnets
	g, err := e.admin.Grant(ctxFor(t, 5*time.Second), 60)
	if err != nil {
		t.Fatal(err)
	}
	for i, k := range []string{"10.244.0.128-25", "10.244.1.0-25", "10.244.1.128-25"} {
		a := attrsFor(10 + i)
		a.Owner = fmt.Sprint("other-", i)
		raw, _ := json.Marshal(a)
		e.put(subnetPath(mustKey(t, k)), string(raw), clientv3.WithLease(g.ID))
	}
	m := e.manager("node-a")
	done := make(chan lease.Lease, 1)
	go func() {
		l, err := m.Acquire(ctxFor(t, 20*time.Second), lease.AcquireRequest{Attrs: attrsFor(1)})
		if err != nil {
			t.Error(err)
		}
		done <- l
	}()
	waitFor(t, 5*time.Second, "an out-of-subnets log line", func() bool {
		return contains(e.logs.String(), "out of subnets: all 3 /25 subnets from 10.244.0.128 to 10.244.1.128 are taken")
	})
	if _, err := e.admin.Delete(ctxFor(t, 5*time.Second), subnetPath(mustKey(t, "10.244.1.0-25"))); err != nil {
		t.Fatal(err)
	}
	if l := <-done; l.Key != mustKey(t, "10.244.1.0-25") {
		t.Errorf("got %v, want the freed subnet", l.Key)
	}
}

// TestMalformedValuesStillTaken: a key whose value is garbage still holds
// its subnet.
func TestMalformedValuesStillTaken(t *testing.T) {
	t.Parallel()
	e := newEnv(t, `{"Network": "10.244.0.0/22"}`)
	e.put(subnetPath(mustKey(t, "10.244.1.0-24")), "{garbage")
	e.put(subnetPath(mustKey(t, "10.244.2.0-24")), `{"PublicIP":"10.0.0.1"}`) // no backend type
	e.put(testPrefix+"/subnets/not-a-key", "x")
	l := mustAcquire(t, e.manager("node-a"), 1)
	if l.Key != mustKey(t, "10.244.3.0-24") {
		t.Fatalf("got %v; the only subnet without a key is 10.244.3.0/24", l.Key)
	}
	if !contains(e.logs.String(), "key=/coreos.com/network/subnets/not-a-key") {
		t.Errorf("no warning names the bad key; logs:\n%s", e.logs.String())
	}
}

// TestNetworkWideKeysTakeNothing: a hand-written key as wide as the
// network, or wider, is no node's subnet (admission rejects it everywhere)
// and must not leave new nodes without one. A longer key still holds its
// subnet.
func TestNetworkWideKeysTakeNothing(t *testing.T) {
	t.Parallel()
	e := newEnv(t, `{"Network": "10.244.0.0/22", "SubnetMin": "10.244.0.0"}`)
	for _, k := range []string{"10.244.0.0-22", "10.0.0.0-8", "0.0.0.0-1"} {
		e.put(subnetPath(mustKey(t, k)), `{"PublicIP":"172.30.0.77","BackendType":"vxlan","BackendData":{"VNI":1,"VtepMAC":"0e:00:00:00:77:01"}}`)
	}
	e.put(subnetPath(mustKey(t, "10.244.2.0-23")), "{garbage") // the upper half
	seen := map[lease.Key]bool{}
	for i := range 2 {
		l := mustAcquire(t, e.manager(fmt.Sprint("node-", i)), 1+i)
		if seen[l.Key] || !mustKey(t, "10.244.0.0-23").IPv4.Overlaps(l.Key.IPv4) {
			t.Fatalf("node-%d got %v; want a distinct subnet of the lower half", i, l.Key)
		}
		seen[l.Key] = true
	}
}

// TestConcurrentAcquirers: 200 nodes, each with its own client, acquire at
// once. Each gets a distinct subnet, no one fails, and no key is written
// twice.
func TestConcurrentAcquirers(t *testing.T) {
	t.Parallel()
	if testing.Short() {
		t.Skip("200 clients")
	}
	e := newEnv(t, testConfig)
	const n = 200
	managers := make([]*Manager, n)
	for i := range managers {
		managers[i] = e.manager(fmt.Sprint("node-", i))
		managers[i].ttl = time.Minute // outlive the test's checks
	}
	leases := make([]lease.Lease, n)
	errs := make([]error, n)
	var wg sync.WaitGroup
	start := make(chan struct{})
	for i := range managers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			<-start
			leases[i], errs[i] = managers[i].Acquire(ctxFor(t, 60*time.Second), lease.AcquireRequest{Attrs: attrsFor(i)})
		}()
	}
	close(start)
	wg.Wait()
	seen := map[lease.Key]int{}
	for i, l := range leases {
		if errs[i] != nil {
			t.Fatalf("node-%d: %v", i, errs[i])
		}
		if j, dup := seen[l.Key]; dup {
			t.Fatalf("node-%d and node-%d both got %v", i, j, l.Key)
		}
		seen[l.Key] = i
	}
	resp, err := e.admin.Get(ctxFor(t, 10*time.Second), testPrefix+"/subnets/", clientv3.WithPrefix())
	if err != nil {
		t.Fatal(err)
	}
	if len(resp.Kvs) != n {
		t.Fatalf("%d keys stored, want %d", len(resp.Kvs), n)
	}
	for _, kv := range resp.Kvs {
		if kv.Version != 1 {
			t.Errorf("%s was written %d times", kv.Key, kv.Version)
		}
	}
}

// TestAcquireUnchangedWritesNothing: a restarted agent (a new Manager)
// whose key already holds what it would write, with time to run on its
// etcd lease, takes the key as it is: no write, the expiry etcd reports,
// and Expiry says the same. With RenewMargin or less left, it renews.
func TestAcquireUnchangedWritesNothing(t *testing.T) {
	t.Parallel()
	e := newEnv(t, testConfig)
	long := func(margin time.Duration) *Manager {
		return e.managerWith("node-a", func(o *Options) { o.TTL, o.RenewMargin = time.Minute, margin })
	}
	first := long(10 * time.Second)
	held := mustAcquire(t, first, 1)
	before := e.revision()

	again := long(10 * time.Second)
	l := mustAcquire(t, again, 1)
	if got := e.revision(); got != before {
		t.Errorf("re-acquiring an unchanged key wrote: revision %d, was %d", got, before)
	}
	if l.Key != held.Key || !l.Attrs.Equal(held.Attrs) {
		t.Errorf("re-acquired %v %+v, want %v %+v", l.Key, l.Attrs, held.Key, held.Attrs)
	}
	if d := l.Expiration.Sub(held.Expiration); d < -2*time.Second || d > time.Second {
		t.Errorf("expiration %v, the etcd lease runs out at %v", l.Expiration, held.Expiration)
	}
	if exp, ok := again.Expiry(l.Key); !ok || !exp.Equal(l.Expiration) {
		t.Errorf("Expiry = %v, %v; want %v", exp, ok, l.Expiration)
	}

	// Less than RenewMargin left: renewed by a write.
	before = e.revision()
	mustAcquire(t, long(59*time.Second), 1)
	if e.revision() == before {
		t.Error("a key with less than RenewMargin left was not renewed")
	}
}

// TestAcquireKeepsTheGrantOfATimedOutWrite: a write that timed out at the
// client but was applied by etcd leaves the key on the grant Acquire
// holds for its next attempt. The next attempt finds the key as it would
// write it and keeps it; the grant is then the key's, and Acquire must
// not revoke it as unused on return, which deletes the key: under a whole
// cluster's restart, BenchmarkScale lost 31 of 3,000 leases this way.
func TestAcquireKeepsTheGrantOfATimedOutWrite(t *testing.T) {
	t.Parallel()
	e := newEnv(t, testConfig)
	m := e.manager("node-a")
	attrs := attrsFor(1)
	attrs.Owner = "node-a"
	value, _ := json.Marshal(attrs)
	k := mustKey(t, "10.244.7.0-24")
	ctx := ctxFor(t, 10*time.Second)
	g, err := e.admin.Grant(ctx, 60)
	if err != nil {
		t.Fatal(err)
	}
	// The timed-out write, as etcd applied it.
	if _, err := e.admin.Put(ctx, subnetPath(k), string(value), clientv3.WithLease(g.ID)); err != nil {
		t.Fatal(err)
	}
	kv := e.get(subnetPath(k))
	grant := g.ID
	p := plan{key: k, how: howKept, existingRev: kv.ModRevision, existingValue: value, existingLease: g.ID}
	if _, won, _, err := m.write(ctx, p, kv.ModRevision, attrs, value, &grant); err != nil || !won {
		t.Fatalf("write: won %v, %v", won, err)
	}
	if h, _ := m.getHeld(k); h.id != g.ID || !h.ours {
		t.Errorf("held %+v: want the grant, as this Manager's to revoke when it renews", h)
	}
	// What Acquire does with a grant left over on return.
	if grant != 0 {
		m.revokeQuietly(grant)
	}
	if e.get(subnetPath(k)) == nil {
		t.Fatal("the kept key was deleted: Acquire revoked the grant it is on")
	}
}

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
