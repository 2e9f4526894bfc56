//go:build linux

package vxlan

import (
	"github.com/weftnet/weft/lease"
	"net"
	"net/netip"
	"reflect"
	"strings"
	"testing"

	"github.com/vishvananda/netlink"

	"github.com/weftnet/weft/internal/netnstest"
)

func hostDeviceConfig(t *testing.T, h *netnstest.Host, ipv6 bool) DeviceConfig {
	t.Helper()
	eth, err := h.Netlink().LinkByName(netnstest.Underlay)
	if err != nil {
		t.Fatal(err)
	}
	local := h.Addr.Addr()
	if ipv6 {
		local = h.Addr6.Addr()
	}
	return DeviceConfig{VNI: 1, Local: local, Underlay: eth.Attrs().Index, MAC: DeriveMAC(h.Name, 1)}
}

func TestEnsureDevice(t *testing.T) {
	t.Parallel()
	h := netnstest.NewSegment(t, 1).Hosts[0]
	nl := h.Netlink()
	cfg := hostDeviceConfig(t, h, false)

	dev, changes, err := EnsureDevice(nl, cfg)
	if err != nil {
		t.Fatal(err)
	}
	if dev.Name != "flannel.1" || dev.MTU != 1450 || dev.MAC != cfg.MAC || !reflect.DeepEqual(changes, []string{"created"}) {
		t.Fatalf("created %+v with changes %q", dev, changes)
	}
	link, _ := nl.LinkByName("flannel.1")
	vx := link.(*netlink.Vxlan)
	if vx.VxlanId != 1 || vx.Port != 8472 || vx.Learning || vx.GBP || vx.VtepDevIndex != cfg.Underlay || !vx.SrcAddr.Equal(net.ParseIP("172.30.0.1")) || vx.Flags&net.FlagUp == 0 {
		t.Errorf("device attributes %+v", vx)
	}

	// Nothing to do the second time.
	if again, changes, err := EnsureDevice(nl, cfg); err != nil || again != dev || len(changes) != 0 {
		t.Fatalf("second Ensure: %+v %q %v", again, changes, err)
	}

	// Mutable drift is corrected in place: same ifindex.
	nl.LinkSetMTU(link, 1300)
	nl.LinkSetHardwareAddr(link, net.HardwareAddr{0x02, 0, 0, 0, 0, 0x99})
	nl.LinkSetDown(link)
	again, changes, err := EnsureDevice(nl, cfg)
	if err != nil || again.Index != dev.Index {
		t.Fatalf("after drift: %+v %v", again, err)
	}
	if want := []string{"MTU 1300 corrected to 1450", "MAC 02:00:00:00:00:99 corrected to " + cfg.MAC.String(), "brought up"}; !reflect.DeepEqual(changes, want) {
		t.Errorf("changes %q, want %q", changes, want)
	}

	// An immutable difference re-creates the device, with the same MAC.
	cfg.Port = 4789
	again, changes, err = EnsureDevice(nl, cfg)
	if err != nil || len(changes) != 1 || !strings.HasPrefix(changes[0], "re-created: port 8472, want 4789") || again.MAC != cfg.MAC {
		t.Fatalf("port change: %+v %q %v", again, changes, err)
	}

	// A device of another kind under the name is replaced.
	nl.LinkDel(&netlink.Vxlan{LinkAttrs: netlink.LinkAttrs{Name: "flannel.1"}})
	if err := nl.LinkAdd(&netlink.Bridge{LinkAttrs: netlink.LinkAttrs{Name: "flannel.1"}}); err != nil {
		t.Fatal(err)
	}
	if _, changes, err = EnsureDevice(nl, cfg); err != nil || len(changes) != 1 || changes[0] != "re-created: it is a bridge device, not vxlan" {
		t.Fatalf("bridge in the way: %q %v", changes, err)
	}
}

func TestEnsureDeviceIPv6(t *testing.T) {
	t.Parallel()
	h := netnstest.NewSegment(t, 1).Hosts[0]
	dev, _, err := EnsureDevice(h.Netlink(), hostDeviceConfig(t, h, true))
	if err != nil {
		t.Fatal(err)
	}
	if dev.Name != "flannel-v6.1" || dev.MTU != 1430 {
		t.Errorf("IPv6 device %+v, want flannel-v6.1 with MTU 1500-70", dev)
	}
}

func TestEnsureDeviceErrors(t *testing.T) {
	for _, cfg := range []DeviceConfig{
		{MAC: DeriveMAC("n", 1)},
		{Local: netip.MustParseAddr("10.0.0.1")},
		{Local: netip.MustParseAddr("10.0.0.1"), MAC: DeriveMAC("n", 1)},
	} {
		if _, _, err := EnsureDevice(nil, cfg); err == nil {
			t.Errorf("EnsureDevice(%+v) succeeded", cfg)
		}
	}
}

func TestEnsureAddress(t *testing.T) {
	t.Parallel()
	h := netnstest.NewSegment(t, 1).Hosts[0]
	nl := h.Netlink()
	dev, _, err := EnsureDevice(nl, hostDeviceConfig(t, h, false))
	if err != nil {
		t.Fatal(err)
	}
	h.AddrAdd(t, "flannel.1", netip.MustParsePrefix("10.244.9.0/32")) // an earlier lease
	h.AddrAdd(t, "flannel.1", netip.MustParsePrefix("10.245.7.0/32")) // a lease in a Network since replaced

	changes, err := EnsureAddress(nl, dev.Index, netip.MustParsePrefix("10.244.3.0/24"))
	if err != nil {
		t.Fatal(err)
	}
	if want := []string{"removed stale address 10.244.9.0/32", "removed stale address 10.245.7.0/32", "added address 10.244.3.0/32"}; !reflect.DeepEqual(changes, want) {
		t.Errorf("changes %q, want %q", changes, want)
	}
	link, _ := nl.LinkByIndex(dev.Index)
	addrs, _ := nl.AddrList(link, netlink.FAMILY_V4)
	var got []string
	for _, a := range addrs {
		got = append(got, a.IPNet.String())
	}
	if !reflect.DeepEqual(got, []string{"10.244.3.0/32"}) {
		t.Errorf("addresses %q", got)
	}
	if changes, err := EnsureAddress(nl, dev.Index, netip.MustParsePrefix("10.244.3.0/24")); err != nil || len(changes) != 0 {
		t.Errorf("second EnsureAddress: %q %v", changes, err)
	}
}

func TestDeriveMAC(t *testing.T) {
	a, b := DeriveMAC("node-a", 1), DeriveMAC("node-a", 1)
	if a != b {
		t.Fatal("DeriveMAC is not deterministic")
	}
	if a[0]&0x01 != 0 || a[0]&0x02 == 0 {
		t.Errorf("%s is not a locally administered unicast address", a)
	}
	seen := map[lease.MAC]string{}
	for _, node := range []string{"node-a", "node-b", "node-c", ""} {
		for vni := range 4 {
			m := DeriveMAC(node, vni)
			if prev, dup := seen[m]; dup {
				t.Errorf("%s/%d and %s share %s", node, vni, prev, m)
			}
			seen[m] = node
		}
	}
	if p, err := lease.ParseMAC(a.String()); err != nil || p != a {
		t.Errorf("ParseMAC(%s) = %v, %v", a, p, err)
	}
	for _, bad := range []string{"", "0e:00:00:00:00", "00:00:00:00:00:00:00:01", "zz:00:00:00:00:00"} {
		if _, err := lease.ParseMAC(bad); err == nil {
			t.Errorf("ParseMAC(%q) succeeded", bad)
		}
	}
}
