package main

import (
	"errors"
	"fmt"
	"net"
	"net/netip"
	"strings"

	"github.com/vishvananda/netlink"
)

// publicAddrs are the underlay addresses the node advertises, and the
// interface they were found on.
type publicAddrs struct {
	iface    string
	v4, v6   netip.Addr
	foundVia string // for the log: how the interface was chosen
}

// findPublicAddrs chooses the interface for inter-host traffic as flannel
// does, first match wins:
//
//  1. each --iface in order, as an interface name or one of its addresses;
//  2. each --iface-regex in order, matched against every interface's
//     addresses, then against the interfaces' names;
//  3. --iface-can-reach: the interface, and source address, the kernel
//     routes that address through;
//  4. the interface of the IPv4 default route, else of the IPv6 one.
//
// Its first IPv4 address and first global unicast IPv6 address are the
// public ones (an --iface or --iface-can-reach address of one family wins
// for that family), unless --public-ip or --public-ipv6 names one. Both
// families are looked for because the network config, which says which
// families are in use, may only be known later.
func findPublicAddrs(c config) (publicAddrs, error) { return findPublicAddrsFor(c, true, true) }

// findPublicAddrsFor is findPublicAddrs for a network config enabling the
// given families: with IPv6 alone, the IPv6 default route is looked at
// first, as flannel does.
func findPublicAddrsFor(c config, ipv4, ipv6 bool) (publicAddrs, error) {
	p, err := chooseInterface(c, ipv6 && !ipv4)
	if err != nil && !c.publicIP.IsValid() && !c.publicIPv6.IsValid() {
		return publicAddrs{}, err
	}
	if c.publicIP.IsValid() {
		p.v4 = c.publicIP
	}
	if c.publicIPv6.IsValid() {
		p.v6 = c.publicIPv6
	}
	if !p.v4.IsValid() && !p.v6.IsValid() {
		return publicAddrs{}, fmt.Errorf("interface %s has neither an IPv4 nor a global IPv6 address; set --public-ip or --public-ipv6", p.iface)
	}
	return p, nil
}

func chooseInterface(c config, ipv6First bool) (publicAddrs, error) {
	links, err := netlink.LinkList()
	if err != nil {
		return publicAddrs{}, fmt.Errorf("list interfaces: %w", err)
	}
	type candidate struct {
		link  netlink.Link
		addrs []netip.Addr
	}
	var all []candidate
	for _, l := range links {
		list, err := netlink.AddrList(l, netlink.FAMILY_ALL)
		if err != nil {
			continue
		}
		var addrs []netip.Addr
		for _, a := range list {
			if ip, ok := netip.AddrFromSlice(a.IP); ok {
				addrs = append(addrs, ip.Unmap())
			}
		}
		all = append(all, candidate{l, addrs})
	}
	from := func(cand candidate, via string, pinned netip.Addr) publicAddrs {
		p := publicAddrs{iface: cand.link.Attrs().Name, foundVia: via}
		// The first global address of each family; for IPv4, a
		// link-local one only when there is nothing else.
		var linkLocal4 netip.Addr
		for _, a := range cand.addrs {
			switch {
			case !usable(a):
				if a.Is4() && a.IsLinkLocalUnicast() && !linkLocal4.IsValid() {
					linkLocal4 = a
				}
			case a.Is4() && !p.v4.IsValid():
				p.v4 = a
			case a.Is6() && !p.v6.IsValid():
				p.v6 = a
			}
		}
		if !p.v4.IsValid() {
			p.v4 = linkLocal4
		}
		if pinned.Is4() {
			p.v4 = pinned
		} else if pinned.IsValid() {
			p.v6 = pinned
		}
		return p
	}

	if len(c.ifaces) > 0 || len(c.ifaceRegexes) > 0 {
		for _, want := range c.ifaces {
			addr, byAddr := netip.ParseAddr(want)
			for _, cand := range all {
				if byAddr == nil && containsAddr(cand.addrs, addr.Unmap()) {
					return from(cand, "--iface "+want, addr.Unmap()), nil
				}
				if byAddr != nil && cand.link.Attrs().Name == want {
					return from(cand, "--iface "+want, netip.Addr{}), nil
				}
			}
		}
		for _, re := range c.ifaceRegexes {
			for _, cand := range all {
				for _, a := range cand.addrs {
					if usable(a) && re.MatchString(a.String()) {
						return from(cand, "--iface-regex "+re.String(), a), nil
					}
				}
			}
			for _, cand := range all {
				if re.MatchString(cand.link.Attrs().Name) {
					return from(cand, "--iface-regex "+re.String(), netip.Addr{}), nil
				}
			}
		}
		var tried []string
		for _, s := range c.ifaces {
			tried = append(tried, "--iface "+s)
		}
		for _, re := range c.ifaceRegexes {
			tried = append(tried, "--iface-regex "+re.String())
		}
		return publicAddrs{}, fmt.Errorf("no interface matches %s", strings.Join(tried, ", "))
	}

	byIndex := func(index int, via string, pinned netip.Addr) (publicAddrs, error) {
		for _, cand := range all {
			if cand.link.Attrs().Index == index {
				return from(cand, via, pinned), nil
			}
		}
		return publicAddrs{}, fmt.Errorf("interface %d vanished", index)
	}
	if c.ifaceCanReach.IsValid() {
		routes, err := netlink.RouteGet(net.IP(c.ifaceCanReach.AsSlice()))
		if err != nil || len(routes) == 0 {
			return publicAddrs{}, fmt.Errorf("--iface-can-reach %s: no route to it: %v", c.ifaceCanReach, err)
		}
		src, _ := netip.AddrFromSlice(routes[0].Src)
		return byIndex(routes[0].LinkIndex, "--iface-can-reach "+c.ifaceCanReach.String(), src.Unmap())
	}
	families := []int{netlink.FAMILY_V4, netlink.FAMILY_V6}
	if ipv6First {
		families[0], families[1] = families[1], families[0]
	}
	for _, fam := range families {
		routes, err := netlink.RouteList(nil, fam)
		if err != nil {
			continue
		}
		for _, r := range routes {
			if r.Dst == nil || r.Dst.IP.IsUnspecified() && isZeroMask(r.Dst.Mask) {
				if r.LinkIndex > 0 {
					return byIndex(r.LinkIndex, "the default route", netip.Addr{})
				}
				for _, nh := range r.MultiPath {
					return byIndex(nh.LinkIndex, "the default route", netip.Addr{})
				}
			}
		}
	}
	return publicAddrs{}, errors.New("no default route to pick an interface from; set --iface, --iface-regex, --iface-can-reach or --public-ip")
}

// usable reports whether a can carry inter-host traffic: a global unicast
// address (private ranges included), not loopback or link-local.
func usable(a netip.Addr) bool { return a.IsGlobalUnicast() }

func containsAddr(addrs []netip.Addr, a netip.Addr) bool {
	for _, b := range addrs {
		if b == a {
			return true
		}
	}
	return false
}

func isZeroMask(m net.IPMask) bool {
	ones, _ := m.Size()
	return ones == 0
}
