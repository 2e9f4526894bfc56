//go:build linux

package underlay_test

import (
	"net"
	"net/netip"
	"regexp"
	"strings"
	"testing"

	"github.com/vishvananda/netlink"

	"github.com/weftnet/weft/internal/netnstest"
	"github.com/weftnet/weft/underlay"
)

// TestChoose chooses the underlay as flanneld does, in a host with two
// interfaces: eth0 (the default route's) and ens5.
func TestChoose(t *testing.T) {
	h := netnstest.NewSegment(t, 1).Hosts[0]
	nl := h.Netlink()
	// A veth pair: dummy interfaces need a module this kernel may lack.
	veth := &netlink.Veth{LinkAttrs: netlink.LinkAttrs{Name: "ens5"}, PeerName: "ens5-peer"}
	if err := nl.LinkAdd(veth); err != nil {
		t.Fatal(err)
	}
	for _, name := range []string{"ens5", "ens5-peer"} {
		l, err := nl.LinkByName(name)
		if err != nil {
			t.Fatal(err)
		}
		if err := nl.LinkSetUp(l); err != nil {
			t.Fatal(err)
		}
	}
	h.AddrAdd(t, "ens5", netip.MustParsePrefix("192.0.2.5/24"))
	h.AddrAdd(t, "ens5", netip.MustParsePrefix("2001:db8::5/64"))
	eth, err := nl.LinkByName(netnstest.Underlay)
	if err != nil {
		t.Fatal(err)
	}
	v4Default := &netlink.Route{LinkIndex: eth.Attrs().Index, Gw: net.IPv4(172, 30, 0, 254)}
	if err := nl.RouteAdd(v4Default); err != nil {
		t.Fatal(err)
	}
	v4, v6 := h.Addr.Addr().String(), h.Addr6.Addr().String()
	re := regexp.MustCompile
	addr := netip.MustParseAddr
	for _, tc := range []struct {
		name                  string
		p                     underlay.Policy
		iface, wantV4, wantV6 string
		by, err               string
	}{
		{"default route", underlay.Policy{}, "eth0", v4, v6, "the default route", ""},
		{"by name", underlay.Policy{Interfaces: []string{"ens5"}}, "ens5", "192.0.2.5", "2001:db8::5", "interface ens5", ""},
		{"by IPv4 address", underlay.Policy{Interfaces: []string{"192.0.2.5"}}, "ens5", "192.0.2.5", "2001:db8::5", "", ""},
		{"by IPv6 address", underlay.Policy{Interfaces: []string{"2001:db8::5"}}, "ens5", "192.0.2.5", "2001:db8::5", "", ""},
		{"the first interface that exists", underlay.Policy{Interfaces: []string{"nope", "ens5"}}, "ens5", "192.0.2.5", "2001:db8::5", "", ""},
		{"interfaces before regexps", underlay.Policy{Interfaces: []string{"eth0"}, Regexps: []*regexp.Regexp{re("^ens")}}, "eth0", v4, v6, "", ""},
		{"regexp by address", underlay.Policy{Regexps: []*regexp.Regexp{re(`^192\.0\.2\.`)}}, "ens5", "192.0.2.5", "2001:db8::5", `regexp ^192\.0\.2\.`, ""},
		{"regexp by name", underlay.Policy{Regexps: []*regexp.Regexp{re("^ens[0-9]$")}}, "ens5", "192.0.2.5", "2001:db8::5", "", ""},
		{"regexp by IPv6 address", underlay.Policy{Regexps: []*regexp.Regexp{re("^2001:db8:")}}, "ens5", "192.0.2.5", "2001:db8::5", "", ""},
		{"can reach", underlay.Policy{CanReach: addr("192.0.2.77")}, "ens5", "192.0.2.5", "2001:db8::5", "route to 192.0.2.77", ""},
		{"can reach IPv6", underlay.Policy{CanReach: addr("2001:db8::77")}, "ens5", "192.0.2.5", "2001:db8::5", "", ""},
		{"a pinned public IP wins", underlay.Policy{PublicIP: addr("192.0.2.99")}, "eth0", "192.0.2.99", v6, "", ""},
		{"a pinned address makes no match no error", underlay.Policy{Interfaces: []string{"nope"}, PublicIP: addr("192.0.2.99")}, "", "192.0.2.99", "invalid IP", "", ""},
		{"no match", underlay.Policy{Interfaces: []string{"nope"}, Regexps: []*regexp.Regexp{re("^wl")}}, "", "", "", "", `no interface matches interface "nope", regexp "^wl"`},
		{"unreachable", underlay.Policy{CanReach: addr("2001:db9::1")}, "", "", "", "", "no route to 2001:db9::1"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			tc.p.Namespace = h.Handle
			c, err := tc.p.Choose(true, true)
			if tc.err != "" {
				if err == nil || !strings.Contains(err.Error(), tc.err) {
					t.Fatalf("got %+v, %v; want an error with %q", c, err, tc.err)
				}
				return
			}
			if err != nil || c.Interface != tc.iface || c.IPv4.String() != tc.wantV4 || c.IPv6.String() != tc.wantV6 {
				t.Errorf("got %+v, %v; want %s %s %s", c, err, tc.iface, tc.wantV4, tc.wantV6)
			}
			if tc.by != "" && c.By != tc.by {
				t.Errorf("by %q, want %q", c.By, tc.by)
			}
			v4, v6, err := tc.p.FindPublic(true, true)
			if err != nil || v4 != c.IPv4 || v6 != c.IPv6 {
				t.Errorf("FindPublic: %v %v %v, Choose: %+v", v4, v6, err, c)
			}
		})
	}

	// IPv6 only: no IPv4 default route, an IPv6 one through ens5.
	if err := nl.RouteDel(v4Default); err != nil {
		t.Fatal(err)
	}
	if err := nl.RouteAdd(&netlink.Route{LinkIndex: veth.Attrs().Index, Dst: &net.IPNet{IP: net.IPv6zero, Mask: net.CIDRMask(0, 128)}, Gw: net.ParseIP("2001:db8::fe")}); err != nil {
		t.Fatal(err)
	}
	p := underlay.Policy{Namespace: h.Handle}
	if c, err := p.Choose(false, true); err != nil || c.Interface != "ens5" || c.IPv6.String() != "2001:db8::5" {
		t.Errorf("IPv6 default route only: %+v, %v; want ens5 with 2001:db8::5", c, err)
	}
	// Nothing to choose by at all.
	if err := nl.RouteDel(&netlink.Route{LinkIndex: veth.Attrs().Index, Dst: &net.IPNet{IP: net.IPv6zero, Mask: net.CIDRMask(0, 128)}, Gw: net.ParseIP("2001:db8::fe")}); err != nil {
		t.Fatal(err)
	}
	if c, err := p.Choose(true, true); err == nil || !strings.Contains(err.Error(), "no default route") {
		t.Errorf("no default route: %+v, %v", c, err)
	}
}
