package etcd

import (
	"context"
	"encoding/json"
	"sync"
	"testing"
	"time"

	"github.com/weftnet/weft/internal/etcdtest"
	"github.com/weftnet/weft/lease"
)

// orderGate is a noticeGate that holds back the history check, and has
// Keep's watch resume silently, until released: Keep's renewal (or, with
// readWatch, its watch ending) then notices a forgetful store first.
type orderGate struct {
	readWatch bool
	released  chan struct{}
	once      sync.Once
}

func newOrderGate(readWatch bool) *orderGate {
	return &orderGate{readWatch: readWatch, released: make(chan struct{})}
}

func (g *orderGate) history(ctx context.Context) {
	select {
	case <-g.released:
	case <-ctx.Done():
	}
}

func (g *orderGate) watchEnded() bool {
	select {
	case <-g.released:
		return true
	default:
		return g.readWatch
	}
}

func (g *orderGate) release() { g.once.Do(func() { close(g.released) }) }

// backupKind is the backup an operator would take of e's server: etcdctl
// where there is one, else a copy of the data directory.
func (e *env) backupKind() etcdtest.BackupKind {
	if e.server.CanBackup(etcdtest.EtcdctlSnapshot) {
		return etcdtest.EtcdctlSnapshot
	}
	return etcdtest.ColdCopy
}

// owner returns the owner named by k's key, "" if there is none.
func (e *env) owner(k lease.Key) string {
	e.t.Helper()
	kv := e.get(subnetPath(k))
	if kv == nil {
		return ""
	}
	var a lease.Attrs
	json.Unmarshal([]byte(kv.Value), &a)
	return a.Owner
}

// TestRestoreRenewalNoticesFirst is issue 29's observed move, forced: etcd
// is restored from a backup taken before node-b moved, so the store holds
// node-b's older lease and lacks the one it runs on, which is free. Keep's
// renewal finds the key gone before the history check runs. node-b must
// re-assert the subnet it runs on, not move back to the restored one.
func TestRestoreRenewalNoticesFirst(t *testing.T) {
	t.Parallel()
	for _, readWatch := range []bool{false, true} {
		name := "renewal"
		if readWatch {
			name = "renewal or watch"
		}
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			e := newEnv(t, testConfig)
			long := func(o *Options) { o.TTL, o.RenewMargin = 10*time.Second, 8*time.Second } // renew every 2 s; a restored lease lives 10 s
			mb := e.managerWith("node-b", long)
			a, b := hold(t, e.managerWith("node-a", long), 1), hold(t, mb, 2)
			la, lb := waitHeld(t, a), waitHeld(t, b)
			backup := e.server.Backup(e.backupKind())

			taker := attrsFor(9)
			taker.Owner = "taker"
			raw, _ := json.Marshal(taker)
			e.put(subnetPath(lb.Key), string(raw))
			var lb2 lease.Lease
			waitFor(t, 10*time.Second, "node-b to move", func() bool {
				lb2, _ = b.current()
				return lb2.Key != lb.Key
			})

			gate := newOrderGate(readWatch)
			mb.history.setGate(gate)
			defer gate.release()
			e.server.Restore(backup, nil)
			waitFor(t, 15*time.Second, "node-b's Keep to notice the restore", func() bool {
				l, _ := b.current()
				return l.Key != lb2.Key || e.owner(lb2.Key) == "node-b"
			})
			gate.release()
			if l, _ := b.current(); l.Key != lb2.Key {
				t.Fatalf("node-b moved to %v after the restore; it runs on %v, which nobody holds (owner %q)\n%s", l.Key, lb2.Key, e.owner(lb2.Key), e.logs)
			}
			waitFor(t, 10*time.Second, "node-b's restored older lease to go", func() bool { return e.owner(lb.Key) != "node-b" })
			if l, _ := a.current(); l.Key != la.Key || e.owner(la.Key) != "node-a" {
				t.Errorf("node-a: %v (owner of its key %q), want it to keep %v", l.Key, e.owner(la.Key), la.Key)
			}
		})
	}
}

// TestRestoreRestartedNodeKeepsItsSubnet: a node down while etcd was
// restored from a backup that holds its older lease comes back asking for
// the subnet it ran on (from subnet.env or its local state). A listing is
// then the first to see the store: the node gets the subnet it ran on,
// free, and the older lease goes; when another node holds that subnet now,
// the node takes its own older lease, as before.
func TestRestoreRestartedNodeKeepsItsSubnet(t *testing.T) {
	t.Parallel()
	for _, taken := range []bool{false, true} {
		name := "free"
		if taken {
			name = "taken"
		}
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			e := newEnv(t, testConfig)
			first := mustAcquire(t, e.manager("node-b"), 2)
			backup := e.server.Backup(e.backupKind())
			taker := attrsFor(9)
			taker.Owner = "taker"
			raw, _ := json.Marshal(taker)
			e.put(subnetPath(first.Key), string(raw))
			running, err := e.manager("node-b").Acquire(ctxFor(t, 10*time.Second), lease.AcquireRequest{Attrs: attrsFor(2), Previous: first.Key})
			if err != nil || running.Key == first.Key {
				t.Fatalf("node-b's second lease: %v, %v", running.Key, err)
			}

			e.server.Restore(backup, func(endpoint string) {
				if !taken {
					return
				}
				joiner := attrsFor(4)
				joiner.Owner = "joiner"
				raw, _ := json.Marshal(joiner)
				if _, err := etcdtest.NewClient(t, endpoint).Put(ctxFor(t, 10*time.Second), subnetPath(running.Key), string(raw)); err != nil {
					t.Fatal(err)
				}
			})
			got, err := e.manager("node-b").Acquire(ctxFor(t, 20*time.Second), lease.AcquireRequest{Attrs: attrsFor(2), Previous: running.Key})
			if err != nil {
				t.Fatal(err)
			}
			switch {
			case !taken && got.Key != running.Key:
				t.Fatalf("node-b was given %v after the restore; it runs on %v, which nobody holds\n%s", got.Key, running.Key, e.logs)
			case !taken && e.owner(first.Key) == "node-b":
				t.Errorf("node-b's older lease %v, which the backup brought back, is still there", first.Key)
			case taken && got.Key != first.Key:
				t.Errorf("node-b was given %v; the joiner holds %v, and node-b's own older lease is %v", got.Key, running.Key, first.Key)
			case taken && e.owner(running.Key) != "joiner":
				t.Errorf("the joiner's key is %q's", e.owner(running.Key))
			}
		})
	}
}
