package admit

import (
	"net/netip"
	"slices"

	"github.com/weftnet/weft/lease"
)

// Facts are what admission knows of this node, beside the leases.
type Facts struct {
	// Node is this node's identity, the Owner of its leases. Leases it owns
	// are this node's, never peers.
	Node string
	// Own is the lease this node holds, or the zero Key before it has one.
	Own lease.Key
	// Network and IPv6Network are the overlay networks of the families the
	// node runs. The zero Prefix means the family is not run: leases'
	// halves of it are ignored, not rejected.
	Network, IPv6Network netip.Prefix
	// BackendType is the backend the node runs; "" means
	// lease.DefaultBackendType.
	BackendType string
	// VNI is the VXLAN network identifier peers must share.
	VNI int
	// Connected are the prefixes of this node's interfaces (the underlay
	// among them). A peer subnet that overlaps one would capture traffic
	// the node sends on that network.
	Connected []netip.Prefix
	// Protected are more prefixes no peer subnet may overlap: the
	// addresses the node needs to reach its control plane (etcd
	// endpoints, the API server), and whatever an embedder adds.
	Protected []netip.Prefix
	// LocalAddrs are this node's own addresses. No peer may send its VXLAN
	// traffic to one.
	LocalAddrs []netip.Addr
}

// network returns the family's Network.
func (f *Facts) network(ipv6 bool) netip.Prefix {
	if ipv6 {
		return f.IPv6Network
	}
	return f.Network
}

func (f *Facts) backendType() string {
	if f.BackendType == "" {
		return lease.DefaultBackendType
	}
	return f.BackendType
}

// equal reports whether f and g are the same facts, lists compared as sets
// would be after normalize.
func (f Facts) equal(g Facts) bool {
	return f.Node == g.Node && f.Own == g.Own && f.Network == g.Network && f.IPv6Network == g.IPv6Network &&
		f.backendType() == g.backendType() && f.VNI == g.VNI &&
		slices.Equal(f.Connected, g.Connected) && slices.Equal(f.Protected, g.Protected) && slices.Equal(f.LocalAddrs, g.LocalAddrs)
}

// normalize returns f with its lists masked, sorted and without duplicates,
// so that facts read in another order compare equal and a change of order
// costs no recompute.
func (f Facts) normalize() Facts {
	mask := func(ps []netip.Prefix) []netip.Prefix {
		out := make([]netip.Prefix, 0, len(ps))
		for _, p := range ps {
			if p.IsValid() {
				out = append(out, p.Masked())
			}
		}
		slices.SortFunc(out, netip.Prefix.Compare)
		return slices.Compact(out)
	}
	f.Connected, f.Protected = mask(f.Connected), mask(f.Protected)
	addrs := make([]netip.Addr, 0, len(f.LocalAddrs))
	for _, a := range f.LocalAddrs {
		if a.IsValid() {
			addrs = append(addrs, a.Unmap().WithZone(""))
		}
	}
	slices.SortFunc(addrs, netip.Addr.Compare)
	f.LocalAddrs = slices.Compact(addrs)
	return f
}

// A Reason says which rule rejected a peer. Its values are short, stable
// and fit for a metric label.
type Reason string

// The rules, in the order they are checked.
const (
	// The lease source could not take the lease's value, which is over a
	// size limit (lease.Lease.Invalid): nothing of it was kept.
	ReasonValue Reason = "value"
	// The lease is of another backend or VNI, or its backend data has no
	// usable VtepMAC field.
	ReasonBackend Reason = "backend"
	// The VtepMAC is zero, multicast or broadcast.
	ReasonVtepMAC Reason = "vtep-mac"
	// The family's public IP is missing or not a unicast address a peer
	// can have.
	ReasonPublicIP Reason = "public-ip"
	// The subnet is outside the family's Network, or no longer than it.
	ReasonSubnet Reason = "subnet"
	// The subnet overlaps this node's own.
	ReasonOwnSubnet Reason = "own-subnet"
	// The subnet overlaps one of this node's connected prefixes.
	ReasonConnected Reason = "connected"
	// The subnet overlaps a protected prefix (the control plane).
	ReasonProtected Reason = "protected"
	// The subnet overlaps an older admitted peer's.
	ReasonSubnetConflict Reason = "subnet-conflict"
	// Another node's older admitted peer has the same VtepMAC or PublicIP.
	ReasonIdentityConflict Reason = "identity-conflict"
)

// reasons is every Reason, in the order rules are applied: an array, so
// that no caller can change what a candidate's code means.
var reasons = [...]Reason{
	ReasonValue, ReasonBackend, ReasonVtepMAC, ReasonPublicIP, ReasonSubnet, ReasonOwnSubnet,
	ReasonConnected, ReasonProtected, ReasonSubnetConflict, ReasonIdentityConflict,
}

// Reasons lists every Reason, for metrics that report each: a new slice at
// each call, which the caller may keep or change.
func Reasons() []Reason { return append([]Reason(nil), reasons[:]...) }
