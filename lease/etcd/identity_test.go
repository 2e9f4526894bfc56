package etcd

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/weftnet/weft/lease"
)

// revision is the store's current revision: each write moves it by one.
func (e *env) revision() int64 {
	e.t.Helper()
	resp, err := e.admin.Get(ctxFor(e.t, 5*time.Second), "/none")
	if err != nil {
		e.t.Fatal(err)
	}
	return resp.Header.Revision
}

// ownedBy lists the subnet keys whose value names owner, with their
// public IPs.
func (e *env) ownedBy(owner string) map[string]string {
	e.t.Helper()
	resp, err := e.admin.Get(ctxFor(e.t, 5*time.Second), testPrefix+"/subnets/", clientv3.WithPrefix())
	if err != nil {
		e.t.Fatal(err)
	}
	out := map[string]string{}
	for _, kv := range resp.Kvs {
		var a lease.Attrs
		if json.Unmarshal(kv.Value, &a) == nil && a.Owner == owner {
			out[string(kv.Key)] = a.PublicIP.String()
		}
	}
	return out
}

// keep runs m.Keep(l) until the returned stop is called.
func keep(t *testing.T, m *Manager, l lease.Lease) (stop func() error) {
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- m.Keep(ctx, l) }()
	var once sync.Once
	var err error
	stop = func() error {
		once.Do(func() { cancel(); err = <-done })
		return err
	}
	t.Cleanup(func() { stop() })
	return stop
}

// TestClonedHostsCollide: a second host with the same name (a cloned VM)
// does not take the first's lease. It waits, naming both hosts and the
// fix in its condition and log, with a few writes a round; the holder
// answers each claim and keeps its key and readiness. When the holder
// goes, the clone takes the lease over.
func TestClonedHostsCollide(t *testing.T) {
	t.Parallel()
	e := newEnv(t, testConfig)
	first := e.manager("node-a")
	held := mustAcquire(t, first, 1)
	stopFirst := keep(t, first, held)

	clone := e.manager("node-a")
	before := e.revision()
	const wait = 4 * time.Second
	_, err := clone.Acquire(ctxFor(t, wait), lease.AcquireRequest{Attrs: attrsFor(2)})
	if !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("the clone's Acquire: %v, want it to wait", err)
	}
	writes := e.revision() - before
	// Each round is a claim and its answer, about every 6 challenge
	// timeouts (1.8 s here); the holder's renewals come every TTL/2.
	rounds := int64(wait/(challengeRounds*300*time.Millisecond*3/4)) + 1
	renewals := int64(wait/(testTTL/2)) + 1
	if writes > 2*rounds+renewals {
		t.Errorf("%d writes in %v of collision, want at most %d", writes, wait, 2*rounds+renewals)
	}
	t.Logf("%d writes in %v of collision (rounds of %v; with the defaults, rounds of %v)", writes, wait,
		challengeRounds*300*time.Millisecond, challengeRounds*DefaultChallengeTimeout)
	for _, want := range []string{"198.18.0.1", "198.18.0.2", "--node-name", "NODE_NAME", "node-a"} {
		if cond := clone.Stats().Condition; !contains(cond, want) {
			t.Errorf("the clone's condition %q does not name %q", cond, want)
		}
	}
	if !contains(e.logs.String(), "level=ERROR") || !contains(e.logs.String(), "other_host=198.18.0.2") {
		t.Errorf("no error logged on either side:\n%s", e.logs)
	}
	if got := e.ownedBy("node-a"); len(got) != 1 || got[testPrefix+"/subnets/"+held.Key.String()] != "198.18.0.1" {
		t.Fatalf("keys under node-a during the collision: %v; want only the first host's", got)
	}
	if first.Stats().Collisions == 0 {
		t.Error("the holder answered no claim")
	}

	// The holder stops; its key stays until its TTL. The clone takes it
	// over at its next challenge.
	if err := stopFirst(); !errors.Is(err, context.Canceled) {
		t.Fatalf("the holder's Keep: %v", err)
	}
	l, err := clone.Acquire(ctxFor(t, 10*time.Second), lease.AcquireRequest{Attrs: attrsFor(2)})
	if err != nil {
		t.Fatal(err)
	}
	if got := e.ownedBy("node-a"); len(got) != 1 || got[testPrefix+"/subnets/"+l.Key.String()] != "198.18.0.2" {
		t.Fatalf("keys under node-a after the holder left: %v", got)
	}
}

