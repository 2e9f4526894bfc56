package etcd

import (
	"context"
	"encoding/json"
	"errors"
	"testing"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/weftnet/weft/lease"
)

// TestKeepRenews keeps a lease for several TTLs: the key survives, moves to
// fresh etcd leases, and the etcd leases it left are revoked.
func TestKeepRenews(t *testing.T) {
	t.Parallel()
	e := newEnv(t, testConfig)
	m := e.manager("node-a")
	l := mustAcquire(t, m, 1)
	first := e.get(subnetPath(l.Key))
	ctx, cancel := context.WithCancel(context.Background())
	done := keepAsync(ctx, m, l)
	waitFor(t, 3*testTTL, "two renewals", func() bool {
		kv := e.get(subnetPath(l.Key))
		return kv != nil && kv.ModRevision >= first.ModRevision+2
	})
	time.Sleep(testTTL / 2) // past the first lease's TTL too
	cancel()
	if err := <-done; !errors.Is(err, context.Canceled) {
		t.Fatalf("Keep returned %v, want context.Canceled", err)
	}
	now := e.get(subnetPath(l.Key))
	if now == nil {
		t.Fatal("key lapsed while kept")
	}
	if now.Lease == first.Lease || now.CreateRevision != first.CreateRevision || now.Value != first.Value {
		t.Errorf("after renewals %+v, first %+v: want a new etcd lease, same key and value", now, first)
	}
	if st := m.Stats(); st.Renewals < 2 || st.Losses != 0 || st.Condition != "" {
		t.Errorf("Stats after two renewals: %+v", st)
	}
	if ttl, err := e.admin.TimeToLive(ctxFor(t, 5*time.Second), clientv3.LeaseID(first.Lease)); err != nil || ttl.TTL != -1 {
		t.Errorf("the first etcd lease is still alive (TTL %d, %v); renewals should revoke what they leave", ttl.TTL, err)
	}
}

// TestKeepReportsLossAtOnce: a deleted key or one rewritten by another owner
// is reported within a second, not at the next renewal, and Keep writes
// nothing afterwards.
func TestKeepReportsLossAtOnce(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name   string
		change func(e *env, path string)
		want   string
	}{
		{"deleted", func(e *env, path string) {
			if _, err := e.admin.Delete(ctxFor(e.t, 5*time.Second), path); err != nil {
				e.t.Fatal(err)
			}
		}, "was deleted or expired"},
		{"taken over", func(e *env, path string) {
			a := attrsFor(2)
			a.Owner = "node-b"
			raw, _ := json.Marshal(a)
			e.put(path, string(raw))
		}, `is now held by "node-b"`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			e := newEnv(t, testConfig)
			m := e.manager("node-a")
			m.margin = time.Second // renew only every 3s: loss must be seen sooner
			l := mustAcquire(t, m, 1)
			done := keepAsync(ctxFor(t, 20*time.Second), m, l)
			time.Sleep(100 * time.Millisecond)
			path := subnetPath(l.Key)
			tc.change(e, path)
			after := e.get(path)
			changedAt := time.Now()
			select {
			case err := <-done:
				if !errors.Is(err, lease.ErrLeaseLost) || !contains(err.Error(), tc.want) {
					t.Fatalf("Keep returned %v, want ErrLeaseLost saying %q", err, tc.want)
				}
				if d := time.Since(changedAt); d > time.Second {
					t.Errorf("loss reported after %v", d)
				}
			case <-time.After(5 * time.Second):
				t.Fatal("Keep did not report the loss")
			}
			time.Sleep(testTTL)
			if got := e.get(path); (got == nil) != (after == nil) || got != nil && *got != *after {
				t.Errorf("key changed after the loss: %+v -> %+v", after, got)
			}
			if !contains(e.logs.String(), "lease lost") {
				t.Error("the loss was not logged")
			}
			if st := m.Stats(); st.Losses != 1 {
				t.Errorf("Stats after a loss: %+v", st)
			}
		})
	}
}

