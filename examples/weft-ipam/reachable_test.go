package main

import (
	"fmt"
	"net"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"

	"github.com/vishvananda/netlink"

	"github.com/weftnet/weft/internal/netnstest"
)

// A reachNode is one node of a cluster wired by the shipped chain, and a
// remote node routed to its pod subnets through it: a client pod, and
// web-0, the pod re-created under its name.
type reachNode struct {
	t                   testing.TB
	rt                  *cniRuntime
	node, remote        *netnstest.Namespace
	client, web         *netnstest.Namespace
	clientIPs, webIPs   podAddrs
	webContainer        string
	generation          int
	nodeAddr, nodeAddr6 netip.Addr // the node's cni0 addresses, the pods' gateways
}

// The node's subnets, and the underlay between the node and the remote
// node.
const (
	reachSubnetEnv = "FLANNEL_NETWORK=10.244.0.0/16\nFLANNEL_SUBNET=10.244.3.1/24\n" +
		"FLANNEL_IPV6_NETWORK=fd00:10:244::/56\nFLANNEL_IPV6_SUBNET=fd00:10:244:3::1/64\n" +
		// flanneld masquerades (FLANNEL_IPMASQ=true), so bridge does not.
		"FLANNEL_MTU=1450\nFLANNEL_IPMASQ=true\n"
)

var (
	reachUnderlay  = [2]netip.Prefix{netip.MustParsePrefix("192.0.2.1/30"), netip.MustParsePrefix("192.0.2.2/30")}
	reachUnderlay6 = [2]netip.Prefix{netip.MustParsePrefix("fd0f::1/64"), netip.MustParsePrefix("fd0f::2/64")}
)

// newReachNode sets up the node and the remote node, runs ADD for the
// client pod and web-0 through the chain, and waits until both answer
// pings from each other, the node and the remote node. withoutTypes are
// left out of the conflist.
func newReachNode(t testing.TB, withoutTypes ...string) *reachNode {
	t.Helper()
	netnstest.RequirePrivileged(t)
	if _, err := exec.LookPath("ping"); err != nil {
		if os.Getenv("WEFT_REQUIRE_PING") != "" {
			t.Fatalf("ping: %v, and WEFT_REQUIRE_PING is set (apt-get install iputils-ping)", err)
		}
		t.Skipf("ping: %v (apt-get install iputils-ping)", err)
	}
	bin := cniBin(t)
	dir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, "subnet.env"), []byte(reachSubnetEnv), 0o644); err != nil {
		t.Fatal(err)
	}
	n := &reachNode{t: t, node: netnstest.NewNamespace(t, "weft-node"), remote: netnstest.NewNamespace(t, "weft-remote"),
		nodeAddr: netip.MustParseAddr("10.244.3.1"), nodeAddr6: netip.MustParseAddr("fd00:10:244:3::1")}
	n.rt = newCNIRuntime(t, bin, dir, n.node, withoutTypes...)

	// The underlay: a veth pair, the node forwarding between it and
	// cni0 as a flannel node forwards between flannel.1 and cni0.
	up := &netlink.Veth{LinkAttrs: netlink.LinkAttrs{Name: "up0"}, PeerName: "up0", PeerNamespace: netlink.NsFd(int(n.remote.Handle))}
	if err := n.node.Netlink().LinkAdd(up); err != nil {
		t.Fatal(err)
	}
	for i, ns := range []*netnstest.Namespace{n.node, n.remote} {
		l, err := ns.Netlink().LinkByName("up0")
		if err != nil {
			t.Fatal(err)
		}
		if err := ns.Netlink().LinkSetUp(l); err != nil {
			t.Fatal(err)
		}
		ns.AddrAdd(t, "up0", reachUnderlay[i])
		ns.AddrAdd(t, "up0", reachUnderlay6[i])
	}
	for _, r := range []struct{ dst, via string }{{"10.244.3.0/24", "192.0.2.1"}, {"fd00:10:244:3::/64", "fd0f::1"}} {
		_, dst, _ := net.ParseCIDR(r.dst)
		if err := n.remote.Netlink().RouteAdd(&netlink.Route{Dst: dst, Gw: net.ParseIP(r.via)}); err != nil {
			t.Fatalf("remote route %s: %v", r.dst, err)
		}
	}
	// /proc/sys/net is the namespace of the thread that opens it.
	if err := n.node.Do(func() error {
		for _, k := range []string{"/proc/sys/net/ipv4/ip_forward", "/proc/sys/net/ipv6/conf/all/forwarding"} {
			if err := os.WriteFile(k, []byte("1"), 0o644); err != nil {
				return err
			}
		}
		return nil
	}); err != nil {
		t.Fatal(err)
	}

	n.client = netnstest.NewNamespace(t, "weft-pod")
	n.clientIPs = n.rt.add("client-1", n.client, "client-0")
	n.web = netnstest.NewNamespace(t, "weft-pod")
	n.webContainer = "web-1"
	n.webIPs = n.rt.add(n.webContainer, n.web, "web-0")
	if !n.webIPs.v4.IsValid() || !n.webIPs.v6.IsValid() {
		t.Fatalf("web-0 got %v; want an IPv4 and an IPv6 address", n.webIPs.all())
	}
	t.Cleanup(func() {
		n.rt.del(n.webContainer, n.web, "web-0")
		n.rt.del("client-1", n.client, "client-0")
	})
	// Until each answers: the first packets may wait for the kernel to
	// finish bringing the new devices up. This fills the neighbour
	// caches the re-created pod then finds stale.
	for _, src := range n.sources() {
		for _, dst := range n.webIPs.all() {
			if seqs, err := ping(src.ns.Name, dst, 30); err != nil || len(seqs) == 0 {
				t.Fatalf("before the re-creation, %s cannot reach web-0 at %s: %v", src.name, dst, err)
			}
		}
	}
	return n
}

