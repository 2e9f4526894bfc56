//go:build linux

package vxlan

import (
	"runtime"
	"testing"
	"time"

	"github.com/weftnet/weft/internal/netnstest"
)

// TestTXChecksumReadCost: reading the offload back through the ethtool
// library allocates about 1 MiB (it reads every feature's name), and a
// reconcile runs on every batch of peer events. So an unchanged device's
// offload is read once a ResyncInterval, not at every reconcile: the
// reconciles a peer event makes must cost far less than one read.
func TestTXChecksumReadCost(t *testing.T) {
	requireEthtool(t)
	h := netnstest.NewSegment(t, 1).Hosts[0]
	cfg := hostDeviceConfig(t, h, false)
	cfg.TXChecksumOffload = ChecksumOffloadOff
	dp, err := NewDatapath(DatapathConfig{Namespace: h.Handle, Device: cfg, ResyncInterval: time.Hour, Logger: quietLog})
	if err != nil {
		t.Fatal(err)
	}
	defer dp.Close()
	measure := func(f func()) uint64 {
		const runs = 10
		var before, after runtime.MemStats
		runtime.ReadMemStats(&before)
		for range runs {
			f()
		}
		runtime.ReadMemStats(&after)
		return (after.TotalAlloc - before.TotalAlloc) / runs
	}
	read := measure(func() {
		if _, err := (netnsHost{h.Handle}).txChecksum(dp.Device().Name); err != nil {
			t.Fatal(err)
		}
	})
	event := measure(func() {
		if err := dp.reconcile(); err != nil {
			t.Fatal(err)
		}
	})
	t.Logf("one read of the offload allocates %d bytes; a reconcile a peer event makes, %d", read, event)
	if event > read/4 {
		t.Errorf("a reconcile allocates %d bytes, not far below one read of the offload (%d): the offload is read at every reconcile", event, read)
	}
	if got := dp.Status().Offload.State; got != "off" {
		t.Errorf("offload state %q, want off", got)
	}
}
