package main

import (
	"io"
	"net"
	"net/netip"
	"strings"
	"testing"

	"github.com/vishvananda/netlink"

	"github.com/weftnet/weft/internal/netnstest"
)

// TestFindPublicAddrs chooses the underlay as flannel does, in a host
// with two interfaces: eth0 (the default route's) and ens5.
func TestFindPublicAddrs(t *testing.T) {
	h := netnstest.NewSegment(t, 1).Hosts[0]
	nl := h.Netlink()
	// A veth pair: dummy interfaces need a module this kernel may lack.
	dummy := &netlink.Veth{LinkAttrs: netlink.LinkAttrs{Name: "ens5"}, PeerName: "ens5-peer"}
	if err := nl.LinkAdd(dummy); err != nil {
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
	for _, tc := range []struct {
		name                  string
		args                  []string
		iface, wantV4, wantV6 string
		err                   string
	}{
		{"default route", nil, "eth0", v4, v6, ""},
		{"--iface by name", []string{"--iface", "ens5"}, "ens5", "192.0.2.5", "2001:db8::5", ""},
		{"--iface by IPv4 address", []string{"--iface", "192.0.2.5"}, "ens5", "192.0.2.5", "2001:db8::5", ""},
		{"--iface by IPv6 address", []string{"--iface", "2001:db8::5"}, "ens5", "192.0.2.5", "2001:db8::5", ""},
		{"the first --iface that exists", []string{"--iface", "nope", "--iface", "ens5"}, "ens5", "192.0.2.5", "2001:db8::5", ""},
		{"--iface before --iface-regex", []string{"--iface", "eth0", "--iface-regex", "^ens"}, "eth0", v4, v6, ""},
		{"--iface-regex by address", []string{"--iface-regex", `^192\.0\.2\.`}, "ens5", "192.0.2.5", "2001:db8::5", ""},
		{"--iface-regex by name", []string{"--iface-regex", "^ens[0-9]$"}, "ens5", "192.0.2.5", "2001:db8::5", ""},
		{"--iface-can-reach", []string{"--iface-can-reach", "192.0.2.77"}, "ens5", "192.0.2.5", "2001:db8::5", ""},
		{"--iface-can-reach IPv6", []string{"--iface-can-reach", "2001:db8::77"}, "ens5", "192.0.2.5", "2001:db8::5", ""},
		{"--iface-regex by IPv6 address", []string{"--iface-regex", "^2001:db8:"}, "ens5", "192.0.2.5", "2001:db8::5", ""},
		{"--public-ip wins", []string{"--public-ip", "192.0.2.99"}, "eth0", "192.0.2.99", v6, ""},
		{"no match", []string{"--iface", "nope", "--iface-regex", "^wl"}, "", "", "", "no interface matches --iface nope, --iface-regex ^wl"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c, err := parseFlags(tc.args, envOf(nil), io.Discard)
			if err != nil {
				t.Fatal(err)
			}
			var p publicAddrs
			err = h.Do(func() error {
				var err error
				p, err = findPublicAddrs(c)
				return err
			})
			if tc.err != "" {
				if err == nil || !strings.Contains(err.Error(), tc.err) {
					t.Fatalf("got %+v, %v; want an error with %q", p, err, tc.err)
				}
				return
			}
			if err != nil || p.iface != tc.iface || p.v4.String() != tc.wantV4 || p.v6.String() != tc.wantV6 {
				t.Errorf("got %+v, %v; want %s %s %s", p, err, tc.iface, tc.wantV4, tc.wantV6)
			}
		})
	}

	// IPv6 only: no IPv4 default route, an IPv6 one.
	if err := nl.RouteDel(v4Default); err != nil {
		t.Fatal(err)
	}
	if err := nl.RouteAdd(&netlink.Route{LinkIndex: dummy.Attrs().Index, Dst: &net.IPNet{IP: net.IPv6zero, Mask: net.CIDRMask(0, 128)}, Gw: net.ParseIP("2001:db8::fe")}); err != nil {
		t.Fatal(err)
	}
	var p publicAddrs
	if err := h.Do(func() error { var err error; p, err = findPublicAddrs(config{}); return err }); err != nil || p.iface != "ens5" || p.v6.String() != "2001:db8::5" {
		t.Errorf("IPv6 default route only: %+v, %v; want ens5 with 2001:db8::5", p, err)
	}
}
