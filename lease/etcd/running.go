package etcd

import (
	"github.com/weftnet/weft/lease"
)

// howRunning is how Acquire obtained the subnet the node runs on when the
// store held an older lease of its own instead.
const howRunning = "kept the subnet it runs on; the store held an older lease of this node's instead"

// whySuperseded says, for the log, what the keys a howRunning plan deletes
// are.
const whySuperseded = "an older lease of this node's, which a restored backup brought back"

// A node's own leased key that is not the subnet it runs on (req.Previous)
// is, in the one way Acquire and Keep create keys, what a store restored
// from a backup brings back: the lease the node held when the backup was
// taken, before it moved. Taking it would move a running node, and every
// pod on it, for nothing. So when the subnet it runs on is free, the node
// keeps that one, created with the same conditional write, and deletes the
// older leases once the write wins (each only if unchanged since the
// listing). Whichever path finds the store forgetful first (Keep's
// reconnection check or renewal, which re-assert the key in place, or a
// loss and then Acquire, or a restart) the node ends on the subnet it
// runs on.
//
// Reservations and leases flannel wrote (no owner) keep their precedence:
// an operator pins a node with a reservation, and a flannel key under the
// node's address is the one flanneld held.

// supersedable reports whether r, one of this node's own keys in the
// network config, may give way to the subnet the node runs on: leased,
// and written by this node's name from this host.
func supersedable(r record, stored, mine lease.Attrs, node string) bool {
	return r.etcdLease != 0 && stored.Owner == node && sameHost(stored, mine)
}

// previousFree reports whether no key in records holds any part of prev,
// which fits cfg.
func previousFree(cfg lease.Config, records []record, prev lease.Key) (bool, error) {
	v4, v6, err := allocators(cfg, records)
	if err != nil {
		return false, err
	}
	return (v4 == nil || v4.CheckFree(prev.IPv4) == nil) && (v6 == nil || v6.CheckFree(prev.IPv6) == nil), nil
}

// allocators returns the allocators of the families cfg enables, with the
// subnets records hold taken.
func allocators(cfg lease.Config, records []record) (v4, v6 *lease.Allocator, err error) {
	if cfg.EnableIPv4 {
		if v4, err = lease.NewAllocator(cfg.IPv4Range(), takenOf(records, true, cfg.Network)); err != nil {
			return nil, nil, err
		}
	}
	if cfg.EnableIPv6 {
		if v6, err = lease.NewAllocator(cfg.IPv6Range(), takenOf(records, false, cfg.IPv6Network)); err != nil {
			return nil, nil, err
		}
	}
	return v4, v6, nil
}
