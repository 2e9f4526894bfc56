package etcd

import (
	"encoding/json"
	"fmt"
	"math/rand/v2"
	"net/netip"
	"strings"
	"testing"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/weftnet/weft/lease"
	"github.com/weftnet/weft/lease/admit"
)

// putAs writes key with node i's attributes (attrsFor(i)) and owner,
// attached to etcd lease id (0: a reservation).
func (e *env) putAs(key string, i int, owner string, id clientv3.LeaseID) {
	e.t.Helper()
	a := attrsFor(i)
	a.Owner = owner
	raw, _ := json.Marshal(a)
	var opts []clientv3.OpOption
	if id != 0 {
		opts = append(opts, clientv3.WithLease(id))
	}
	e.put(subnetPath(mustKey(e.t, key)), string(raw), opts...)
}

// grant returns a fresh etcd lease of a minute.
func (e *env) grant() clientv3.LeaseID {
	e.t.Helper()
	g, err := e.admin.Grant(ctxFor(e.t, 10*time.Second), 60)
	if err != nil {
		e.t.Fatal(err)
	}
	return g.ID
}

// leasesNow lists every lease as a watch would send it: Seniority is the
// key's create revision.
func (e *env) leasesNow() []lease.Lease {
	e.t.Helper()
	resp, err := e.admin.Get(ctxFor(e.t, 10*time.Second), testPrefix+"/subnets/", clientv3.WithPrefix())
	if err != nil {
		e.t.Fatal(err)
	}
	var out []lease.Lease
	for _, kv := range resp.Kvs {
		k, err := lease.ParseKey(strings.TrimPrefix(string(kv.Key), testPrefix+"/subnets/"))
		if err != nil {
			e.t.Fatal(err)
		}
		l := lease.Lease{Key: k, Seniority: kv.CreateRevision}
		if err := json.Unmarshal(kv.Value, &l.Attrs); err != nil {
			e.t.Fatal(err)
		}
		out = append(out, l)
	}
	return out
}

// admittedBy returns the subnets node's admission admits, holding own.
func admittedBy(node string, own lease.Key, leases []lease.Lease) []netip.Prefix {
	peers, _ := admit.Compute(admit.Facts{Node: node, Own: own, Network: netip.MustParsePrefix("10.244.0.0/16"), VNI: 1}, leases)
	var out []netip.Prefix
	for _, p := range peers {
		out = append(out, p.Subnet)
	}
	return out
}

func holds(ps []netip.Prefix, p netip.Prefix) bool {
	for _, q := range ps {
		if q == p {
			return true
		}
	}
	return false
}

