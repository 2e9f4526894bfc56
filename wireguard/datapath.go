//go:build linux

package wireguard

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
	// Config is net-conf.json's Backend, from ParseConfig.
	Config Config
	// PrivateKey is the node's key, from LoadOrCreateKey(KeyFile(dir)).
	// Required.
	PrivateKey Key
	// Lease is the lease this node holds: its subnets' network addresses
	// go on the devices, and are never a peer's. It may be zero until the
	// node has one; SetLease supplies it.
	Lease lease.Lease
	// Network and IPv6Network are the overlay networks: each is routed to
	// its device. The zero Prefix means the family is not run.
	Network, IPv6Network netip.Prefix
	// Uplink and Uplink6 are the indexes of the interfaces the families'
	// tunnels leave through (Uplink6 0: Uplink): the devices' MTU is
	// theirs minus Overhead. Required unless Config.MTU is set.
	Uplink, Uplink6 int
	// Engine is what runs WireGuard. Default EngineAuto.
	Engine Engine
	// UAPIDir, if set, is where a user-space device's configuration
	// socket is served, so that `wg show` sees it: DefaultUAPIDir for
	// wg's. "" serves none. One process per host may serve a name.
	UAPIDir string
	// RouteProtocol tags the owned routes. Default 157.
	RouteProtocol int
	// ResyncInterval is the period of unprompted reconciles, the backstop
	// that finds peers changed behind the datapath's back (WireGuard
	// sends no notification for them). Default 30s.
	ResyncInterval time.Duration
	// Logger gets one line per change and per repair. Default slog.Default().
	Logger *slog.Logger

	// client, if set, wraps the client each device is configured through:
	// tests use it to make the device refuse a peer.
	client func(wgClient) wgClient
	// noGreet leaves a new user-space device's peers ungreeted: the
	// benchmarks' peers do not exist, and wireguard-go would retry their
	// handshakes for 90 s, taking the CPU the benchmark measures.
	noGreet bool
}

// A Datapath keeps the node's WireGuard devices, their peers and routes as
// desired.
type Datapath struct {
	log  *slog.Logger
	ns   netns.NsHandle
	pub  Key
	kick chan struct{}
	runs atomic.Bool

	// work serialises reconciles and owns what they change (devs, nl,
	// kernel); mu guards the desired state and the published outcome, and
	// is never held across a kernel call. Lock order: work, mu.
	work   sync.Mutex
	nl     *netlink.Handle
	kernel wgClient // wgctrl's client, made when a kernel device is
	devs   []*wgdev
	engine Engine            // in use: kernel or userspace, once a device exists
	parsed map[string]parsed // backend data parsed by the last reconcile
	why    string            // why the user-space engine runs

	mu        sync.Mutex
	cfg       DatapathConfig
	peers     []lease.Lease
	known     bool
	gen       uint64
	syncedGen uint64
	synced    bool
	err       error
	closed    bool
	view      []DeviceStatus
	repairs   []Repair
	repaired  int
	lastSync  time.Time

	filter atomic.Pointer[filterState]
	// drift is set by a notification that the kernel departs from the
	// desired state: the next reconcile reads the devices back whole
	// rather than writing what the desired peers changed.
	drift atomic.Bool
}

// filterState is what the notification filter compares with.
type filterState struct {
	links map[int]bool    // the devices and uplinks
	names map[string]bool // the devices' names
	nets  map[netip.Prefix]bool
	proto int
}

// NewDatapath checks cfg and reconciles once: the devices are made, keyed
// and addressed. Peers are left as they are until the first SetPeers, so
// that a restarting agent keeps its tunnels while it learns its peers.
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
	if cfg.Engine == "" {
		cfg.Engine = EngineAuto
	}
	if cfg.Config.ListenPort == 0 && cfg.Config.ListenPortV6 == 0 && cfg.Config.Mode == "" {
		cfg.Config, _ = ParseConfig(nil)
	}
	switch {
	case cfg.PrivateKey.IsZero():
		return nil, errors.New("wireguard: DatapathConfig.PrivateKey is required; use LoadOrCreateKey(KeyFile(stateDir))")
	case !cfg.Network.IsValid() && !cfg.IPv6Network.IsValid():
		return nil, errors.New("wireguard: DatapathConfig needs Network, IPv6Network or both")
	case cfg.Config.MTU == 0 && cfg.Uplink == 0:
		return nil, errors.New("wireguard: DatapathConfig needs Uplink to derive the MTU, or Config.MTU")
	}
	switch cfg.Engine {
	case EngineAuto, EngineKernel, EngineUserspace:
	default:
		return nil, fmt.Errorf("wireguard: engine %q: use auto, kernel or userspace", cfg.Engine)
	}
	if cfg.Uplink6 == 0 {
		cfg.Uplink6 = cfg.Uplink
	}
	nl, err := handleAt(cfg.Namespace)
	if err != nil {
		return nil, fmt.Errorf("wireguard: netlink handle: %w", err)
	}
	d := &Datapath{cfg: cfg, nl: nl, ns: cfg.Namespace, pub: cfg.PrivateKey.PublicKey(), kick: make(chan struct{}, 1), log: cfg.Logger.With("component", "wireguard")}
	for _, spec := range cfg.Config.Devices(cfg.Network.IsValid(), cfg.IPv6Network.IsValid()) {
		dev := &wgdev{spec: spec, written: map[Key]peerWant{}}
		if spec.IPv4 {
			dev.owners = append(dev.owners, &ownroute.Owner{Proto: cfg.RouteProtocol})
		}
		if spec.IPv6 {
			dev.owners = append(dev.owners, &ownroute.Owner{Proto: cfg.RouteProtocol, IPv6: true})
		}
		d.devs = append(d.devs, dev)
	}
	if _, err := d.reconcile(true); err != nil && cfg.Engine == EngineKernel && d.engine == "" {
		d.Close()
		return nil, err
	}
	return d, nil
}

