//go:build linux

package vxlan

import (
	"errors"
	"fmt"
	"net/netip"
	"time"

	"golang.org/x/sys/unix"
)

// Sync lists the kernel state of the device and applies the difference from
// the desired peers: missing objects are added, wrong ones replaced and
// stray ones removed. A peer whose writes the kernel refuses, or whose
// objects conflict with another program's, is that peer's failure alone:
// it is counted in SyncResult.Failed and reported in Status, and the next
// Sync retries it. Sync returns an error only when the device's own state
// could not be read or cleaned: a failed listing, or a stray that would not
// go.
//
// Each kind of object (neighbours, FDB entries, nexthops, routes) is
// compared with the desired peers as the kernel lists it, one message at a
// time, and nothing of the listing is kept but what must change: a sync
// of tens of thousands of unchanged peers allocates next to nothing.
// Objects are done in that order, each kind's writes sent before the next
// kind is listed, so that a peer's route is written only once the objects
// under it exist: its nexthop, and the neighbour and FDB entries that
// carry its traffic. A route written first takes packets the device
// then drops (no FDB entry for the VTEP's MAC) or parks behind an ARP it
// cannot answer.
func (r *Reconciler) Sync() (SyncResult, error) {
	// The writer lock holds the desired peers still for the whole Sync;
	// the state lock is let go while the kernel is written, so that the
	// notification filter keeps draining the notifications the writes
	// cause. Were it blocked, a large sync would overrun the notification
	// socket and cost a second, verifying sync.
	defer r.lockWriter()()
	if r.closed {
		return SyncResult{}, errReconcilerClosed
	}
	s := &syncPass{r: r, res: SyncResult{Time: time.Now()}, failed: map[netip.Prefix]string{}, missing: map[netip.Prefix]Objects{}, conflicts: map[netip.Prefix]string{}}
	s.subnets = r.peers.wantedSubnets()
	s.res.Peers = len(s.subnets)
	r.peers.clearSeen()
	for _, step := range []func() error{s.neighbours, s.fdb, s.nexthops, s.routes, s.strayNexthops} {
		if err := step(); err != nil {
			return SyncResult{}, fmt.Errorf("vxlan: %w", err)
		}
		if s.flush(); s.sockErr != nil {
			return SyncResult{}, fmt.Errorf("vxlan: %w", s.sockErr)
		}
	}

	for sub, c := range s.conflicts {
		s.failed[sub] = c
		s.missing[sub] |= ObjectFDB
	}
	for sub, rec := range r.peers.recs {
		if !rec.want.ok {
			r.peers.forget(sub)
		}
	}
	for _, sub := range s.subnets {
		p, _ := r.peers.wanted(sub)
		r.noteWritten(p, r.peers.id(sub), s.failed[sub], s.missing[sub])
		if s.failed[sub] != "" {
			s.res.Failed++
		}
	}
	res := s.res
	res.Duration = time.Since(res.Time)
	r.lastSync = res
	r.syncs++
	if s.strayErrs > 0 {
		return res, fmt.Errorf("vxlan: sync: %d of %d writes failed; first: %v", res.Errors, res.Writes, s.firstStrayErr)
	}
	return res, nil
}

// syncPass is one Sync in progress. Its methods run with r.mu held.
type syncPass struct {
	r       *Reconciler
	subnets []netip.Prefix // the wanted peers, sorted
	res     SyncResult

	// Writes planned and not yet sent. They are sent after each listing
	// (a netlink socket cannot write in the middle of a dump) and in
	// chunks while peers' missing objects are planned, so that
	// programming tens of thousands of peers never holds all their
	// requests at once.
	reqs    []request
	why     []string       // parallel to reqs: "" for a programmed change, else the drift repaired
	owner   []netip.Prefix // parallel to reqs: the peer a write is for, if any
	listing bool           // a dump is being read: no flushing

	// Stray nexthops, deleted only once the routes through them are:
	// deleting a nexthop a route still uses makes the kernel flush its
	// whole FIB, once per nexthop.
	strays []nexthop

	failed        map[netip.Prefix]string  // peers whose writes failed, with why
	missing       map[netip.Prefix]Objects // the objects those writes were of
	conflicts     map[netip.Prefix]string  // peers in conflict with another peer's FDB entry
	strayErrs     int                      // writes that failed to remove what no peer wants
	firstStrayErr error
	sockErr       error
}

