package main

import (
	"net"
	"net/netip"
	"os"
	"os/exec"
	"strings"
	"testing"
	"time"

	"github.com/vishvananda/netlink"

	"github.com/weftnet/weft/internal/netnstest"
)

// requireIptables returns Debian's iptables-nft, the iptables that sets
// the FORWARD policy in these tests. WEFT_REQUIRE_IPTABLES, set by
// .ci/run, turns its absence into a failure.
func requireIptables(t *testing.T) string {
	t.Helper()
	path, err := exec.LookPath("iptables-nft")
	if err != nil {
		if os.Getenv("WEFT_REQUIRE_IPTABLES") != "" {
			t.Fatal("iptables-nft is missing and WEFT_REQUIRE_IPTABLES is set: apt-get install iptables")
		}
		t.Skip("iptables-nft is not installed (apt-get install iptables)")
	}
	return path
}

func iptablesIn(t *testing.T, tool string, ns *netnstest.Namespace, args ...string) string {
	t.Helper()
	out, err := exec.Command("ip", append([]string{"netns", "exec", ns.Name, tool}, args...)...).CombinedOutput()
	if err != nil {
		t.Fatalf("iptables %s: %v\n%s", strings.Join(args, " "), err, out)
	}
	return string(out)
}

// TestForwardRules: on a router whose FORWARD policy iptables-nft set to
// DROP, as Docker does, traffic between a pod behind it and another host
// does not pass; with the forward rules it does. iptables reads the rules
// back as flannel's own; a second ensure writes nothing, and a rule
// deleted from outside is put back.
func TestForwardRules(t *testing.T) {
	tool := requireIptables(t)
	seg := netnstest.NewSegment(t, 2)
	outside, router := seg.Hosts[0], seg.Hosts[1]
	network := netip.MustParsePrefix("10.244.0.0/16")
	podAddr := netip.MustParseAddr("10.244.5.2")

	// A pod namespace behind the router, on 10.244.5.0/24.
	pod := netnstest.NewNamespace(t, "weft-pod")
	veth := &netlink.Veth{LinkAttrs: netlink.LinkAttrs{Name: "vpod"}, PeerName: "eth0", PeerNamespace: netlink.NsFd(pod.Handle)}
	if err := router.Netlink().LinkAdd(veth); err != nil {
		t.Fatal(err)
	}
	if err := router.Netlink().LinkSetUp(veth); err != nil {
		t.Fatal(err)
	}
	router.AddrAdd(t, "vpod", netip.MustParsePrefix("10.244.5.1/24"))
	eth, err := pod.Netlink().LinkByName("eth0")
	if err != nil {
		t.Fatal(err)
	}
	if err := pod.Netlink().LinkSetUp(eth); err != nil {
		t.Fatal(err)
	}
	pod.AddrAdd(t, "eth0", netip.PrefixFrom(podAddr, 24))
	if err := pod.Netlink().RouteAdd(&netlink.Route{LinkIndex: eth.Attrs().Index, Gw: netip.MustParseAddr("10.244.5.1").AsSlice()}); err != nil {
		t.Fatal(err)
	}
	if err := router.Do(func() error { return os.WriteFile("/proc/sys/net/ipv4/ip_forward", []byte("1"), 0o644) }); err != nil {
		t.Fatal(err)
	}
	podNet := &net.IPNet{IP: net.IPv4(10, 244, 5, 0).To4(), Mask: net.CIDRMask(24, 32)}
	if err := outside.Netlink().RouteAdd(&netlink.Route{Dst: podNet, Gw: router.Addr.Addr().AsSlice()}); err != nil {
		t.Fatal(err)
	}
	echo := outside.ListenEcho(t, outside.Addr.Addr())
	if err := pod.WaitExchange(podAddr, echo.Addr, 5*time.Second); err != nil {
		t.Fatalf("the topology does not forward even before any policy: %v", err)
	}

	iptablesIn(t, tool, router.Namespace, "-P", "FORWARD", "DROP")
	if err := pod.Exchange(podAddr, echo.Addr, []byte("dropped"), 300*time.Millisecond); err == nil {
		t.Fatal("traffic passed a FORWARD policy of DROP; the test proves nothing")
	}

	wrote, err := ensureForward(int(router.Handle), network)
	if err != nil || !wrote {
		t.Fatalf("ensureForward: wrote %v, %v", wrote, err)
	}
	if err := pod.WaitExchange(podAddr, echo.Addr, 5*time.Second); err != nil {
		t.Fatalf("with the forward rules: %v", err)
	}
	rules := iptablesIn(t, tool, router.Namespace, "-S")
	for _, want := range []string{
		"-P FORWARD DROP",
		"-N FLANNEL-FWD",
		`-A FORWARD -m comment --comment "flanneld forward" -j FLANNEL-FWD`,
		`-A FLANNEL-FWD -s 10.244.0.0/16 -m comment --comment "flanneld forward" -j ACCEPT`,
		`-A FLANNEL-FWD -d 10.244.0.0/16 -m comment --comment "flanneld forward" -j ACCEPT`,
	} {
		if !strings.Contains(rules, want+"\n") {
			t.Errorf("iptables -S lacks %q:\n%s", want, rules)
		}
	}
	if wrote, err := ensureForward(int(router.Handle), network); err != nil || wrote {
		t.Errorf("a second ensure: wrote %v, %v; want nothing to do", wrote, err)
	}
	iptablesIn(t, tool, router.Namespace, "-D", "FLANNEL-FWD", "-d", "10.244.0.0/16", "-m", "comment", "--comment", fwdComment, "-j", "ACCEPT")
	if wrote, err := ensureForward(int(router.Handle), network); err != nil || !wrote {
		t.Errorf("after a rule was deleted: wrote %v, %v; want it restored", wrote, err)
	}
	if n := strings.Count(iptablesIn(t, tool, router.Namespace, "-S"), fwdComment); n != 3 {
		t.Errorf("%d rules of ours after the repair, want 3", n)
	}
	if err := pod.WaitExchange(podAddr, echo.Addr, 5*time.Second); err != nil {
		t.Fatalf("after the repair: %v", err)
	}
}
