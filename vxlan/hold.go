//go:build linux

package vxlan

import (
	"context"
	"errors"
	"net/netip"
	"time"

	"github.com/weftnet/weft/internal/ctxutil"
	"github.com/weftnet/weft/lease"
)

// errOutsideNetwork ends the keeping of a lease whose subnet the network
// config in force no longer contains.
var errOutsideNetwork = errors.New("the node's subnet is outside the network config in force")

// holdLease is lease.Hold, plus the network config: a lease whose subnet
// falls outside a new Network is given up, and one is acquired in the new
// range, without a restart. The Manager's Acquire then removes the old key,
// conditional on this node still owning it, and the device loses the old
// address when it takes the new one. A widened Network contains the lease,
// which is kept.
func (n *Network) holdLease(ctx context.Context, req lease.AcquireRequest) error {
	for {
		l, err := n.cfg.Manager.Acquire(ctx, req)
		if err != nil {
			return err
		}
		kctx, drop := context.WithCancelCause(ctx)
		n.mu.Lock()
		outside := n.outsideLocked(l.Key, n.netConf)
		if !outside {
			n.dropOwn = drop
		}
		n.mu.Unlock()
		if outside {
			// Acquired under a config this node has not seen replaced
			// yet, or the reverse: wait for the two to agree.
			drop(nil)
			n.log.Info("acquired a subnet outside the network config in force; acquiring again", "subnet", l.Key)
			if err := ctxutil.Sleep(ctx, time.Second); err != nil {
				return err
			}
			req.Previous = lease.Key{}
			continue
		}
		n.setOwn(l)
		// A config that arrived between the check above and setOwn
		// found no lease to drop: check again, now that there is one.
		n.mu.Lock()
		c := n.netConf
		n.mu.Unlock()
		n.dropIfOutside(c)
		err = n.cfg.Manager.Keep(kctx, l)
		n.mu.Lock()
		n.dropOwn = nil
		n.mu.Unlock()
		drop(nil)
		switch {
		case ctx.Err() != nil:
			return ctx.Err()
		case errors.Is(context.Cause(kctx), errOutsideNetwork):
			req.Previous = lease.Key{}
		case errors.Is(err, lease.ErrLeaseLost):
			req.Previous = l.Key
		default:
			return err
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
	if !n.hasOwn || !n.outsideLocked(n.own.Key, c) || n.dropOwn == nil {
		n.mu.Unlock()
		return
	}
	own, drop := n.own.Key, n.dropOwn
	n.hasOwn, n.dropOwn = false, nil
	n.leaseGen++ // an announcement pending for the old lease is void
	n.mu.Unlock()
	n.log.Info("the network config no longer contains the node's subnet; acquiring one in the new network",
		"subnet", own, "network", c.Network, "ipv6_network", c.IPv6Network)
	drop(errOutsideNetwork)
}
