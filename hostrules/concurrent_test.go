package hostrules

import (
	"context"
	"fmt"
	"log/slog"
	"net/netip"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/weftnet/weft/internal/netnstest"
	"github.com/weftnet/weft/internal/testutil"
)

// TestApplyConcurrentWithRun: an embedder's Applies of moving leases, from
// several goroutines, while Run resyncs every millisecond. Whatever the
// interleaving, once the last Apply returns the host holds exactly its
// rules (the blackholes its subnets, the masquerade chain its rules), and
// a Resync then finds nothing to repair and logs nothing.
func TestApplyConcurrentWithRun(t *testing.T) {
	seg := netnstest.NewSegment(t, 1)
	a := seg.Hosts[0]
	var logs testutil.SyncBuffer
	r := New(Options{Masquerade: true, Blackhole: true, Namespace: a.Handle, Logger: slog.New(slog.NewTextHandler(&logs, nil))})
	lease := func(i int) Target {
		return Target{
			Network: netip.MustParsePrefix("10.244.0.0/16"), Subnet: netip.MustParsePrefix(fmt.Sprintf("10.244.%d.0/24", i)),
			IPv6Network: netip.MustParsePrefix("fd00:10:244::/56"), IPv6Subnet: netip.MustParsePrefix(fmt.Sprintf("fd00:10:244:%x::/64", i)),
		}
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { r.Run(ctx, time.Millisecond); close(done) }()
	var wg sync.WaitGroup
	for g := range 4 {
		wg.Go(func() {
			for i := range 20 {
				if err := r.Apply(lease(1 + (g*20+i)%7)); err != nil {
					t.Error(err)
				}
			}
		})
	}
	wg.Wait()
	last := lease(9)
	if err := r.Apply(last); err != nil {
		t.Fatal(err)
	}
	cancel()
	<-done
	if got, want := blackholes(t, a.Netlink()), []netip.Prefix{last.Subnet, last.IPv6Subnet}; !slices.Equal(got, want) {
		t.Errorf("blackhole routes %v, want %v", got, want)
	}
	for i, tg := range [][2]netip.Prefix{{last.Network, last.Subnet}, {last.IPv6Network, last.IPv6Subnet}} {
		if !masqIntact(int(a.Handle), tg[0], tg[1], true) {
			t.Errorf("family %d: the masquerade chain is not the last lease's:\n%s", i, strings.Join(readMasqRules(t, int(a.Handle), i == 1), "\n"))
		}
	}
	before := logs.String()
	if err := r.Resync(); err != nil {
		t.Fatal(err)
	}
	if after := logs.String(); after != before {
		t.Errorf("a Resync after the last Apply logged %q", strings.TrimPrefix(after, before))
	}
	if strings.Contains(before, "changed from outside") {
		t.Errorf("the Applies' own writes were reported as changes from outside:\n%s", before)
	}
}
