//go:build linux

package agent

import (
	"time"

	"github.com/weftnet/weft/lease"
)

// LeaseSource says how a Network obtained the lease it holds.
type LeaseSource string

const (
	// Acquired: Acquire gave the lease: one the store already held for
	// this node, or a free subnet.
	Acquired LeaseSource = "acquired"
	// AcquiredPrevious: Acquire gave the subnet asked for
	// (NetworkConfig.Previous, or the one held before it was lost).
	AcquiredPrevious LeaseSource = "acquired the previous subnet"
	// Republished: the lease held was published again with new
	// attributes (a new public address).
	Republished LeaseSource = "republished"
	// FromLocalState: the lease is the local state's, while the Manager
	// has given none (see NetworkConfig.LocalState).
	FromLocalState LeaseSource = "local state"
	// Reacquiring: the lease was lost (expired, deleted, taken) and
	// another is being acquired; the devices keep its subnet meanwhile.
	Reacquiring LeaseSource = "lost; acquiring again"
)

// LeaseStatus is what a Network knows of the lease it holds.
type LeaseStatus struct {
	Lease lease.Lease
	Held  bool // false while the node has no lease; the rest is then zero
	// Since is when the node took the lease's subnet, and From how it
	// has the lease now.
	Since time.Time
	From  LeaseSource
	// Expires is when the lease lapses as of its last renewal, from a
	// lease.ExpiryReader Manager; zero if it does not lapse (a Node's
	// PodCIDR, an etcd reservation) or the Manager does not say.
	Expires time.Time
	// Renewals counts the Manager's renewals of this node's lease since
	// it was made, from a lease.RenewalCounter; -1 if it does not count
	// them (kube's leases are never renewed).
	Renewals int64
}

// LeaseStatus reports the lease the node holds, how it came by it, and
// when it lapses.
func (n *Network) LeaseStatus() LeaseStatus {
	s := LeaseStatus{Renewals: -1}
	n.mu.Lock()
	if n.hasOwn {
		s.Lease, s.Held, s.Since, s.From = n.own, true, n.ownSince, n.ownFrom
	}
	n.mu.Unlock()
	if rc := n.opt.renewals; rc != nil {
		s.Renewals = rc.Renewals()
	}
	if !s.Held {
		return s
	}
	s.Expires = s.Lease.Expiration
	switch s.From {
	case FromLocalState:
		return s // the state's own record of the expiry
	case Reacquiring:
		s.Expires = time.Time{} // lost: it lapses no more
		return s
	}
	if er := n.opt.expiry; er != nil {
		if t, ok := er.Expiry(s.Lease.Key); ok {
			s.Expires = t
		}
	}
	return s
}
