package etcd

import (
	"testing"
	"time"

	"github.com/weftnet/weft/lease"
)

// TestLargeListingKeepsOnlyTheNodesValues: a listing of the whole prefix
// whose values pass the budget keeps every subnet key, with its
// revisions, but only the values that mention the node (issue 29 item 6:
// a node starting among 75,000 rejected leases held all their values
// through OwnLease and Acquire, 23 MB of its peak). Acquire still keeps
// the node's lease and counts every other key's subnet as taken; the
// first snapshot, which sends every value, lists for itself and sends
// them all.
func TestLargeListingKeepsOnlyTheNodesValues(t *testing.T) {
	t.Parallel()
	// Two subnets free: 10.0.40.0/24 and 10.0.41.0/24.
	e := newEnv(t, `{"Network": "10.0.0.0/16", "SubnetLen": 24, "SubnetMax": "10.0.41.0", "Backend": {"Type": "vxlan"}}`)
	others := e.putLeases(40)
	m := e.manager("node-a")
	m.listingValues = 1000 // passed by the fourth lease or so
	mine := attrsFor(1000)
	la := mustAcquire(t, m, 1000)

	// A node restarting: OwnLease lists, Acquire takes its listing.
	m2 := e.manager("node-a")
	m2.listingValues = 1000
	own, found, err := m2.OwnLease(ctxFor(t, 10*time.Second), lease.AcquireRequest{Attrs: mine})
	if err != nil || !found || own.Key != la.Key {
		t.Fatalf("OwnLease: %v %v %v; want %v", own, found, err, la.Key)
	}
	m2.recent.mu.Lock()
	kept := m2.recent.kept
	m2.recent.mu.Unlock()
	if !kept.compact {
		t.Error("a listing past its budget is not compact")
	}
	withValue := map[string]bool{}
	for _, r := range kept.compacted.records {
		withValue[subnetPath(r.key)] = r.value != nil
	}
	if len(kept.kvs) != 0 || len(withValue) != len(others)+1 || !kept.compacted.hasConfig {
		t.Errorf("the listing holds %d key-values and %d records (config %v); want the config and %d records",
			len(kept.kvs), len(withValue), kept.compacted.hasConfig, len(others)+1)
	}
	for _, o := range others {
		if has, ok := withValue[subnetPath(o.Key)]; !ok || has {
			t.Errorf("%v: listed %v, with its value %v; want listed without", o.Key, ok, has)
		}
	}
	if !withValue[subnetPath(la.Key)] || len(kept.compacted.config) == 0 {
		t.Errorf("the node's lease (%v) or the config lost its value", la.Key)
	}

	// Another node's plan from it counts every listed subnet as taken:
	// it takes the one left.
	pl := kept.parsed(m2)
	cfg, err := m2.parseConfig(pl.config, pl.hasConfig)
	if err != nil {
		t.Fatal(err)
	}
	p, err := e.manager("node-c").plan(cfg, pl.records, lease.Key{}, attrsFor(3000))
	if left := map[string]string{"10.0.40.0-24": "10.0.41.0-24", "10.0.41.0-24": "10.0.40.0-24"}[la.Key.String()]; err != nil || p.key.String() != left {
		t.Errorf("node-c plans %v (%v); want the subnet left, %s", p.key, err, left)
	}

	l2, err := m2.Acquire(ctxFor(t, 10*time.Second), lease.AcquireRequest{Attrs: mine})
	if err != nil || l2.Key != la.Key {
		t.Fatalf("Acquire from the compact listing: %v, %v; want %v kept", l2.Key, err, la.Key)
	}
	w := watchLeases(t, m2)
	snap := w.Snapshot(t)
	byKey := map[lease.Key]lease.Attrs{}
	for _, ev := range snap.Events {
		byKey[ev.Lease.Key] = ev.Lease.Attrs
	}
	for _, o := range others {
		if a, ok := byKey[o.Key]; !ok || a.PublicIP != o.Attrs.PublicIP {
			t.Errorf("the snapshot has %v as %+v (%v); want %v", o.Key, a, ok, o.Attrs.PublicIP)
		}
	}
}
