//go:build linux

package vxlan

import (
	"cmp"
	"fmt"
	"log/slog"
	"net/netip"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/vishvananda/netns"
)

// DefaultResyncInterval is how often a Datapath reconciles with nothing
// prompting it. Kernel notifications trigger a reconcile within
// milliseconds; the periodic one is the backstop for anything they miss.
const DefaultResyncInterval = 30 * time.Second

// minPeerRetry and maxPeerRetry bound the backoff with which a Datapath
// retries the peers the kernel refused.
const (
	minPeerRetry = 500 * time.Millisecond
	maxPeerRetry = 30 * time.Second
)

// settle is how long a Datapath waits after a notification for more to
// arrive before reconciling, so that a burst costs one pass.
const settle = 50 * time.Millisecond

// DatapathConfig configures a Datapath.
type DatapathConfig struct {
	// Namespace is the network namespace to program. The zero value and
	// netns.None() both mean the caller's (a zero NsHandle is descriptor
	// 0, stdin, which is never taken for a namespace). The Datapath uses
	// the handle until Close, whenever it re-creates the device or
	// reopens a socket: the caller keeps it open until then.
	Namespace netns.NsHandle
	// Device describes the VTEP.
	Device DeviceConfig
	// Subnet is this node's subnet: its network address is put on the
	// device, and every other address of its family removed (see
	// EnsureAddress). It may be left zero until the node has a lease;
	// SetSubnet supplies it.
	Subnet netip.Prefix
	// RouteProtocol tags owned routes and nexthops. Default 157.
	RouteProtocol uint8
	// ResyncInterval is the period of unprompted reconciles. Default 30s.
	ResyncInterval time.Duration
	// Logger gets one line per change and per repair. Default slog.Default().
	Logger *slog.Logger
	// OnReconcile, if set, is called after every reconcile, without the
	// Datapath's lock held: Synced, MTU and the failed peers change only
	// there. It must not block; nil: nothing is called.
	OnReconcile func()

	// host is the kernel to program; nil: the one in Namespace.
	host host
	// release stands in for the kernel's release (uname -r) in tests of
	// the auto TX checksum offload; "": the kernel's.
	release string
}

// A Datapath keeps one VTEP device and its peers' routes, neighbours and
// FDB entries as desired. Run reconciles on every change of the desired
// state, on every kernel notification that departs from it (so drift is
// repaired within moments), and periodically. A deleted device is created
// again, with the same MAC, and every peer replayed.
type Datapath struct {
	cfg  DatapathConfig
	nl   linkHandle
	host host
	log  *slog.Logger
	kick chan struct{}

	mu  sync.Mutex
	dev Device
	// rec holds the desired peers as well as programming them: one copy
	// of the peer set, which at tens of thousands of nodes is among the
	// agent's largest structures. A new device gets a new reconciler,
	// which takes the set over from the old one.
	rec *Reconciler
	// peersKnown is set by the first SetPeers. Until then the datapath
	// leaves peer state alone: a restarting agent keeps routing to the
	// peers it programmed before while it learns them again (edge
	// autonomy), instead of clearing them as strays.
	peersKnown bool
	// gen counts changes of desired state; syncedGen is the gen the last
	// successful reconcile applied. Synced needs them equal, so that a
	// caller never sees "synced" for a state not yet applied.
	gen, syncedGen uint64
	synced         bool // the last reconcile, with peers known, succeeded
	// view mirrors what Status, Synced and Device report, published under
	// d.mu at every change, so that readers never wait out a reconcile,
	// which holds d.mu across a whole sync.
	view        atomic.Pointer[datapathView]
	lastErr     error // of the last reconcile
	failedPeers int   // peers the last reconcile could not program, each retried
	// repairs is copy-on-write: a published view shares it, so it is
	// replaced, never changed in place.
	repairs []Repair

	// filter is dev and rec for the notification filter, which must not
	// wait for d.mu: a reconcile holds it across a sync, and a blocked
	// filter lets the sync's own notifications overrun the socket.
	filter atomic.Pointer[notificationFilter]
	// unaddress says the device must hold no address: SetSubnet was
	// given none. Under mu.
	unaddress bool
	// addressed is the subnet whose address the last reconcile ensured:
	// an address added for another (asked for since) is no repair.
	addressed netip.Prefix
	// ipv6 is the device's family, which never changes (SetUnderlay
	// keeps it): read without d.mu.
	ipv6 bool
	// offload is the device's TX checksum offload: how it is set (nil
	// where the host cannot) and what is wanted, fixed at NewDatapath;
	// its Err and State under mu.
	csum    txChecksummer
	offload OffloadStatus
	// offloadRead is when the offload was last read back: the library's
	// read allocates about 1 MiB, so an unchanged device's is read once a
	// ResyncInterval, not on every reconcile a peer event makes.
	offloadRead time.Time
}

