//go:build linux

package hostgw

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/netip"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/vishvananda/netlink"
	"github.com/vishvananda/netns"
	"golang.org/x/sys/unix"

	"github.com/weftnet/weft/internal/nlwatch"
	"github.com/weftnet/weft/internal/ownroute"
	"github.com/weftnet/weft/internal/resyncloop"
	"github.com/weftnet/weft/lease"
)

// Defaults of DatapathConfig.
const (
	DefaultRouteProtocol  = 157
	DefaultResyncInterval = 30 * time.Second
)

// DatapathConfig configures a Datapath.
type DatapathConfig struct {
	// Namespace is the network namespace to program; the zero value and
	// netns.None() mean the caller's. The caller keeps it open until
	// Close.
	Namespace netns.NsHandle
	// Lease is the lease this node holds: its subnets are never a peer's,
	// and its public address must be on the uplink (host-gw cannot work
	// behind NAT: peers route to that address directly). It may be zero
	// until the node has one; SetLease supplies it.
	Lease lease.Lease
	// Uplink is the index of the interface peers are reached through, for
	// IPv4; Uplink6 for IPv6 (0: Uplink). Required for each family run.
	Uplink, Uplink6 int
	// IPv4 and IPv6 select the families run. Both false: those of Lease.Key.
	IPv4, IPv6 bool
	// RouteProtocol tags owned routes. Default 157, vxlan's: the two never
	// run on one node at once, and a node switched between them finds its
	// old routes as strays of its own protocol and removes them.
	RouteProtocol int
	// ResyncInterval is the period of unprompted reconciles. Default 30s.
	ResyncInterval time.Duration
	// Logger gets one line per change and per repair. Default slog.Default().
	Logger *slog.Logger
}

// A Datapath keeps one host-gw route per admitted peer as desired.
type Datapath struct {
	log  *slog.Logger
	nl   *netlink.Handle
	ns   netns.NsHandle
	kick chan struct{}
	runs atomic.Bool

	mu    sync.Mutex
	cfg   DatapathConfig
	peers []lease.Lease
	known bool // SetPeers was called: until then routes are left as they are
	fams  []*family
	// gen counts changes of desired state; syncedGen is the gen the
	// last successful reconcile applied.
	gen, syncedGen uint64
	synced         bool
	err            error
	// work serialises reconciles; mu is held only to read the desired
	// state and publish the outcome, so that Status never waits for the
	// kernel. Lock order: work, mu.
	work sync.Mutex
	mtu  int
	// repairs is copy-on-write: Status hands it out.
	repairs  []Repair
	repaired int
	lastSync time.Time

	filter atomic.Pointer[filterState]
}

// family is one address family's routes.
type family struct {
	ipv6   bool
	owner  ownroute.Owner
	status []PeerStatus // as of the last reconcile
}

// filterState is what the notification filter compares with, without the
// lock a reconcile holds.
type filterState struct {
	uplinks map[int]bool
	want    map[netip.Prefix]ownroute.Route
	proto   int
}

// NewDatapath checks cfg and reconciles once; routes are left as they
// are until the first SetPeers, so that a restarting agent keeps routing
// to the peers it knew while it learns them again.
func NewDatapath(cfg DatapathConfig) (*Datapath, error) {
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	if cfg.ResyncInterval <= 0 {
		cfg.ResyncInterval = DefaultResyncInterval
	}
	if cfg.RouteProtocol == 0 {
		cfg.RouteProtocol = DefaultRouteProtocol
	}
	if !cfg.IPv4 && !cfg.IPv6 {
		cfg.IPv4, cfg.IPv6 = cfg.Lease.Key.IPv4.IsValid(), cfg.Lease.Key.IPv6.IsValid()
	}
	if !cfg.IPv4 && !cfg.IPv6 {
		return nil, errors.New("hostgw: no family to run: set DatapathConfig.IPv4/IPv6 or give a Lease")
	}
	if cfg.Uplink6 == 0 {
		cfg.Uplink6 = cfg.Uplink
	}
	if (cfg.IPv4 && cfg.Uplink == 0) || (cfg.IPv6 && cfg.Uplink6 == 0) {
		return nil, errors.New("hostgw: DatapathConfig.Uplink is required: the index of the interface peers are reached through")
	}
	nl, err := handleAt(cfg.Namespace)
	if err != nil {
		return nil, fmt.Errorf("hostgw: netlink handle: %w", err)
	}
	d := &Datapath{cfg: cfg, nl: nl, ns: cfg.Namespace, kick: make(chan struct{}, 1), log: cfg.Logger.With("component", "hostgw")}
	for _, v6 := range []bool{false, true} {
		if (v6 && cfg.IPv6) || (!v6 && cfg.IPv4) {
			d.fams = append(d.fams, &family{ipv6: v6, owner: ownroute.Owner{Proto: cfg.RouteProtocol, IPv6: v6}})
		}
	}
	d.reconcile()
	return d, nil
}

