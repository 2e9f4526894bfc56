package hostrules

import (
	"log/slog"
	"net/netip"
	"strings"
	"testing"

	"github.com/weftnet/weft/internal/netnstest"
	"github.com/weftnet/weft/internal/testutil"
)

// TestFamilyDroppedFromConfig: a dual-stack node whose network config
// drops IPv6 (Target.IPv6Network zero, the lease's IPv4 half kept) loses
// its IPv6 masquerade and forward rules: a packet of an address of the old
// IPv6 network leaves with that address, not the node's, and ip6tables
// lists no flannel rule; the IPv4 rules are untouched. A withdrawn lease
// (the Networks kept, no Subnet) keeps both, for the pods still running.
func TestFamilyDroppedFromConfig(t *testing.T) {
	tool := netnstest.RequireIptables(t)
	tool6 := strings.Replace(tool, "iptables-nft", "ip6tables-nft", 1)
	seg := netnstest.NewSegment(t, 2)
	a, b := seg.Hosts[0], seg.Hosts[1]
	a.Iptables(t, tool, "-P", "FORWARD", "DROP")
	a.Iptables(t, tool6, "-P", "FORWARD", "DROP")
	var logs testutil.SyncBuffer
	r := New(Options{Masquerade: true, Forward: true, Namespace: a.Handle, Logger: slog.New(slog.NewTextHandler(&logs, nil))})
	dual := Target{
		Network: netip.MustParsePrefix("10.244.0.0/16"), Subnet: netip.MustParsePrefix("10.244.1.0/24"),
		IPv6Network: netip.MustParsePrefix("fd00:10:244::/56"), IPv6Subnet: netip.MustParsePrefix("fd00:10:244:1::/64"),
	}
	pod4, pod6 := netip.MustParseAddr("10.244.1.2"), netip.MustParseAddr("fd00:10:244:1::2")
	a.AddrAdd(t, "lo", netip.PrefixFrom(pod4, 32))
	a.AddrAdd(t, "lo", netip.PrefixFrom(pod6, 128))
	sources := func(when string, want4, want6 netip.Addr) {
		t.Helper()
		if got := listenSources(t, b, b.Addr.Addr()).sourceOf(t, a, pod4); got != want4 {
			t.Errorf("%s: pod %s's packet arrived from %s, want %s", when, pod4, got, want4)
		}
		if got := listenSources(t, b, b.Addr6.Addr()).sourceOf(t, a, pod6); got != want6 {
			t.Errorf("%s: pod %s's packet arrived from %s, want %s", when, pod6, got, want6)
		}
	}
	flannelRules := func(tool string) int { return strings.Count(a.Iptables(t, tool, "-S"), ForwardComment) }

	if err := r.Apply(dual); err != nil {
		t.Fatal(err)
	}
	sources("dual-stack", a.Addr.Addr(), a.Addr6.Addr())
	if n4, n6 := flannelRules(tool), flannelRules(tool6); n4 != 3 || n6 != 3 {
		t.Fatalf("dual-stack: %d and %d flannel forward rules, want 3 and 3", n4, n6)
	}

	withdrawn := Target{Network: dual.Network, IPv6Network: dual.IPv6Network}
	if err := r.Apply(withdrawn); err != nil {
		t.Fatal(err)
	}
	sources("a withdrawn lease", a.Addr.Addr(), a.Addr6.Addr())

	if err := r.Apply(Target{Network: dual.Network, Subnet: dual.Subnet}); err != nil {
		t.Fatal(err)
	}
	sources("IPv6 dropped from the config", a.Addr.Addr(), pod6)
	if n4, n6 := flannelRules(tool), flannelRules(tool6); n4 != 3 || n6 != 0 {
		t.Errorf("IPv6 dropped from the config: %d and %d flannel forward rules, want 3 and 0:\n%s", n4, n6, a.Iptables(t, tool6, "-S"))
	}
	if !strings.Contains(logs.String(), "fd00:10:244::/56") || !strings.Contains(logs.String(), "removed") {
		t.Errorf("the removal was not logged naming the network:\n%s", logs.String())
	}
	before := logs.String()
	if err := r.Resync(); err != nil {
		t.Fatal(err)
	}
	if after := logs.String(); after != before {
		t.Errorf("a Resync after the removal logged %q", strings.TrimPrefix(after, before))
	}
}
