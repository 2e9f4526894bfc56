package vxlan

import (
	"errors"
	"fmt"
	"hash/fnv"
	"log/slog"
	"net/netip"
	"slices"
	"sync"
	"time"

	"github.com/vishvananda/netns"
	"golang.org/x/sys/unix"
)

// DefaultRouteProtocol tags the routes and nexthops the reconciler owns, so
// that ownership can be seen (ip route show proto 157) and nothing else is
// touched. Any value not in /etc/iproute2/rt_protos will do.
const DefaultRouteProtocol = 157

// maxRepairs bounds the repair history Status returns.
const maxRepairs = 256

// ReconcilerConfig configures a Reconciler.
type ReconcilerConfig struct {
	// Namespace is the network namespace to program. The zero value means
	// the namespace of the calling thread when NewReconciler runs.
	Namespace netns.NsHandle
	// Device is the index of the VTEP device; its peers' routes,
	// neighbours and FDB entries are the reconciler's to own.
	Device int
	// IPv6 selects the IPv6 datapath (flannel-v6.<VNI>).
	IPv6 bool
	// Underlay is the index of the underlay interface, needed only for
	// peers with Direct set.
	Underlay int
	// RouteProtocol tags owned routes and nexthops. Default 157.
	RouteProtocol uint8
	// Logger receives a line for every repair of drift. Default
	// slog.Default().
	Logger *slog.Logger
}

// A Reconciler makes the kernel's routes, neighbours and FDB entries for one
// VTEP device match a desired set of peers. It owns everything on the
// device: what no peer needs is removed and what is wrong is corrected.
//
// Two paths write: Sync computes the full difference between the desired
// peers and a listing of the kernel and applies only that, for start-up and
// periodic resync; SetPeer and RemovePeer apply one peer's change directly,
// for events, without listing. A failed write of either is repaired by the
// next Sync. A Reconciler is safe for concurrent use.
type Reconciler struct {
	cfg      ReconcilerConfig
	fam      uint8
	log      *slog.Logger
	nexthops bool // the kernel has nexthop objects (Linux 5.3 and later)

	mu       sync.Mutex
	conn     *rtconn
	peers    map[netip.Prefix]Peer   // desired
	ids      map[netip.Prefix]uint32 // nexthop id of each peer's route
	idOwner  map[uint32]netip.Prefix // the reverse of ids
	ownIDs   map[uint32]bool         // nexthop ids known to be ours
	usedIDs  map[uint32]bool         // every nexthop id in the namespace, as last listed
	status   map[netip.Prefix]PeerStatus
	repairs  []Repair
	lastSync SyncResult
}

// PeerStatus is what the reconciler last programmed for a peer.
type PeerStatus struct {
	Peer      Peer
	NexthopID uint32 // 0 without nexthop objects
	// Programmed is true once every object of the peer is in the kernel.
	Programmed bool
	// Err is the last write error for the peer, "" if none.
	Err string
}

// A Repair is one correction of the kernel by Sync: something was missing,
// wrong or stray.
type Repair struct {
	Time time.Time
	What string // the object, e.g. "neighbour 10.244.9.0"
	Why  string // e.g. "lladdr 0e:00:00:00:00:09, want 0e:00:00:00:00:01"
}

// SyncResult reports one Sync.
type SyncResult struct {
	Time     time.Time
	Duration time.Duration
	Peers    int
	Writes   int // netlink writes issued
	Repairs  int // writes that corrected drift rather than programmed a change of peers
	Errors   int
}

// Status is a snapshot of the reconciler for status output.
type Status struct {
	Device   int
	IPv6     bool
	Nexthops bool // routes use nexthop objects
	Peers    []PeerStatus
	Repairs  []Repair // most recent last, at most 256
	LastSync SyncResult
}