func handleAt(ns netns.NsHandle) (*netlink.Handle, error) {
	if ns.IsOpen() && ns != 0 {
		return netlink.NewHandleAt(ns)
	}
	return netlink.NewHandle()
}

// PublicKey is the node's public key, which its lease publishes.
func (d *Datapath) PublicKey() Key { return d.pub }

// Close releases the datapath's sockets. Kernel devices, their peers and
// routes stay in place, so that a restarting agent drops no traffic. A
// user-space device lives in this process: Close stops it, and its TUN
// device and routes go with it; the next agent builds it again with the
// same key, and peers' sessions resume within a handshake.
func (d *Datapath) Close() {
	d.mu.Lock()
	d.closed = true
	d.mu.Unlock()
	d.work.Lock()
	defer d.work.Unlock()
	for _, dev := range d.devs {
		if dev.user != nil {
			dev.user.Close()
			dev.user = nil
		}
	}
	if d.kernel != nil {
		d.kernel.Close()
		d.kernel = nil
	}
	if d.nl != nil {
		d.nl.Close()
		d.nl = nil
	}
}

// SetPeers replaces the admitted peers, one lease each. Run reconciles
// soon after.
func (d *Datapath) SetPeers(peers []lease.Lease) {
	d.mu.Lock()
	d.peers = slices.Clone(peers)
	d.known = true
	d.gen++
	d.mu.Unlock()
	d.trigger()
}

// SetLease moves the node to another held lease; Run re-addresses the
// devices soon after.
func (d *Datapath) SetLease(l lease.Lease) {
	d.mu.Lock()
	d.cfg.Lease = l
	d.gen++
	d.mu.Unlock()
	d.trigger()
}

// SetNetworks follows a change of the overlay networks (net-conf.json's
// Network and IPv6Network): the routes to the devices and the bounds of
// peer subnets. The families run are fixed at NewDatapath: a network given
// for a family the datapath does not run is ignored, and turning a family
// on or off takes a new Datapath.
func (d *Datapath) SetNetworks(network, ipv6Network netip.Prefix) {
	d.mu.Lock()
	if d.cfg.Network.IsValid() && network.IsValid() {
		d.cfg.Network = network.Masked()
	}
	if d.cfg.IPv6Network.IsValid() && ipv6Network.IsValid() {
		d.cfg.IPv6Network = ipv6Network.Masked()
	}
	d.gen++
	d.mu.Unlock()
	d.trigger()
}

// SetUplink changes the interfaces whose MTU the devices follow.
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

// Reconcile makes the kernel and the devices match the desired state now.
func (d *Datapath) Reconcile() error {
	_, err := d.reconcile(true)
	return err
}

// kicked asks for a reconcile that reads the devices back whole.
func (d *Datapath) kicked() {
	d.drift.Store(true)
	d.trigger()
}

// Synced reports whether the current desired state has been applied by a
// reconcile that completed without error: every peer is programmed or
// listed failed.
func (d *Datapath) Synced() bool {
	d.mu.Lock()
	defer d.mu.Unlock()
	return d.known && d.synced && d.syncedGen == d.gen
}

// Run reconciles until ctx ends: after every change of desired state,
// shortly after a link, address or route notification that departs from
// it (a device deleted, its address or route gone), and every
// ResyncInterval. A Datapath runs once; a second Run is refused.
func (d *Datapath) Run(ctx context.Context) error {
	if !d.runs.CompareAndSwap(false, true) {
		return errors.New("wireguard: Datapath.Run called twice")
	}
	stop := nlwatch.Watch(d.ns, nlwatch.Handlers{
		Link: func(u netlink.LinkUpdate) {
			f := d.filter.Load()
			if f == nil || f.links[int(u.Index)] || (u.Attrs() != nil && f.names[u.Attrs().Name]) {
				d.kicked()
			}
		},
		Addr: func(u netlink.AddrUpdate) {
			if f := d.filter.Load(); f == nil || f.links[u.LinkIndex] {
				d.kicked()
			}
		},
		Route: func(u netlink.RouteUpdate) {
			f := d.filter.Load()
			if f == nil || int(u.Protocol) == f.proto || f.nets[ownroute.PrefixOf(u.Dst)] {
				d.kicked()
			}
		},
		Lost: func(err error) {
			d.log.Warn("kernel notifications lost; reconciling", "err", err)
			d.kicked()
		},
	})
	defer stop()
	d.mu.Lock()
	resync := d.cfg.ResyncInterval
	d.mu.Unlock()
	return resyncloop.Run(ctx, d.kick, resync, d.log, d.reconcile)
}
