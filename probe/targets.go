//go:build linux

package probe

import (
	"cmp"
	"fmt"

	"github.com/weftnet/weft/agent"
	"github.com/weftnet/weft/lease/admit"
	"github.com/weftnet/weft/vxlan"
)

// VXLAN's overhead on the underlay: the outer Ethernet, IP, UDP and VXLAN
// headers, as flannel subtracts them from the underlay's MTU.
const (
	vxlanOverheadIPv4 = 50
	vxlanOverheadIPv6 = 70
)

// NetworkTargets returns the Targets of a Network: every peer its
// admission admits, in both families, probed at its VTEP address (the
// first address of its subnet, on the peer's VXLAN device), its path
// checked at the family's device MTU, its underlay at its public address.
func NetworkTargets(n *agent.Network) func() []Target {
	return func() []Target {
		encap := fmt.Sprintf("UDP %d", vxlan.KernelDefaultPort)
		if c, _, ok := n.Config(); ok {
			if b, err := vxlan.ParseConfig(c.Backend); err == nil {
				encap = fmt.Sprintf("UDP %d", cmp.Or(b.Port, vxlan.KernelDefaultPort))
			}
		}
		dp4, dp6 := n.Datapaths()
		v4, v6 := n.Peers(false), n.Peers(true)
		out := make([]Target, 0, len(v4)+len(v6))
		for _, fam := range []struct {
			peers    []admit.Peer
			dp       agent.DatapathReader
			overhead int
		}{{v4, dp4, vxlanOverheadIPv4}, {v6, dp6, vxlanOverheadIPv6}} {
			mtu := 0
			if fam.dp != nil {
				mtu = fam.dp.Report().MTU
			}
			for _, p := range fam.peers {
				out = append(out, Target{
					Subnet: p.Subnet, Addr: p.Subnet.Addr(), PublicIP: p.PublicIP, Node: p.Owner,
					MTU: mtu, Overhead: fam.overhead, Encap: encap,
				})
			}
		}
		return out
	}
}