func (s *syncPass) add(req request, why string, subnet netip.Prefix) {
	s.reqs = append(s.reqs, req)
	s.why = append(s.why, why)
	s.owner = append(s.owner, subnet)
	if len(s.reqs) >= syncChunk && !s.listing {
		s.flush()
	}
}

// drift returns reason if subnet's objects were written exactly as its
// peer is now wanted, so that a change found in them is drift to count and
// log; anything else is news and returns "".
func (s *syncPass) drift(subnet netip.Prefix, reason string) string {
	if s.r.peers.writtenAsWanted(subnet) {
		return reason
	}
	return ""
}

// flush sends the planned writes, without holding r.mu meanwhile, and
// records their outcome.
func (s *syncPass) flush() {
	r := s.r
	if len(s.reqs) == 0 || s.sockErr != nil {
		return
	}
	r.mu.Unlock()
	errs, err := r.conn.exec(s.reqs)
	r.mu.Lock()
	if err != nil {
		s.sockErr = err
		return
	}
	s.res.Writes += len(s.reqs)
	for i, req := range s.reqs {
		if errs != nil && errs[i] != nil {
			e := errs[i]
			if req.typ == unix.RTM_NEWROUTE && errors.Is(e, unix.EEXIST) {
				e = fmt.Errorf("%w: another program's route to %s is in the way", e, s.owner[i])
			}
			if req.typ == unix.RTM_DELNEIGH && errors.Is(e, unix.ENOENT) ||
				(req.typ == unix.RTM_DELROUTE || req.typ == unix.RTM_DELNEXTHOP) && (errors.Is(e, unix.ESRCH) || errors.Is(e, unix.ENOENT)) {
				continue // gone already (a nexthop's deletion takes its routes along)
			}
			s.res.Errors++
			if !s.owner[i].IsValid() {
				// A stray that will not go is the device's
				// problem, not one peer's.
				s.strayErrs++
				if s.firstStrayErr == nil {
					s.firstStrayErr = fmt.Errorf("%s: %w", req.describe(), e)
				}
				continue
			}
			s.failed[s.owner[i]] = e.Error()
			s.missing[s.owner[i]] |= req.object()
			continue
		}
		if req.typ == unix.RTM_NEWNEXTHOP {
			r.ownIDs[r.peers.id(s.owner[i])] = true
		}
		if s.why[i] != "" {
			s.res.Repairs++
			r.recordRepair(req.describe(), s.why[i])
		}
	}
	s.reqs, s.why, s.owner = s.reqs[:0], s.why[:0], s.owner[:0]
}

// list dumps one kind of object, calling f with each. If the kernel
// interrupts the dump (the table changed under it), the writes f planned
// are dropped, reset is called and the dump starts over.
func (s *syncPass) list(typ uint16, body []byte, reset func(), f func(data []byte)) error {
	mark := len(s.reqs)
	s.listing = true
	defer func() { s.listing = false }()
	return s.r.conn.dump(typ, body, func() {
		s.reqs, s.why, s.owner = s.reqs[:mark], s.why[:mark], s.owner[:mark]
		reset()
	}, func(_ uint16, data []byte) error {
		f(data)
		return nil
	})
}