// notificationFilter is what the notification filter checks against.
type notificationFilter struct {
	dev      Device
	underlay int // the underlay interface's index, whose MTU decides the device's
	rec      *Reconciler
}

// NewDatapath creates or corrects the device and its address. It leaves
// routes, neighbours and FDB entries as they are until the first SetPeers.
func NewDatapath(cfg DatapathConfig) (*Datapath, error) {
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	if cfg.ResyncInterval == 0 {
		cfg.ResyncInterval = DefaultResyncInterval
	}
	hst := hostOr(cfg.host, cfg.Namespace)
	h, err := hst.handle()
	if err != nil {
		return nil, fmt.Errorf("vxlan: netlink handle: %w", err)
	}
	d := &Datapath{
		cfg:  cfg,
		nl:   h,
		host: hst,
		log:  cfg.Logger.With("component", "vxlan"),
		kick: make(chan struct{}, 1),
		ipv6: cfg.Device.Local.Is6(),
	}
	d.initOffload(cmp.Or(cfg.release, kernelRelease()))
	if err := d.reconcile(); err != nil {
		d.Close()
		return nil, err
	}
	return d, nil
}

// Close releases the Datapath's sockets. The device, routes and entries stay
// in place, so that a restarting agent does not drop traffic.
func (d *Datapath) Close() {
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.rec != nil {
		d.rec.Close()
	}
	d.nl.Close()
}

// Device returns the device as last ensured.
func (d *Datapath) Device() Device { return d.loadView().dev }

// SetPeers replaces the desired peers; Run reconciles soon after. A peer
// whose subnet overlaps this node's own is skipped: routing it to the
// overlay would take this node's pods' traffic away from them. (A Network
// never gives one: admission rejects it, and says so.)
func (d *Datapath) SetPeers(peers []Peer) error {
	for _, p := range peers {
		if err := p.validate(d.ipv6); err != nil {
			return fmt.Errorf("vxlan: %w", err)
		}
	}
	d.mu.Lock()
	if own := d.cfg.Subnet; own.IsValid() && slices.ContainsFunc(peers, func(p Peer) bool { return p.Subnet.Overlaps(own) }) {
		peers = slices.DeleteFunc(slices.Clone(peers), func(p Peer) bool {
			if p.Subnet.Overlaps(own) {
				d.log.Debug("ignoring a peer that overlaps this node's subnet", "peer", p.Subnet, "own", own)
				return true
			}
			return false
		})
	}
	err := d.rec.SetPeers(peers)
	if err == nil {
		d.peersKnown = true
		d.gen++
		d.publishLocked()
	}
	d.mu.Unlock()
	if err != nil {
		return err
	}
	d.trigger()
	return nil
}

// SetPeer adds or changes one peer and programs it at once. If the kernel
// refuses the peer's objects, the error is a *PeerError: the peer is marked
// failed and retried with backoff, and the datapath stays converged. Any
// other failure leaves it unconverged until Run's next reconcile.
func (d *Datapath) SetPeer(p Peer) error {
	if err := p.validate(d.ipv6); err != nil {
		return fmt.Errorf("vxlan: %w", err)
	}
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.cfg.Subnet.IsValid() && p.Subnet.Overlaps(d.cfg.Subnet) {
		d.log.Debug("ignoring a peer that overlaps this node's subnet", "peer", p.Subnet, "own", d.cfg.Subnet)
		return nil
	}
	return d.applied(d.rec.SetPeer(p))
}

