//go:build linux

package agent

import (
	"fmt"
	"io"
	"log/slog"
	"net/netip"

	"github.com/weftnet/weft/vxlan"
)

// quietLog keeps the agent's logs out of test output; tests check state.
var quietLog = slog.New(slog.NewTextHandler(io.Discard, nil))

// benchPeers returns n distinct peers: 10.a.b.0/24 subnets, public IPs in
// 172.31/16, derived MACs.
func benchPeers(n int) []vxlan.Peer {
	peers := make([]vxlan.Peer, n)
	for i := range peers {
		j := i + 1
		peers[i] = vxlan.Peer{
			Subnet:   netip.PrefixFrom(netip.AddrFrom4([4]byte{10, byte(j >> 8), byte(j), 0}), 24),
			PublicIP: netip.AddrFrom4([4]byte{172, 31, byte(j >> 8), byte(j)}),
			VtepMAC:  vxlan.DeriveMAC(fmt.Sprint("peer-", j), 1),
		}
	}
	return peers
}
