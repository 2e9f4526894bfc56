//go:build linux

package agent

import (
	"context"
	"strconv"

	"github.com/weftnet/weft/lease"
	"github.com/weftnet/weft/lease/admit"
)

// A State is what a node's pods depend on, and what an agent writes
// subnet.env from: this node's lease, the network config, and the MTU.
type State struct {
	// Lease is this node's lease. The datapath has converged on it: the
	// devices carry its address, and every admitted peer is programmed.
	Lease lease.Lease
	// Config is the network config in force. Its networks hold Lease's
	// subnets: while the config has moved away from the lease (the
	// Network is acquiring one in the new range), no State is announced.
	Config lease.Config
	// MTU is the MTU pods should use: the smallest of the devices'. It
	// follows the underlay's unless the backend sets one.
	MTU int
}

// PeerEventKind says what happened to a peer.
type PeerEventKind uint8

const (
	// PeerProgrammed: admission admits the peer at Subnet, new or changed,
	// and it was handed to its family's datapath, which programs it at
	// once and retries it while the kernel refuses it (Datapath.Status
	// lists those).
	PeerProgrammed PeerEventKind = iota + 1
	// PeerRemoved: no peer is admitted at Subnet any more (its lease went,
	// moved, or was rejected by a later change), and its removal was
	// handed to the datapath, which deletes its routes, neighbour and FDB
	// entries at once.
	PeerRemoved
	// PeerRejected: admission keeps a lease's half out, newly or by
	// another rule than before; Reason and Detail say why and what to fix.
	// It is not programmed. See package lease/admit.
	PeerRejected
)

func (k PeerEventKind) String() string {
	switch k {
	case PeerProgrammed:
		return "programmed"
	case PeerRemoved:
		return "removed"
	case PeerRejected:
		return "rejected"
	}
	return "PeerEventKind(" + strconv.Itoa(int(k)) + ")"
}

// A PeerEvent is one change a Network made to its datapaths' peers, or a
// verdict of peer admission that is news. This node's own lease is never
// a peer, and has no events.
type PeerEvent struct {
	Kind PeerEventKind
	// IPv6 is the family: each half of a dual-stack lease is a peer of its
	// own.
	IPv6 bool
	// Peer is what was programmed (PeerProgrammed), or what the rejected
	// lease would have given (PeerRejected). For PeerRemoved only
	// Peer.Subnet is set.
	Peer lease.DatapathPeer
	// Lease and Owner are the lease the peer comes from and its node
	// ("" for a lease flannel wrote); zero for PeerRemoved.
	Lease lease.Key
	Owner string
	// Reason and Detail are admission's, for PeerRejected.
	Reason admit.Reason
	Detail string
}

// peerEvents turns what admission decided into events, for the families
// this node runs. n.mu is held.
func (n *Network) peerEvents(d admit.Delta) []PeerEvent {
	if n.cfg.OnPeers == nil || len(d.Changes)+len(d.Verdicts) == 0 {
		return nil
	}
	var out []PeerEvent
	for _, c := range d.Changes {
		if n.datapath(c.IPv6) == nil {
			continue
		}
		if !c.Admitted {
			out = append(out, PeerEvent{Kind: PeerRemoved, IPv6: c.IPv6, Peer: lease.DatapathPeer{Subnet: c.Subnet}})
			continue
		}
		out = append(out, PeerEvent{Kind: PeerProgrammed, IPv6: c.IPv6, Peer: c.Peer.DatapathPeer(), Lease: c.Peer.Key, Owner: c.Peer.Owner})
	}
	for _, v := range d.Verdicts {
		if v.Admitted() {
			continue // its Change says it
		}
		out = append(out, PeerEvent{
			Kind: PeerRejected, IPv6: v.Peer.IPv6,
			Peer:  v.Peer.DatapathPeer(),
			Lease: v.Peer.Key, Owner: v.Peer.Owner, Reason: v.Reason, Detail: v.Detail,
		})
	}
	return out
}

// tellPeers hands events to OnPeers. n.push is held, so calls come in the
// order the changes were made, one at a time.
func (n *Network) tellPeers(events []PeerEvent) {
	if len(events) > 0 {
		n.cfg.OnPeers(events)
	}
}

// kickState wakes the State publisher. It never blocks.
func (n *Network) kickState() {
	n.noteChange()
	select {
	case n.stateKick <- struct{}{}:
	default:
	}
}

// stateVersion identifies a State: which lease, which config, which MTU.
type stateVersion struct {
	lease, conf uint64
	mtu         int
}

// currentState returns the State in force, and false while there is none
// to announce: the node is not ready, the config has moved away from the
// lease, or the lease is lost and being acquired again.
func (n *Network) currentState() (State, stateVersion, bool) {
	n.mu.Lock()
	defer n.mu.Unlock()
	return n.currentStateLocked()
}

// currentStateLocked is currentState; n.mu is held.
func (n *Network) currentStateLocked() (State, stateVersion, bool) {
	if ok, _ := n.readyLocked(); !ok || n.outsideLocked(n.own.Key, n.netConf) || n.ownFrom == Reacquiring {
		return State{}, stateVersion{}, false
	}
	st := State{Lease: n.own, Config: n.netConf, MTU: n.mtuLocked()}
	return st, stateVersion{n.leaseGen, n.confGen, st.MTU}, true
}

// State returns the State OnState was last called with, or would be
// called with now, and false while the node is not ready on a lease.
func (n *Network) State() (State, bool) {
	st, _, ok := n.currentState()
	return st, ok
}

// publishStates calls OnState with each new State, and then tells a
// lease.ReadyNotifier of each new lease the datapath converged on; and
// OnWithdraw once the lease of the State last announced is no longer
// held. Every change that can make a new State, or end one, kicks it; a
// State that has not changed is not announced again.
func (n *Network) publishStates(ctx context.Context) error {
	notifier := n.opt.ready
	var last stateVersion
	var inForce lease.Key // the lease of the State announced, until withdrawn
	announced, holds := false, false
	for {
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-n.stateKick:
		}
		if holds {
			// Before any new State: the file must not name the old
			// lease for a moment longer than the node holds it, and a
			// new lease is announced only once converged.
			n.mu.Lock()
			w, gone := n.withdrawalLocked(inForce)
			n.mu.Unlock()
			if gone {
				holds = false
				// The local state first: a restart once subnet.env
				// is gone must not boot from the lease given up. Only
				// the removal, not a save: subnet.env must not wait.
				n.dropStale()
				n.withdraw(w)
			}
		}
		st, v, ok := n.currentState()
		if !ok || holds && v == last {
			continue
		}
		newLease := !announced || v.lease != last.lease
		last, announced, holds, inForce = v, true, true, st.Lease.Key
		if newLease {
			// The local state first: a restart once subnet.env names
			// the new lease boots from it, not from the one before.
			n.saveNow()
		}
		if n.cfg.OnState != nil {
			n.cfg.OnState(st)
		}
		// After OnState has written subnet.env: a Node marked ready is
		// scheduled pods, whose CNI plugin reads the file.
		if notifier != nil && newLease {
			notifier.NetworkReady()
		}
	}
}
