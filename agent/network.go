//go:build linux

package agent

import (
	"cmp"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net/netip"
	"sync"
	"time"

	"github.com/vishvananda/netlink"
	"github.com/vishvananda/netns"
	"golang.org/x/sync/errgroup"

	"github.com/weftnet/weft/lease"
	"github.com/weftnet/weft/lease/admit"
	"github.com/weftnet/weft/vxlan"
)

// NetworkConfig configures a Network.
type NetworkConfig struct {
	// Manager is the lease source. Required. The Network detects the
	// optional interfaces of package lease on it: a lease.HintReader's
	// hints (kube's Node annotations) choose the public addresses and
	// VTEP MACs; a lease.ReadyNotifier is told once the datapath has
	// converged on a lease (kube then clears the Node's NetworkUnavailable
	// condition); a lease.ConditionReporter's condition is added to
	// Ready's reason; a lease.OwnLeaseReader's view of this node's lease
	// keeps the VTEP MACs it publishes. A wrapper that embeds the Manager
	// hides these unless it passes them through.
	Manager lease.Manager
	// Node is this node's stable identity: the leases' owner and the seed
	// of its VTEP MACs. Default Manager.Node(); set, it must equal it, as
	// the two naming different nodes would have this node judge its own
	// lease as a peer's.
	Node string
	// PublicIP and PublicIPv6 are the underlay addresses peers send VXLAN
	// packets to, for the families the network config enables. Each must
	// be an address of an interface in the namespace, unless FindPublic
	// gives the local one (see there). A family left zero takes the
	// Manager's hint (lease.HintReader) if it has one, else FindPublic's.
	PublicIP, PublicIPv6 netip.Addr
	// FindPublic, if set, returns the addresses of the underlay interface.
	// It is asked for a family the network config enables that has no
	// public address, each time the Network tries to set up (at start,
	// then every 10 s and at each config while it waits), so that an
	// address that comes up after the agent (SLAAC, a late DHCP lease) is
	// found without a restart; and for the address to send from when a
	// public address is on no interface here (a NAT's, as flannel's
	// --public-ip allows), which is then only advertised. ipv4 and ipv6 say which families the
	// config enables, for a policy that depends on them (the IPv6 default
	// route for an IPv6-only network). An error is the wait's reason.
	FindPublic func(ipv4, ipv6 bool) (v4, v6 netip.Addr, err error)
	// Namespace is the network namespace to program. The zero value and
	// netns.None() both mean the caller's (a zero NsHandle is descriptor
	// 0, stdin, which is never taken for a namespace). The Network uses
	// the handle for as long as Run runs, whenever it re-creates a device
	// or reopens a socket: the caller keeps it open until Run has
	// returned, and closes it then.
	Namespace netns.NsHandle
	// Previous is the subnet held before a restart (read from subnet.env),
	// asked for again if it is still free.
	Previous lease.Key
	// VtepMAC and VtepMACv6 are the MACs of the IPv4 and IPv6 devices.
	// Each device's MAC is, first match wins:
	//
	//  1. this field, when set;
	//  2. the MAC the Manager's hints publish for the VNI, when it is a
	//     lease.HintReader (kube's is: the Node's backend-data annotations);
	//  3. the MAC the node's own lease already publishes for the VNI, when
	//     the Manager is a lease.OwnLeaseReader (lease/etcd's is): flannel's
	//     random MAC on a node migrating from it, or weft's own;
	//  4. the MAC the local state recorded (LocalState), when the store
	//     cannot say: the one the node ran with before a reboot;
	//  5. DeriveMAC(Node, VNI) for the IPv4 device, DeriveMAC(Node+" ipv6",
	//     VNI) for the IPv6 one (see DeriveMAC), which survive restarts and
	//     reboots.
	//
	// A device found with another MAC is corrected. Keeping a published
	// MAC means peers' entries stay valid, even on peers cut off from the
	// control plane.
	VtepMAC, VtepMACv6 lease.MAC
	// TXChecksumOffload overrides the network config's
	// Backend.TXChecksumOffload for this node's devices; "" follows it
	// (whose default is auto: off on kernels before 5.7).
	TXChecksumOffload vxlan.ChecksumOffload
	// ResyncInterval is the datapath's periodic reconcile. Default 30s.
	ResyncInterval time.Duration
	// Logger receives one line per state change. Default slog.Default().
	Logger *slog.Logger
	// OnState is called with the node's State once the datapath has
	// converged on its first lease, and again whenever the lease, the
	// network config or the MTU changes: where an agent writes
	// subnet.env, so that pods never start on a subnet the node cannot
	// route yet. A lease replaced before it converged is never announced,
	// nor a config that has moved away from the lease.
	//
	// Calls come from one goroutine of Run's, in order, never two at
	// once, and each carries the whole state, so a handler writes what it
	// is given. A call may block: nothing but Run's return waits on it,
	// and changes meanwhile are folded into the next call, which carries
	// the newest state. None is made after Run returns. A ReadyNotifier
	// Manager is told of a new lease after the call for it returned.
	OnState func(State)
	// OnWithdraw is called when the State last given to OnState no longer
	// holds: the node lost its lease, gave up the local state's, moved to
	// another not converged on yet, or the network config left it out
	// (Withdrawal says which). It is also called once as Run starts,
	// before any State (WithdrawStarting): until then no lease is known to
	// be held. An agent removes subnet.env here (subnetenv.Remove), so
	// that the file never names a subnet the node does not hold, and
	// writes it again at the next OnState. Calls are ordered with
	// OnState's and never made at the same time as one (the one at start
	// from Run's goroutine before any other, the rest from the State
	// publisher's); a Withdrawal names the lease of the State before it,
	// and the next call after one is a State.
	OnWithdraw func(Withdrawal)
	// OnPeers is called with what the Network did to its peers: each
	// peer programmed or removed, for which family, and each lease that
	// admission rejects, with the rule. The first call holds every peer
	// of the first listing. Calls are made in the order of the changes,
	// never two at once, right after the changes were handed to the
	// datapath; a call holds up the next change, so it must return
	// quickly (hand the events to a channel or a log). Status and
	// Rejected give the whole picture at any time.
	OnPeers func([]PeerEvent)
	// Protected are prefixes no peer's subnet may overlap: the addresses
	// the node needs to reach its control plane (etcd endpoints, the API
	// server) and any others the embedder names. A peer lease whose
	// subnet overlaps one is rejected, so that no lease can route them
	// into the overlay. This node's subnet and the prefixes of its
	// interfaces are always protected; nil adds nothing.
	Protected []netip.Prefix
	// LocalState, if set, keeps this node's state across reboots: the
	// network config, the lease with its expiry, the VTEP MACs and the
	// admitted peers, saved a moment after any of them changes, and only
	// then (never per resync). At start, if the Manager cannot reach its
	// store (no network config within OfflineAfter, or a
	// lease.HintReader's settings cannot be read in that time) and the
	// state is usable (see StateStore.Load), the Network runs from it: the devices come up with the cached MACs and
	// address, the cached peers pass admission and are programmed, and a
	// State is announced, so that pods start and reach the neighbouring
	// nodes while the control plane is away. Whatever the Manager gives
	// later replaces the cache: its lease (a lost one is the ordinary
	// lease-loss path: a new subnet, a new State) and its first listing,
	// reconciled so that only differences are written. Offline and Ready
	// say when the node runs from the state. A Manager that answers but
	// makes the node wait (another host holds its name, no PodCIDR yet)
	// is waited for: a state copied with a cloned disk must never route
	// the original's subnet. nil: no local state.
	LocalState StateStore
	// OfflineAfter is how long Run waits at start for the Manager before
	// it runs from LocalState. Default DefaultOfflineAfter (5s).
	OfflineAfter time.Duration

	// host is the kernel to program; nil: the one in Namespace. The
	// scale harness gives each of its thousands of Networks a recorder.
	host host
}