// A pingSource is where reachability is checked from.
type pingSource struct {
	name string
	ns   *netnstest.Namespace
}

func (n *reachNode) sources() []pingSource {
	return []pingSource{{"a pod on the node", n.client}, {"the node", n.node}, {"the remote node", n.remote}}
}

// webMAC returns the MAC of web-0's eth0.
func (n *reachNode) webMAC() string {
	n.t.Helper()
	l, err := n.web.Netlink().LinkByName("eth0")
	if err != nil {
		n.t.Fatal(err)
	}
	return l.Attrs().HardwareAddr.String()
}

// A reachResult is what one source saw of one address of web-0 in the
// pings sent right after its ADD.
type reachResult struct {
	source string
	dst    netip.Addr
	seqs   []int // answered, of 1 to pingsAfterAdd
}

// pingsAfterAdd are sent 100 ms apart, starting when the ADD returns: a
// reply to one of them is a reply within a second of the ADD.
const pingsAfterAdd = 10

// recreate deletes web-0's sandbox (DEL, then its namespace, as a runtime
// does), and adds a new one under the same name: a new container ID and
// a new namespace, and so a new veth with a new MAC. As soon as the ADD
// returns, every source pings each address of web-0 at once. It checks
// that web-0 got its addresses back with a new MAC.
func (n *reachNode) recreate() []reachResult {
	n.t.Helper()
	oldMAC := n.webMAC()
	n.rt.del(n.webContainer, n.web, "web-0")
	n.generation++
	n.web = netnstest.NewNamespace(n.t, "weft-pod")
	n.webContainer = fmt.Sprintf("web-%d", n.generation+1)
	// bridge's DEL removed the old veth: the old MAC is nowhere now.
	got := n.rt.add(n.webContainer, n.web, "web-0")
	var mu sync.Mutex
	var out []reachResult
	var wg sync.WaitGroup
	for _, src := range n.sources() {
		for _, dst := range got.all() {
			wg.Add(1)
			go func() {
				defer wg.Done()
				seqs, err := ping(src.ns.Name, dst, pingsAfterAdd)
				if err != nil {
					n.t.Error(err)
				}
				mu.Lock()
				out = append(out, reachResult{source: src.name, dst: dst, seqs: seqs})
				mu.Unlock()
			}()
		}
	}
	wg.Wait()
	if got != n.webIPs {
		n.t.Fatalf("web-0 re-created got %v; it had %v (sticky IPs)", got.all(), n.webIPs.all())
	}
	if mac := n.webMAC(); mac == oldMAC {
		n.t.Fatalf("web-0 re-created has its old MAC %s: the test needs a new one", mac)
	}
	return out
}

// TestRecreatedPodReachable is issue 29's first item, by traffic on the
// shipped chain (flannel's plugin, Debian's bridge, weft-ipam, and what
// the conflist chains after them): web-0, re-created under its name, gets
// its addresses back on a new veth with a new MAC, and answers pings from
// a pod on its node, from the node, and from a remote node routed through
// the node, IPv4 and IPv6, within a second of its ADD: one of the ten
// pings sent 100 ms apart after the ADD returns is answered. Five
// re-creations; the loss of each is logged.
func TestRecreatedPodReachable(t *testing.T) {
	n := newReachNode(t)
	t.Logf("chain: %s", strings.Join(n.rt.types(), " -> "))
	const rounds = 5
	for round := range rounds {
		for _, r := range n.recreate() {
			lost := pingsAfterAdd - len(r.seqs)
			t.Logf("round %d: %s -> %s: %d of %d lost, answered %v", round+1, r.source, r.dst, lost, pingsAfterAdd, r.seqs)
			if len(r.seqs) == 0 {
				t.Errorf("round %d: %s could not reach the re-created web-0 at %s in the %d pings sent 100 ms apart after its ADD", round+1, r.source, r.dst, pingsAfterAdd)
			}
		}
	}
}
