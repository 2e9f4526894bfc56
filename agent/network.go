//go:build linux

package agent

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net/netip"
	"reflect"
	"sync"
	"sync/atomic"
	"time"

	"github.com/vishvananda/netns"
	"golang.org/x/sync/errgroup"

	"github.com/weftnet/weft/lease"
	"github.com/weftnet/weft/lease/admit"
)

// NetworkConfig configures a Network.
type NetworkConfig struct {
	// Manager is the lease source. Required. NewNetwork detects the
	// optional interfaces of package lease on it, once (see the package
	// doc's table), and Run logs which it found. A wrapper that embeds
	// the Manager hides them unless it passes them through, and that line
	// shows it.
	Manager lease.Manager
	// Node is this node's stable identity: the leases' owner and the seed
	// of its VTEP MACs. Default Manager.Node(); set, it must equal it, as
	// the two naming different nodes would have this node judge its own
	// lease as a peer's.
	Node string
	// PublicIP and PublicIPv6 are the underlay addresses peers send to,
	// for the families the network config enables. Each must be an
	// address of an interface in the namespace, unless FindPublic gives
	// the local one (see there). A family left zero takes the Manager's
	// hint (lease.HintReader) if it has one, else FindPublic's; with
	// neither it cannot run. NewNetwork refuses a config with no
	// PublicIP, no PublicIPv6 and no FindPublic, since a hint alone is
	// not known to exist until Run: a kube embedder whose Nodes carry
	// public-ip annotations still sets FindPublic, for the family the
	// hints leave zero.
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
	// Datapaths are the datapath factories the embedder links, by
	// backend type (net-conf.json's Backend.Type, a lease's BackendType):
	// {"vxlan": vxlan.NewFactory(vxlan.FactoryConfig{})} for flannel's
	// default. A network config naming a type with no factory is waited
	// out, not ready, with the type and the linked ones in the reason. A
	// binary links the code of only the datapaths it names here.
	Datapaths map[string]lease.DatapathFactory
	// ResyncInterval is the datapaths' periodic reconcile, and how often
	// the node's addresses are read again without a notification.
	// Default 30s.
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
	// the node needs to reach its control plane, and any others the
	// embedder names. A peer lease whose subnet overlaps one is rejected,
	// so that no lease can route them into the overlay (under a /8
	// Network, a peer's /24 could otherwise cover etcd's address). The
	// Manager's own endpoints are added when it reports them
	// (lease.EndpointReporter; lease/etcd's does), resolved once at
	// start; an embedder whose lease source does not (kube's API server)
	// adds them with admit.EndpointPrefixes. This node's subnet and the
	// prefixes of its interfaces are always protected.
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
	// Host is the kernel the Network reads the node's addresses from;
	// nil: netlink in Namespace. See Host.
	Host Host
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
	// backend is net-conf.json's Backend object the datapaths were set
	// up with (a change needs a restart).
	backend json.RawMessage
	// backendType is the network config's Backend.Type the datapaths
	// were set up for.
	backendType string
	// opt are the Manager's optional interfaces, detected once.
	opt    optionals
	own    lease.Lease
	hasOwn bool
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
	// verdictLog bounds the lines report writes: see logBudget.
	verdictLog logBudget
	watched    bool // the first snapshot has arrived
	v4, v6     lease.Datapath

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
	// off is the use of the local state; under mu.
	off offline
	// gone is why the node last stopped holding a lease; under mu.
	gone gone

	// ran is set by the first Run.
	ran atomic.Bool
	// changed is closed, and replaced, at every change a Snapshot could
	// show (see Changed); under chMu, which is taken under no other lock.
	chMu    sync.Mutex
	changed chan struct{}
	// protected is cfg.Protected with the Manager's endpoints; set by
	// Run before admission starts.
	protected []netip.Prefix

	// push serialises every change of the datapaths' peers: a full set
	// computed from the leases must not be applied after a newer per-peer
	// change it did not include, or that peer would be dropped.
	push sync.Mutex
}