// A Network runs a node's overlay: it acquires and keeps the node's lease,
// builds the VXLAN devices for the families the config enables, and keeps
// every peer's lease programmed. It is the loop an agent embeds.
type Network struct {
	cfg NetworkConfig
	log *slog.Logger

	mu      sync.Mutex
	netConf lease.Config
	// confLive says netConf came from the Manager, not the local state.
	confLive bool
	// waiting is why the config in force cannot be run yet; "" once it
	// runs.
	waiting string
	backend vxlan.Config
	own     lease.Lease
	hasOwn  bool
	// ownSince and ownFrom are when and how own was obtained (see
	// LeaseStatus).
	ownSince time.Time
	ownFrom  LeaseSource
	// dropOwn ends the keeping of own (see holdLease); nil while there is
	// none to end.
	dropOwn context.CancelCauseFunc
	// table judges every watched lease (see package lease/admit): only
	// the peers it admits are programmed.
	table *admit.Table
	local localFacts // this node's addresses, as last read
	// localErr is the last failure to read them, under n.push.
	localErr string
	watched  bool // the first snapshot has arrived
	v4, v6   *vxlan.Datapath
	onLink   map[int]netip.Prefix // underlay connected prefixes, for DirectRouting

	leased     chan struct{} // closed when the first lease is obtained
	leasedOnce sync.Once

	leaseGen uint64 // counts leases obtained; a State is for one of them
	confGen  uint64 // counts network configs applied
	// stateKick wakes the State publisher: something a State or Ready
	// depends on may have changed.
	stateKick chan struct{}
	// pubFound says which public addresses FindPublic chose (IPv4,
	// IPv6): those follow the interface's address.
	pubFound [2]bool
	// und is each family's underlay, as the devices use it (see
	// follow.go); attrs and attrsGen are what the lease should publish,
	// and its version.
	und      [2]underlayState
	attrs    lease.Attrs
	attrsGen uint64
	// started is when Run began: OfflineAfter counts from it.
	started time.Time
	// devSubnets is the lease whose subnets the devices were given last.
	devSubnets lease.Key
	// macs are the devices' VTEP MACs, IPv4 and IPv6, for the local
	// state.
	macs [2]lease.MAC
	// off is the use of the local state; under mu.
	off offline
	// gone is why the node last stopped holding a lease; under mu.
	gone gone

	// push serialises every change of the datapaths' peers: a full set
	// computed from the leases must not be applied after a newer per-peer
	// change it did not include, or that peer would be dropped.
	push sync.Mutex
}

