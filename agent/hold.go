//go:build linux

package agent

import (
	"context"
	"errors"
	"fmt"
	"net/netip"
	"time"

	"github.com/weftnet/weft/internal/ctxutil"
	"github.com/weftnet/weft/lease"
)

// errOutsideNetwork ends the keeping of a lease whose subnet the network
// config in force no longer contains.
var errOutsideNetwork = errors.New("the node's subnet is outside the network config in force")

// holdLease is lease.Hold, plus the network config and the node's
// addresses: a lease whose subnet falls outside a new Network is given up,
// and one is acquired in the new range, without a restart. The Manager's
// Acquire then removes the old key, conditional on this node still owning
// it, and the device loses the old address when it takes the new one. A
// widened Network contains the lease, which is kept. A new public address
// is republished on the lease held (see keepLease).
func (n *Network) holdLease(ctx context.Context, previous lease.Key) error {
	for {
		attrs, gen := n.wantAttrs()
		l, err := n.cfg.Manager.Acquire(ctx, lease.AcquireRequest{Attrs: attrs, Previous: previous})
		if err != nil {
			return err
		}
		n.mu.Lock()
		outside := n.outsideLocked(l.Key, n.netConf)
		n.mu.Unlock()
		if outside {
			// Acquired under a config this node has not seen replaced
			// yet, or the reverse: wait for the two to agree.
			n.log.Info("acquired a subnet outside the network config in force; acquiring again", "subnet", l.Key)
			if err := ctxutil.Sleep(ctx, time.Second); err != nil {
				return err
			}
			previous = lease.Key{}
			continue
		}
		from := Acquired
		if previous.IsValid() && l.Key == previous {
			from = AcquiredPrevious
		}
		n.setOwn(l, from)
		if previous, err = n.keepLease(ctx, l, gen); err != nil {
			return err
		}
	}
}

// keepLease keeps l, published with the attributes of version gen, until
// it is lost or the network config moves away from it, and returns the
// subnet to ask for next. A change of the node's public address
// meanwhile is republished on the lease in place, which is then kept.
func (n *Network) keepLease(ctx context.Context, l lease.Lease, gen uint64) (lease.Key, error) {
	for {
		kctx, drop := context.WithCancelCause(ctx)
		n.mu.Lock()
		n.dropOwn = drop
		stale := gen != n.attrsGen
		n.mu.Unlock()
		// A config that arrived while there was nothing to drop (between
		// the check in holdLease and setOwn, or during a republish):
		// check again, now that there is.
		n.mu.Lock()
		c := n.netConf
		n.mu.Unlock()
		n.dropIfOutside(c)
		if stale {
			drop(errRepublish) // changed since l was published
		}
		err := n.cfg.Manager.Keep(kctx, l)
		n.mu.Lock()
		n.dropOwn = nil
		n.mu.Unlock()
		drop(nil)
		switch cause := context.Cause(kctx); {
		case ctx.Err() != nil:
			return lease.Key{}, ctx.Err()
		case errors.Is(cause, errOutsideNetwork):
			return lease.Key{}, nil
		case errors.Is(cause, errRepublish):
			nl, ngen, err := n.republish(ctx, l)
			switch {
			case errors.Is(err, lease.ErrLeaseLost):
				n.log.Warn("could not republish the lease with the node's new address; acquiring one", "subnet", l.Key, "err", err)
				n.markLost(err)
				return l.Key, nil
			case err != nil:
				return lease.Key{}, err
			}
			l, gen = nl, ngen
			n.setOwn(l, Republished)
		case errors.Is(err, lease.ErrLeaseLost):
			n.markLost(err)
			return l.Key, nil
		default:
			return lease.Key{}, err
		}
	}
}

// outsideLocked reports whether the network config c leaves out k's
// subnet in a family this node runs. A family switched on or off is not
// followed without a restart (see applyConfig), so it does not count.
func (n *Network) outsideLocked(k lease.Key, c lease.Config) bool {
	inside := func(network, p netip.Prefix) bool {
		return !network.IsValid() || network.Bits() <= p.Bits() && network.Contains(p.Addr())
	}
	return n.v4 != nil && k.IPv4.IsValid() && !inside(c.Network, k.IPv4) ||
		n.v6 != nil && k.IPv6.IsValid() && !inside(c.IPv6Network, k.IPv6)
}

// dropIfOutside gives up the node's lease if c no longer contains it: the
// lease is no longer held, so Ready says the node waits for one, and
// holdLease acquires in the new network.
func (n *Network) dropIfOutside(c lease.Config) {
	n.mu.Lock()
	drop := n.dropIfOutsideLocked(c)
	n.mu.Unlock()
	drop()
}

// dropIfOutsideLocked is dropIfOutside's decision, made under n.mu, so
// that a config and the lease it leaves out are never seen together; the
// caller calls the returned func (a no-op when nothing is given up) after
// letting n.mu go.
func (n *Network) dropIfOutsideLocked(c lease.Config) func() {
	if !n.hasOwn || !n.outsideLocked(n.own.Key, c) || n.dropOwn == nil {
		return func() {}
	}
	own, drop := n.own.Key, n.dropOwn
	n.hasOwn, n.dropOwn = false, nil
	n.leaseGen++ // an announcement pending for the old lease is void
	n.noteGoneLocked(own, WithdrawOutsideNetwork, fmt.Sprintf("network %s, ipv6_network %s", c.Network, c.IPv6Network))
	return func() {
		n.log.Info("the network config no longer contains the node's subnet; acquiring one in the new network",
			"subnet", own, "network", c.Network, "ipv6_network", c.IPv6Network)
		drop(errOutsideNetwork)
	}
}

// markLost records that the lease held is lost (err says how) and
// another is being acquired: the devices keep its subnet until then,
// LeaseStatus says so rather than report a lease that no longer is, and
// the State publisher withdraws it (see OnWithdraw).
func (n *Network) markLost(err error) {
	n.mu.Lock()
	defer n.mu.Unlock()
	if n.hasOwn {
		n.ownFrom = Reacquiring
		n.noteGoneLocked(n.own.Key, WithdrawLost, err.Error())
	}
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
