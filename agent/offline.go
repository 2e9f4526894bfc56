//go:build linux

package agent

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"net/netip"
	"sync"
	"time"

	"github.com/weftnet/weft/lease"
	"github.com/weftnet/weft/localstate"
)

// A StateStore keeps a node's state across reboots, so that a Network can
// bring its overlay up while the control plane cannot be reached (see
// NetworkConfig.LocalState). package localstate's Store is one; an
// embedder may supply its own.
type StateStore interface {
	// Load returns the stored state, or an error if there is none this
	// node may use: none yet (matching fs.ErrNotExist), corrupt,
	// another network's or node's, or too old. The error names the state.
	Load() (localstate.State, error)
	// Save stores st, unless the store already holds the same; it
	// reports whether it wrote.
	Save(st localstate.State) (bool, error)
}

// A StateRemover is a StateStore that can forget its state, as
// localstate's Store can. A Network removes the state when the node gives
// up its lease (lost to another node, refused when the control plane
// answered, left out by the network config): a later boot cut off from
// the control plane must not route, nor name in subnet.env, a subnet the
// node no longer holds. A store without Remove keeps the lease until the
// node holds another.
type StateRemover interface {
	Remove() error
}

// DefaultOfflineAfter is how long Run waits at start for the lease source
// to give the node its network config, settings and lease before it runs
// from its local state.
const DefaultOfflineAfter = 5 * time.Second

const (
	// saveDelay gathers the changes of a moment (a listing, a lease and
	// its State) into one write of the local state.
	saveDelay = time.Second
	// saveRefresh is how often the state is compared again with nothing
	// to prompt it: the lease's expiry moves at each renewal, which the
	// Manager makes on its own.
	saveRefresh = 10 * time.Minute
)

// An OfflineStatus says how a Network runs from its local state.
type OfflineStatus struct {
	// Since is when the Network began to run from the state.
	Since time.Time
	// Written is when the state was written, PeersAt when its peer set
	// was last seen to change: how old what the node runs on is.
	Written, PeersAt time.Time
	// Lease and Peers say which parts still come from the state: the
	// lease until the Manager gives one, the peers until its first
	// listing.
	Lease, Peers bool
}

// offline is a Network's use of its local state.
type offline struct {
	// cached is the usable state Run loaded; nil if there is none.
	cached *localstate.State
	// conf is cached's config, parsed.
	conf lease.Config
	// since is when the Network began to run from cached: zero if it
	// never did, or runs on the live control plane again.
	since time.Time
	// lease and peers say which parts still come from cached.
	lease, peers bool
	// peersAt and peersRev are when the admitted peer set last changed,
	// and the store's revision then, for the next save.
	peersAt  time.Time
	peersRev int64
	saveKick chan struct{}
	// forget says the node gave up the lease it held (lost, refused,
	// left outside the network), under n.mu: with no lease held, the
	// state is removed only then, never merely because no lease is held
	// yet (a starting node boots from it).
	forget bool

	// saveMu serialises the saves and removals of saveStates and the
	// State publisher, and guards saved and saveFailed.
	saveMu sync.Mutex
	// saved is the lease the state on disk holds, as loaded, last saved
	// or removed by this run; zero if none (or none this run can boot
	// from). tried is the lease held when a save was last tried.
	saved, tried lease.Key
	// saveFailed is the last save's error, logged once.
	saveFailed string
}

// loadState reads the local state, if the Network has a store, and keeps
// it if this node can run from it. An unusable state is logged, naming
// it and why, and the Network goes on as if there were none.
func (n *Network) loadState() {
	if n.cfg.LocalState == nil {
		return
	}
	st, err := n.cfg.LocalState.Load()
	switch {
	case errors.Is(err, fs.ErrNotExist):
		n.log.Info("no local state yet; it is written once the node runs", "err", err)
		return
	case err != nil:
		n.log.Warn("ignoring the local state: the node cannot boot from it while the control plane is unreachable", "err", err)
		return
	}
	conf, err := lease.ParseConfig(st.Config)
	if err == nil && !leaseFits(st.Lease.Key, conf) {
		err = fmt.Errorf("%s: its lease %s does not fit its network config (%s, %s)", stateName(n.cfg.LocalState), st.Lease.Key, conf.Network, conf.IPv6Network)
	}
	if err != nil {
		n.log.Warn("ignoring the local state", "err", err)
		return
	}
	n.off.cached, n.off.conf = &st, conf
	n.off.saved = st.Lease.Key
	n.log.Info("read the local state; the node boots from it if the control plane does not answer",
		"written", st.Written.Format(time.RFC3339), "subnet", st.Lease.Key, "peers", len(st.Peers), "offline_after", n.offlineAfter())
}