// NewNetwork checks cfg and detects the Manager's optional interfaces.
// It touches nothing until Run. It refuses a cfg:
//
//   - with no Manager;
//   - whose Node is set and is not Manager.Node() (leave it empty), or
//     whose Manager serves no node (an empty Manager.Node());
//   - with no PublicIP, no PublicIPv6 and no FindPublic (see PublicIP);
//   - with no Datapaths.
//
// Errors name the field and the fix.
func NewNetwork(cfg NetworkConfig) (*Network, error) {
	if cfg.Manager == nil {
		return nil, errors.New("agent: NetworkConfig.Manager is required")
	}
	switch node := cfg.Manager.Node(); {
	case cfg.Node == "":
		cfg.Node = node
	case cfg.Node != node:
		return nil, fmt.Errorf("agent: NetworkConfig.Node %q is not the Manager's node %q: leave it empty to take the Manager's", cfg.Node, node)
	}
	if cfg.Node == "" {
		return nil, errors.New("agent: the Manager serves no node (Manager.Node is empty): a Network needs a stable node identity")
	}
	if !cfg.PublicIP.IsValid() && !cfg.PublicIPv6.IsValid() && cfg.FindPublic == nil {
		return nil, errors.New("agent: NetworkConfig needs PublicIP, PublicIPv6 or FindPublic")
	}
	if len(cfg.Datapaths) == 0 {
		return nil, errors.New(`agent: NetworkConfig.Datapaths is empty: give the datapath of each backend type to run, e.g. {"vxlan": vxlan.NewFactory(vxlan.FactoryConfig{})}`)
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	n := &Network{
		cfg: cfg, log: cfg.Logger.With("component", "network"), table: admit.NewTable(admit.Facts{}),
		leased: make(chan struct{}), stateKick: make(chan struct{}, 1),
		off: offline{saveKick: make(chan struct{}, 1)}, opt: detect(cfg.Manager),
		changed: make(chan struct{}),
	}
	return n, nil
}

// ErrRunTwice is Run's error when called again: a Network runs once.
var ErrRunTwice = errors.New("agent: Network.Run was called before; a Network runs once (make a new one to run again)")

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
//
// Run is single-use: a second call, during or after the first, returns
// ErrRunTwice at once and changes nothing.
func (n *Network) Run(ctx context.Context) error {
	if !n.ran.CompareAndSwap(false, true) {
		return ErrRunTwice
	}
	n.logOptionals()
	n.protectEndpoints(ctx)
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
		logged   string
		loggedAt time.Time
	)
	for {
		_, err := n.setUp(ctx, netConf)
		if err == nil {
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
	n.netConf, n.waiting, n.confLive = netConf, "", live
	n.confGen++
	n.noteChange()
	n.mu.Unlock()
	for _, dp := range []lease.Datapath{n.v4, n.v6} {
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

// ErrUnrecoverable is matched by every error Run returns other than the
// context's: a restart with the same inputs would fail the same way.
var ErrUnrecoverable = errors.New("agent: the network cannot run, and retrying would not help")

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

func (n *Network) applyConfig(c lease.Config) {
	n.mu.Lock()
	old := n.netConf
	n.netConf, n.confLive = c, true
	n.confGen++
	drop := n.dropIfOutsideLocked(c) // with the config: a Snapshot never shows it with a lease it leaves out
	n.mu.Unlock()
	if c.Network != old.Network || c.IPv6Network != old.IPv6Network {
		n.log.Info("network config changed", "network", c.Network, "was", old.Network, "ipv6_network", c.IPv6Network, "ipv6_was", old.IPv6Network)
	}
	drop()
	if c.EnableIPv4 != old.EnableIPv4 || c.EnableIPv6 != old.EnableIPv6 || c.BackendType != old.BackendType || !bytesEqualJSON(c.Backend, old.Backend) {
		n.log.Warn("network config changed in a way that needs a restart to take effect (families or backend); running with the old settings",
			"enable_ipv4", c.EnableIPv4, "enable_ipv6", c.EnableIPv6, "backend", string(c.Backend))
	}
	n.refreshFacts()
	n.kickState()
	n.kickSave()
}

// bytesEqualJSON compares two raw backend objects by the JSON values they
// hold, so that spacing and key order do not count as a change.
func bytesEqualJSON(a, b json.RawMessage) bool {
	var va, vb any
	if json.Unmarshal(a, &va) != nil || json.Unmarshal(b, &vb) != nil {
		return bytes.Equal(a, b)
	}
	return reflect.DeepEqual(va, vb)
}