// NewReconciler returns a Reconciler for cfg.Device with no peers. It does
// not touch the kernel until Sync or SetPeer.
func NewReconciler(cfg ReconcilerConfig) (*Reconciler, error) {
	if cfg.Device == 0 {
		return nil, errors.New("vxlan: ReconcilerConfig.Device is required")
	}
	if cfg.RouteProtocol == 0 {
		cfg.RouteProtocol = DefaultRouteProtocol
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	conn, err := dialRoute(cfg.Namespace)
	if err != nil {
		return nil, fmt.Errorf("vxlan: %w", err)
	}
	r := &Reconciler{
		cfg:     cfg,
		fam:     unix.AF_INET,
		log:     cfg.Logger.With("component", "vxlan", "device", cfg.Device),
		conn:    conn,
		peers:   map[netip.Prefix]Peer{},
		ids:     map[netip.Prefix]uint32{},
		idOwner: map[uint32]netip.Prefix{},
		ownIDs:  map[uint32]bool{},
		usedIDs: map[uint32]bool{},
		status:  map[netip.Prefix]PeerStatus{},
	}
	if cfg.IPv6 {
		r.fam = unix.AF_INET6
	}
	// Nexthop objects arrived in Linux 5.3; older kernels reject the dump.
	r.nexthops = conn.dump(unix.RTM_GETNEXTHOP, make([]byte, 8), func(uint16, []byte) error { return nil }) == nil
	if !r.nexthops {
		r.log.Info("kernel has no nexthop objects; using per-route gateways, which are slower to program")
	}
	return r, nil
}

// Close releases the netlink socket. The kernel state stays as it is.
func (r *Reconciler) Close() {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.conn.close()
}

// SetPeers replaces the desired set of peers. It does not write: call Sync.
func (r *Reconciler) SetPeers(peers []Peer) error {
	want := make(map[netip.Prefix]Peer, len(peers))
	for _, p := range peers {
		if err := p.validate(r.cfg.IPv6); err != nil {
			return fmt.Errorf("vxlan: %w", err)
		}
		want[p.Subnet] = p
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	r.peers = want
	return nil
}

// desired is the set of kernel objects a peer needs.
type desired struct {
	nh    nexthop
	route route
	neigh *neigh
	fdb   *fdb
}

// objects returns what peer p needs, given its nexthop id (0 without
// nexthop objects).
func (r *Reconciler) objects(p Peer, id uint32) desired {
	proto := r.cfg.RouteProtocol
	var d desired
	gw, dev, onlink := p.gateway(), r.cfg.Device, true
	if p.Direct {
		gw, dev, onlink = p.PublicIP, r.cfg.Underlay, false
	}
	if id != 0 {
		d.nh = nexthop{id: id, gw: gw, dev: dev, onlink: onlink, proto: proto}
		d.route = route{dst: p.Subnet, nhid: id, proto: proto}
	} else {
		d.route = route{dst: p.Subnet, gw: gw, dev: dev, onlink: onlink, proto: proto}
	}
	if !p.Direct {
		d.neigh = &neigh{ip: p.gateway(), mac: p.VtepMAC, dev: r.cfg.Device, state: unix.NUD_PERMANENT}
		d.fdb = &fdb{mac: p.VtepMAC, dst: p.PublicIP, dev: r.cfg.Device, state: unix.NUD_PERMANENT, self: true}
	}
	return d
}

// nexthopID returns the id for p's nexthop: the one it has, one of ours
// already in the kernel for the same gateway (after a restart; byGateway
// indexes them), or a new one no nexthop in the namespace uses. New ids
// start from a hash of the subnet, so that they are stable across restarts
// in the common case.
func (r *Reconciler) nexthopID(p Peer, byGateway map[nhTarget]uint32) uint32 {
	if !r.nexthops {
		return 0
	}
	if id, ok := r.ids[p.Subnet]; ok && (r.ownIDs[id] || !r.usedIDs[id]) {
		return id
	}
	// Its id, if any, turned out to belong to a nexthop that is not ours.
	r.setID(p.Subnet, 0)
	want := r.objects(p, 1).nh
	if id, ok := byGateway[nhTarget{want.gw, want.dev}]; ok && r.ownIDs[id] {
		if _, taken := r.idOwner[id]; !taken {
			r.setID(p.Subnet, id)
			return id
		}
	}
	h := fnv.New32a()
	h.Write(p.Subnet.Addr().AsSlice())
	h.Write([]byte{byte(p.Subnet.Bits())})
	id := h.Sum32() | 0x10000000 // keep clear of small ids other software starts from
	for {
		_, taken := r.idOwner[id]
		if !taken && !r.usedIDs[id] && id != 0 {
			break
		}
		id++
	}
	r.setID(p.Subnet, id)
	r.usedIDs[id] = true
	return id
}

// nhTarget identifies a nexthop by where it leads.
type nhTarget struct {
	gw  netip.Addr
	dev int
}

// setID records subnet's nexthop id; 0 forgets it.
func (r *Reconciler) setID(subnet netip.Prefix, id uint32) {
	if old, ok := r.ids[subnet]; ok {
		delete(r.idOwner, old)
		delete(r.ids, subnet)
	}
	if id != 0 {
		r.ids[subnet] = id
		r.idOwner[id] = subnet
	}
}

// Sync lists the kernel state of the device and applies the difference from
// the desired peers: missing objects are added, wrong ones replaced and
// stray ones removed. Writes that fail are reported in the error and in
// Status, and are retried by the next Sync.
func (r *Reconciler) Sync() (SyncResult, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	start := time.Now()
	st, err := r.conn.list(r.fam, r.cfg.Device, r.cfg.RouteProtocol, r.nexthops)
	if err != nil {
		return SyncResult{}, fmt.Errorf("vxlan: %w", err)
	}
	byGateway := map[nhTarget]uint32{}
	if r.nexthops {
		r.usedIDs = st.allIDs
		for id, n := range st.nexthops {
			if n.proto == r.cfg.RouteProtocol {
				r.ownIDs[id] = true
				byGateway[nhTarget{n.gw, n.dev}] = id
			}
		}
	}

	var reqs []request
	var why []string // parallel to reqs: "" for a programmed change, else the drift repaired
	var owner []netip.Prefix
	add := func(req request, reason string, subnet netip.Prefix) {
		reqs = append(reqs, req)
		why = append(why, reason)
		owner = append(owner, subnet)
	}
	// A missing object of a peer this reconciler had programmed is drift;
	// one of a peer it had not is news.
	drift := func(subnet netip.Prefix, reason string) string {
		if st, ok := r.status[subnet]; ok && st.Programmed && st.Peer == r.peers[subnet] {
			return reason
		}
		return ""
	}

	subnets := make([]netip.Prefix, 0, len(r.peers))
	for s := range r.peers {
		subnets = append(subnets, s)
	}
	slices.SortFunc(subnets, netip.Prefix.Compare)
	keepNH := map[uint32]bool{}
	keepNeigh := map[netip.Addr]bool{}
	keepFDB := map[MAC]netip.Addr{}
	for _, s := range subnets {
		p := r.peers[s]
		d := r.objects(p, r.nexthopID(p, byGateway))
		if d.nh.id != 0 {
			keepNH[d.nh.id] = true
			if have, ok := st.nexthops[d.nh.id]; !ok {
				add(r.nexthopAdd(d.nh), drift(s, "missing"), s)
			} else if have != d.nh {
				add(r.nexthopAdd(d.nh), drift(s, fmt.Sprintf("via %s dev %d onlink=%v proto %d", have.gw, have.dev, have.onlink, have.proto)), s)
			}
		}
		if have, ok := st.routes[s]; !ok {
			add(d.route.addRequest(), drift(s, "missing"), s)
		} else if !routeMatches(have, d.route) {
			add(d.route.addRequest(), drift(s, describeRoute(have)), s)
		}
		if d.neigh != nil {
			keepNeigh[d.neigh.ip] = true
			if have, ok := st.neighs[d.neigh.ip]; !ok {
				add(d.neigh.addRequest(), drift(s, "missing"), s)
			} else if have.mac != d.neigh.mac || have.state != unix.NUD_PERMANENT {
				add(d.neigh.addRequest(), drift(s, fmt.Sprintf("lladdr %s state %#x, want %s permanent", have.mac, have.state, d.neigh.mac)), s)
			}
		}
		if d.fdb != nil {
			keepFDB[d.fdb.mac] = d.fdb.dst
			entries := st.fdbs[d.fdb.mac]
			ok := false
			for _, e := range entries {
				if e.dst == d.fdb.dst && e.self && e.state&unix.NUD_PERMANENT != 0 {
					ok = true
				} else {
					add(e.deleteRequest(), fmt.Sprintf("extra remote %s for %s", e.dst, e.mac), s)
				}
			}
			if !ok {
				add(d.fdb.addRequest(), drift(s, "missing"), s)
			}
		}
	}
	// Stray objects: owned by the device or tagged as ours, wanted by no
	// peer. Deleting a nexthop also deletes the routes that use it.
	for dst, rt := range st.routes {
		if _, want := r.peers[dst]; want || rt.proto == unix.RTPROT_KERNEL {
			continue
		}
		add(rt.deleteRequest(), "not a peer's ("+describeRoute(rt)+")", netip.Prefix{})
	}
	for id, n := range st.nexthops {
		if !keepNH[id] && (n.proto == r.cfg.RouteProtocol || n.dev == r.cfg.Device) {
			add(deleteNexthopRequest(id), fmt.Sprintf("not a peer's (via %s)", n.gw), netip.Prefix{})
			delete(r.ownIDs, id)
		}
	}
	for ip, n := range st.neighs {
		if !keepNeigh[ip] && n.state&unix.NUD_NOARP == 0 {
			add(n.deleteRequest(), fmt.Sprintf("not a peer's (lladdr %s)", n.mac), netip.Prefix{})
		}
	}
	for mac, entries := range st.fdbs {
		if _, want := keepFDB[mac]; want {
			continue
		}
		for _, e := range entries {
			add(e.deleteRequest(), "not a peer's MAC", netip.Prefix{})
		}
	}

	errs, err := r.conn.exec(reqs)
	if err != nil {
		return SyncResult{}, fmt.Errorf("vxlan: %w", err)
	}
	res := SyncResult{Time: start, Peers: len(r.peers), Writes: len(reqs)}
	failed := map[netip.Prefix]string{}
	for i, req := range reqs {
		if errs != nil && errs[i] != nil {
			res.Errors++
			failed[owner[i]] = errs[i].Error()
			continue
		}
		if why[i] != "" {
			res.Repairs++
			r.recordRepair(req.what, why[i])
		}
	}
	for s := range r.status {
		if _, ok := r.peers[s]; !ok {
			delete(r.status, s)
			r.setID(s, 0)
		}
	}
	for _, s := range subnets {
		msg := failed[s]
		r.status[s] = PeerStatus{Peer: r.peers[s], NexthopID: r.ids[s], Programmed: msg == "", Err: msg}
	}
	for id := range keepNH {
		r.ownIDs[id] = true
	}
	res.Duration = time.Since(start)
	r.lastSync = res
	if res.Errors > 0 {
		return res, fmt.Errorf("vxlan: sync: %d of %d writes failed; first: %s", res.Errors, res.Writes, firstErr(errs))
	}
	return res, nil
}

// nexthopAdd writes n, replacing it in place when the id is known to be
// ours and creating it exclusively otherwise, so that a nexthop of other
// software that happens to have the id is never overwritten.
func (r *Reconciler) nexthopAdd(n nexthop) request {
	req := n.addRequest()
	if !r.ownIDs[n.id] {
		req.flags = unix.NLM_F_CREATE | unix.NLM_F_EXCL
	}
	return req
}

func (r *Reconciler) recordRepair(what, why string) {
	r.log.Info("repaired datapath drift", "object", what, "was", why)
	r.repairs = append(r.repairs, Repair{Time: time.Now(), What: what, Why: why})
	if len(r.repairs) > maxRepairs {
		r.repairs = slices.Delete(r.repairs, 0, len(r.repairs)-maxRepairs)
	}
}

func firstErr(errs []error) error {
	for _, e := range errs {
		if e != nil {
			return e
		}
	}
	return nil
}

// routeMatches compares a listed route with a desired one. A listed route
// through a nexthop object also reports the nexthop's gateway and device,
// so only the id counts then.
func routeMatches(have, want route) bool {
	if have.proto != want.proto {
		return false
	}
	if want.nhid != 0 {
		return have.nhid == want.nhid
	}
	return have.nhid == 0 && have.gw == want.gw && have.dev == want.dev && have.onlink == want.onlink
}

func describeRoute(rt route) string {
	if rt.nhid != 0 {
		return fmt.Sprintf("nhid %d proto %d", rt.nhid, rt.proto)
	}
	return fmt.Sprintf("via %s dev %d proto %d", rt.gw, rt.dev, rt.proto)
}

// SetPeer programs one peer at once, adding it or replacing what it had,
// without listing the kernel: the path for watch events, a handful of
// netlink writes. If its VTEP MAC changed, the old FDB entry is removed.
func (r *Reconciler) SetPeer(p Peer) error {
	if err := p.validate(r.cfg.IPv6); err != nil {
		return fmt.Errorf("vxlan: %w", err)
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	old, had := r.peers[p.Subnet]
	r.peers[p.Subnet] = p
	d := r.objects(p, r.nexthopID(p, nil))
	var reqs []request
	if d.nh.id != 0 {
		reqs = append(reqs, r.nexthopAdd(d.nh))
	}
	reqs = append(reqs, d.route.addRequest())
	if d.neigh != nil {
		reqs = append(reqs, d.neigh.addRequest(), d.fdb.addRequest())
	}
	if had && !old.Direct && (old.VtepMAC != p.VtepMAC || p.Direct) {
		reqs = append(reqs, r.objects(old, 0).fdb.deleteRequest())
		if p.Direct {
			reqs = append(reqs, r.objects(old, 0).neigh.deleteRequest())
		}
	}
	return r.apply(p.Subnet, reqs, d.nh.id)
}

// RemovePeer removes one peer's objects at once, without listing.
func (r *Reconciler) RemovePeer(subnet netip.Prefix) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	p, ok := r.peers[subnet]
	if !ok {
		return nil
	}
	delete(r.peers, subnet)
	id := r.ids[subnet]
	d := r.objects(p, id)
	var reqs []request
	if id != 0 {
		reqs = append(reqs, deleteNexthopRequest(id)) // takes the route with it
	} else {
		reqs = append(reqs, d.route.deleteRequest())
	}
	if d.neigh != nil {
		reqs = append(reqs, d.neigh.deleteRequest(), d.fdb.deleteRequest())
	}
	r.setID(subnet, 0)
	delete(r.ownIDs, id)
	delete(r.usedIDs, id)
	delete(r.status, subnet)
	errs, err := r.conn.exec(reqs)
	if err != nil {
		return fmt.Errorf("vxlan: %w", err)
	}
	for _, e := range errs {
		// Already gone is what we wanted.
		if e != nil && !errors.Is(e, unix.ENOENT) && !errors.Is(e, unix.ESRCH) {
			return fmt.Errorf("vxlan: remove peer %s: %w", subnet, e)
		}
	}
	return nil
}

// apply runs one peer's requests and records the outcome.
func (r *Reconciler) apply(subnet netip.Prefix, reqs []request, id uint32) error {
	errs, err := r.conn.exec(reqs)
	if err != nil {
		return fmt.Errorf("vxlan: %w", err)
	}
	st := PeerStatus{Peer: r.peers[subnet], NexthopID: id, Programmed: true}
	if e := firstErr(errs); e != nil && !errors.Is(e, unix.ENOENT) {
		st.Programmed, st.Err = false, e.Error()
		r.status[subnet] = st
		return fmt.Errorf("vxlan: program peer %s: %w", subnet, e)
	}
	if id != 0 {
		r.ownIDs[id] = true
	}
	r.status[subnet] = st
	return nil
}

// Status returns what is programmed for each peer and the recent repairs.
func (r *Reconciler) Status() Status {
	r.mu.Lock()
	defer r.mu.Unlock()
	s := Status{Device: r.cfg.Device, IPv6: r.cfg.IPv6, Nexthops: r.nexthops, LastSync: r.lastSync, Repairs: slices.Clone(r.repairs)}
	for _, ps := range r.status {
		s.Peers = append(s.Peers, ps)
	}
	slices.SortFunc(s.Peers, func(a, b PeerStatus) int { return a.Peer.Subnet.Compare(b.Peer.Subnet) })
	return s
}