// TestHolderOutlivesATakeover: a holder cut off while a clone took its
// key over sees the takeover when it is back, and gives the key up, so
// that the two never both hold it.
func TestHolderOutlivesATakeover(t *testing.T) {
	t.Parallel()
	e := newEnv(t, testConfig)
	first := e.manager("node-a")
	held := mustAcquire(t, first, 1)
	stop := keep(t, first, held)
	// The clone's write as a takeover leaves it: no claim, another host.
	other := attrsFor(2)
	other.Owner = "node-a"
	raw, _ := json.Marshal(other)
	e.put(testPrefix+"/subnets/"+held.Key.String(), string(raw), clientv3.WithIgnoreLease())
	waitFor(t, 5*time.Second, "the holder to give up the key another host took over", func() bool { return first.Stats().Losses > 0 })
	if err := stop(); !errors.Is(err, lease.ErrLeaseLost) || !errors.Is(err, ErrIdentityCollision) {
		t.Fatalf("Keep: %v, want a loss by collision", err)
	}
}

// TestSecondDaemonOnOneHost: two agents of one host (same name, same
// address) share the lease without writing over each other in a loop.
func TestSecondDaemonOnOneHost(t *testing.T) {
	t.Parallel()
	e := newEnv(t, testConfig)
	a, b := e.manager("node-a"), e.manager("node-a")
	la := mustAcquire(t, a, 1)
	keep(t, a, la)
	lb := mustAcquire(t, b, 1)
	if lb.Key != la.Key {
		t.Fatalf("the second daemon took %v, the first holds %v", lb.Key, la.Key)
	}
	keep(t, b, lb)
	before := e.revision()
	const d = 3 * time.Second
	time.Sleep(d)
	// Each renews on its own schedule, every TTL/2 at most.
	if writes, most := e.revision()-before, 2*(int64(d/(testTTL/2))+1); writes > most {
		t.Errorf("%d writes in %v by two daemons of one host, want at most %d", writes, d, most)
	}
	if a.Stats().Losses+b.Stats().Losses != 0 {
		t.Errorf("a daemon lost the lease: %+v %+v", a.Stats(), b.Stats())
	}
}

// TestTwinsAcquireAtOnce: two hosts with one name start at the same
// moment, with no key yet. However their listings and creates interleave,
// one ends up with the name's only key and the other waits.
func TestTwinsAcquireAtOnce(t *testing.T) {
	t.Parallel()
	e := newEnv(t, testConfig)
	for i := range 8 {
		node := fmt.Sprint("twin-", i)
		var wg sync.WaitGroup
		errs := make([]error, 2)
		for j := range 2 {
			m := e.manager(node)
			wg.Go(func() {
				var l lease.Lease
				l, errs[j] = m.Acquire(ctxFor(t, 1500*time.Millisecond), lease.AcquireRequest{Attrs: attrsFor(10*i + j + 1)})
				if errs[j] == nil {
					keep(t, m, l) // the winner answers the other's claims
				}
			})
		}
		wg.Wait()
		won := 0
		for _, err := range errs {
			if err == nil {
				won++
			}
		}
		if got := e.ownedBy(node); won != 1 || len(got) != 1 {
			t.Fatalf("round %d: %d acquired (%v), keys %v; want one of each", i, won, errs, got)
		}
	}
	t.Logf("of 8 rounds, %d had both create a key and the later withdraw",
		strings.Count(e.logs.String(), "created a key at the same time; withdrew this one"))
}

