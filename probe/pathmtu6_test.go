//go:build linux

package probe

import (
	"fmt"
	"net/netip"
	"testing"
	"time"

	"github.com/weftnet/weft/internal/netnstest"
	"github.com/weftnet/weft/internal/testutil"
)

// flannelOverlay6 programs, with iproute2 alone, flannel's IPv6 overlay:
// flannel-v6.1 at 1430 over the IPv6 underlay, the subnet's first address
// on it, and per peer a route, a permanent neighbour and an FDB entry. It
// returns each host's Target.
func flannelOverlay6(t *testing.T, hosts []*netnstest.Host) []Target {
	t.Helper()
	vtep := func(h *netnstest.Host) netip.Addr {
		return netip.AddrFrom16([16]byte{0xfd, 0x00, 0x10, 0x44, 0, byte(h.Index)})
	}
	mac := func(h *netnstest.Host) string { return fmt.Sprintf("0e:00:00:00:06:%02x", h.Index) }
	var targets []Target
	for _, h := range hosts {
		ns := []string{"ip", "-n", h.Name}
		run(t, append(ns, "link", "add", "flannel-v6.1", "address", mac(h), "mtu", "1430", "type", "vxlan", "id", "1",
			"local", h.Addr6.Addr().String(), "dev", netnstest.Underlay, "dstport", "8472", "nolearning")...)
		run(t, append(ns, "-6", "addr", "add", vtep(h).String()+"/128", "dev", "flannel-v6.1", "nodad")...)
		run(t, append(ns, "link", "set", "flannel-v6.1", "up")...)
		for _, peer := range hosts {
			if peer == h {
				continue
			}
			run(t, append(ns, "-6", "route", "add", vtep(peer).String()+"/64", "via", vtep(peer).String(), "dev", "flannel-v6.1", "onlink")...)
			run(t, append(ns, "-6", "neigh", "add", vtep(peer).String(), "lladdr", mac(peer), "dev", "flannel-v6.1", "nud", "permanent")...)
			run(t, "bridge", "-n", h.Name, "fdb", "append", mac(peer), "dev", "flannel-v6.1", "dst", peer.Addr6.Addr().String(), "self", "permanent")
		}
		targets = append(targets, Target{
			Subnet: netip.PrefixFrom(vtep(h), 64), Addr: vtep(h), PublicIP: h.Addr6.Addr(), Node: h.Name,
			MTU: 1430, Overhead: 70, Encap: "UDP 8472",
		})
	}
	return targets
}

// TestPathMTUSearchIPv6: the IPv6 overlay over the IPv6 underlay, whose
// outer packets no router may fragment. With c's switch port lowered to
// 1300 bytes, the prober on a names c's black hole with its size (1230 to
// 1234 bytes of overlay: 1300 and the bridge's 4 bytes of slack, less 70)
// and the path its underlay carries; raised again, c is reachable at full
// size.
func TestPathMTUSearchIPv6(t *testing.T) {
	seg := netnstest.NewSegment(t, 3)
	a, c := seg.Hosts[0], seg.Hosts[2]
	targets := flannelOverlay6(t, seg.Hosts)[1:]
	p, _ := runProber(t, Config{
		Namespace: a.Handle, Targets: func() []Target { return targets },
		Sample: 2, Interval: 200 * time.Millisecond, Timeout: 150 * time.Millisecond,
	})
	result := func(tg Target) Result { r, _ := p.Result(tg.Subnet); return r }
	testutil.WaitFor(t, 10*time.Second, "both checked at full size over IPv6", func() bool {
		rb, rc := result(targets[0]), result(targets[1])
		return rb.State == StateReachable && rc.State == StateReachable && rb.PathMTU != nil && rb.PathMTU.OK && rc.PathMTU != nil && rc.PathMTU.OK
	})
	run(t, "ip", "-n", seg.Bridge.Name, "link", "set", fmt.Sprintf("p%d", c.Index), "mtu", "1300")
	testutil.WaitFor(t, 10*time.Second, "c's IPv6 black hole named", func() bool {
		r := result(targets[1])
		return r.State == StateMTUBlackHole && r.PathMTU.Exact
	})
	if r := result(targets[1]); r.PathMTU.Carries < 1230 || r.PathMTU.Carries > 1234 || r.PathMTU.Need() != 1500 || r.PathMTU.Path() != r.PathMTU.Carries+70 {
		t.Errorf("c: %+v, path %+v; want carrying 1230 to 1234 of 1430", r, r.PathMTU)
	}
	t.Logf("c's path over IPv6: %+v", *result(targets[1]).PathMTU)
	if rb := result(targets[0]); rb.State != StateReachable {
		t.Errorf("b, whose path is fine: %+v", rb)
	}
	run(t, "ip", "-n", seg.Bridge.Name, "link", "set", fmt.Sprintf("p%d", c.Index), "mtu", "1500")
	testutil.WaitFor(t, 10*time.Second, "c reachable at full size again", func() bool {
		r := result(targets[1])
		return r.State == StateReachable && r.PathMTU.OK
	})
}
