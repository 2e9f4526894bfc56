package etcd

import (
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/weftnet/weft/lease"
)

// TestRepublish: a node whose address changed publishes the new one on the
// same key and etcd lease, and keeps it after with no loss; once its
// key is another node's, Republish is a loss and writes nothing.
func TestRepublish(t *testing.T) {
	t.Parallel()
	e := newEnv(t, testConfig)
	m := e.manager("node-a")
	l := mustAcquire(t, m, 1)
	stop := keep(t, m, l)
	time.Sleep(100 * time.Millisecond)
	if err := stop(); err != nil && !strings.Contains(err.Error(), "context canceled") {
		t.Fatal(err)
	}
	before := e.get(subnetPath(l.Key))

	moved := attrsFor(2) // another public address and MAC
	l2, err := m.Republish(ctxFor(t, 5*time.Second), l, moved)
	if err != nil {
		t.Fatal(err)
	}
	after := e.get(subnetPath(l.Key))
	if l2.Key != l.Key || l2.Attrs.PublicIP != moved.PublicIP || !strings.Contains(after.Value, moved.PublicIP.String()) {
		t.Fatalf("republished %+v; stored %q", l2, after.Value)
	}
	if after.Lease != before.Lease || after.CreateRevision != before.CreateRevision {
		t.Errorf("the key moved to another etcd lease or was re-created: %+v, was %+v", after, before)
	}
	stop = keep(t, m, l2)
	time.Sleep(testTTL) // a renewal or more, on the new value
	if err := stop(); err != nil && !strings.Contains(err.Error(), "context canceled") {
		t.Errorf("keeping the republished lease: %v", err)
	}
	if m.Stats().Losses != 0 {
		t.Errorf("%d losses", m.Stats().Losses)
	}

	// Another node's now: nothing is written.
	e.putLease(l.Key, 9, "node-b")
	taken := e.get(subnetPath(l.Key))
	if _, err := m.Republish(ctxFor(t, 5*time.Second), l2, attrsFor(3)); !errors.Is(err, lease.ErrLeaseLost) {
		t.Errorf("republishing another node's key: %v, want ErrLeaseLost", err)
	}
	if got := e.get(subnetPath(l.Key)); got.ModRevision != taken.ModRevision {
		t.Errorf("republish wrote over another node's key: %+v", got)
	}
}
