//go:build linux

// Package underlay chooses the interface a node's overlay runs over, and
// the public addresses it advertises to peers, with flanneld's policy:
// an interface named or addressed explicitly, one matched by a regular
// expression, the one routing to a given address, or the default route's.
//
// A Policy is a value: Choose reads the namespace's interfaces, addresses
// and routes afresh on every call, so an address that comes up late (a
// DHCP lease, SLAAC) is found by the next call. Policy.FindPublic fits
// agent.NetworkConfig.FindPublic, which calls it each time the Network
// sets up. Choose is safe for concurrent use; it changes nothing.
package underlay

import (
	"errors"
	"fmt"
	"net"
	"net/netip"
	"regexp"
	"slices"
	"strings"

	"github.com/vishvananda/netlink"
	"github.com/vishvananda/netns"
	"golang.org/x/sys/unix"
)

// A Policy says how to choose the underlay interface. The zero Policy
// takes the default route's interface and its addresses.
type Policy struct {
	// Interfaces are tried first, in order, each an interface name or one
	// of its addresses (flanneld's --iface). An address given this way is
	// the public one for its family.
	Interfaces []string
	// Regexps are tried next, in order, each against every interface's
	// global addresses and then against the interfaces' names (flanneld's
	// --iface-regex). An address matched this way is the public one for
	// its family.
	Regexps []*regexp.Regexp
	// CanReach, when no Interfaces or Regexps are given, chooses the
	// interface the kernel routes this address through, and its source
	// address as the public one (flanneld's --iface-can-reach).
	CanReach netip.Addr
	// PublicIP and PublicIPv6, when set, are advertised instead of the
	// interface's addresses of their family (flanneld's --public-ip and
	// --public-ipv6: an address behind a NAT may be on no interface). With
	// either set, an interface that cannot be chosen is no error: the
	// pinned addresses are the choice.
	PublicIP, PublicIPv6 netip.Addr
	// Namespace is the network namespace to look in; zero or netns.None()
	// mean the caller's. The caller keeps it open while the Policy is used.
	Namespace netns.NsHandle
}

// A Choice is the underlay chosen.
type Choice struct {
	// Interface is the chosen interface's name; "" if none could be chosen
	// and the Policy pins a public address.
	Interface string
	// IPv4 and IPv6 are the public addresses: for each family, the one
	// the Policy pins, else the interface's first global unicast address
	// (for IPv4, a link-local one if there is nothing else). Zero where
	// the interface has none.
	IPv4, IPv6 netip.Addr
	// By says how the interface was chosen, for a log line: "interface
	// ens5", "regexp ^ens", "route to 192.0.2.1", "the default route".
	By string
}

// FindPublic is Choose in the shape of agent.NetworkConfig.FindPublic.
func (p Policy) FindPublic(ipv4, ipv6 bool) (v4, v6 netip.Addr, err error) {
	c, err := p.Choose(ipv4, ipv6)
	return c.IPv4, c.IPv6, err
}

// Choose picks the interface, first match wins:
//
//  1. each of Interfaces, in order;
//  2. each of Regexps, in order, against addresses, then names;
//  3. CanReach's route;
//  4. the IPv4 default route's interface, then the IPv6 one's; with ipv6
//     alone (an IPv6-only network), the IPv6 one's first.
//
// ipv4 and ipv6 say which families the network runs; Choose looks for
// both either way, as the network config may only be known later. It
// fails if no interface matches, or the one chosen has no address of
// either family and the Policy pins none.
func (p Policy) Choose(ipv4, ipv6 bool) (Choice, error) {
	c, err := p.chooseInterface(ipv6 && !ipv4)
	if err != nil && !p.PublicIP.IsValid() && !p.PublicIPv6.IsValid() {
		return Choice{}, err
	}
	if p.PublicIP.IsValid() {
		c.IPv4 = p.PublicIP
	}
	if p.PublicIPv6.IsValid() {
		c.IPv6 = p.PublicIPv6
	}
	if !c.IPv4.IsValid() && !c.IPv6.IsValid() {
		return Choice{}, fmt.Errorf("underlay: interface %s has neither an IPv4 nor a global IPv6 address", c.Interface)
	}
	return c, nil
}

// candidate is one interface and its addresses.
type candidate struct {
	name  string
	index int
	addrs []netip.Addr
}