func handleAt(ns netns.NsHandle) (*netlink.Handle, error) {
	if ns.IsOpen() && ns != 0 {
		return netlink.NewHandleAt(ns)
	}
	return netlink.NewHandle()
}

// Close releases the netlink socket. The routes stay in place.
func (d *Datapath) Close() {
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.nl != nil {
		d.nl.Close()
		d.nl = nil
	}
}

// SetPeers replaces the admitted peers: one lease each, of which the
// halves of the families run are programmed. Run reconciles soon after.
func (d *Datapath) SetPeers(peers []lease.Lease) {
	d.mu.Lock()
	d.peers = slices.Clone(peers)
	d.known = true
	d.gen++
	d.mu.Unlock()
	d.trigger()
}

// SetLease moves the node to another held lease (a new subnet, a new
// public address); Run reconciles soon after.
func (d *Datapath) SetLease(l lease.Lease) {
	d.mu.Lock()
	d.cfg.Lease = l
	d.gen++
	d.mu.Unlock()
	d.trigger()
}

// SetUplink moves the datapath to other uplink interfaces (the node's
// interface was replaced); 0 for uplink6 means uplink.
func (d *Datapath) SetUplink(uplink, uplink6 int) {
	if uplink6 == 0 {
		uplink6 = uplink
	}
	d.mu.Lock()
	d.cfg.Uplink, d.cfg.Uplink6 = uplink, uplink6
	d.gen++
	d.mu.Unlock()
	d.trigger()
}

func (d *Datapath) trigger() {
	select {
	case d.kick <- struct{}{}:
	default:
	}
}

// Reconcile makes the kernel match the desired state now.
func (d *Datapath) Reconcile() error {
	_, err := d.reconcile()
	return err
}

// Synced reports whether the current desired state has been applied by a
// reconcile that completed without error: every peer is programmed or
// listed failed.
func (d *Datapath) Synced() bool {
	d.mu.Lock()
	defer d.mu.Unlock()
	return d.known && d.synced && d.syncedGen == d.gen
}

// MTU returns the uplink's MTU as last read, which pods use unchanged:
// host-gw adds no header.
func (d *Datapath) MTU() int {
	d.mu.Lock()
	defer d.mu.Unlock()
	return d.mtu
}

// Run reconciles until ctx ends: after every change of desired state,
// shortly after a route or link notification that departs from it, and
// every ResyncInterval. A Datapath runs once; a second Run is refused.
func (d *Datapath) Run(ctx context.Context) error {
	if !d.runs.CompareAndSwap(false, true) {
		return errors.New("hostgw: Datapath.Run called twice")
	}
	stop := nlwatch.Watch(d.ns, nlwatch.Handlers{
		Route: func(u netlink.RouteUpdate) {
			if !d.expected(u) {
				d.trigger()
			}
		},
		Link: func(u netlink.LinkUpdate) {
			if f := d.filter.Load(); f == nil || f.uplinks[int(u.Index)] {
				d.trigger()
			}
		},
		Lost: func(err error) {
			d.log.Warn("kernel notifications lost; reconciling", "err", err)
			d.trigger()
		},
	})
	defer stop()
	d.mu.Lock()
	resync := d.cfg.ResyncInterval
	d.mu.Unlock()
	return resyncloop.Run(ctx, d.kick, resync, d.log, func(bool) (int, error) { return d.reconcile() })
}

// expected reports whether a route notification leaves things as wanted:
// one of ours written as wanted, or a route that concerns no peer.
func (d *Datapath) expected(u netlink.RouteUpdate) bool {
	f := d.filter.Load()
	if f == nil {
		return false
	}
	dst := ownroute.PrefixOf(u.Dst)
	w, wanted := f.want[dst]
	if int(u.Protocol) == f.proto {
		return wanted && u.Type == unix.RTM_NEWROUTE && w.Dev == u.LinkIndex && sameGw(u.Gw, w.Gw)
	}
	// Another program's route: it matters if it is to a peer's subnet,
	// or if it is a connected network of the uplink (peers on it are
	// reachable or no longer).
	return !wanted && !(f.uplinks[u.LinkIndex] && u.Gw == nil)
}
