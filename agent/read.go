//go:build linux

package agent

import (
	"fmt"
	"net/netip"
	"slices"
	"time"

	"github.com/weftnet/weft/lease"
	"github.com/weftnet/weft/lease/admit"
)

// The read side: one level-based view (Snapshot, woken by Changed) and the
// narrower getters it subsumes.

// A Snapshot is the Network at one moment: its lease, config, MTU and
// every peer of every family, read under one lock so that the parts agree
// (no peer of a lease the node no longer holds, no MTU of a datapath not
// yet made). It is the embedder's copy; nothing in it changes.
type Snapshot struct {
	// Ready and Why are Ready's.
	Ready bool
	Why   string
	// State is the State OnState was last called with or is about to be
	// (State's), if HasState: what subnet.env should say, level-based.
	// Without one, the file should not exist (OnWithdraw's rule).
	State    State
	HasState bool
	// Lease is the lease the node holds, if Held.
	Lease lease.Lease
	Held  bool
	// Config is the network config in force, if HasConfig; ConfigLive
	// says it came from the Manager rather than the local state.
	Config                lease.Config
	HasConfig, ConfigLive bool
	// MTU is the MTU pods should use, 0 before the datapaths exist.
	MTU int
	// Offline says the node runs from its local state (see Offline).
	Offline bool
	// Peers are every peer lease's halves for the families the node
	// runs, by family (IPv4 first) then subnet: admitted ones
	// (PeerProgrammedState, PeerPendingState, PeerFailedState) and
	// rejected ones (PeerRejectedState) alike.
	Peers []PeerState
}

// PeerCounts counts the Snapshot's peers by state.
func (s Snapshot) PeerCounts() map[PeerStateKind]int {
	out := map[PeerStateKind]int{}
	for _, p := range s.Peers {
		out[p.State]++
	}
	return out
}

// PeerStateKind says where a peer stands.
type PeerStateKind uint8

const (
	// PeerPendingState: admitted and handed to the datapath, which has not
	// applied it yet.
	PeerPendingState PeerStateKind = iota + 1
	// PeerProgrammedState: admitted and programmed.
	PeerProgrammedState
	// PeerFailedState: admitted, and the kernel refused its objects; the
	// datapath retries it with backoff.
	PeerFailedState
	// PeerRejectedState: admission keeps it out (Reason, Detail).
	PeerRejectedState
)

func (k PeerStateKind) String() string {
	switch k {
	case PeerPendingState:
		return "pending"
	case PeerProgrammedState:
		return "programmed"
	case PeerFailedState:
		return "failed"
	case PeerRejectedState:
		return "rejected"
	}
	return fmt.Sprintf("PeerStateKind(%d)", uint8(k))
}

// PeerState is one family's half of a peer lease in a Snapshot.
type PeerState struct {
	State PeerStateKind
	IPv6  bool
	// Subnet, PublicIP and MAC are the peer's (MAC: its VtepMAC, for
	// vxlan); Lease and Owner the lease it comes from and its node.
	Subnet   netip.Prefix
	PublicIP netip.Addr
	MAC      lease.MAC
	Lease    lease.Key
	Owner    string
	// Reason and Detail are admission's, for PeerRejectedState.
	Reason admit.Reason
	Detail string
}

