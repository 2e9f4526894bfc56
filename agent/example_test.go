//go:build linux

package agent_test

import (
	"context"
	"log"
	"log/slog"
	"os"
	"os/signal"
	"syscall"

	"github.com/weftnet/weft/agent"
	"github.com/weftnet/weft/lease"
	"github.com/weftnet/weft/lease/etcd"
	"github.com/weftnet/weft/subnetenv"
	"github.com/weftnet/weft/underlay"
)

// A whole node agent: the Network acquires and keeps the lease, builds the
// devices, programs every admitted peer, and hands the embedder a State
// to write subnet.env from, once the node can route. Run returns on
// SIGTERM, leaving the datapath and lease in place for the next start.
func ExampleNewNetwork() {
	m, err := etcd.New(etcd.Options{Endpoints: []string{"http://10.0.0.1:2379"}, Node: "node-a"})
	if err != nil {
		log.Fatal(err)
	}
	defer m.Close()
	var prev lease.Key // the subnet held before a restart, if still free
	if f, err := subnetenv.Read(subnetenv.DefaultPath); err == nil {
		prev = lease.Key{IPv4: f.Subnet, IPv6: f.IPv6Subnet}
	}
	n, err := agent.NewNetwork(agent.NetworkConfig{
		Datapaths:  vxlanOnly,
		Manager:    m, // Node defaults to m.Node()
		FindPublic: underlay.Policy{Interfaces: []string{"eth0"}}.FindPublic,
		Previous:   prev,
		OnState: func(st agent.State) {
			f := subnetenv.File{Network: st.Config.Network, Subnet: st.Lease.Key.IPv4, MTU: st.MTU} // no IPMasq: no masquerade rules here (see package hostrules)
			if err := subnetenv.Write(subnetenv.DefaultPath, f); err != nil {
				slog.Error("write subnet.env", "err", err)
			}
		},
		OnPeers: func(events []agent.PeerEvent) {
			for _, e := range events {
				slog.Info("peer "+e.Kind.String(), "subnet", e.Peer.Subnet, "node", e.Owner, "rule", e.Reason)
			}
		},
	})
	if err != nil {
		log.Fatal(err)
	}
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, os.Interrupt)
	defer stop()
	if err := n.Run(ctx); err != nil && ctx.Err() == nil {
		log.Fatal(err) // agent.ErrUnrecoverable: a restart would fail alike
	}
}
