//go:build linux

// Package ownroute keeps a set of main-table routes that one datapath owns
// as desired: routes it owns carry its route protocol, and a Sync lists the
// family's main table, adds what is missing, corrects what is wrong,
// removes what no one wants, and leaves every other program's route alone.
//
// A desired route that another program's route is in the way of (same
// destination and metric) is not written: it is reported as that
// destination's failure, with the other route named, and so is a write the
// kernel refuses. Neither fails the Sync; only a listing that cannot be
// read or a stray of ours that will not go does.
//
// An Owner is not safe for concurrent use; its datapath serialises calls.
package ownroute

import (
	"errors"
	"fmt"
	"net"
	"net/netip"

	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"
)

// A Route is one route a datapath wants: to Dst via Gw (zero: none, a
// device route) out of Dev, scoped link when Gw is zero.
type Route struct {
	Dst netip.Prefix
	Gw  netip.Addr
	Dev int
}

// Handle is the part of *netlink.Handle an Owner uses.
type Handle interface {
	RouteListFiltered(family int, filter *netlink.Route, mask uint64) ([]netlink.Route, error)
	RouteAdd(r *netlink.Route) error
	RouteReplace(r *netlink.Route) error
	RouteDel(r *netlink.Route) error
}

// Result reports one Sync.
type Result struct {
	// Failed holds, per wanted destination not programmed, why.
	Failed map[netip.Prefix]error
	// Repairs describes each write that corrected drift (a route written
	// before that had gone or changed), as opposed to a change of wants.
	Repairs []string
	Writes  int
}

// An Owner owns the main-table routes of one family tagged with Proto.
type Owner struct {
	Proto int
	IPv6  bool
	// written is what the last Sync left programmed, to tell drift
	// (a write for a route already written as wanted) from news.
	written map[netip.Prefix]Route
}

// Metric is the priority the owner's routes carry: the kernel's default
// for a route that names none, 0 for IPv4 and 1024 for IPv6, so that the
// routes look as `ip route add` would make them.
func (o *Owner) Metric() int {
	if o.IPv6 {
		return 1024
	}
	return 0
}

func (o *Owner) family() int {
	if o.IPv6 {
		return netlink.FAMILY_V6
	}
	return netlink.FAMILY_V4
}

// List returns the family's main-table unicast routes with a destination.
func (o *Owner) List(h Handle) ([]netlink.Route, error) {
	rs, err := h.RouteListFiltered(o.family(), &netlink.Route{Table: unix.RT_TABLE_MAIN}, netlink.RT_FILTER_TABLE)
	if err != nil {
		return nil, fmt.Errorf("list routes: %w", err)
	}
	out := rs[:0]
	for _, r := range rs {
		if r.Dst != nil && r.Type == unix.RTN_UNICAST && r.Table == unix.RT_TABLE_MAIN {
			out = append(out, r)
		}
	}
	return out, nil
}