// TestReservationOverOlderLease (issue 29, item 9): a reservation under
// node-a's name, address and MAC is a /23 that covers node-b's older
// /24. node-a restarts: it does not adopt the reservation but keeps its
// own /24, so that its admission still admits node-b's lease (its route
// to node-b stays); the reservation is reported by key, and left as it is.
func TestReservationOverOlderLease(t *testing.T) {
	t.Parallel()
	e := newEnv(t, testConfig)
	b := e.manager("node-b")
	lb, err := b.Acquire(ctxFor(t, 10*time.Second), lease.AcquireRequest{Attrs: attrsFor(2), Previous: mustKey(t, "10.244.3.0-24")})
	if err != nil || lb.Key != mustKey(t, "10.244.3.0-24") {
		t.Fatalf("node-b: %v %v", lb.Key, err)
	}
	a := e.manager("node-a")
	la, err := a.Acquire(ctxFor(t, 10*time.Second), lease.AcquireRequest{Attrs: attrsFor(1), Previous: mustKey(t, "10.244.1.0-24")})
	if err != nil || la.Key != mustKey(t, "10.244.1.0-24") {
		t.Fatalf("node-a: %v %v", la.Key, err)
	}
	if got := admittedBy("node-a", la.Key, e.leasesNow()); !holds(got, lb.Key.IPv4) {
		t.Fatalf("before: node-a admits %v, not node-b's %v", got, lb.Key)
	}
	e.putAs("10.244.2.0-23", 1, "node-a", 0)
	reservation := e.get(subnetPath(mustKey(t, "10.244.2.0-23")))

	restarted := e.manager("node-a")
	req := lease.AcquireRequest{Attrs: attrsFor(1), Previous: la.Key}
	own, found, err := restarted.OwnLease(ctxFor(t, 10*time.Second), lease.AcquireRequest{Attrs: attrsFor(1)})
	if err != nil || !found || own.Key != la.Key {
		t.Errorf("OwnLease from a listing: %v %v %v; want %v", own.Key, found, err, la.Key)
	}
	got, err := restarted.Acquire(ctxFor(t, 10*time.Second), req)
	if err != nil {
		t.Fatal(err)
	}
	if got.Key != la.Key {
		t.Errorf("restarted node-a took %v; want its own %v, not the reservation over node-b's older %v", got.Key, la.Key, lb.Key)
	}
	if admitted := admittedBy("node-a", got.Key, e.leasesNow()); !holds(admitted, lb.Key.IPv4) {
		t.Errorf("restarted node-a admits %v: its route to node-b's %v is gone", admitted, lb.Key)
	}
	logs := e.logs.String()
	if !contains(logs, "overlaps an older lease") || !contains(logs, "/subnets/10.244.2.0-23") || !contains(logs, "/subnets/10.244.3.0-24") || !contains(logs, "etcdctl del") {
		t.Errorf("the conflict was not reported by key with its fix:\n%s", logs)
	}
	if restarted.Stats().Conflicts == 0 {
		t.Error("Stats().Conflicts is 0")
	}
	if after := e.get(subnetPath(mustKey(t, "10.244.2.0-23"))); after == nil || *after != *reservation {
		t.Errorf("the reservation changed: %+v -> %+v", reservation, after)
	}
}

// TestConflictingLeaseReplaced: a leased key under node-a's name that
// overlaps node-b's older key (written by hand, or by a weft before this
// rule) is not kept: node-a takes a free subnet that overlaps nothing, and
// deletes the conflicting key once it holds it.
func TestConflictingLeaseReplaced(t *testing.T) {
	t.Parallel()
	e := newEnv(t, testConfig)
	e.putAs("10.244.8.0-24", 2, "node-b", e.grant())
	e.putAs("10.244.8.0-23", 1, "node-a", e.grant())
	a := e.manager("node-a")
	got, err := a.Acquire(ctxFor(t, 10*time.Second), lease.AcquireRequest{Attrs: attrsFor(1), Previous: mustKey(t, "10.244.8.0-23")})
	if err != nil {
		t.Fatal(err)
	}
	if overlapping(got.Key, mustKey(t, "10.244.8.0-24")) {
		t.Fatalf("node-a took %v, which overlaps node-b's older 10.244.8.0-24", got.Key)
	}
	if kv := e.get(subnetPath(mustKey(t, "10.244.8.0-23"))); kv != nil {
		t.Errorf("the conflicting key is still there: %+v", kv)
	}
	if admitted := admittedBy("node-a", got.Key, e.leasesNow()); !holds(admitted, netip.MustParsePrefix("10.244.8.0/24")) {
		t.Errorf("node-a admits %v, not node-b's 10.244.8.0/24", admitted)
	}
}

// TestOlderReservationKept: a reservation of node-a's that is older than
// node-b's overlapping key is node-a's to keep; node-b's younger key is
// the one that gives way, on every node's admission and in node-b's own
// Acquire.
func TestOlderReservationKept(t *testing.T) {
	t.Parallel()
	e := newEnv(t, testConfig)
	e.putAs("10.244.6.0-23", 1, "node-a", 0)
	e.putAs("10.244.7.0-24", 2, "node-b", e.grant())
	a := e.manager("node-a")
	la := mustAcquire(t, a, 1)
	if la.Key != mustKey(t, "10.244.6.0-23") {
		t.Fatalf("node-a took %v; want its older reservation 10.244.6.0-23", la.Key)
	}
	b := e.manager("node-b")
	lb := mustAcquire(t, b, 2)
	if overlapping(lb.Key, la.Key) {
		t.Fatalf("node-b kept %v, which overlaps node-a's older reservation %v", lb.Key, la.Key)
	}
	if admitted := admittedBy("node-a", la.Key, e.leasesNow()); !holds(admitted, lb.Key.IPv4) {
		t.Errorf("node-a admits %v, not node-b's %v", admitted, lb.Key)
	}
	if admitted := admittedBy("node-b", lb.Key, e.leasesNow()); !holds(admitted, la.Key.IPv4) {
		t.Errorf("node-b admits %v, not node-a's %v", admitted, la.Key)
	}
}

