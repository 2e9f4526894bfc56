//go:build linux

package agent

import (
	"context"
	"errors"
	"fmt"
	"net/netip"

	"github.com/weftnet/weft/lease"
)

// underlayState is one family's underlay as its device uses it.
type underlayState struct {
	local netip.Addr // the address the device sends from
	under int        // the interface holding it
	// onLink is local's prefix on under: peers in it share the node's
	// L2 segment.
	onLink netip.Prefix
	// localFound says local was chosen by FindPublic, and so is chosen
	// again when it goes; publicFound says the same of the address the
	// lease advertises (not the embedder's, a hint's or a NAT's).
	localFound, publicFound bool
	// waiting is why the family cannot send now, "" when it can.
	waiting string
}

// errRepublish ends the keeping of a lease whose attributes must change
// (the node's public address did): it is republished, then kept again.
var errRepublish = errors.New("the node's public address changed")

// followUnderlay checks each family's underlay after the node's addresses
// or links changed (and at each resync): an address that moved to another
// interface (one replaced) is followed there; one that is gone is chosen
// again by FindPublic, the device moved to the new one and, where the
// lease advertises it, the lease republished in place. An address that was
// set rather than found, and is gone, is waited for, with the reason on
// Ready.
func (n *Network) followUnderlay() {
	n.mu.Lock()
	und := n.und
	dps := [2]lease.Datapath{n.v4, n.v6}
	netConf := n.netConf
	n.mu.Unlock()
	var found [2]netip.Addr
	var findErr error
	asked := false
	republish := false
	for i, dp := range dps {
		if dp == nil {
			continue
		}
		u := und[i]
		idx, onLink, err := n.underlay(u.local)
		switch {
		case err == nil && idx == u.under:
			n.setUnderlayWait(i, "")
			continue
		case err == nil:
			n.log.Info("the underlay address is on another interface now; moving the device to it", "address", u.local, "interface_index", idx, "was_index", u.under)
		case !u.localFound:
			n.setUnderlayWait(i, fmt.Sprintf("the public address %s, which was set for this node, is on no interface now; waiting for it to come back", u.local))
			continue
		default:
			if !asked && n.cfg.FindPublic != nil {
				asked = true
				found[0], found[1], findErr = n.cfg.FindPublic(netConf.EnableIPv4, netConf.EnableIPv6)
			}
			next := found[i]
			if findErr != nil || !next.IsValid() {
				why := "no other address was found on the underlay"
				if findErr != nil {
					why = findErr.Error()
				}
				n.setUnderlayWait(i, fmt.Sprintf("the underlay address %s is gone: %s; waiting for one", u.local, why))
				continue
			}
			if idx, onLink, err = n.underlay(next); err != nil {
				n.setUnderlayWait(i, fmt.Sprintf("the underlay address %s is gone, and %s: %v", u.local, next, err))
				continue
			}
			n.log.Info("the underlay address changed; moving the device to the new one", "family", famName(i == 1), "address", next, "was", u.local)
			u.local = next
			republish = republish || u.publicFound
		}
		u.under, u.waiting = idx, ""
		u.onLink = onLink
		dp.SetUnderlay(u.local, u.under, onLink)
		n.mu.Lock()
		n.und[i] = u
		if u.publicFound {
			if i == 1 {
				n.attrs.PublicIPv6 = u.local
			} else {
				n.attrs.PublicIP = u.local
			}
		}
		n.mu.Unlock()
		n.setUnderlayWait(i, "")
	}
	if republish {
		n.mu.Lock()
		n.attrsGen++
		drop := n.dropOwn
		n.mu.Unlock()
		if drop != nil {
			drop(errRepublish)
		}
	}
}

// setUnderlayWait records why family i cannot send ("" when it can),
// logging each change.
func (n *Network) setUnderlayWait(i int, why string) {
	n.mu.Lock()
	old := n.und[i].waiting
	n.und[i].waiting = why
	n.mu.Unlock()
	switch {
	case why == old:
	case why != "":
		n.log.Warn("the node's underlay cannot carry the overlay now", "family", famName(i == 1), "why", why)
	default:
		n.log.Info("the node's underlay carries the overlay again", "family", famName(i == 1))
	}
	n.kickState()
}

// underlayWaitLocked is why a family's underlay cannot carry the overlay,
// "" if both can. n.mu is held.
func (n *Network) underlayWaitLocked() string {
	for _, u := range n.und {
		if u.waiting != "" {
			return u.waiting
		}
	}
	return ""
}

// wantAttrs returns the attributes the lease should publish, and their
// version.
func (n *Network) wantAttrs() (lease.Attrs, uint64) {
	n.mu.Lock()
	defer n.mu.Unlock()
	return n.attrs, n.attrsGen
}

// republish publishes the node's current attributes on l, in place where
// the Manager can (lease.Republisher). A Manager that cannot, or a lease
// no longer the node's, returns ErrLeaseLost: the caller acquires again,
// with the new attributes.
func (n *Network) republish(ctx context.Context, l lease.Lease) (lease.Lease, uint64, error) {
	attrs, gen := n.wantAttrs()
	r := n.opt.republish
	if r == nil {
		return lease.Lease{}, gen, fmt.Errorf("%w: the Manager cannot republish a lease; acquiring with the new address", lease.ErrLeaseLost)
	}
	nl, err := r.Republish(ctx, l, attrs)
	return nl, gen, err
}

func famName(ipv6 bool) string {
	if ipv6 {
		return "ipv6"
	}
	return "ipv4"
}
