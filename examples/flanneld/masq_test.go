package main

import (
	"net/netip"
	"testing"
	"time"

	"github.com/weftnet/weft/internal/netnstest"
)

// TestMasquerade applies the --ip-masq rules in a simulated host and checks
// them with real traffic: a pod-network source talking to an address
// outside the network gets no reply without masquerading (the other host
// cannot route back to pod addresses) and gets one with it. Applying again
// changes nothing.
func TestMasquerade(t *testing.T) {
	seg := netnstest.NewSegment(t, 2)
	a, b := seg.Hosts[0], seg.Hosts[1]
	pod := netip.MustParseAddr("10.244.1.5")
	a.AddrAdd(t, "lo", netip.PrefixFrom(pod, 32))
	echo := b.ListenEcho(t, b.Addr.Addr())
	if err := a.Exchange(pod, echo.Addr, []byte("before"), 300*time.Millisecond); err == nil {
		t.Fatal("a pod address reached the outside without masquerading; the test proves nothing")
	}
	network, subnet := netip.MustParsePrefix("10.244.0.0/16"), netip.MustParsePrefix("10.244.1.0/24")
	if masqRuleCount(int(a.Handle), false) != -1 {
		t.Fatal("masquerade table exists before it was applied")
	}
	for i := 0; i < 2; i++ {
		if err := applyMasq(int(a.Handle), network, subnet); err != nil {
			t.Fatal(err)
		}
		if n := masqRuleCount(int(a.Handle), false); n != 4 {
			t.Fatalf("after apply %d: %d rules, want 4", i+1, n)
		}
	}
	if err := a.WaitExchange(pod, echo.Addr, 5*time.Second); err != nil {
		t.Fatalf("with masquerading: %v", err)
	}
	// Pod-to-pod traffic inside the network is returned, not masqueraded:
	// the first rule; checked here by its presence in the ordered set.
	if got := len(masqRules(network, subnet)[0]); got != 7 {
		t.Errorf("first rule has %d expressions", got)
	}
}
