//go:build linux

package agent_test

import (
	"github.com/weftnet/weft/agent"
	"github.com/weftnet/weft/lease"
	"github.com/weftnet/weft/vxlan"
)

// vxlanOnly is the datapaths of a VXLAN-only agent, flannel's default.
var vxlanOnly = map[string]lease.DatapathFactory{lease.DefaultBackendType: vxlan.NewFactory(vxlan.FactoryConfig{})}

// v4Datapath is n's IPv4 vxlan datapath, nil before it is made.
func v4Datapath(n *agent.Network) *vxlan.Datapath {
	v4, _ := n.Datapaths()
	return vxlan.DatapathOf(v4)
}
