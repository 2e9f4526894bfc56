//go:build linux

package vxlan

import (
	"context"
	"net/netip"
	"testing"
	"time"
)

// TestFakeHostIsFaithful: a Datapath on the fake host programs its peers
// into it, a resync of them writes nothing (the fake lists back what was
// written as the kernel would), a changed peer is one peer's writes, and
// a removed one leaves nothing behind. The scale harness rests on this.
func TestFakeHostIsFaithful(t *testing.T) {
	h := newFakeHost(netip.MustParseAddr("172.16.0.1"), 12)
	dp, err := NewDatapath(DatapathConfig{
		Device:         DeviceConfig{VNI: 1, Local: netip.MustParseAddr("172.16.0.1"), Underlay: underlayIndex, MAC: DeriveMAC("n", 1)},
		Subnet:         netip.MustParsePrefix("10.0.0.0/24"),
		Logger:         quietLog,
		host:           h,
		ResyncInterval: time.Hour,
	})
	if err != nil {
		t.Fatal(err)
	}
	defer dp.Close()
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- dp.Run(ctx) }()
	defer func() { cancel(); <-done }()
	peers := benchPeers(100)
	if err := dp.SetPeers(peers); err != nil {
		t.Fatal(err)
	}
	waitUntil(t, 5*time.Second, "the peers programmed", func() bool { return dp.Synced() && dp.Counts().Programmed == 100 })
	if r, n, f := h.counts(); r != 100 || n != 100 || f != 100 {
		t.Fatalf("the fake holds %d routes, %d neighbours, %d FDB entries; want 100 each", r, n, f)
	}
	before := h.writes.Load()
	if err := dp.Reconcile(); err != nil {
		t.Fatal(err)
	}
	if w := h.writes.Load() - before; w != 0 {
		t.Errorf("a resync of what was written wrote %d times", w)
	}
	if st := dp.Status().Reconciler; st.Repaired != 0 {
		t.Errorf("%d repairs on a fake nothing changed", st.Repaired)
	}
	moved := peers[7]
	moved.VtepMAC[5]++
	before = h.writes.Load()
	if err := dp.SetPeer(moved); err != nil {
		t.Fatal(err)
	}
	if w := h.writes.Load() - before; w < 2 || w > 4 {
		t.Errorf("a new VTEP MAC cost %d writes", w)
	}
	if err := dp.RemovePeer(peers[3].Subnet); err != nil {
		t.Fatal(err)
	}
	if err := dp.Reconcile(); err != nil {
		t.Fatal(err)
	}
	if r, n, f := h.counts(); r != 99 || n != 99 || f != 99 {
		t.Errorf("after one removal: %d routes, %d neighbours, %d FDB entries; want 99 each", r, n, f)
	}
}