// nexthops learns which nexthops are ours and which another program's,
// gives every wanted peer its nexthop id, and plans the nexthop writes:
// a wanted peer's nexthop added or replaced, every other one of ours or on
// the device deleted (which takes any route through it along).
func (s *syncPass) nexthops() error {
	r := s.r
	if !r.nexthops {
		return nil
	}
	// Existing ids are reused for peers that have none (after a restart)
	// by where they lead; only then is that index worth building.
	needIDs := false
	for _, sub := range s.subnets {
		if r.peers.id(sub) == 0 {
			needIDs = true
			break
		}
	}
	var (
		mine      []nexthop // ours or on the device, of the family
		other     map[uint32]bool
		byGateway map[nhTarget]uint32
	)
	reset := func() {
		mine, other, byGateway = nil, map[uint32]bool{}, map[nhTarget]uint32{}
		clear(r.ownIDs) // ownership is what the kernel says now, not what it said before
	}
	reset()
	err := s.list(unix.RTM_GETNEXTHOP, make([]byte, 8), reset, func(data []byte) {
		n, ok := parseNexthop(data)
		if !ok {
			return
		}
		if n.proto != r.cfg.RouteProtocol {
			other[n.id] = true
		} else {
			r.ownIDs[n.id] = true
			if needIDs {
				byGateway[nhTarget{n.gw, n.dev}] = n.id
			}
		}
		if (n.proto == r.cfg.RouteProtocol || n.dev == r.cfg.Device) && family(n.gw) == r.fam {
			mine = append(mine, n)
		}
	})
	if err != nil {
		return fmt.Errorf("list nexthops: %w", err)
	}
	r.otherIDs = other
	for _, sub := range s.subnets {
		p, _ := r.peers.wanted(sub)
		r.nexthopID(p, byGateway)
	}
	for _, n := range mine {
		sub, owned := r.peers.idOwner[n.id]
		p, want := r.peers.wanted(sub)
		if !owned || !want {
			s.strays = append(s.strays, n)
			continue
		}
		r.peers.markSeen(sub, seenNexthop)
		if d := r.objects(p, n.id).nh; n != d {
			s.add(r.nexthopAdd(d), s.drift(sub, fmt.Sprintf("via %s dev %d onlink=%v proto %d", n.gw, n.dev, n.onlink, n.proto)), sub)
		}
	}
	for _, sub := range s.subnets {
		if id := r.peers.id(sub); id != 0 && !r.peers.seen(sub, seenNexthop) {
			p, _ := r.peers.wanted(sub)
			s.add(r.nexthopAdd(r.objects(p, id).nh), s.drift(sub, "missing"), sub)
		}
	}
	return nil
}

// strayNexthops deletes the nexthops no peer wants, after the routes
// step has deleted the stray routes through them.
func (s *syncPass) strayNexthops() error {
	for _, n := range s.strays {
		s.add(deleteNexthopRequest(n.id), fmt.Sprintf("not a peer's (via %s)", n.gw), netip.Prefix{})
	}
	s.strays = nil
	return nil
}

// routes plans the route writes. Each wanted peer gets its route: ours at
// the default metric, replaced in place if wrong. Other routes of ours to
// a peer's subnet, and routes of ours to no peer, are strays. A route of
// another program at our metric blocks ours (the kernel refuses the
// exclusive create) and shows as a conflict.
//
// The main table is listed whole and kept to routes on the device or
// carrying the datapath's protocol (direct routes leave through the
// underlay); the kernel's own filters (RTA_OIF, rtm_protocol) would need
// two dumps that both return every peer's route.
func (s *syncPass) routes() error {
	r := s.r
	body := make([]byte, unix.SizeofRtMsg)
	body[0] = r.fam
	body[4] = unix.RT_TABLE_MAIN
	err := s.list(unix.RTM_GETROUTE, body, func() { r.peers.unsee(seenRoute) }, func(data []byte) {
		rt, ok := parseRoute(data)
		if !ok || rt.proto == unix.RTPROT_KERNEL || (rt.proto != r.cfg.RouteProtocol && rt.dev != r.cfg.Device) {
			return
		}
		p, want := r.peers.wanted(rt.dst)
		switch {
		case !want:
			s.add(rt.deleteRequest(), "not a peer's ("+describeRoute(rt)+")", netip.Prefix{})
		case rt.metric != r.metric:
			s.add(rt.deleteRequest(), s.drift(rt.dst, "second route to a peer ("+describeRoute(rt)+")"), rt.dst)
		default:
			r.peers.markSeen(rt.dst, seenRoute)
			if d := r.objects(p, r.peers.id(rt.dst)).route; !routeMatches(rt, d) {
				s.add(d.addRequest(true), s.drift(rt.dst, describeRoute(rt)), rt.dst)
			}
		}
	})
	if err != nil {
		return fmt.Errorf("list routes: %w", err)
	}
	for _, sub := range s.subnets {
		if !r.peers.seen(sub, seenRoute) {
			p, _ := r.peers.wanted(sub)
			s.add(r.objects(p, r.peers.id(sub)).route.addRequest(false), s.drift(sub, "missing"), sub)
		}
	}
	return nil
}

