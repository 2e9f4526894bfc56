//go:build linux

package vxlan

import (
	"fmt"
	"github.com/weftnet/weft/lease"
	"net/netip"
)

// A Peer is another node as the datapath needs it.
type Peer struct {
	// Subnet is the peer's pod subnet: an IPv4 subnet for flannel.<VNI>,
	// an IPv6 one for flannel-v6.<VNI>.
	Subnet netip.Prefix
	// PublicIP is the peer's underlay address, where its VXLAN packets go.
	PublicIP netip.Addr
	// VtepMAC is the MAC of the peer's VTEP device.
	VtepMAC lease.MAC
	// Direct routes the peer's subnet straight to PublicIP through the
	// underlay, without encapsulation: DirectRouting for a peer on the same
	// L2 network. Such a peer gets no neighbour or FDB entry.
	Direct bool
}

// validate checks p for a datapath of the given family.
func (p Peer) validate(ipv6 bool) error {
	switch {
	case !p.Subnet.IsValid() || p.Subnet != p.Subnet.Masked():
		return fmt.Errorf("peer subnet %v is not a masked prefix", p.Subnet)
	case p.Subnet.Addr().Is6() != ipv6:
		return fmt.Errorf("peer subnet %v is of the wrong family for this device", p.Subnet)
	case !p.PublicIP.IsValid():
		return fmt.Errorf("peer %v has no public IP", p.Subnet)
	case !p.Direct && p.VtepMAC.IsZero():
		return fmt.Errorf("peer %v has no VTEP MAC", p.Subnet)
	}
	return nil
}

// gateway is the address the peer's route points at: its subnet's network
// address, which is also the address of its VTEP device.
func (p Peer) gateway() netip.Addr { return p.Subnet.Addr() }
