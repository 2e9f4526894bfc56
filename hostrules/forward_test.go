package hostrules

import (
	"net"
	"net/netip"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/vishvananda/netlink"

	"github.com/weftnet/weft/internal/netnstest"
)

// forwardTopology is a router forwarding between a pod behind it, on
// 10.244.5.0/24, and another host on the segment, where an echo server
// answers. It returns iptables-nft, the router, the pod with its address,
// and the echo's address.
func forwardTopology(t *testing.T) (tool string, router *netnstest.Host, pod *netnstest.Namespace, podAddr netip.Addr, echoAddr netip.AddrPort) {
	t.Helper()
	tool = netnstest.RequireIptables(t)
	seg := netnstest.NewSegment(t, 2)
	outside := seg.Hosts[0]
	router = seg.Hosts[1]
	podAddr = netip.MustParseAddr("10.244.5.2")

	// A pod namespace behind the router, on 10.244.5.0/24.
	pod = netnstest.NewNamespace(t, "weft-pod")
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
	return tool, router, pod, podAddr, echo.Addr
}

// TestForwardRules: on a router whose FORWARD policy iptables-nft set to
// DROP, as Docker does, traffic between a pod behind it and another host
// does not pass; with the forward rules it does. iptables reads the rules
// back as flannel's own; a second ensure writes nothing, and a rule
// deleted from outside is put back.
func TestForwardRules(t *testing.T) {
	tool, router, pod, podAddr, echoAddr := forwardTopology(t)
	network := netip.MustParsePrefix("10.244.0.0/16")
	router.Iptables(t, tool, "-P", "FORWARD", "DROP")
	if err := pod.Exchange(podAddr, echoAddr, []byte("dropped"), 300*time.Millisecond); err == nil {
		t.Fatal("traffic passed a FORWARD policy of DROP; the test proves nothing")
	}

	wrote, err := ensureForward(int(router.Handle), network)
	if err != nil || !wrote {
		t.Fatalf("ensureForward: wrote %v, %v", wrote, err)
	}
	if err := pod.WaitExchange(podAddr, echoAddr, 5*time.Second); err != nil {
		t.Fatalf("with the forward rules: %v", err)
	}
	rules := router.Iptables(t, tool, "-S")
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
	router.Iptables(t, tool, "-D", "FLANNEL-FWD", "-d", "10.244.0.0/16", "-m", "comment", "--comment", ForwardComment, "-j", "ACCEPT")
	if wrote, err := ensureForward(int(router.Handle), network); err != nil || !wrote {
		t.Errorf("after a rule was deleted: wrote %v, %v; want it restored", wrote, err)
	}
	if n := strings.Count(router.Iptables(t, tool, "-S"), ForwardComment); n != 3 {
		t.Errorf("%d rules of ours after the repair, want 3", n)
	}
	if err := pod.WaitExchange(podAddr, echoAddr, 5*time.Second); err != nil {
		t.Fatalf("after the repair: %v", err)
	}
}

