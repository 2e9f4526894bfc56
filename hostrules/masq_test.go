package hostrules

import (
	"net/netip"
	"slices"
	"testing"
	"time"

	"github.com/google/nftables"
	"github.com/google/nftables/expr"

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
	// Applied again, with and without fully random ports
	// (--ip-masq-fully-random-disable): the same six rules, the
	// masquerade verdicts as asked.
	for i, randomFully := range []bool{true, false, true} {
		if err := applyMasq(int(a.Handle), network, subnet, randomFully); err != nil {
			t.Fatal(err)
		}
		if n := masqRuleCount(int(a.Handle), false); n != 6 {
			t.Fatalf("after apply %d: %d rules, want 6", i+1, n)
		}
		if got := masqFullyRandom(t, int(a.Handle)); !slices.Equal(got, []bool{randomFully, randomFully}) {
			t.Errorf("apply %d: the masquerade verdicts are fully random %v, want %v", i+1, got, randomFully)
		}
	}
	if err := a.WaitExchange(pod, echo.Addr, 5*time.Second); err != nil {
		t.Fatalf("with masquerading: %v", err)
	}
	// The order and content of the rules are read back from the kernel by
	// TestMasqRulesReadBack; the mark rule's effect on traffic is
	// TestMasqueradeSkipsKubeProxyMark's.
}

// masqFullyRandom reads the masquerade verdicts of the table back from the
// kernel: whether each is fully random.
func masqFullyRandom(t *testing.T, nsFD int) []bool {
	t.Helper()
	c, err := nftables.New(nftables.WithNetNSFd(nsFD))
	if err != nil {
		t.Fatal(err)
	}
	rules, err := c.GetRules(&nftables.Table{Name: MasqueradeTable, Family: nftables.TableFamilyIPv4}, &nftables.Chain{Name: "postrouting"})
	if err != nil {
		t.Fatal(err)
	}
	var out []bool
	for _, r := range rules {
		for _, e := range r.Exprs {
			if m, ok := e.(*expr.Masq); ok {
				out = append(out, m.FullyRandom)
			}
		}
	}
	return out
}