// stateName names a store in a log line: its file, if it has one.
func stateName(s StateStore) string {
	if p, ok := s.(interface{ Path() string }); ok {
		return p.Path()
	}
	return "the local state"
}

// leaseFits reports whether k has a subnet inside c's network for each
// family c enables.
func leaseFits(k lease.Key, c lease.Config) bool {
	inside := func(network, p netip.Prefix) bool {
		return p.IsValid() && network.Bits() <= p.Bits() && network.Contains(p.Addr())
	}
	return (!c.EnableIPv4 || inside(c.Network, k.IPv4)) && (!c.EnableIPv6 || inside(c.IPv6Network, k.IPv6))
}

func (n *Network) offlineAfter() time.Duration {
	if n.cfg.OfflineAfter > 0 {
		return n.cfg.OfflineAfter
	}
	return DefaultOfflineAfter
}

// offlineTimer fires when Run should stop waiting for the control plane:
// never if there is no state to run from.
func (n *Network) offlineTimer(start time.Time) <-chan time.Time {
	if n.off.cached == nil {
		return nil
	}
	return time.After(time.Until(start.Add(n.offlineAfter())))
}

// goOffline records that the Network runs from its local state from now
// on, for why.
func (n *Network) goOffline(why string) {
	n.mu.Lock()
	defer n.mu.Unlock()
	if !n.off.since.IsZero() {
		return
	}
	n.off.since = time.Now()
	st := n.off.cached
	n.log.Warn("the control plane has not answered; running from the local state until it does", "why", why,
		"written", st.Written.Format(time.RFC3339), "subnet", st.Lease.Key, "peers", len(st.Peers))
}

// cachedHints are the settings the node last ran with, standing in for a
// lease.HintReader's while it cannot answer.
func (n *Network) cachedHints() lease.Hints {
	a := n.off.cached.Lease.Attrs
	return lease.Hints{PublicIP: a.PublicIP, PublicIPv6: a.PublicIPv6, BackendData: a.BackendData, BackendV6Data: a.BackendV6Data}
}

// bootFromCache runs the node from its local state, once Run has found the
// control plane unreachable (see goOffline): the cached lease is taken as
// the node's, the cached peers pass admission as a listing would, and the
// datapath is programmed from them. Whatever the Manager gives later
// replaces them: its lease through holdLease, its first listing through
// watchPeers.
//
// Only unreachability counts. A Manager that answers but makes the node
// wait (another host holds its name, a Node without a PodCIDR) is waited
// for: a cloned disk's state must never route the original's subnet.
func (n *Network) bootFromCache() {
	st := n.off.cached
	n.push.Lock()
	n.mu.Lock()
	if n.hasOwn {
		n.mu.Unlock()
		n.push.Unlock()
		return
	}
	if n.outsideLocked(st.Lease.Key, n.netConf) {
		n.mu.Unlock()
		n.push.Unlock()
		n.log.Warn("not running from the local state: its lease is outside the network config in force", "subnet", st.Lease.Key, "network", n.netConf.Network, "ipv6_network", n.netConf.IPv6Network)
		return
	}
	n.mu.Unlock()
	n.goOffline("no lease from the lease source within " + n.offlineAfter().String())
	n.mu.Lock()
	n.own, n.hasOwn, n.off.lease = st.Lease, true, true
	n.ownSince, n.ownFrom = time.Now(), FromLocalState
	n.leaseGen++
	n.moveDevicesLocked(st.Lease.Key)
	n.mu.Unlock()
	n.refreshFactsLocked()
	n.mu.Lock()
	var events []PeerEvent
	fromCache := !n.watched
	if fromCache {
		added := make([]lease.Event, len(st.Peers))
		for i, p := range st.Peers {
			added[i] = lease.Event{Type: lease.Added, Lease: p}
		}
		d := n.table.Apply(lease.Batch{Snapshot: true, Events: added})
		n.watched, n.off.peers = true, true
		events = n.peerEvents(d)
		n.mu.Unlock()
		n.report(d)
		n.pushAllLocked()
		n.tellPeers(events)
	} else {
		n.mu.Unlock()
	}
	n.push.Unlock()
	n.leasedOnce.Do(func() { close(n.leased) })
	n.log.Info("programmed the datapath from the local state", "subnet", st.Lease.Key, "peers", len(st.Peers), "peers_from_state", fromCache)
	n.kickState()
}