// TestForeignShortLeaseRenewedInTime: another writer of this host moves
// the key to an etcd lease far shorter than this Manager's TTL. The next
// renewal is scheduled by what that lease has left, not by this Manager's
// TTL, so the key never lapses.
func TestForeignShortLeaseRenewedInTime(t *testing.T) {
	t.Parallel()
	e := newEnv(t, testConfig)
	m := e.managerWith("node-a", func(o *Options) {
		o.TTL, o.RenewMargin = time.Hour, 2*time.Second
	})
	l := mustAcquire(t, m, 1)
	keep(t, m, l)
	path := subnetPath(l.Key)
	before := e.get(path)

	g, err := e.admin.Grant(ctxFor(t, 5*time.Second), 4)
	if err != nil {
		t.Fatal(err)
	}
	e.put(path, before.Value, clientv3.WithLease(g.ID))
	time.Sleep(6 * time.Second) // past the short lease's end
	after := e.get(path)
	switch {
	case after == nil:
		t.Fatalf("the key lapsed with the 4 s lease it was moved to; stats %+v", m.Stats())
	case after.Lease == int64(g.ID):
		t.Fatalf("the key still rides the 4 s lease after 6 s")
	}
	if s := m.Stats(); s.Losses != 0 {
		t.Errorf("the lease was lost: %+v", s)
	}
}

// TestClonesChallengeADeadHolder: two clones of a host that is gone (its
// key still has time to live) start at once under its name. They do not
// overwrite each other's claims for ever: one takes the key over, and the
// other then finds it answered, a collision.
func TestClonesChallengeADeadHolder(t *testing.T) {
	t.Parallel()
	e := newEnv(t, testConfig)
	// The dead holder's key, as its Manager wrote it.
	gone := e.manager("node-a")
	held := mustAcquire(t, gone, 1)
	gone.Close()
	path := subnetPath(held.Key)
	g, err := e.admin.Grant(ctxFor(t, 5*time.Second), 3600)
	if err != nil {
		t.Fatal(err)
	}
	e.put(path, e.get(path).Value, clientv3.WithLease(g.ID))

	type result struct {
		l   lease.Lease
		err error
	}
	results := make(chan result, 2)
	for i := range 2 {
		// A challenge timeout the winner's answer fits in even on a loaded
		// machine: an answer later than that has the loser try a takeover
		// (which then fails, as the answer moved the key), and the count
		// below would mistake load for the clones fighting.
		m := e.managerWith("node-a", func(o *Options) { o.ChallengeTimeout = time.Second })
		go func() {
			l, err := m.Acquire(ctxFor(t, 8*time.Second), lease.AcquireRequest{Attrs: attrsFor(2 + i)})
			if err == nil {
				keep(t, m, l) // the winner answers the loser's claims
			}
			results <- result{l, err}
		}()
	}
	var won []lease.Lease
	var waited []error
	for range 2 {
		r := <-results
		if r.err == nil {
			won = append(won, r.l)
		} else {
			waited = append(waited, r.err)
		}
	}
	if len(won) != 1 {
		t.Fatalf("%d clones acquired (%v); want exactly one to take the dead host's key over, the other to wait (%v)", len(won), won, waited)
	}
	if won[0].Key != held.Key {
		t.Errorf("the clone took %v, not the name's key %v", won[0].Key, held.Key)
	}
	if !errors.Is(waited[0], context.DeadlineExceeded) {
		t.Errorf("the other clone: %v, want it to wait", waited[0])
	}
	if got := e.ownedBy("node-a"); len(got) != 1 {
		t.Errorf("keys under the name: %v, want one", got)
	}
	if !strings.Contains(e.logs.String(), "presents this node's name") {
		t.Errorf("the waiting clone never reported the collision:\n%s", e.logs)
	}
	// Each clone overwriting the other's claim would have both try a
	// takeover every challenge timeout.
	if n := strings.Count(e.logs.String(), "did not answer; taking it over"); n != 1 {
		t.Errorf("%d takeovers were tried, want 1:\n%s", n, e.logs)
	}
}
