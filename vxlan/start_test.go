//go:build linux

package vxlan

import (
	"strings"
	"testing"
	"time"
)

// repairsOf is every repair a Datapath reports, device and peers: what
// the status document lists and weftctl status counts.
func repairsOf(dp *Datapath) []Repair {
	st := dp.Status()
	return append(st.Repairs, st.Reconciler.Repairs...)
}

// TestDatapathFreshStartIsNoRepair: the device's first creation and its
// first address are the datapath being set up, not drift corrected, so
// a fresh start reports no repairs; the same device deleted later and
// created again is a repair, reported once.
func TestDatapathFreshStartIsNoRepair(t *testing.T) {
	t.Parallel()
	nodes := newDatapaths(t, 2)
	a := nodes[0]
	waitUntil(t, 5*time.Second, "convergence", func() bool { return a.dp.Synced() && nodes[1].dp.Synced() })
	for _, n := range nodes {
		if r := repairsOf(n.dp); len(r) != 0 {
			t.Errorf("%s: a fresh start reports %d repairs: %+v", n.host.Name, len(r), r)
		}
		if st := n.dp.Status().Reconciler; st.Repaired != 0 {
			t.Errorf("%s: a fresh start's reconciler counts %d repairs", n.host.Name, st.Repaired)
		}
	}

	oldIndex := a.dp.Device().Index
	ip(t, a.node, "ip", "link", "del", "flannel.1")
	waitUntil(t, 5*time.Second, "the device to come back", func() bool {
		return a.dp.Device().Index != oldIndex && a.dp.Synced()
	})
	r := repairsOf(a.dp)
	var device []Repair
	for _, x := range r {
		if x.What == "flannel.1" {
			device = append(device, x)
		}
	}
	if len(device) != 1 || !strings.Contains(device[0].Why, "created") {
		t.Errorf("after the device was deleted, its repairs are %+v; want one re-creation", device)
	}
	// Its address came back with it.
	if out := ip(t, a.node, "ip", "-4", "addr", "show", "dev", "flannel.1"); !strings.Contains(out, "10.244.1.0/32") {
		t.Errorf("the re-created device's addresses: %s", out)
	}
}
