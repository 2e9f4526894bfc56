//go:build linux

package agent

import (
	"strconv"

	"github.com/weftnet/weft/lease"
)

// A Withdrawal says that the State last announced no longer holds: the
// node does not hold its lease now, or has not confirmed it. An agent
// removes subnet.env (subnetenv.Remove), so that no pod is given an
// address in a subnet that is, or may soon be, another node's: flannel's
// CNI plugin then fails an ADD with "open /run/flannel/subnet.env: no
// such file or directory", and the runtime retries it, until the next
// State has the file written again.
type Withdrawal struct {
	// Lease is the lease given up: the last State's, or at start
	// NetworkConfig.Previous (zero when there was none).
	Lease lease.Key
	// Reason says why; Detail adds what the Manager or the config said.
	Reason WithdrawReason
	Detail string
}

// WithdrawReason says why a Withdrawal is made.
type WithdrawReason uint8

const (
	// WithdrawStarting: Run has started, and holds no lease yet. A
	// subnet.env that a previous run left names a subnet that may have
	// lapsed and been taken while no agent ran; it comes back with the
	// first State, usually within a second (OfflineAfter when the
	// control plane is away and the node boots from its local state).
	WithdrawStarting WithdrawReason = iota + 1
	// WithdrawLost: the Manager reports the lease lost: another node holds
	// the subnet now, or it expired or was deleted and could not be
	// re-asserted. The node acquires again (the same subnet if it is
	// free).
	WithdrawLost
	// WithdrawReplaced: the node holds another lease than the last
	// State's, not converged on yet: the local state's lease replaced by
	// the one the Manager gives, or a lost lease replaced before this was
	// announced.
	WithdrawReplaced
	// WithdrawRefused: the node ran on its local state's lease, and the
	// control plane, once it answered, did not give it back (another node
	// holds the subnet, the network is full, another host has the node's
	// name). See NetworkConfig.LocalState.
	WithdrawRefused
	// WithdrawOutsideNetwork: the network config no longer contains the
	// subnet; the node acquires one in the new network.
	WithdrawOutsideNetwork
)

func (r WithdrawReason) String() string {
	switch r {
	case WithdrawStarting:
		return "starting"
	case WithdrawLost:
		return "lease lost"
	case WithdrawReplaced:
		return "lease replaced"
	case WithdrawRefused:
		return "local state's lease refused"
	case WithdrawOutsideNetwork:
		return "outside the network"
	}
	return "WithdrawReason(" + strconv.Itoa(int(r)) + ")"
}

// gone is why the node last stopped holding a lease, for the Withdrawal
// that follows: set where it is given up, under n.mu.
type gone struct {
	key    lease.Key
	reason WithdrawReason
	detail string
}

// noteGoneLocked records that the node stops holding k, and wakes the
// State publisher to withdraw it. n.mu is held.
func (n *Network) noteGoneLocked(k lease.Key, reason WithdrawReason, detail string) {
	n.gone = gone{key: k, reason: reason, detail: detail}
	n.kickState()
	// The local state must not keep a lease given up or replaced:
	// saveStates removes or overwrites it at once (see saveNow).
	if reason != WithdrawReplaced {
		n.off.forget = true
	}
	n.kickSave()
}

// withdrawalLocked returns the Withdrawal of k, the lease of the State
// last announced, if the node no longer holds it; false while it does.
// n.mu is held.
func (n *Network) withdrawalLocked(k lease.Key) (Withdrawal, bool) {
	switch {
	case n.hasOwn && n.own.Key == k && n.ownFrom != Reacquiring && !n.outsideLocked(k, n.netConf):
		return Withdrawal{}, false
	case n.gone.key == k && n.gone.reason != 0:
		return Withdrawal{Lease: k, Reason: n.gone.reason, Detail: n.gone.detail}, true
	case n.hasOwn && n.own.Key != k:
		return Withdrawal{Lease: k, Reason: WithdrawReplaced, Detail: "now " + n.own.Key.String()}, true
	case n.hasOwn && n.outsideLocked(k, n.netConf):
		return Withdrawal{Lease: k, Reason: WithdrawOutsideNetwork}, true
	}
	return Withdrawal{Lease: k, Reason: WithdrawLost}, true
}

// withdraw tells the embedder, from the State publisher (or Run, before
// it starts), that no State holds.
func (n *Network) withdraw(w Withdrawal) {
	if w.Reason != WithdrawStarting {
		n.log.Warn("the node no longer holds the lease it announced; withdrawing it until it holds one", "subnet", w.Lease, "reason", w.Reason.String(), "detail", w.Detail)
	}
	if n.cfg.OnWithdraw != nil {
		n.cfg.OnWithdraw(w)
	}
}