// answered notes that the Manager answered (a live config, readable
// settings) before the node began to run from its local state: a decision
// to run from it, made when it did not, is void.
func (n *Network) answered() {
	n.mu.Lock()
	defer n.mu.Unlock()
	if n.off.since.IsZero() || n.off.lease || n.off.peers {
		return
	}
	n.off.since = time.Time{}
	n.log.Info("the control plane answered before the node ran from its local state; waiting for it instead")
}

// cachedLeaseGrace is how long the node keeps the local state's lease once
// the Manager's first listing has come, for Acquire to return: three
// OfflineAfter (15s by default). A lease is re-asserted in milliseconds, a
// contested one in lease/etcd's ChallengeTimeout (5s).
func (n *Network) cachedLeaseGrace() time.Duration { return 3 * n.offlineAfter() }

// dropCachedLeaseAfter gives up the local state's lease if the Manager still
// has not given the node one, grace after it answered (unless ctx ends
// first, with Run): the
// store is there, and it says the subnet is not this node's now (another
// node took it, another host holds the node's name, the network is full).
// The node stops taking the subnet for its own, so that its holder is
// admitted as a peer, and waits for a lease, saying so on Ready.
func (n *Network) dropCachedLeaseAfter(ctx context.Context, grace time.Duration) {
	t := time.NewTimer(grace)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return
	case <-t.C:
	}
	why := n.condition() // asked before the locks: the Manager's own
	n.push.Lock()
	defer n.push.Unlock()
	n.mu.Lock()
	if !n.off.lease || ctx.Err() != nil {
		n.mu.Unlock()
		return
	}
	key := n.own.Key
	n.own, n.hasOwn, n.off.lease = lease.Lease{}, false, false
	n.off.since = time.Time{}
	n.leaseGen++
	n.moveDevicesLocked(lease.Key{}) // the devices give up its address
	n.noteGoneLocked(key, WithdrawRefused, why)
	n.mu.Unlock()
	n.log.Error("the control plane answers but gives this node no lease; no longer taking the local state's subnet for its own",
		"subnet", key, "waited", grace, "condition", why)
	n.refreshFactsLocked()
	n.kickState()
}

// backOnlineLocked notes that a part the local state stood in for has
// come from the Manager, and once both have, that the node runs on the
// control plane again. n.mu is held.
func (n *Network) backOnlineLocked() {
	if n.off.since.IsZero() || n.off.lease || n.off.peers {
		return
	}
	n.log.Info("the control plane answered: the node runs on its lease and peers again", "offline_for", time.Since(n.off.since).Round(time.Millisecond))
	n.off.since = time.Time{}
}

// Offline reports whether the Network runs from its local state, and how.
func (n *Network) Offline() (OfflineStatus, bool) {
	n.mu.Lock()
	defer n.mu.Unlock()
	if n.off.since.IsZero() {
		return OfflineStatus{}, false
	}
	st := n.off.cached
	return OfflineStatus{Since: n.off.since, Written: st.Written, PeersAt: st.PeersAt, Lease: n.off.lease, Peers: n.off.peers}, true
}

// vtepMAC returns the VtepMAC a backend data names, for the local
// state's record of it; "" if it names none (a backend without one).
func vtepMAC(data json.RawMessage) string {
	var bd struct{ VtepMAC lease.MAC }
	if json.Unmarshal(data, &bd) != nil || bd.VtepMAC.IsZero() {
		return ""
	}
	return bd.VtepMAC.String()
}
