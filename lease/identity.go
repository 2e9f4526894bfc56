package lease

import (
	"errors"
	"fmt"
	"net/netip"
)

// ErrIdentityCollision is matched by the errors of a lease source when
// another host presents this node's name: two hosts with one node name,
// as cloned VMs that take their hostname for it are. Both lease sources
// tell hosts apart alike (see HostClaim) and stop such a collision the
// same way: the host that holds the name keeps it, the other waits, not
// ready, and asks again at a bounded rate.
var ErrIdentityCollision = errors.New("another host presents this node's name")

// A HostClaim names a host by its public addresses: what a host writes
// when it finds its node's name held by another host, to ask whether that
// holder is alive. Two hosts cannot share a public address and both carry
// VXLAN traffic, so a lease under a node's name that shares none of this
// host's addresses was written by another host with the same name, or by
// this host before its address changed; a live holder answers the claim,
// one that is gone does not. Its JSON is {"PublicIP":..,"PublicIPv6":..},
// each omitted when unset.
type HostClaim struct {
	PublicIP   netip.Addr `json:",omitzero"`
	PublicIPv6 netip.Addr `json:",omitzero"`
}

// HostOf returns the claim of the host that publishes a.
func HostOf(a Attrs) HostClaim { return HostClaim{PublicIP: a.PublicIP, PublicIPv6: a.PublicIPv6} }

// String is the host's addresses, IPv4 first, space-separated.
func (c HostClaim) String() string {
	switch {
	case c.PublicIP.IsValid() && c.PublicIPv6.IsValid():
		return c.PublicIP.String() + " " + c.PublicIPv6.String()
	case c.PublicIPv6.IsValid():
		return c.PublicIPv6.String()
	}
	return c.PublicIP.String()
}

// IsValid reports whether the claim names an address.
func (c HostClaim) IsValid() bool { return c.PublicIP.IsValid() || c.PublicIPv6.IsValid() }

// SameHost reports whether the claim was made from the host that
// publishes a.
func (c HostClaim) SameHost(a Attrs) bool {
	return SameHost(Attrs{PublicIP: c.PublicIP, PublicIPv6: c.PublicIPv6}, a)
}

// SameHost reports whether a and b were published from one host: they
// share a public address.
func SameHost(a, b Attrs) bool {
	return a.PublicIP.IsValid() && a.PublicIP == b.PublicIP || a.PublicIPv6.IsValid() && a.PublicIPv6 == b.PublicIPv6
}

// CollisionError is the error of a host that found node's name held, as
// what (a subnet, a Node), by the live host holder: it names both hosts
// and says fix. It matches ErrIdentityCollision.
func CollisionError(node, what string, holder, mine HostClaim, fix string) error {
	return fmt.Errorf("%w: node name %q holds %s from host %s, and this host is %s: %s",
		ErrIdentityCollision, node, what, holder, mine, fix)
}
