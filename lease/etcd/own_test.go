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
