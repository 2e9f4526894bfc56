//go:build linux

package hostgw

import (
	"errors"
	"fmt"
	"net"
	"net/netip"
	"slices"
	"time"

	"github.com/vishvananda/netlink"

	"github.com/weftnet/weft/internal/ownroute"
	"github.com/weftnet/weft/lease"
)

// Reasons a peer is not programmed, in PeerStatus.Reason.
const (
	// ReasonNotOnLink: the peer's public address is on no network the
	// uplink is connected to, so host-gw cannot route to it.
	ReasonNotOnLink = "not-on-link"
	// ReasonConflict: another program's route to the peer's subnet is in
	// the way.
	ReasonConflict = "conflict"
	// ReasonKernel: the kernel refused the route.
	ReasonKernel = "kernel"
	// ReasonLease: the lease gives nothing to route (another backend, no
	// public address of the family, this node's own subnet).
	ReasonLease = "lease"
)

// ErrNotOnLink is wrapped by the error of a peer not on a connected
// network (ReasonNotOnLink).
var ErrNotOnLink = errors.New("peer is not on a network the uplink is connected to")

// reconcile applies the desired state; it returns how many peers failed.
func (d *Datapath) reconcile() (int, error) {
	d.work.Lock()
	defer d.work.Unlock()
	d.mu.Lock()
	cfg, peers, known, gen, nl := d.cfg, d.peers, d.known, d.gen, d.nl
	d.mu.Unlock()
	if nl == nil {
		return 0, errors.New("hostgw: datapath is closed")
	}
	failed, mtu, repairs, err := d.apply(nl, cfg, peers, known)
	d.mu.Lock()
	defer d.mu.Unlock()
	d.err = err
	d.synced = err == nil
	if err == nil {
		d.syncedGen = gen
	}
	if mtu > 0 {
		d.mtu = mtu
	}
	d.lastSync = time.Now()
	if len(repairs) > 0 {
		d.repaired += len(repairs)
		d.repairs = append(slices.Clip(d.repairs), repairs...)
		if len(d.repairs) > maxRepairs {
			d.repairs = d.repairs[len(d.repairs)-maxRepairs:]
		}
	}
	return failed, err
}

// apply is one reconcile of every family.
func (d *Datapath) apply(nl *netlink.Handle, cfg DatapathConfig, peers []lease.Lease, known bool) (failed, mtu int, repairs []Repair, err error) {
	fs := &filterState{uplinks: map[int]bool{}, want: map[netip.Prefix]ownroute.Route{}, proto: cfg.RouteProtocol}
	defer d.filter.Store(fs)
	var errs []error
	for _, f := range d.fams {
		uplink := cfg.Uplink
		if f.ipv6 {
			uplink = cfg.Uplink6
		}
		fs.uplinks[uplink] = true
		link, lerr := nl.LinkByIndex(uplink)
		if lerr != nil {
			errs = append(errs, fmt.Errorf("hostgw: uplink interface %d: %w", uplink, lerr))
			continue
		}
		if m := link.Attrs().MTU; mtu == 0 || m < mtu {
			mtu = m
		}
		if err := checkPublic(nl, link, cfg.Lease, f.ipv6); err != nil {
			errs = append(errs, err)
			continue
		}
		listed, lerr := f.owner.List(nl)
		if lerr != nil {
			errs = append(errs, fmt.Errorf("hostgw: %w", lerr))
			continue
		}
		if !known {
			continue // leave the routes as they are until the peers are known
		}
		want, status := plan(f.ipv6, cfg, peers, uplink, connected(listed, uplink, cfg.RouteProtocol))
		for dst, w := range want {
			fs.want[dst] = w
		}
		res, serr := f.owner.Sync(nl, listed, want)
		if serr != nil {
			errs = append(errs, fmt.Errorf("hostgw: %w", serr))
		}
		now := time.Now()
		for _, r := range res.Repairs {
			d.log.Info("repaired datapath drift", "object", r)
			repairs = append(repairs, Repair{Time: now, What: r})
		}
		for i := range status {
			s := &status[i]
			if s.Reason != "" {
				continue
			}
			if e := res.Failed[s.Subnet]; e != nil {
				s.Reason, s.Err = ReasonKernel, e.Error()
				if ownroute.IsConflict(e) {
					s.Reason = ReasonConflict
				}
				continue
			}
			s.Programmed = true
		}
		d.logChanges(f.status, status)
		for _, s := range status {
			if !s.Programmed {
				failed++
			}
		}
		d.mu.Lock()
		f.status = status
		d.mu.Unlock()
	}
	return failed, mtu, repairs, errors.Join(errs...)
}

