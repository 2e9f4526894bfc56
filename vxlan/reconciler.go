//go:build linux

package vxlan

import (
	"cmp"
	"errors"
	"fmt"
	"github.com/weftnet/weft/lease"
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

// syncChunk is how many planned writes Sync collects before sending them.
const syncChunk = 4096

// ReconcilerConfig configures a Reconciler.
type ReconcilerConfig struct {
	// Namespace is the network namespace to program. The zero value means
	// the namespace of the calling thread when NewReconciler runs.
	Namespace netns.NsHandle
	// Device is the index of the VTEP device.
	Device int
	// IPv6 selects the IPv6 datapath (flannel-v6.<VNI>).
	IPv6 bool
	// Underlay is the index of the underlay interface, needed only for
	// peers with Direct set.
	Underlay int
	// Learning says the device learns FDB entries itself (Config.Learning);
	// the reconciler then leaves entries it did not make permanent alone.
	Learning bool
	// RouteProtocol tags owned routes and nexthops. Default 157.
	RouteProtocol uint8
	// Logger receives a line for every repair of drift. Default
	// slog.Default().
	Logger *slog.Logger

	// host is the kernel to program; nil: the one in Namespace.
	host host
}

// A Reconciler makes the kernel's routes, nexthops, neighbours and FDB
// entries for one VTEP device match a desired set of peers.
//
// What it owns: every neighbour and FDB entry on the device, every nexthop
// on the device or tagged with its protocol, and every main-table route on
// the device or tagged with its protocol. What no peer needs among those is
// removed and what is wrong is corrected. Everything else is left alone: a
// route another program made to a peer's subnet is reported as a conflict,
// never overwritten, and deletes name protocol, metric and nexthop so the
// kernel cannot match another program's route.
//
// Two paths write: Sync lists the kernel and applies only the difference
// from the desired peers, for start-up and periodic resync; SetPeer and
// RemovePeer apply one peer's change directly, for events. A failed write
// of either is repaired by the next Sync. A Reconciler is safe for
// concurrent use.
type Reconciler struct {
	cfg      ReconcilerConfig
	fam      uint8
	metric   uint32
	log      *slog.Logger
	nexthops bool // the kernel has nexthop objects (Linux 5.3 and later)

	// write serializes everything that writes the kernel or changes the
	// desired peers, and is held across netlink round trips; mu guards
	// the state below and is held only briefly, so that the notification
	// filter and Status never wait for the kernel. Lock order: write, mu.
	write    sync.Mutex
	mu       sync.Mutex
	conn     routeConn // used under write
	closed   bool
	peers    peerTable       // the desired peers, their nexthop ids and what was written for them
	ownIDs   map[uint32]bool // nexthops known to be ours: listed with our protocol, or created by us since
	otherIDs map[uint32]bool // nexthops known to be another program's
	repairs  []Repair
	lastSync SyncResult
	syncs    int
	repaired int // repairs ever made; repairs keeps only the latest
}

// SyncResult reports one Sync.
type SyncResult struct {
	Time     time.Time
	Duration time.Duration
	Peers    int
	Writes   int // netlink writes issued
	Repairs  int // writes that corrected drift rather than programmed a change of peers
	Errors   int // writes that failed
	Failed   int // peers not wholly programmed: a write failed, or another program's object is in the way
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
	conn, err := hostOr(cfg.host, cfg.Namespace).dialRoute()
	if err != nil {
		return nil, fmt.Errorf("vxlan: %w", err)
	}
	r := &Reconciler{
		cfg:      cfg,
		fam:      unix.AF_INET,
		metric:   defaultMetric(cfg.IPv6),
		log:      cfg.Logger.With("component", "vxlan", "device", cfg.Device),
		conn:     conn,
		peers:    newPeerTable(),
		ownIDs:   map[uint32]bool{},
		otherIDs: map[uint32]bool{},
	}
	if cfg.IPv6 {
		r.fam = unix.AF_INET6
	}
	// Nexthop objects arrived in Linux 5.3; older kernels reject the dump.
	r.nexthops = conn.dump(unix.RTM_GETNEXTHOP, make([]byte, 8), func() {}, func(uint16, []byte) error { return nil }) == nil
	if !r.nexthops {
		r.log.Info("kernel has no nexthop objects; using per-route gateways, which are slower to program")
	}
	return r, nil
}

// Close releases the netlink socket; later calls fail. The kernel state
// stays as it is.
func (r *Reconciler) Close() {
	defer r.lockWriter()()
	r.closed = true
	r.conn.close()
}

var errReconcilerClosed = errors.New("vxlan: reconciler is closed")

// lockWriter takes the writer lock and then the state lock, the order
// every writer uses, and returns what releases both.
func (r *Reconciler) lockWriter() func() {
	r.write.Lock()
	r.mu.Lock()
	return func() {
		r.mu.Unlock()
		r.write.Unlock()
	}
}

// SetPeers replaces the desired set of peers. It does not write: call Sync.
func (r *Reconciler) SetPeers(peers []Peer) error {
	for _, p := range peers {
		if err := p.validate(r.cfg.IPv6); err != nil {
			return fmt.Errorf("vxlan: %w", err)
		}
	}
	defer r.lockWriter()()
	r.peers.wantOnly(peers)
	return nil
}

// forget drops the desired peers drop selects, leaving their kernel state
// for the next Sync to remove as strays.
func (r *Reconciler) forget(drop func(Peer) bool) {
	defer r.lockWriter()()
	for s := range r.peers.recs {
		if p, ok := r.peers.wanted(s); ok && drop(p) {
			r.peers.unwant(s)
		}
	}
}

// takePeers moves old's desired peers to r, which has none yet, leaving
// old with none. What old wrote is not carried over: r starts by listing.
func (r *Reconciler) takePeers(old *Reconciler) {
	unlockOld := old.lockWriter()
	t := old.peers
	old.peers = newPeerTable()
	unlockOld()
	t.dropWrites()
	defer r.lockWriter()()
	r.peers = t
}

// desired is the set of kernel objects a peer needs. It holds no pointers,
// so that working it out allocates nothing: Sync does so for every peer.
type desired struct {
	nh    nexthop
	route route
	encap bool // a VXLAN peer, which has the neighbour and FDB entries below
	neigh neigh
	fdb   fdb
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
		d.route = route{dst: p.Subnet, metric: r.metric, nhid: id, proto: proto}
	} else {
		d.route = route{dst: p.Subnet, metric: r.metric, gw: gw, dev: dev, onlink: onlink, proto: proto}
	}
	if !p.Direct {
		d.encap = true
		d.neigh = neigh{ip: p.gateway(), mac: p.VtepMAC, dev: r.cfg.Device, state: unix.NUD_PERMANENT}
		d.fdb = fdb{mac: p.VtepMAC, dst: p.PublicIP, dev: r.cfg.Device, state: unix.NUD_PERMANENT, self: true}
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
	if id := r.peers.id(p.Subnet); id != 0 && !r.otherIDs[id] {
		return id
	}
	// Its id, if any, now belongs to a nexthop that is not ours.
	r.peers.setID(p.Subnet, 0)
	want := r.objects(p, 1).nh
	if id, ok := byGateway[nhTarget{want.gw, want.dev}]; ok {
		if _, taken := r.peers.idOwner[id]; !taken {
			r.peers.setID(p.Subnet, id)
			return id
		}
	}
	h := fnv.New32a()
	h.Write(p.Subnet.Addr().AsSlice())
	h.Write([]byte{byte(p.Subnet.Bits())})
	id := h.Sum32() | 0x10000000 // keep clear of small ids other software starts from
	for {
		_, taken := r.peers.idOwner[id]
		if !taken && !r.ownIDs[id] && !r.otherIDs[id] && id != 0 {
			break
		}
		id++
	}
	r.peers.setID(p.Subnet, id)
	return id
}

// nhTarget identifies a nexthop by where it leads.
type nhTarget struct {
	gw  netip.Addr
	dev int
}

// nexthopAdd writes n, replacing it in place when the id is known to be
// ours and creating it exclusively otherwise, so that a nexthop another
// program created with the id meanwhile is never overwritten.
func (r *Reconciler) nexthopAdd(n nexthop) request {
	req := n.addRequest()
	if !r.ownIDs[n.id] {
		req.flags = unix.NLM_F_CREATE | unix.NLM_F_EXCL
	}
	return req
}

func (r *Reconciler) recordRepair(what, why string) {
	r.log.Info("repaired datapath drift", "object", what, "was", why)
	r.repaired++
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
	if have.proto != want.proto || have.metric != want.metric {
		return false
	}
	if want.nhid != 0 {
		return have.nhid == want.nhid
	}
	return have.nhid == 0 && have.gw == want.gw && have.dev == want.dev && have.onlink == want.onlink
}

func describeRoute(rt route) string {
	if rt.nhid != 0 {
		return fmt.Sprintf("nhid %d proto %d metric %d", rt.nhid, rt.proto, rt.metric)
	}
	return fmt.Sprintf("via %s dev %d proto %d metric %d", rt.gw, rt.dev, rt.proto, rt.metric)
}

// SetPeer programs one peer at once, adding it or changing what it had,
// without listing the kernel: the path for watch events, a few netlink
// writes. Only what changed is written. A new nexthop is created on its own
// first, so that if another program holds its id no route ever points at
// that program's nexthop.
func (r *Reconciler) SetPeer(p Peer) error {
	if err := p.validate(r.cfg.IPv6); err != nil {
		return fmt.Errorf("vxlan: %w", err)
	}
	defer r.lockWriter()()
	if r.closed {
		return errReconcilerClosed
	}
	// Compare with what this reconciler last wrote for the subnet, not
	// with the desired peer: SetPeers may have changed that without a
	// Sync having programmed it yet.
	old, state := r.peers.lastWritten(p.Subnet)
	had, fresh := state != notWritten, state != written
	r.peers.want(p)

	id := r.nexthopID(p, nil)
	d := r.objects(p, id)
	if id != 0 && (fresh || !r.ownIDs[id] || r.objects(old, id).nh != d.nh) {
		errs, err := r.conn.exec([]request{r.nexthopAdd(d.nh)})
		if err != nil {
			return r.failPeer(p, id, r.needs(p), err)
		}
		e := firstErr(errs)
		if errors.Is(e, unix.EEXIST) && !r.ownIDs[id] {
			// Another program took the id since the last listing.
			r.otherIDs[id] = true
			id = r.nexthopID(p, nil)
			d = r.objects(p, id)
			if errs, err = r.conn.exec([]request{r.nexthopAdd(d.nh)}); err == nil {
				e = firstErr(errs)
			} else {
				e = err
			}
		}
		if e != nil {
			return r.failPeer(p, id, r.needs(p), e)
		}
		r.ownIDs[id] = true
	}

	// The neighbour and FDB entries first, the route after them: the
	// kernel applies the requests in order, and a route in place before
	// what carries its traffic takes packets the device drops.
	var reqs []request
	if d.encap && (fresh || old.Direct || old.VtepMAC != p.VtepMAC) {
		reqs = append(reqs, d.neigh.addRequest())
	}
	if d.encap && (fresh || old.Direct || old.VtepMAC != p.VtepMAC || old.PublicIP != p.PublicIP) {
		if other, ok := r.peers.macSharer(p.VtepMAC, p.Subnet); ok && other.PublicIP != p.PublicIP {
			// Nothing of reqs was sent: only the nexthop may be there.
			return r.failPeer(p, id, r.needs(p)&^ObjectNexthop, fmt.Errorf("VTEP MAC %s is also peer %s's, at %s", p.VtepMAC, other.Subnet, other.PublicIP))
		}
		reqs = append(reqs, d.fdb.addRequest())
	}
	if fresh || !routeMatches(r.objects(old, id).route, d.route) || old.Direct != p.Direct {
		// Replace only a route this reconciler wrote; an exclusive create
		// is refused if another program's route is in the way.
		reqs = append(reqs, d.route.addRequest(!fresh))
	}
	if had && !old.Direct && (p.Direct || old.VtepMAC != p.VtepMAC || old.PublicIP != p.PublicIP) {
		if _, shared := r.peers.macSharer(old.VtepMAC, p.Subnet); !shared {
			reqs = append(reqs, r.objects(old, 0).fdb.deleteRequest())
		}
		if p.Direct {
			reqs = append(reqs, r.objects(old, 0).neigh.deleteRequest())
		}
	}
	errs, err := r.conn.exec(reqs)
	if err != nil {
		return r.failPeer(p, id, r.needs(p)&^ObjectNexthop, err)
	}
	var first error
	var missing Objects
	for i, e := range errs {
		if e != nil && !(reqs[i].typ == unix.RTM_DELNEIGH && errors.Is(e, unix.ENOENT)) {
			first = cmp.Or(first, e)
			missing |= reqs[i].object()
		}
	}
	if first != nil {
		return r.failPeer(p, id, missing, first)
	}
	r.noteWritten(p, id, "", 0)
	return nil
}

// failPeer records that p's write failed with err, leaving missing not
// made, and returns the PeerError.
func (r *Reconciler) failPeer(p Peer, id uint32, missing Objects, err error) error {
	r.noteWritten(p, id, err.Error(), missing)
	return &PeerError{Subnet: p.Subnet, Err: err}
}

// A PeerError is the kernel's refusal of one peer's objects (another
// program's route in the way, an FDB entry it will not take). It is that
// peer's failure alone: the peer is marked failed in Status and retried,
// and the datapath is still converged.
type PeerError struct {
	Subnet netip.Prefix
	Err    error
}

func (e *PeerError) Error() string { return fmt.Sprintf("vxlan: program peer %s: %v", e.Subnet, e.Err) }
func (e *PeerError) Unwrap() error { return e.Err }

// Is makes a PeerError match lease.ErrPeerRefused.
func (e *PeerError) Is(target error) bool { return target == lease.ErrPeerRefused }

// isPeerFailure reports whether err is one peer's failure.
func isPeerFailure(err error) bool {
	var pe *PeerError
	return errors.As(err, &pe)
}

// noteWritten records the outcome of writing p, logging a failure once per
// distinct error and a recovery once.
func (r *Reconciler) noteWritten(p Peer, id uint32, err string, missing Objects) {
	prev := r.peers.errs[p.Subnet]
	r.peers.setWritten(p, id, err, missing)
	switch {
	case err != "" && err != prev:
		r.log.Warn("the kernel refused a peer's routes or entries; retrying with backoff", "subnet", p.Subnet, "public_ip", p.PublicIP, "err", err)
	case err == "" && prev != "":
		r.log.Info("peer programmed after earlier failures", "subnet", p.Subnet)
	}
}

// RemovePeer removes one peer's objects at once, without listing. It
// deletes only what is the datapath's: the route by protocol, metric and
// nexthop, then its nexthop if known to be ours, and the FDB entry only if
// no remaining peer uses it.
func (r *Reconciler) RemovePeer(subnet netip.Prefix) error {
	defer r.lockWriter()()
	if r.closed {
		return errReconcilerClosed
	}
	p, ok := r.peers.wanted(subnet)
	if !ok {
		return nil
	}
	r.peers.unwant(subnet)
	id := r.peers.id(subnet)
	d := r.objects(p, id)
	// The route goes before its nexthop: deleting a nexthop that a
	// route still uses makes the kernel flush its whole FIB, which at
	// tens of thousands of peers turns a mass removal quadratic.
	reqs := []request{d.route.deleteRequest()}
	if id != 0 && r.ownIDs[id] {
		reqs = append(reqs, deleteNexthopRequest(id))
		delete(r.ownIDs, id)
	}
	if d.encap {
		reqs = append(reqs, d.neigh.deleteRequest())
		if _, shared := r.peers.macSharer(p.VtepMAC, subnet); !shared {
			reqs = append(reqs, d.fdb.deleteRequest())
		}
	}
	r.peers.forget(subnet)
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