// neighbours plans the neighbour writes: each wanted VXLAN peer's gateway
// resolves permanently to its VTEP MAC, and every other entry on the
// device goes, but for the kernel's own (NOARP).
func (s *syncPass) neighbours() error {
	r := s.r
	// Strict checking wants the device as NDA_IFINDEX for neighbours.
	filter := attr(ndmsg(r.fam, 0, 0, 0), unix.NDA_IFINDEX, u32(uint32(r.cfg.Device)))
	err := s.list(unix.RTM_GETNEIGH, filter, func() { r.peers.unsee(seenNeighbour) }, func(data []byte) {
		n, ok := parseNeigh(data)
		if !ok || n.dev != r.cfg.Device {
			return
		}
		p, want := r.peers.byGateway(n.ip)
		switch {
		case want:
			r.peers.markSeen(p.Subnet, seenNeighbour)
			if n.mac != p.VtepMAC || n.state != unix.NUD_PERMANENT {
				d := r.objects(p, 0).neigh
				s.add(d.addRequest(), s.drift(p.Subnet, fmt.Sprintf("lladdr %s state %#x, want %s permanent", n.mac, n.state, d.mac)), p.Subnet)
			}
		case n.state&unix.NUD_NOARP == 0:
			s.add(n.deleteRequest(), fmt.Sprintf("not a peer's (lladdr %s)", n.mac), netip.Prefix{})
		}
	})
	if err != nil {
		return fmt.Errorf("list neighbours: %w", err)
	}
	for _, sub := range s.subnets {
		if p, _ := r.peers.wanted(sub); !p.Direct && !r.peers.seen(sub, seenNeighbour) {
			s.add(r.objects(p, 0).neigh.addRequest(), s.drift(sub, "missing"), sub)
		}
	}
	return nil
}

// fdb plans the FDB writes. Per VTEP MAC there is one remote: that of the
// first wanted peer in subnet order with the MAC, with the device's
// defaults. Others with the same MAC and public IP (one node holding two
// leases while it moves) share the entry; others with another public IP
// are in conflict, as a MAC can go to only one place. Every other entry on
// the device goes, but learned ones when the device learns.
func (s *syncPass) fdb() error {
	r := s.r
	// The bridge family's FDB dump wants the device in the header.
	err := s.list(unix.RTM_GETNEIGH, ndmsg(unix.AF_BRIDGE, r.cfg.Device, 0, 0), func() { r.peers.unsee(seenFDB) }, func(data []byte) {
		e, ok := parseFDB(data)
		if !ok || e.dev != r.cfg.Device {
			return
		}
		holder, wanted := r.peers.fdbHolder(e.mac)
		switch {
		case wanted && e.sendsTo(holder.PublicIP):
			r.peers.markSeen(holder.Subnet, seenFDB)
		case r.cfg.Learning && e.state&unix.NUD_PERMANENT == 0:
		case wanted:
			s.add(e.deleteRequest(), fmt.Sprintf("remote %s port %d vni %d for %s, want %s", e.dst, e.port, e.vni, e.mac, holder.PublicIP), netip.Prefix{})
		default:
			s.add(e.deleteRequest(), "not a peer's MAC", netip.Prefix{})
		}
	})
	if err != nil {
		return fmt.Errorf("list fdb: %w", err)
	}
	for _, sub := range s.subnets {
		p, _ := r.peers.wanted(sub)
		if p.Direct {
			continue
		}
		holder, _ := r.peers.fdbHolder(p.VtepMAC)
		switch {
		case holder.PublicIP != p.PublicIP:
			s.conflicts[sub] = fmt.Sprintf("VTEP MAC %s is also peer %s's, at %s; FDB entry left pointing there", p.VtepMAC, holder.Subnet, holder.PublicIP)
		case holder.Subnet == sub && !r.peers.seen(sub, seenFDB):
			s.add(r.objects(p, 0).fdb.addRequest(), s.drift(sub, "missing or wrong"), sub)
		}
	}
	return nil
}