// TestForwardRepairKeepsAdminRules: an administrator's rules in
// FLANNEL-FWD (one inserted before weft's, dropping the pod's traffic; one
// appended after them) survive every repair: an ensure with nothing
// drifted writes nothing, one of weft's rules deleted and the FORWARD
// jump gone are put back, a rule of weft's for an old network is removed;
// the administrator's rules keep their places, and their drop still
// drops. A rule flanneld wrote through iptables counts as weft's. Once
// the administrator removes the drop, weft's rules carry the traffic.
func TestForwardRepairKeepsAdminRules(t *testing.T) {
	tool, router, pod, podAddr, echoAddr := forwardTopology(t)
	network := netip.MustParsePrefix("10.244.0.0/16")
	router.Iptables(t, tool, "-P", "FORWARD", "DROP")
	if wrote, err := ensureForward(int(router.Handle), network); err != nil || !wrote {
		t.Fatalf("ensureForward: wrote %v, %v", wrote, err)
	}
	if err := pod.WaitExchange(podAddr, echoAddr, 5*time.Second); err != nil {
		t.Fatalf("with the forward rules: %v", err)
	}
	adminDrop := []string{"-s", podAddr.String() + "/32", "-j", "DROP"}
	adminLast := []string{"-d", "198.51.100.0/24", "-m", "comment", "--comment", "admin: lab", "-j", "DROP"}
	router.Iptables(t, tool, append([]string{"-I", ForwardChain, "1"}, adminDrop...)...)
	router.Iptables(t, tool, append([]string{"-A", ForwardChain}, adminLast...)...)
	want := func(when string) {
		t.Helper()
		got := router.Iptables(t, tool, "-S", ForwardChain)
		wantRules := "-N FLANNEL-FWD\n" +
			"-A FLANNEL-FWD -s 10.244.5.2/32 -j DROP\n" +
			`-A FLANNEL-FWD -s 10.244.0.0/16 -m comment --comment "flanneld forward" -j ACCEPT` + "\n" +
			`-A FLANNEL-FWD -d 10.244.0.0/16 -m comment --comment "flanneld forward" -j ACCEPT` + "\n" +
			`-A FLANNEL-FWD -d 198.51.100.0/24 -m comment --comment "admin: lab" -j DROP` + "\n"
		if got != wantRules {
			t.Errorf("%s: FLANNEL-FWD is\n%s\nwant\n%s", when, got, wantRules)
		}
		if n := strings.Count(router.Iptables(t, tool, "-S", "FORWARD"), "-j FLANNEL-FWD"); n != 1 {
			t.Errorf("%s: %d jumps to FLANNEL-FWD, want 1", when, n)
		}
		if err := pod.Exchange(podAddr, echoAddr, []byte("admin drops"), 300*time.Millisecond); err == nil {
			t.Errorf("%s: the administrator's drop no longer drops the pod's traffic", when)
		}
	}
	if wrote, err := ensureForward(int(router.Handle), network); err != nil || wrote {
		t.Errorf("with an administrator's rules beside weft's intact ones: wrote %v, %v; want nothing to do", wrote, err)
	}
	want("after an ensure with nothing drifted")

	// Drift: one of weft's rules deleted, and the jump.
	router.Iptables(t, tool, "-D", ForwardChain, "-s", "10.244.0.0/16", "-m", "comment", "--comment", ForwardComment, "-j", "ACCEPT")
	router.Iptables(t, tool, "-D", "FORWARD", "-m", "comment", "--comment", ForwardComment, "-j", ForwardChain)
	if wrote, err := ensureForward(int(router.Handle), network); err != nil || !wrote {
		t.Errorf("after weft's rules drifted: wrote %v, %v; want them restored", wrote, err)
	}
	// Restored in place: before the administrator's appended rule.
	want("after a repair of a deleted rule and jump")

	// A rule of weft's for a network no longer in force goes.
	router.Iptables(t, tool, "-I", ForwardChain, "2", "-s", "10.99.0.0/16", "-m", "comment", "--comment", ForwardComment, "-j", "ACCEPT")
	if wrote, err := ensureForward(int(router.Handle), network); err != nil || !wrote {
		t.Errorf("with a stale rule of weft's: wrote %v, %v; want it removed", wrote, err)
	}
	want("after a stale rule of weft's was removed")

	// flanneld's own rule, as written through iptables, is taken for
	// weft's: nothing to do.
	router.Iptables(t, tool, "-D", ForwardChain, "-d", "10.244.0.0/16", "-m", "comment", "--comment", ForwardComment, "-j", "ACCEPT")
	router.Iptables(t, tool, "-I", ForwardChain, "3", "-d", "10.244.0.0/16", "-m", "comment", "--comment", ForwardComment, "-j", "ACCEPT")
	if wrote, err := ensureForward(int(router.Handle), network); err != nil || wrote {
		t.Errorf("with flanneld's rule written through iptables in place: wrote %v, %v; want nothing to do", wrote, err)
	}
	want("beside a rule iptables wrote for flanneld")

	router.Iptables(t, tool, append([]string{"-D", ForwardChain}, adminDrop...)...)
	if err := pod.WaitExchange(podAddr, echoAddr, 5*time.Second); err != nil {
		t.Fatalf("the administrator's drop removed, weft's rules do not carry the traffic: %v", err)
	}
}