// NewNetwork checks cfg. It touches nothing until Run.
func NewNetwork(cfg NetworkConfig) (*Network, error) {
	if cfg.Manager == nil {
		return nil, errors.New("vxlan: NetworkConfig.Manager is required")
	}
	switch node := cfg.Manager.Node(); {
	case cfg.Node == "":
		cfg.Node = node
	case cfg.Node != node:
		return nil, fmt.Errorf("vxlan: NetworkConfig.Node %q is not the Manager's node %q: leave it empty to take the Manager's", cfg.Node, node)
	}
	if cfg.Node == "" {
		return nil, errors.New("vxlan: the Manager serves no node (Manager.Node is empty): a Network needs a stable node identity")
	}
	if !cfg.PublicIP.IsValid() && !cfg.PublicIPv6.IsValid() && cfg.FindPublic == nil {
		return nil, errors.New("vxlan: NetworkConfig needs PublicIP, PublicIPv6 or FindPublic")
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	return &Network{
		cfg: cfg, log: cfg.Logger.With("component", "network"), table: admit.NewTable(admit.Facts{}),
		leased: make(chan struct{}), stateKick: make(chan struct{}, 1),
		off: offline{saveKick: make(chan struct{}, 1)},
	}, nil
}

// Run brings the overlay up and keeps it until ctx is done: it waits for
// the network config, creates the devices, acquires the lease (with the
// VTEP MACs in its attributes), watches every lease and programs the peers,
// and keeps the lease, acquiring a new one if it is lost or if the network
// config moves away from it (a Network that no longer contains the
// subnet; a widened one keeps it). A network config the node cannot run
// is waited out (see Ready). It returns ctx.Err() when ctx is done, or an
// error matching ErrUnrecoverable that retrying cannot fix (lease
// attributes the Manager refuses, say). The devices, routes and lease are
// left in place, so that a restart does not drop traffic.
func (n *Network) Run(ctx context.Context) error {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	start := time.Now()
	n.started = start
	// Before anything else, and before the State publisher starts: a
	// subnet.env of a previous run's names a subnet not known to be
	// held.
	n.withdraw(Withdrawal{Lease: n.cfg.Previous, Reason: WithdrawStarting})
	n.loadState()
	configs := make(chan lease.Config, 1)
	g, ctx := errgroup.WithContext(ctx)
	g.Go(func() error { return n.cfg.Manager.WatchConfig(ctx, configs) })

	var netConf lease.Config
	live := true // netConf came from the Manager, not the local state
	select {
	case netConf = <-configs:
	case <-n.offlineTimer(start):
		live = false
		netConf = n.off.conf
		n.goOffline("no network config from the lease source within " + n.offlineAfter().String())
	case <-ctx.Done():
		return n.wait(g)
	}
	// A config this node cannot run (another backend, a VNI or MTU out of
	// range, a family without a public address) is waited out, never a
	// crash loop: the reason is on Ready, logged when it changes and
	// once a minute, and the setup is tried again at each new config and
	// every setupRetry, for what depends on the host (an address that
	// appears, an underlay MTU raised).
	var (
		backend  vxlan.Config
		logged   string
		loggedAt time.Time
	)
	for {
		var err error
		if backend, _, err = n.setUp(ctx, netConf); err == nil {
			break
		}
		n.mu.Lock()
		why := "waiting for a network config this node can run: "
		if errors.Is(err, errNoHints) {
			why = "waiting for this node's settings: "
		}
		n.waiting = why + err.Error()
		n.mu.Unlock()
		if msg := err.Error(); msg != logged || time.Since(loggedAt) >= time.Minute {
			switch {
			case errors.Is(err, errNoHints) && errors.Is(err, lease.ErrInvalidAttrs):
				n.log.Error("this node's settings in the lease source are malformed; waiting for them to be fixed", "err", err)
			case errors.Is(err, errNoHints):
				n.log.Warn("cannot read this node's settings from the lease source yet; retrying", "err", err, "retry_in", setupRetry)
			default:
				n.log.Error("cannot run the network config in force; waiting for it to be fixed", "err", err)
			}
			logged, loggedAt = msg, time.Now()
		}
		retry := time.NewTimer(setupRetry)
		select {
		case netConf = <-configs:
			live = true
			n.answered()
		case <-retry.C:
		case <-ctx.Done():
			retry.Stop()
			return n.wait(g)
		}
		retry.Stop()
	}
	if logged != "" {
		n.log.Info("the network config can be run now", "network", netConf.Network, "ipv6_network", netConf.IPv6Network)
	}
	n.mu.Lock()
	n.netConf, n.backend, n.waiting, n.confLive = netConf, backend, "", live
	n.confGen++
	n.mu.Unlock()
	for _, dp := range []*vxlan.Datapath{n.v4, n.v6} {
		if dp != nil {
			g.Go(func() error { defer dp.Close(); return dp.Run(ctx) })
		}
	}
	g.Go(func() error { return n.publishStates(ctx) })
	if n.cfg.LocalState != nil {
		g.Go(func() error { return n.saveStates(ctx) })
	}
	if _, offline := n.Offline(); offline {
		g.Go(func() error { n.bootFromCache(); return nil })
	}

	g.Go(func() error {
		for {
			select {
			case c := <-configs:
				n.applyConfig(c)
			case <-ctx.Done():
				return ctx.Err()
			}
		}
	})
	n.refreshFacts()
	g.Go(func() error { return n.watchPeers(ctx) })
	g.Go(func() error { return n.watchLocal(ctx) })
	previous := n.cfg.Previous
	if !previous.IsValid() && n.off.cached != nil {
		previous = n.off.cached.Lease.Key
	}
	g.Go(func() error { return n.holdLease(ctx, previous) })
	return n.wait(g)
}

// setupRetry is how often a config that could not be run is tried again.
const setupRetry = 10 * time.Second

// setUp checks that the node can run netConf and creates its datapaths:
// the backend settings parse, each family it enables has a public
// address on an interface, and the MTU fits the underlay. Nothing is
// created unless every check passes. It returns the backend and the
// attributes to publish.
func (n *Network) setUp(ctx context.Context, netConf lease.Config) (vxlan.Config, lease.Attrs, error) {
	backend, err := vxlan.ParseConfig(netConf.Backend)
	if err != nil {
		return vxlan.Config{}, lease.Attrs{}, err
	}
	hints, err := n.readHints(ctx)
	_, isHintReader := n.cfg.Manager.(lease.HintReader)
	hintsCached := false
	switch {
	case err != nil && n.off.cached != nil && !errors.Is(err, lease.ErrInvalidAttrs):
		// The settings cannot be read, but the node has run before:
		// with those it ran with. It runs offline only if this setup
		// succeeds.
		hints, err, hintsCached = n.cachedHints(), nil, true
	case err == nil && isHintReader:
		n.answered() // the store answers
	}
	if err != nil {
		return vxlan.Config{}, lease.Attrs{}, err
	}
	n.mu.Lock()
	offline := hintsCached || !n.off.since.IsZero()
	n.mu.Unlock()
	type family struct {
		ipv6          bool
		public, local netip.Addr // advertised; sent from
		dp            **vxlan.Datapath
		data          *json.RawMessage
	}
	// The interface's addresses, asked for once per attempt, and only
	// if needed: for a family without a public address, or whose public
	// address is on no interface here (a NAT's, advertised to peers while
	// the device sends from the interface's own).
	var found [2]netip.Addr
	var findErr error
	asked := false
	find := func(ipv6 bool) netip.Addr {
		if !asked && n.cfg.FindPublic != nil {
			asked = true
			found[0], found[1], findErr = n.cfg.FindPublic(netConf.EnableIPv4, netConf.EnableIPv6)
		}
		if ipv6 {
			return found[1]
		}
		return found[0]
	}
	// Before anything runs that reads them: setUp precedes every other
	// goroutine of Run. The embedder's address wins, then the hint.
	if hintsCached {
		// What the node published before is no operator's choice, only
		// a candidate: taken while it is still an address here, and
		// then followed as a found one would be; else found again.
		for i, a := range []netip.Addr{hints.PublicIP, hints.PublicIPv6} {
			if _, _, err := n.underlay(a); !a.IsValid() || err != nil {
				continue
			}
			if i == 0 && !n.cfg.PublicIP.IsValid() {
				n.cfg.PublicIP, n.pubFound[0] = a, true
			}
			if i == 1 && !n.cfg.PublicIPv6.IsValid() {
				n.cfg.PublicIPv6, n.pubFound[1] = a, true
			}
		}
	}
	if !n.cfg.PublicIP.IsValid() && hints.PublicIP.IsValid() && !hintsCached {
		n.cfg.PublicIP = hints.PublicIP
		n.log.Info("using the public IP the lease source names for this node", "public_ip", hints.PublicIP)
	}
	if !n.cfg.PublicIPv6.IsValid() && hints.PublicIPv6.IsValid() && !hintsCached {
		n.cfg.PublicIPv6 = hints.PublicIPv6
		n.log.Info("using the public IPv6 address the lease source names for this node", "public_ipv6", hints.PublicIPv6)
	}
	if netConf.EnableIPv4 && !n.cfg.PublicIP.IsValid() {
		n.cfg.PublicIP = find(false)
		n.pubFound[0] = n.cfg.PublicIP.IsValid()
	}
	if netConf.EnableIPv6 && !n.cfg.PublicIPv6.IsValid() {
		n.cfg.PublicIPv6 = find(true)
		n.pubFound[1] = n.cfg.PublicIPv6.IsValid()
	}
	if findErr != nil {
		return vxlan.Config{}, lease.Attrs{}, fmt.Errorf("vxlan: finding the public addresses: %w", findErr)
	}
	attrs := lease.Attrs{PublicIP: n.cfg.PublicIP, PublicIPv6: n.cfg.PublicIPv6, BackendType: "vxlan"}
	var fams []family
	if netConf.EnableIPv4 {
		fams = append(fams, family{false, n.cfg.PublicIP, n.cfg.PublicIP, &n.v4, &attrs.BackendData})
	}
	if netConf.EnableIPv6 {
		fams = append(fams, family{true, n.cfg.PublicIPv6, n.cfg.PublicIPv6, &n.v6, &attrs.BackendV6Data})
	}
	for i, f := range fams {
		if _, _, err := n.underlay(f.public); err != nil && f.public.IsValid() {
			if local := find(f.ipv6); local.IsValid() && local != f.public {
				fams[i].local = local
			}
		}
		if err := n.checkFamily(backend, f.public, fams[i].local, f.ipv6); err != nil {
			return vxlan.Config{}, lease.Attrs{}, err
		}
	}
	published := n.publishedMACs(ctx, backend, hints, offline)
	made := make([]*vxlan.Datapath, len(fams))
	for i, f := range fams {
		dp, mac, err := n.newDatapath(backend, f.local, f.ipv6, published[f.ipv6])
		if err != nil {
			for _, d := range made[:i] {
				d.Close()
			}
			return vxlan.Config{}, lease.Attrs{}, err
		}
		made[i] = dp
		*f.data, _ = json.Marshal(vxlan.BackendData{VNI: backend.VNI, VtepMAC: mac})
	}
	n.mu.Lock()
	for i, f := range fams {
		*f.dp = made[i]
		u := &n.und[famIndex(f.ipv6)]
		// The address sent from follows the interface when FindPublic
		// chose it; so does the advertised one, unless it was set
		// (by the embedder, or a hint) or is a NAT's.
		u.localFound = n.pubFound[famIndex(f.ipv6)] || f.local != f.public
		u.publicFound = n.pubFound[famIndex(f.ipv6)]
	}
	n.attrs = attrs
	n.mu.Unlock()
	if hintsCached {
		n.goOffline("cannot read this node's settings from the lease source")
	}
	return backend, attrs, nil
}

// checkFamily checks that one family can run: a public address, and a
// local one (the same, or the interface's behind a NAT) on an interface
// whose MTU carries Backend.MTU plus VXLAN's overhead.
func (n *Network) checkFamily(backend vxlan.Config, public, local netip.Addr, ipv6 bool) error {
	fam, field := "IPv4", "PublicIP"
	if ipv6 {
		fam, field = "IPv6", "PublicIPv6"
	}
	if !public.IsValid() {
		return fmt.Errorf("vxlan: the network config enables %s but the node has no %s public address (NetworkConfig.%s; flanneld: --public-ip/--public-ipv6, or a global %s address on the chosen interface)", fam, fam, field, fam)
	}
	under, _, err := n.underlay(local)
	if err != nil {
		return err
	}
	if backend.MTU == 0 {
		return nil
	}
	h, err := n.host().handle()
	if err != nil {
		return fmt.Errorf("vxlan: %w", err)
	}
	defer h.Close()
	link, err := h.LinkByIndex(under)
	if err != nil {
		return fmt.Errorf("vxlan: underlay interface %d: %w", under, err)
	}
	overhead := vxlan.OverheadIPv4
	if ipv6 {
		overhead = vxlan.OverheadIPv6
	}
	if most := link.Attrs().MTU - overhead; backend.MTU > most {
		return fmt.Errorf("net-conf.json: Backend.MTU %d is more than the underlay carries: at most %d (%s's MTU %d less %d of VXLAN over %s); use 0 to derive it",
			backend.MTU, most, link.Attrs().Name, link.Attrs().MTU, overhead, fam)
	}
	return nil
}

// ErrUnrecoverable is matched by every error Run returns other than the
// context's: a restart with the same inputs would fail the same way.
var ErrUnrecoverable = errors.New("vxlan: the network cannot run, and retrying would not help")

func (n *Network) wait(g *errgroup.Group) error {
	err := g.Wait()
	switch {
	case errors.Is(err, context.Canceled):
		return context.Canceled
	case err == nil, errors.Is(err, context.DeadlineExceeded):
		return err
	}
	return fmt.Errorf("%w: %w", ErrUnrecoverable, err)
}

// publishedMACs returns the VTEP MACs published for this node, by family
// (true for IPv6), for the families whose MAC NetworkConfig does not set:
// first those of the Manager's hints (kube's Node annotations), then those
// its own lease publishes in the store (lease.OwnLeaseReader): flannel's
// random ones on a node migrating from it, or weft's own after a reboot.
// Peers hold them, so keeping them changes nothing anywhere. A MAC
// published for another VNI, or that is not a unicast address, is not
// kept. If the store does not answer in time there are none from it.
func (n *Network) publishedMACs(ctx context.Context, backend vxlan.Config, hints lease.Hints, offline bool) map[bool]lease.MAC {
	out := map[bool]lease.MAC{}
	take := func(ipv6 bool, raw json.RawMessage) {
		var bd vxlan.BackendData
		if _, done := out[ipv6]; done || len(raw) == 0 || json.Unmarshal(raw, &bd) != nil || bd.VNI != backend.VNI || bd.VtepMAC.IsZero() || bd.VtepMAC[0]&1 != 0 {
			return
		}
		out[ipv6] = bd.VtepMAC
	}
	take(false, hints.BackendData)
	take(true, hints.BackendV6Data)
	// Last, those the node ran with, from the local state: what peers
	// cut off from the store still hold.
	defer func() {
		if c := n.off.cached; c != nil {
			take(false, c.Lease.Attrs.BackendData)
			take(true, c.Lease.Attrs.BackendV6Data)
		}
	}()
	r, ok := n.cfg.Manager.(lease.OwnLeaseReader)
	if !ok || offline || (!n.cfg.VtepMAC.IsZero() || out[false] != lease.MAC{}) && (!n.cfg.VtepMACv6.IsZero() || out[true] != lease.MAC{}) {
		return out
	}
	rctx, cancel := context.WithTimeout(ctx, ownLeaseTimeout)
	defer cancel()
	l, found, err := r.OwnLease(rctx, lease.AcquireRequest{Attrs: lease.Attrs{PublicIP: n.cfg.PublicIP, PublicIPv6: n.cfg.PublicIPv6}, Previous: n.cfg.Previous})
	if err != nil {
		if n.off.cached != nil {
			n.log.Warn("cannot read this node's lease to keep the VTEP MACs it publishes; keeping those of the local state", "err", err)
		} else {
			n.log.Warn("cannot read this node's lease to keep the VTEP MACs it publishes; deriving them", "err", err)
		}
		return out
	}
	if found {
		take(false, l.Attrs.BackendData)
		take(true, l.Attrs.BackendV6Data)
	}
	return out
}

// errNoHints is setUp's error while a lease.HintReader cannot answer.
var errNoHints = errors.New("vxlan: reading this node's settings from the lease source")

// readHints asks a Manager that is a lease.HintReader for this node's
// hints, bounded like every read before the devices exist. A failure is
// setUp's: the config is waited out, saying why, and tried again.
func (n *Network) readHints(ctx context.Context) (lease.Hints, error) {
	r, ok := n.cfg.Manager.(lease.HintReader)
	if !ok {
		return lease.Hints{}, nil
	}
	deadline := time.Now().Add(ownLeaseTimeout)
	if n.off.cached != nil {
		// With a local state to fall back on, no longer than the
		// control plane is given at start.
		offline := n.started.Add(n.offlineAfter())
		if soon := time.Now().Add(100 * time.Millisecond); offline.Before(soon) {
			offline = soon
		}
		if offline.Before(deadline) {
			deadline = offline
		}
	}
	rctx, cancel := context.WithDeadline(ctx, deadline)
	defer cancel()
	h, err := r.Hints(rctx)
	if err != nil {
		return lease.Hints{}, fmt.Errorf("%w: %w", errNoHints, err)
	}
	return h, nil
}

// ownLeaseTimeout bounds the read of this node's lease before the
// devices are made: an unreachable store means derived MACs, not a wait.
const ownLeaseTimeout = 5 * time.Second

// newDatapath creates one family's device. Its MAC is, in this order:
// NetworkConfig's, the one this node's lease publishes (published, zero
// if none), or DeriveMAC of the node's name (with " ipv6" appended for
// the IPv6 device) and the VNI.
func (n *Network) newDatapath(backend vxlan.Config, public netip.Addr, ipv6 bool, published lease.MAC) (*vxlan.Datapath, lease.MAC, error) {
	if !public.IsValid() {
		fam := "IPv4"
		if ipv6 {
			fam = "IPv6"
		}
		return nil, lease.MAC{}, fmt.Errorf("vxlan: the network config enables %s but the node has no %s public IP", fam, fam)
	}
	under, onLink, err := n.underlay(public)
	if err != nil {
		return nil, lease.MAC{}, err
	}
	n.mu.Lock()
	if n.onLink == nil {
		n.onLink = map[int]netip.Prefix{}
	}
	n.onLink[under] = onLink
	n.und[famIndex(ipv6)] = underlayState{local: public, under: under}
	n.mu.Unlock()
	seed := n.cfg.Node
	if ipv6 {
		seed += " ipv6" // a different lease.MAC on each device, as flannel's
	}
	mac := vxlan.DeriveMAC(seed, backend.VNI)
	switch {
	case !ipv6 && n.cfg.VtepMAC != lease.MAC{}:
		mac = n.cfg.VtepMAC
	case ipv6 && n.cfg.VtepMACv6 != lease.MAC{}:
		mac = n.cfg.VtepMACv6
	case !published.IsZero():
		if published != mac {
			n.log.Info("keeping the VTEP lease.MAC published for this node, so that peers' entries stay valid", "mac", published, "derived", mac, "ipv6", ipv6)
		}
		mac = published
	}
	dp, err := vxlan.NewDatapath(vxlan.DatapathConfig{
		Namespace: n.cfg.Namespace,
		Device: vxlan.DeviceConfig{
			VNI: backend.VNI, Port: backend.Port, GBP: backend.GBP, Learning: backend.Learning,
			Local: public, Underlay: under, MAC: mac, MTU: backend.MTU,
			TXChecksumOffload: cmp.Or(n.cfg.TXChecksumOffload, backend.TXChecksumOffload),
		},
		ResyncInterval: n.cfg.ResyncInterval,
		Logger:         n.cfg.Logger,
		OnReconcile:    n.kickState,
	})
	if err == nil {
		n.mu.Lock()
		n.macs[famIndex(ipv6)] = mac
		n.mu.Unlock()
	}
	return dp, mac, err
}

// famIndex indexes per-family arrays: 0 for IPv4, 1 for IPv6.
func famIndex(ipv6 bool) int {
	if ipv6 {
		return 1
	}
	return 0
}

// underlay finds the interface holding addr, and the prefix it is on.
func (n *Network) underlay(addr netip.Addr) (int, netip.Prefix, error) {
	h, err := n.host().handle()
	if err != nil {
		return 0, netip.Prefix{}, fmt.Errorf("vxlan: %w", err)
	}
	defer h.Close()
	addrs, err := h.AddrList(nil, netlink.FAMILY_ALL)
	if err != nil {
		return 0, netip.Prefix{}, fmt.Errorf("vxlan: list addresses: %w", err)
	}
	for _, a := range addrs {
		ip, _ := netip.AddrFromSlice(a.IP)
		if ip.Unmap() == addr {
			ones, _ := a.Mask.Size()
			return a.LinkIndex, netip.PrefixFrom(addr, ones).Masked(), nil
		}
	}
	return 0, netip.Prefix{}, fmt.Errorf("vxlan: public IP %s is not an address of any interface; set it to the node's underlay address", addr)
}

// setOwn takes a new lease of this node's: the devices are re-addressed,
// the peers recomputed without it, and the caller told once converged.
func (n *Network) setOwn(l lease.Lease, from LeaseSource) {
	// Under n.push, so that no peer change is made between the new lease
	// and admission learning of it; the devices move to it under n.mu,
	// so that no State pairs the new lease with a datapath synced on the
	// old subnet.
	n.push.Lock()
	n.mu.Lock()
	if n.off.lease && n.own.Key != l.Key {
		n.log.Warn("the lease the node ran with from its local state is no longer its own; moving to the one the lease source gives",
			"was", n.own.Key, "subnet", l.Key)
	}
	if !n.hasOwn || n.own.Key != l.Key {
		n.ownSince = time.Now() // a new subnet; the same one, confirmed or re-acquired, keeps its time
	}
	if n.hasOwn && n.own.Key != l.Key && n.ownFrom != Reacquiring {
		n.noteGoneLocked(n.own.Key, WithdrawReplaced, "now "+l.Key.String())
	}
	n.own, n.hasOwn, n.off.lease, n.ownFrom = l, true, false, from
	n.leaseGen++
	n.moveDevicesLocked(l.Key)
	n.backOnlineLocked()
	n.mu.Unlock()
	n.refreshFactsLocked()
	n.push.Unlock()
	// The peer watch starts only now, with admission knowing the lease.
	n.leasedOnce.Do(func() { close(n.leased) })
	n.log.Info("holding lease", "subnet", l.Key)
	n.kickState()
	n.kickSave()
}

// moveDevicesLocked gives the devices the subnets of k, unless they have
// them: a datapath given its subnet again would reconcile for nothing.
// n.mu is held.
func (n *Network) moveDevicesLocked(k lease.Key) {
	if n.devSubnets == k {
		return
	}
	n.devSubnets = k
	if n.v4 != nil {
		n.v4.SetSubnet(k.IPv4)
	}
	if n.v6 != nil {
		n.v6.SetSubnet(k.IPv6)
	}
}

func (n *Network) applyConfig(c lease.Config) {
	n.mu.Lock()
	old := n.netConf
	n.netConf, n.confLive = c, true
	n.confGen++
	n.mu.Unlock()
	if c.Network != old.Network || c.IPv6Network != old.IPv6Network {
		n.log.Info("network config changed", "network", c.Network, "was", old.Network, "ipv6_network", c.IPv6Network, "ipv6_was", old.IPv6Network)
	}
	n.dropIfOutside(c)
	if c.EnableIPv4 != old.EnableIPv4 || c.EnableIPv6 != old.EnableIPv6 || c.BackendType != old.BackendType || !bytesEqualJSON(c.Backend, old.Backend) {
		n.log.Warn("network config changed in a way that needs a restart to take effect (families or backend); running with the old settings",
			"enable_ipv4", c.EnableIPv4, "enable_ipv6", c.EnableIPv6, "backend", string(c.Backend))
	}
	n.refreshFacts()
	n.kickState()
	n.kickSave()
}

// bytesEqualJSON compares two raw backend objects by what they parse to.
func bytesEqualJSON(a, b json.RawMessage) bool {
	ca, erra := vxlan.ParseConfig(a)
	cb, errb := vxlan.ParseConfig(b)
	return erra == nil && errb == nil && ca == cb
}

// Lease returns the lease the node holds, if any yet.
func (n *Network) Lease() (lease.Lease, bool) {
	n.mu.Lock()
	defer n.mu.Unlock()
	return n.own, n.hasOwn
}

// Ready reports whether the node holds a lease and every datapath has
// converged on the watched peers; if not, why not, with the Manager's
// condition (lease.ConditionReporter) when it has one.
//
// A node that runs from its local state (see NetworkConfig.LocalState) is
// ready once its datapath has converged on the cached lease and peers: its
// pods can start and reach their neighbours. The reason then says so,
// since when and how old the state is, with the Manager's condition.
func (n *Network) Ready() (bool, string) {
	ok, why := n.ready()
	if ok {
		if off, is := n.Offline(); is {
			why = fmt.Sprintf("running from the local state since %s (written %s ago)",
				off.Since.UTC().Format(time.RFC3339), time.Since(off.Written).Round(time.Second))
		}
	}
	if why != "" {
		if r, is := n.cfg.Manager.(lease.ConditionReporter); is {
			if cond := r.Condition(); cond != "" {
				why += ": " + cond
			}
		}
	}
	return ok, why
}

func (n *Network) ready() (bool, string) {
	n.mu.Lock()
	defer n.mu.Unlock()
	return n.readyLocked()
}

// readyLocked is ready; n.mu is held.
func (n *Network) readyLocked() (bool, string) {
	switch {
	case n.v4 == nil && n.v6 == nil && n.waiting != "":
		return false, n.waiting
	case n.v4 == nil && n.v6 == nil:
		return false, "waiting for the network config"
	case n.underlayWaitLocked() != "":
		return false, n.underlayWaitLocked()
	case !n.hasOwn:
		return false, "waiting for a lease"
	case !n.watched:
		return false, "waiting for the peer list"
	case n.v4 != nil && !n.v4.Synced(), n.v6 != nil && !n.v6.Synced():
		return false, "programming the datapath"
	}
	return true, ""
}

// MTU returns the MTU pods should use: the smallest of the devices'.
func (n *Network) MTU() int {
	n.mu.Lock()
	defer n.mu.Unlock()
	return n.mtuLocked()
}

// mtuLocked is MTU; n.mu is held.
func (n *Network) mtuLocked() int {
	mtu := 0
	for _, dp := range []*vxlan.Datapath{n.v4, n.v6} {
		if dp != nil {
			if m := dp.MTU(); mtu == 0 || m < mtu {
				mtu = m
			}
		}
	}
	return mtu
}

// Node returns the node's identity (NetworkConfig.Node).
func (n *Network) Node() string { return n.cfg.Node }

// Config returns the network config in force, and whether it came from
// the Manager rather than the local state; ok is false until the node
// runs one.
func (n *Network) Config() (c lease.Config, live, ok bool) {
	n.mu.Lock()
	defer n.mu.Unlock()
	if n.confGen == 0 {
		return lease.Config{}, false, false
	}
	return n.netConf, n.confLive, true
}

// Condition returns the Manager's condition (lease.ConditionReporter): what
// it waits for or why its requests fail, "" when nothing is wrong or it
// does not say.
func (n *Network) Condition() string {
	if r, ok := n.cfg.Manager.(lease.ConditionReporter); ok {
		return r.Condition()
	}
	return ""
}

// Datapaths returns the IPv4 and IPv6 datapaths, nil where disabled or not
// created yet, for status output.
func (n *Network) Datapaths() (v4, v6 *vxlan.Datapath) {
	n.mu.Lock()
	defer n.mu.Unlock()
	return n.v4, n.v6
}
