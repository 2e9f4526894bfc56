//go:build linux

package probe

import (
	"github.com/weftnet/weft/agent"
	"github.com/weftnet/weft/lease/admit"
)

// NetworkTargets returns the Targets of a Network: every peer its
// admission admits, in both families, probed at its VTEP address (the
// first address of its subnet, on the peer's VXLAN device).
func NetworkTargets(n *agent.Network) func() []Target {
	return func() []Target {
		v4, v6 := n.Peers(false), n.Peers(true)
		out := make([]Target, 0, len(v4)+len(v6))
		for _, fam := range [][]admit.Peer{v4, v6} {
			for _, p := range fam {
				out = append(out, Target{Subnet: p.Subnet, Addr: p.Subnet.Addr(), PublicIP: p.PublicIP, Node: p.Owner})
			}
		}
		return out
	}
}