func (p Policy) chooseInterface(ipv6First bool) (Choice, error) {
	h, err := p.handle()
	if err != nil {
		return Choice{}, err
	}
	defer h.Close()
	links, err := h.LinkList()
	if err != nil {
		return Choice{}, fmt.Errorf("underlay: list interfaces: %w", err)
	}
	var all []candidate
	for _, l := range links {
		list, err := h.AddrList(l, netlink.FAMILY_ALL)
		if err != nil {
			continue // gone meanwhile
		}
		c := candidate{name: l.Attrs().Name, index: l.Attrs().Index}
		for _, a := range list {
			if ip, ok := netip.AddrFromSlice(a.IP); ok {
				c.addrs = append(c.addrs, ip.Unmap())
			}
		}
		all = append(all, c)
	}

	if len(p.Interfaces) > 0 || len(p.Regexps) > 0 {
		for _, want := range p.Interfaces {
			addr, notAddr := netip.ParseAddr(want)
			for _, c := range all {
				if notAddr == nil && slices.Contains(c.addrs, addr.Unmap()) {
					return c.choice("interface "+want, addr.Unmap()), nil
				}
				if notAddr != nil && c.name == want {
					return c.choice("interface "+want, netip.Addr{}), nil
				}
			}
		}
		for _, re := range p.Regexps {
			for _, c := range all {
				for _, a := range c.addrs {
					if a.IsGlobalUnicast() && re.MatchString(a.String()) {
						return c.choice("regexp "+re.String(), a), nil
					}
				}
			}
			for _, c := range all {
				if re.MatchString(c.name) {
					return c.choice("regexp "+re.String(), netip.Addr{}), nil
				}
			}
		}
		var tried []string
		for _, s := range p.Interfaces {
			tried = append(tried, fmt.Sprintf("interface %q", s))
		}
		for _, re := range p.Regexps {
			tried = append(tried, fmt.Sprintf("regexp %q", re.String()))
		}
		return Choice{}, fmt.Errorf("underlay: no interface matches %s", strings.Join(tried, ", "))
	}

	byIndex := func(index int, by string, pinned netip.Addr) (Choice, error) {
		for _, c := range all {
			if c.index == index {
				return c.choice(by, pinned), nil
			}
		}
		return Choice{}, fmt.Errorf("underlay: interface %d vanished", index)
	}
	if p.CanReach.IsValid() {
		routes, err := h.RouteGet(net.IP(p.CanReach.AsSlice()))
		if err != nil || len(routes) == 0 {
			return Choice{}, fmt.Errorf("underlay: no route to %s to choose an interface by: %v", p.CanReach, err)
		}
		src, _ := netip.AddrFromSlice(routes[0].Src)
		return byIndex(routes[0].LinkIndex, "route to "+p.CanReach.String(), src.Unmap())
	}
	families := []int{netlink.FAMILY_V4, netlink.FAMILY_V6}
	if ipv6First {
		families[0], families[1] = families[1], families[0]
	}
	for _, fam := range families {
		routes, err := h.RouteList(nil, fam)
		if err != nil {
			continue
		}
		for _, r := range routes {
			if r.Dst != nil && !(r.Dst.IP.IsUnspecified() && isZeroMask(r.Dst.Mask)) {
				continue
			}
			if r.LinkIndex > 0 {
				return byIndex(r.LinkIndex, "the default route", netip.Addr{})
			}
			for _, nh := range r.MultiPath {
				return byIndex(nh.LinkIndex, "the default route", netip.Addr{})
			}
		}
	}
	return Choice{}, errors.New("underlay: no default route to choose an interface by; name one, or an address it can reach")
}

// choice is c's public addresses, pinned's family taken by pinned.
func (c candidate) choice(by string, pinned netip.Addr) Choice {
	ch := Choice{Interface: c.name, By: by}
	var linkLocal4 netip.Addr
	for _, a := range c.addrs {
		switch {
		case !a.IsGlobalUnicast():
			if a.Is4() && a.IsLinkLocalUnicast() && !linkLocal4.IsValid() {
				linkLocal4 = a
			}
		case a.Is4() && !ch.IPv4.IsValid():
			ch.IPv4 = a
		case a.Is6() && !ch.IPv6.IsValid():
			ch.IPv6 = a
		}
	}
	if !ch.IPv4.IsValid() {
		ch.IPv4 = linkLocal4
	}
	if pinned.Is4() {
		ch.IPv4 = pinned
	} else if pinned.IsValid() {
		ch.IPv6 = pinned
	}
	return ch
}

func (p Policy) handle() (*netlink.Handle, error) {
	// Route sockets alone: the default handle opens XFRM and netfilter
	// ones too, which some sandboxes (gVisor) refuse.
	if p.Namespace > 0 {
		h, err := netlink.NewHandleAt(p.Namespace, unix.NETLINK_ROUTE)
		if err != nil {
			return nil, fmt.Errorf("underlay: netlink in namespace %d: %w", p.Namespace, err)
		}
		return h, nil
	}
	h, err := netlink.NewHandle(unix.NETLINK_ROUTE)
	if err != nil {
		return nil, fmt.Errorf("underlay: netlink: %w", err)
	}
	return h, nil
}

func isZeroMask(m net.IPMask) bool {
	ones, _ := m.Size()
	return ones == 0
}