// TestKeepAdoptsLeaseFromEarlierRun: Keep with a lease this Manager did not
// acquire (the caller restarted and kept it) reads the key, renews it, and
// keeps it. Another node cannot do the same.
func TestKeepAdoptsLeaseFromEarlierRun(t *testing.T) {
	t.Parallel()
	e := newEnv(t, testConfig)
	l := mustAcquire(t, e.manager("node-a"), 1)
	m := e.manager("node-a")
	first := e.get(subnetPath(l.Key))
	ctx, cancel := context.WithCancel(context.Background())
	done := keepAsync(ctx, m, l)
	waitFor(t, testTTL, "a renewal of the adopted lease", func() bool {
		kv := e.get(subnetPath(l.Key))
		return kv != nil && kv.ModRevision > first.ModRevision
	})
	cancel()
	if err := <-done; !errors.Is(err, context.Canceled) {
		t.Fatal(err)
	}
	before := e.get(subnetPath(l.Key))
	err := e.manager("node-b").Keep(ctxFor(t, 5*time.Second), l)
	if !errors.Is(err, lease.ErrLeaseLost) || !contains(err.Error(), `held by "node-a"`) {
		t.Fatalf("node-b keeping node-a's lease: %v", err)
	}
	if after := e.get(subnetPath(l.Key)); *after != *before {
		t.Errorf("node-b's refused Keep wrote: %+v -> %+v", before, after)
	}
}

// TestKeepAcrossServerRestart: etcd restarts while a lease is kept; the
// lease survives and renewals resume.
func TestKeepAcrossServerRestart(t *testing.T) {
	t.Parallel()
	e := newEnv(t, testConfig)
	reservationIntact := e.reserve("10.244.250.0-24", "node-r")
	m := e.manager("node-a")
	l := mustAcquire(t, m, 1)
	ctx, cancel := context.WithCancel(context.Background())
	done := keepAsync(ctx, m, l)
	time.Sleep(testTTL / 4)
	e.server.Restart()
	before := e.get(subnetPath(l.Key))
	if before == nil {
		t.Fatal("lease lapsed across the restart")
	}
	waitFor(t, 2*testTTL, "two renewals after the restart", func() bool {
		kv := e.get(subnetPath(l.Key))
		return kv != nil && kv.ModRevision >= before.ModRevision+2
	})
	select {
	case err := <-done:
		t.Fatalf("Keep ended across a restart: %v", err)
	default:
	}
	cancel()
	<-done
	reservationIntact()
}

// TestRenewIsConditional drives renew directly with a stale view, the race
// Keep's watch usually wins: the key was taken over after this node's last
// write. The renewal must fail as a loss and leave the key alone. A stale
// view of a key that is still this node's (its own write whose reply was
// lost) is adopted and the renewal goes through.
func TestRenewIsConditional(t *testing.T) {
	t.Parallel()
	e := newEnv(t, testConfig)
	m := e.manager("node-a")
	l := mustAcquire(t, m, 1)
	path := subnetPath(l.Key)
	h, _ := m.getHeld(l.Key)
	value, _ := json.Marshal(l.Attrs)

	// Still ours, written again (with a lease) behind the Manager's back.
	g, err := e.admin.Grant(ctxFor(t, 5*time.Second), 60)
	if err != nil {
		t.Fatal(err)
	}
	e.put(path, string(value), clientv3.WithLease(g.ID))
	nh, err := m.renew(ctxFor(t, 5*time.Second), path, l.Attrs, value, h)
	if err != nil || nh.rev <= h.rev || nh.id == 0 {
		t.Fatalf("renew over this node's own newer write: %+v, %v", nh, err)
	}

	// Taken over by node-b.
	other := attrsFor(2)
	other.Owner = "node-b"
	raw, _ := json.Marshal(other)
	e.put(path, string(raw))
	before := e.get(path)
	if _, err := m.renew(ctxFor(t, 5*time.Second), path, l.Attrs, value, nh); !errors.Is(err, lease.ErrLeaseLost) {
		t.Fatalf("renew over node-b's write: %v, want ErrLeaseLost", err)
	}
	if after := e.get(path); *after != *before {
		t.Errorf("renew wrote over node-b: %+v -> %+v", before, after)
	}
}