// RemovePeer removes one peer at once.
func (d *Datapath) RemovePeer(subnet netip.Prefix) error {
	d.mu.Lock()
	defer d.mu.Unlock()
	return d.applied(d.rec.RemovePeer(subnet))
}

// applied records a fast-path change: the desired state moved on, and it is
// applied if the write was made on top of a synced state, whether the
// kernel took it or refused it as one peer's failure (which Run retries).
// Any other failure leaves Synced false until a reconcile repairs it. d.mu
// is held.
func (d *Datapath) applied(err error) error {
	defer d.publishLocked()
	wasSynced := d.synced && d.syncedGen == d.gen
	d.gen++
	if err != nil && !isPeerFailure(err) {
		d.trigger()
		return err
	}
	if err != nil {
		d.failedPeers = max(d.failedPeers, 1)
		d.trigger()
	}
	if wasSynced {
		d.syncedGen = d.gen
	}
	return err
}

// SetSubnet moves the node to a new subnet (after a lease was lost, or
// the network changed); Run re-addresses the device soon after.
func (d *Datapath) SetSubnet(subnet netip.Prefix) {
	d.mu.Lock()
	d.cfg.Subnet = subnet
	// Given no subnet (the node lost the one it held and has none yet),
	// the device gives up its address; a new datapath with none yet
	// keeps what a previous run left, so that a restart drops nothing.
	d.unaddress = !subnet.IsValid()
	d.gen++
	d.publishLocked()
	if subnet.IsValid() {
		// A peer in this node's own subnet now is one no longer.
		d.rec.forget(func(p Peer) bool { return p.Subnet.Overlaps(subnet) })
	}
	d.mu.Unlock()
	d.trigger()
}

// SetUnderlay moves the device to another local address or underlay
// interface (the node's address changed, or its interface was replaced):
// Run re-creates it soon after, as those cannot change in place, with the
// same MAC, and programs every peer on the new device.
func (d *Datapath) SetUnderlay(local netip.Addr, underlay int) {
	if local.Is6() != d.ipv6 {
		return // another family's address is never this device's
	}
	d.mu.Lock()
	if d.cfg.Device.Local == local && d.cfg.Device.Underlay == underlay {
		d.mu.Unlock()
		return
	}
	d.cfg.Device.Local, d.cfg.Device.Underlay = local, underlay
	d.gen++
	d.publishLocked()
	d.mu.Unlock()
	d.trigger()
}

// Synced reports whether the current desired state (peers and subnet) has
// been applied by a reconcile that completed without error: every peer is
// programmed or marked failed (see DatapathStatus.FailedPeers).
func (d *Datapath) Synced() bool { return d.loadView().synced }

// publishLocked publishes what lock-free readers see. d.mu is held.
func (d *Datapath) publishLocked() {
	v := &datapathView{dev: d.dev, synced: d.synced && d.syncedGen == d.gen, failedPeers: d.failedPeers, repairs: d.repairs, rec: d.rec, offload: d.offload}
	if d.lastErr != nil {
		v.err = d.lastErr.Error()
	}
	d.view.Store(v)
}

// loadView returns the last published view; a Datapath publishes one
// before NewDatapath returns.
func (d *Datapath) loadView() *datapathView {
	if v := d.view.Load(); v != nil {
		return v
	}
	return &datapathView{}
}

// MTU returns the device's MTU as last ensured. It never waits for a
// reconcile in progress.
func (d *Datapath) MTU() int { return d.loadView().dev.MTU }

// failed returns how many peers the last reconcile could not program.
func (d *Datapath) failed() int { return d.loadView().failedPeers }

func (d *Datapath) trigger() {
	select {
	case d.kick <- struct{}{}:
	default:
	}
}