// Snapshot returns the Network as it is now. It never waits for a
// reconcile: the datapaths' part is what they last reported. It copies
// every peer, which at tens of thousands of peers takes milliseconds; an
// embedder that only needs the lease calls State or Lease.
func (n *Network) Snapshot() Snapshot {
	n.mu.Lock()
	defer n.mu.Unlock()
	var s Snapshot
	s.Ready, s.Why = n.readyWhyLocked()
	s.State, _, s.HasState = n.currentStateLocked()
	s.Lease, s.Held = n.own, n.hasOwn
	if n.confGen > 0 {
		s.Config, s.HasConfig, s.ConfigLive = n.netConf, true, n.confLive
	}
	s.MTU = n.mtuLocked()
	s.Offline = !n.off.since.IsZero()
	for i, dp := range []lease.Datapath{n.v4, n.v6} {
		if dp == nil {
			continue
		}
		ipv6 := i == 1
		r := dp.Report()
		for _, p := range n.table.Admitted(ipv6) {
			st := PeerPendingState
			switch {
			case slices.Contains(r.Failed, p.Subnet):
				st = PeerFailedState
			case r.Synced:
				st = PeerProgrammedState
			}
			s.Peers = append(s.Peers, PeerState{State: st, IPv6: ipv6, Subnet: p.Subnet, PublicIP: p.PublicIP, MAC: p.VtepMAC, Lease: p.Key, Owner: p.Owner})
		}
	}
	for _, v := range n.table.Rejected() {
		if n.datapath(v.Peer.IPv6) == nil {
			continue
		}
		s.Peers = append(s.Peers, PeerState{State: PeerRejectedState, IPv6: v.Peer.IPv6, Subnet: v.Peer.Subnet, PublicIP: v.Peer.PublicIP,
			MAC: v.Peer.VtepMAC, Lease: v.Peer.Key, Owner: v.Peer.Owner, Reason: v.Reason, Detail: v.Detail})
	}
	slices.SortStableFunc(s.Peers, func(a, b PeerState) int {
		if a.IPv6 != b.IPv6 {
			if a.IPv6 {
				return 1
			}
			return -1
		}
		return a.Subnet.Compare(b.Subnet)
	})
	return s
}

// Changed returns a channel that is closed at the next change a Snapshot
// could show: the lease, the config, readiness, the MTU, a peer admitted,
// rejected, removed, programmed or failed. Take the channel, then the
// Snapshot, then wait: a change between the two closes the channel, so
// none is missed. Changes close it at most once; take a new one after.
// Like a level-triggered informer, it says that something changed, never
// what: the Snapshot says what is.
func (n *Network) Changed() <-chan struct{} {
	n.chMu.Lock()
	defer n.chMu.Unlock()
	return n.changed
}

// noteChange wakes Changed's waiters. It never blocks, and takes no lock
// but its own, so that it can be called anywhere.
func (n *Network) noteChange() {
	n.chMu.Lock()
	close(n.changed)
	n.changed = make(chan struct{})
	n.chMu.Unlock()
}

// Lease returns the lease the node holds, if any yet: Snapshot's Lease and
// Held, without the rest.
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
	n.mu.Lock()
	defer n.mu.Unlock()
	return n.readyWhyLocked()
}

// readyWhyLocked is Ready; n.mu is held.
func (n *Network) readyWhyLocked() (bool, string) {
	ok, why := n.readyLocked()
	if ok && !n.off.since.IsZero() {
		why = fmt.Sprintf("running from the local state since %s (written %s ago)",
			n.off.since.UTC().Format(time.RFC3339), time.Since(n.off.cached.Written).Round(time.Second))
	}
	if why != "" {
		if cond := n.condition(); cond != "" {
			why += ": " + cond
		}
	}
	return ok, why
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
	case n.v4 != nil && !n.v4.Report().Synced, n.v6 != nil && !n.v6.Report().Synced:
		return false, "programming the datapath"
	}
	return true, ""
}

// MTU returns the MTU pods should use: the smallest of the datapaths'.
func (n *Network) MTU() int {
	n.mu.Lock()
	defer n.mu.Unlock()
	return n.mtuLocked()
}

// mtuLocked is MTU; n.mu is held.
func (n *Network) mtuLocked() int {
	mtu := 0
	for _, dp := range []lease.Datapath{n.v4, n.v6} {
		if dp != nil {
			if m := dp.Report().MTU; mtu == 0 || m < mtu {
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
func (n *Network) Condition() string { return n.condition() }

// A DatapathReader is a running datapath as the Network's readers see
// it: what it reports (lease.DatapathReport). The detail only its backend
// knows comes through the backend's package (vxlan.DatapathOf). The
// Network owns the datapath: its readers never close it or change it.
type DatapathReader interface {
	Report() lease.DatapathReport
}

// Datapaths returns the IPv4 and IPv6 datapaths, nil where disabled or not
// created yet, for status output.
func (n *Network) Datapaths() (v4, v6 DatapathReader) {
	n.mu.Lock()
	defer n.mu.Unlock()
	if n.v4 != nil {
		v4 = n.v4
	}
	if n.v6 != nil {
		v6 = n.v6
	}
	return v4, v6
}