// TestOverlapProperty drives random histories against a real etcd:
// reservations and leases written under the nodes' names, overlapping
// others or not, keys deleted, and nodes restarting (a new Manager that
// acquires, asking for the subnet it held). After every step: no node
// holds a subnet that overlaps an older lease of another node, and every
// node's admission admits every other node's subnet (its routes stay).
func TestOverlapProperty(t *testing.T) {
	t.Parallel()
	seed := uint64(time.Now().UnixNano())
	t.Logf("seed %d", seed)
	rng := rand.New(rand.NewPCG(seed, 0))
	e := newEnv(t, testConfig)
	const nodes = 4
	name := func(i int) string { return fmt.Sprintf("node-%d", i) }
	held := map[int]lease.Key{}
	// A random subnet in 10.244.0.0/21, /22 to /25: overlaps are common.
	randomKey := func() lease.Key {
		bits := 22 + rng.IntN(4)
		addr := netip.AddrFrom4([4]byte{10, 244, byte(rng.IntN(8)), byte(rng.IntN(256))})
		return lease.Key{IPv4: netip.PrefixFrom(addr, bits).Masked()}
	}
	acquire := func(i int) {
		m := e.managerWith(name(i), func(o *Options) { o.TTL, o.RenewMargin = time.Minute, 30*time.Second })
		defer m.Close()
		l, err := m.Acquire(ctxFor(t, 20*time.Second), lease.AcquireRequest{Attrs: attrsFor(i + 1), Previous: held[i]})
		if err != nil {
			t.Fatalf("%s: Acquire: %v", name(i), err)
		}
		held[i] = l.Key
	}
	for step := range 60 {
		i := rng.IntN(nodes)
		k := randomKey()
		var what string
		switch op := rng.IntN(10); {
		case op < 4:
			what = "restart " + name(i)
			acquire(i)
		case op < 9 && e.get(subnetPath(k)) != nil:
			continue // keys are created, never overwritten: a node's is its own
		case op < 7:
			what = fmt.Sprintf("reservation %v for %s", k, name(i))
			e.putAs(k.String(), i+1, name(i), 0)
		case op < 9:
			what = fmt.Sprintf("lease %v for %s", k, name(i))
			e.putAs(k.String(), i+1, name(i), e.grant())
		default:
			all := e.leasesNow()
			if len(all) == 0 {
				continue
			}
			k = all[rng.IntN(len(all))].Key
			what = fmt.Sprintf("delete %v", k)
			if _, err := e.admin.Delete(ctxFor(t, 10*time.Second), subnetPath(k)); err != nil {
				t.Fatal(err)
			}
			for j, h := range held {
				if h == k {
					delete(held, j)
				}
			}
		}
		all := e.leasesNow()
		for j, k := range held {
			var mine lease.Lease
			for _, l := range all {
				if l.Key == k {
					mine = l
				}
			}
			for _, l := range all {
				if l.Attrs.Owner != name(j) && overlapping(l.Key, k) && l.Older(mine) {
					t.Fatalf("step %d (%s): %s holds %v, which overlaps %s's older %v", step, what, name(j), k, l.Attrs.Owner, l.Key)
				}
			}
			admitted := admittedBy(name(j), k, all)
			for o, ko := range held {
				if o != j && !holds(admitted, ko.IPv4) {
					t.Fatalf("step %d (%s): %s (holding %v) does not admit %s's %v; admits %v", step, what, name(j), k, name(o), ko, admitted)
				}
			}
		}
	}
}