// checkPublic refuses a lease whose public address of the family is not
// on the uplink: host-gw peers route to it directly, so it cannot be a
// NAT's (flanneld refuses to start then).
func checkPublic(nl *netlink.Handle, link netlink.Link, l lease.Lease, ipv6 bool) error {
	public, field := l.Attrs.PublicIP, "PublicIP"
	if ipv6 {
		public, field = l.Attrs.PublicIPv6, "PublicIPv6"
	}
	if !public.IsValid() {
		return nil // no lease yet, or it gives no address: nothing to check
	}
	fam := netlink.FAMILY_V4
	if ipv6 {
		fam = netlink.FAMILY_V6
	}
	addrs, err := nl.AddrList(link, fam)
	if err != nil {
		return fmt.Errorf("hostgw: addresses of %s: %w", link.Attrs().Name, err)
	}
	for _, a := range addrs {
		if ip, ok := netip.AddrFromSlice(a.IP); ok && ip.Unmap() == public {
			return nil
		}
	}
	return fmt.Errorf("hostgw: the lease's %s %s is not an address of the uplink %s: host-gw cannot work behind NAT, as peers route to that address directly; publish the uplink's own address", field, public, link.Attrs().Name)
}

// connected returns the networks the uplink is connected to: its routes
// without a gateway that are not the datapath's own.
func connected(listed []netlink.Route, uplink, proto int) []netip.Prefix {
	var out []netip.Prefix
	for _, r := range listed {
		if r.LinkIndex != uplink || r.Gw != nil || len(r.MultiPath) > 0 || int(r.Protocol) == proto {
			continue
		}
		if p := ownroute.PrefixOf(r.Dst); p.IsValid() && p.Bits() > 0 && !p.Addr().IsLinkLocalUnicast() {
			out = append(out, p)
		}
	}
	return out
}

// plan works out the routes of one family and every peer's status but
// for the kernel's verdict.
func plan(ipv6 bool, cfg DatapathConfig, peers []lease.Lease, uplink int, onlink []netip.Prefix) (map[netip.Prefix]ownroute.Route, []PeerStatus) {
	want := map[netip.Prefix]ownroute.Route{}
	var status []PeerStatus
	own := cfg.Lease.Key.IPv4
	if ipv6 {
		own = cfg.Lease.Key.IPv6
	}
	for _, l := range peers {
		subnet, public := l.Key.IPv4, l.Attrs.PublicIP
		if ipv6 {
			subnet, public = l.Key.IPv6, l.Attrs.PublicIPv6
		}
		if !subnet.IsValid() {
			continue
		}
		s := PeerStatus{Key: l.Key, IPv6: ipv6, Subnet: subnet, Via: public}
		_, aerr := Admit(l, ipv6)
		switch {
		case aerr != nil:
			s.Reason, s.Err = ReasonLease, aerr.Error()
		case subnet != subnet.Masked():
			s.Reason, s.Err = ReasonLease, fmt.Sprintf("subnet %s has host bits set", subnet)
		case own.IsValid() && own.Overlaps(subnet):
			s.Reason, s.Err = ReasonLease, fmt.Sprintf("subnet %s overlaps this node's subnet %s", subnet, own)
		case !slices.ContainsFunc(onlink, func(p netip.Prefix) bool { return p.Contains(public) }):
			s.Reason, s.Err = ReasonNotOnLink, fmt.Errorf("%w: %s is on none of %v; host-gw needs every node on one L2 segment (use vxlan or wireguard across networks)", ErrNotOnLink, public, onlink).Error()
		default:
			if _, dup := want[subnet]; dup {
				s.Reason, s.Err = ReasonLease, fmt.Sprintf("subnet %s is given twice", subnet)
				break
			}
			want[subnet] = ownroute.Route{Dst: subnet, Gw: public, Dev: uplink}
		}
		status = append(status, s)
	}
	slices.SortFunc(status, func(a, b PeerStatus) int { return a.Subnet.Compare(b.Subnet) })
	return want, status
}

// logChanges logs a peer's failure once per distinct error, and its
// recovery once.
func (d *Datapath) logChanges(before, after []PeerStatus) {
	prev := make(map[netip.Prefix]string, len(before))
	for _, s := range before {
		prev[s.Subnet] = s.Err
	}
	for _, s := range after {
		p, had := prev[s.Subnet]
		switch {
		case s.Err != "" && s.Err != p:
			d.log.Warn("peer not programmed", "subnet", s.Subnet, "via", s.Via, "reason", s.Reason, "err", s.Err)
		case s.Err == "" && had && p != "":
			d.log.Info("peer programmed after earlier failures", "subnet", s.Subnet)
		case s.Err == "" && !had:
			d.log.Debug("peer programmed", "subnet", s.Subnet, "via", s.Via)
		}
	}
}

func sameGw(ip net.IP, a netip.Addr) bool {
	g, _ := netip.AddrFromSlice(ip)
	return g.Unmap() == a
}