// Sync makes the owner's routes in h exactly want (keyed by destination),
// given listed, a List of the table made just before (the caller may
// have looked at it to work out want).
func (o *Owner) Sync(h Handle, listed []netlink.Route, want map[netip.Prefix]Route) (Result, error) {
	res := Result{Failed: map[netip.Prefix]error{}}
	if o.written == nil {
		o.written = map[netip.Prefix]Route{}
	}
	seen := map[netip.Prefix]bool{}
	var strayErr error
	for _, r := range listed {
		dst := prefixOf(r.Dst)
		w, wanted := want[dst]
		if r.Protocol != netlink.RouteProtocol(o.Proto) {
			if wanted && r.Priority == o.Metric() {
				res.Failed[dst] = fmt.Errorf("another program's route to %s (%s) is in the way: %w", dst, describe(r), unix.EEXIST)
			}
			continue
		}
		switch {
		case !wanted:
			res.Writes++
			if err := h.RouteDel(&r); err != nil && !errors.Is(err, unix.ESRCH) {
				strayErr = fmt.Errorf("remove stray route %s: %w", describe(r), err)
				continue
			}
			delete(o.written, dst)
		case r.Priority != o.Metric():
			res.Writes++
			if err := h.RouteDel(&r); err != nil && !errors.Is(err, unix.ESRCH) {
				strayErr = fmt.Errorf("remove second route %s: %w", describe(r), err)
			}
		default:
			seen[dst] = true
			if !matches(r, w) {
				res.Writes++
				if err := h.RouteReplace(o.route(w)); err != nil {
					res.Failed[dst] = fmt.Errorf("replace route %s: %w", dst, err)
					continue
				}
				o.note(&res, w, describe(r))
			}
		}
	}
	for dst, w := range want {
		if seen[dst] || res.Failed[dst] != nil {
			continue
		}
		res.Writes++
		if err := h.RouteAdd(o.route(w)); err != nil {
			if errors.Is(err, unix.EEXIST) {
				err = fmt.Errorf("another program's route to %s is in the way: %w", dst, err)
			}
			res.Failed[dst] = fmt.Errorf("add route %s: %w", dst, err)
			continue
		}
		o.note(&res, w, "missing")
	}
	for dst := range o.written {
		if _, ok := want[dst]; !ok || res.Failed[dst] != nil {
			delete(o.written, dst)
		}
	}
	return res, strayErr
}

// note records w as written, and a repair if it had been written as
// wanted before.
func (o *Owner) note(res *Result, w Route, was string) {
	if o.written[w.Dst] == w {
		res.Repairs = append(res.Repairs, fmt.Sprintf("route %s (was %s)", w.Dst, was))
	}
	o.written[w.Dst] = w
}

// Forget drops what the owner remembers writing, so that the next Sync
// counts nothing as drift (a device re-created takes its routes along).
func (o *Owner) Forget() { clear(o.written) }

func (o *Owner) route(w Route) *netlink.Route {
	r := &netlink.Route{
		LinkIndex: w.Dev,
		Dst:       ipNet(w.Dst),
		Protocol:  netlink.RouteProtocol(o.Proto),
		Priority:  o.Metric(),
		Table:     unix.RT_TABLE_MAIN,
		Type:      unix.RTN_UNICAST,
		Scope:     netlink.SCOPE_UNIVERSE,
	}
	if w.Gw.IsValid() {
		r.Gw = net.IP(w.Gw.AsSlice())
	} else {
		r.Scope = netlink.SCOPE_LINK
	}
	return r
}

// matches reports whether a listed route of ours is w.
func matches(r netlink.Route, w Route) bool {
	gw, _ := netip.AddrFromSlice(r.Gw)
	return r.LinkIndex == w.Dev && gw.Unmap() == w.Gw && len(r.MultiPath) == 0
}

// Matches reports whether r, a listed route, is one the owner wrote as w;
// for notification filters.
func (o *Owner) Matches(r netlink.Route, w Route) bool {
	return r.Protocol == netlink.RouteProtocol(o.Proto) && r.Priority == o.Metric() && matches(r, w)
}

func describe(r netlink.Route) string {
	s := fmt.Sprintf("proto %d metric %d", r.Protocol, r.Priority)
	if r.Gw != nil {
		s = "via " + r.Gw.String() + " " + s
	}
	return fmt.Sprintf("%s dev %d", s, r.LinkIndex)
}

// IsConflict reports whether a Result.Failed error is another program's
// route in the way.
func IsConflict(err error) bool { return errors.Is(err, unix.EEXIST) }

// PrefixOf converts a route's destination.
func PrefixOf(n *net.IPNet) netip.Prefix { return prefixOf(n) }

func prefixOf(n *net.IPNet) netip.Prefix {
	if n == nil {
		return netip.Prefix{}
	}
	a, _ := netip.AddrFromSlice(n.IP)
	ones, _ := n.Mask.Size()
	return netip.PrefixFrom(a.Unmap(), ones).Masked()
}

func ipNet(p netip.Prefix) *net.IPNet {
	return &net.IPNet{IP: p.Addr().AsSlice(), Mask: net.CIDRMask(p.Bits(), p.Addr().BitLen())}
}
