package hostrules

import (
	"log/slog"
	"net/netip"
	"slices"
	"strings"
	"testing"

	"github.com/google/nftables"
	"github.com/google/nftables/expr"
	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"

	"github.com/weftnet/weft/internal/netnstest"
	"github.com/weftnet/weft/internal/testutil"
)

// TestRulesFollowTheLease drives a Rules through the Targets an agent
// gives it, in a host whose FORWARD policy is DROP, and checks after each
// step what a user sees: a pod's packet to the outside leaves with the
// node's address (both families), the blackhole routes are the node's
// subnets, and iptables lists flannel's forward rules. A lease moved to
// another subnet moves the masquerade rules and the blackholes with it;
// rules deleted from outside are back after one Resync, and a Resync with
// nothing drifted writes and logs nothing, and one edited in place is
// repaired like a deleted one; a withdrawn lease takes the
// blackholes and leaves the masquerade and forward rules to running pods.
func TestRulesFollowTheLease(t *testing.T) {
	tool := netnstest.RequireIptables(t)
	seg := netnstest.NewSegment(t, 2)
	a, b := seg.Hosts[0], seg.Hosts[1]
	a.Iptables(t, tool, "-P", "FORWARD", "DROP") // iptables' filter table, as Docker leaves it
	var logs testutil.SyncBuffer
	r := New(Options{Masquerade: true, Forward: true, Blackhole: true, Namespace: a.Handle,
		Logger: slog.New(slog.NewTextHandler(&logs, nil))})

	network, network6 := netip.MustParsePrefix("10.244.0.0/16"), netip.MustParsePrefix("fd00:10:244::/56")
	lease := func(i int) Target {
		return Target{
			Network: network, Subnet: netip.PrefixFrom(netip.AddrFrom4([4]byte{10, 244, byte(i), 0}), 24),
			IPv6Network: network6, IPv6Subnet: netip.MustParsePrefix("fd00:10:244:" + string(rune('0'+i)) + "::/64"),
		}
	}
	pods := map[netip.Addr]bool{}
	masqueraded := func(when string, tg Target) {
		t.Helper()
		for _, fam := range []struct {
			pod, node, dst netip.Addr
		}{
			{tg.Subnet.Addr().Next().Next(), a.Addr.Addr(), b.Addr.Addr()},
			{tg.IPv6Subnet.Addr().Next().Next(), a.Addr6.Addr(), b.Addr6.Addr()},
		} {
			if !pods[fam.pod] {
				a.AddrAdd(t, "lo", netip.PrefixFrom(fam.pod, fam.pod.BitLen()))
				pods[fam.pod] = true
			}
			if got := listenSources(t, b, fam.dst).sourceOf(t, a, fam.pod); got != fam.node {
				t.Errorf("%s: a packet of pod %s arrived from %s, want the node's %s", when, fam.pod, got, fam.node)
			}
		}
	}
	blackholed := func(when string, want ...netip.Prefix) {
		t.Helper()
		if got := blackholes(t, a.Netlink()); !slices.Equal(got, want) {
			t.Errorf("%s: blackhole routes %v, want %v", when, got, want)
		}
	}
	forwarded := func(when string) {
		t.Helper()
		rules := a.Iptables(t, tool, "-S")
		for _, want := range []string{
			`-A FORWARD -m comment --comment "flanneld forward" -j FLANNEL-FWD`,
			`-A FLANNEL-FWD -s 10.244.0.0/16 -m comment --comment "flanneld forward" -j ACCEPT`,
			`-A FLANNEL-FWD -d 10.244.0.0/16 -m comment --comment "flanneld forward" -j ACCEPT`,
		} {
			if strings.Count(rules, want+"\n") != 1 {
				t.Errorf("%s: iptables -S does not list %q once:\n%s", when, want, rules)
			}
		}
	}

	first := lease(1)
	if err := r.Apply(first); err != nil {
		t.Fatal(err)
	}
	masqueraded("the first lease", first)
	blackholed("the first lease", first.Subnet, first.IPv6Subnet)
	forwarded("the first lease")

	second := lease(2)
	if err := r.Apply(second); err != nil {
		t.Fatal(err)
	}
	masqueraded("a moved lease", second)
	blackholed("a moved lease", second.Subnet, second.IPv6Subnet)
	forwarded("a moved lease")
	for _, rule := range readMasqRules(t, int(a.Handle), false) {
		if strings.Contains(rule, first.Subnet.String()) {
			t.Errorf("a moved lease: the masquerade rule %q still names the old subnet", rule)
		}
	}

	// Drift: the IPv4 masquerade table deleted; in the IPv6 one, the
	// pods' masquerade rule replaced by a return, which leaves the count
	// of rules as it was; a blackhole route deleted, the FORWARD jump
	// removed.
	c, err := nftables.New(nftables.WithNetNSFd(int(a.Handle)))
	if err != nil {
		t.Fatal(err)
	}
	c.DelTable(&nftables.Table{Name: MasqueradeTable, Family: nftables.TableFamilyIPv4})
	table6 := &nftables.Table{Name: MasqueradeTable, Family: nftables.TableFamilyIPv6}
	chain6 := &nftables.Chain{Name: "postrouting", Table: table6}
	rules6, err := c.GetRules(table6, chain6)
	if err != nil || len(rules6) != 6 {
		t.Fatalf("the IPv6 masquerade chain: %d rules, %v", len(rules6), err)
	}
	if err := c.DelRule(rules6[4]); err != nil {
		t.Fatal(err)
	}
	c.AddRule(&nftables.Rule{Table: table6, Chain: chain6, Exprs: join(match(true, network6, true), &expr.Verdict{Kind: expr.VerdictReturn})})
	if err := c.Flush(); err != nil {
		t.Fatal(err)
	}
	if n := masqRuleCount(int(a.Handle), true); n != 6 {
		t.Fatalf("the IPv6 rule replaced: %d rules, want 6 still", n)
	}
	if err := a.Netlink().RouteDel(&netlink.Route{Dst: prefixNet(second.Subnet), Type: unix.RTN_BLACKHOLE, Protocol: BlackholeProtocol, Priority: BlackholeMetric}); err != nil {
		t.Fatal(err)
	}
	a.Iptables(t, tool, "-D", "FORWARD", "-m", "comment", "--comment", ForwardComment, "-j", ForwardChain)
	if err := r.Resync(); err != nil {
		t.Fatal(err)
	}
	masqueraded("after a repair", second)
	blackholed("after a repair", second.Subnet, second.IPv6Subnet)
	forwarded("after a repair")
	for _, want := range []string{"masquerade rules were changed from outside; restored", "FORWARD accept rules were changed from outside; restored", "removed=[]"} {
		if !strings.Contains(logs.String(), want) {
			t.Errorf("the repair did not log %q:\n%s", want, logs.String())
		}
	}

	before := logs.String()
	if err := r.Resync(); err != nil {
		t.Fatal(err)
	}
	if after := logs.String(); after != before {
		t.Errorf("a Resync with nothing drifted logged %q", strings.TrimPrefix(after, before))
	}

	if err := r.Apply(Target{Network: network, IPv6Network: network6}); err != nil {
		t.Fatal(err)
	}
	blackholed("a withdrawn lease")
	masqueraded("a withdrawn lease", second)
	forwarded("a withdrawn lease")
}

// blackholes lists the blackhole routes of BlackholeProtocol, both
// families, IPv4 first.
func blackholes(t *testing.T, h *netlink.Handle) []netip.Prefix {
	t.Helper()
	var out []netip.Prefix
	for _, fam := range []int{netlink.FAMILY_V4, netlink.FAMILY_V6} {
		routes, err := h.RouteListFiltered(fam, &netlink.Route{Protocol: BlackholeProtocol}, netlink.RT_FILTER_PROTOCOL)
		if err != nil {
			t.Fatal(err)
		}
		for _, r := range routes {
			if p, ok := prefixOf(r.Dst); ok && r.Type == unix.RTN_BLACKHOLE {
				out = append(out, p)
			}
		}
	}
	return out
}
