package etcd

import (
	"context"
	"encoding/json"
	"testing"
	"time"

	"github.com/weftnet/weft/lease"
)

// TestOwnLease: the lease Acquire would keep, read before Acquire: by
// owner name, or by public IP for flannel's leases; never another host's
// under this node's name, never another node's, and none before there is
// one or while there is no config.
func TestOwnLease(t *testing.T) {
	t.Parallel()
	e := newEnv(t, "")
	m := e.manager("node-a")
	ctx := ctxFor(t, 10*time.Second)
	if _, found, err := m.OwnLease(ctx, lease.AcquireRequest{Attrs: attrsFor(1)}); err != nil || found {
		t.Fatalf("without a config: found %v, %v", found, err)
	}
	e.put(testPrefix+"/config", testConfig)
	put := func(key string, a lease.Attrs) {
		raw, _ := json.Marshal(a)
		e.put(subnetPath(mustKey(t, key)), string(raw))
	}
	other := attrsFor(2)
	other.Owner = "node-b"
	put("10.244.2.0-24", other)
	clone := attrsFor(3)
	clone.Owner = "node-a" // another host under this name
	put("10.244.3.0-24", clone)
	if _, found, err := m.OwnLease(ctx, lease.AcquireRequest{Attrs: attrsFor(1)}); err != nil || found {
		t.Fatalf("with only others' leases: found %v, %v", found, err)
	}
	flannels := attrsFor(1) // flannel's: no owner, this host's public IP
	flannels.BackendData = json.RawMessage(`{"VNI":1,"VtepMAC":"0e:5a:11:0c:e1:01"}`)
	put("10.244.7.0-24", flannels)
	l, found, err := m.OwnLease(ctx, lease.AcquireRequest{Attrs: attrsFor(1)})
	if err != nil || !found || l.Key != mustKey(t, "10.244.7.0-24") || string(l.Attrs.BackendData) != `{"VNI":1,"VtepMAC":"0e:5a:11:0c:e1:01"}` {
		t.Fatalf("flannel's lease of this host: %+v %v %v", l, found, err)
	}
	// What Acquire then keeps is the same lease.
	got, err := m.Acquire(ctx, lease.AcquireRequest{Attrs: attrsFor(1)})
	if err != nil || got.Key != l.Key {
		t.Fatalf("Acquire kept %v (%v), OwnLease said %v", got.Key, err, l.Key)
	}
	if _, found, err := e.manager("node-a").OwnLease(context.Background(), lease.AcquireRequest{Attrs: attrsFor(9)}); err != nil || found {
		t.Errorf("another host with this name: found %v, %v", found, err)
	}
}

// TestOwnLeaseOfPrevious: given the subnet the node held, OwnLease reads
// that lease alone when it is this host's, and otherwise answers as from
// a listing: never another node's or another host's lease under this
// name, and not one the config no longer holds. Reading two keys, it
// keeps no listing: Acquire lists, and its listing is the one WatchLeases
// starts from.
func TestOwnLeaseOfPrevious(t *testing.T) {
	t.Parallel()
	e := newEnv(t, testConfig)
	ctx := ctxFor(t, 10*time.Second)
	m := e.manager("node-a")
	prev := mustKey(t, "10.244.5.0-24")
	req := lease.AcquireRequest{Attrs: attrsFor(1), Previous: prev}
	if _, found, err := m.OwnLease(ctx, req); err != nil || found {
		t.Fatalf("with no lease: found %v, %v", found, err)
	}

	// The previous subnet is another node's now; this node's lease is
	// elsewhere: found by listing.
	e.putLease(prev, 2, "node-b")
	mineKey := mustKey(t, "10.244.6.0-24")
	mine := e.putLease(mineKey, 1, "node-a")
	if l, found, err := m.OwnLease(ctx, req); err != nil || !found || l.Key != mineKey {
		t.Fatalf("previous subnet another node's: %v %v %v; want this node's lease at %v", l.Key, found, err, mineKey)
	}
	// Another host under this node's name at the previous subnet: not
	// this host's, whichever way it is read.
	e.putLease(prev, 3, "node-a")
	if l, found, err := m.OwnLease(ctx, req); err != nil || !found || l.Key != mineKey {
		t.Fatalf("previous subnet another host's: %v %v %v; want %v", l.Key, found, err, mineKey)
	}
	// A previous subnet outside the network: not kept, so not named.
	outside := mustKey(t, "10.9.1.0-24")
	e.putLease(outside, 1, "node-a")
	if l, found, err := m.OwnLease(ctx, lease.AcquireRequest{Attrs: attrsFor(1), Previous: outside}); err != nil || !found || l.Key != mineKey {
		t.Fatalf("previous subnet outside the network: %v %v %v; want %v", l.Key, found, err, mineKey)
	}

	// The previous subnet is this host's: that lease, even with another
	// of its leases at a lower subnet. (A node starting anew: m's last
	// listing would serve its Acquire.)
	low := mustKey(t, "10.244.1.0-24")
	e.putLease(low, 1, "node-a")
	m = e.manager("node-a")
	if l, found, err := m.OwnLease(ctx, lease.AcquireRequest{Attrs: attrsFor(1), Previous: mineKey}); err != nil || !found || l.Key != mineKey || string(l.Attrs.BackendData) != string(mine.Attrs.BackendData) {
		t.Fatalf("previous subnet this host's: %+v %v %v; want %v", l, found, err, mineKey)
	}
	between := e.putLease(mustKey(t, "10.244.8.0-24"), 8, "node-c")
	rev := e.get(subnetPath(between.Key)).ModRevision
	if got, err := m.Acquire(ctx, lease.AcquireRequest{Attrs: attrsFor(1), Previous: mineKey}); err != nil || got.Key != mineKey {
		t.Fatalf("Acquire kept %v (%v), OwnLease said %v", got.Key, err, mineKey)
	}
	snap := watchLeases(t, m).Snapshot(t)
	// Acquire listed right after node-c's write: its listing, which
	// the snapshot is, is at exactly that revision.
	if snap.Revision != rev {
		t.Errorf("snapshot at revision %d; want %d, Acquire's listing's, made just after node-c's lease was written", snap.Revision, rev)
	}
}
