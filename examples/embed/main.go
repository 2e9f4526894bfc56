// Command embed is a minimal custom agent on weft: a subnet leased from etcd,
// the VXLAN overlay, and subnet.env for the CNI plugin kept matched to the
// node's state, which it logs. examples/embed-kube is the same on Kubernetes.
//
//	embed -etcd http://10.0.0.1:2379 -public-ip 10.0.0.5
package main

import (
	"context"
	"flag"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"os"
	"os/signal"
	"syscall"

	"github.com/vishvananda/netns"

	"github.com/weftnet/weft/agent"
	"github.com/weftnet/weft/lease"
	"github.com/weftnet/weft/lease/etcd"
	"github.com/weftnet/weft/status"
	"github.com/weftnet/weft/subnetenv"
	"github.com/weftnet/weft/vxlan"
)

type options struct {
	etcd, node, subnetFile, statusAddr string // statusAddr "": no /status
	publicIP                           netip.Addr
	ns                                 netns.NsHandle // zero: this process's namespace
}

func main() {
	var o options
	host, _ := os.Hostname()
	flag.StringVar(&o.etcd, "etcd", "http://127.0.0.1:2379", "etcd endpoint")
	flag.StringVar(&o.node, "node", host, "stable node identity")
	flag.Func("public-ip", "this node's underlay address", func(s string) (err error) { o.publicIP, err = netip.ParseAddr(s); return err })
	flag.StringVar(&o.subnetFile, "subnet-file", subnetenv.DefaultPath, "where to write subnet.env")
	flag.StringVar(&o.statusAddr, "status-addr", "", "serve /status here for weftctl --url (e.g. 127.0.0.1:8474)")
	flag.Parse()
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if err := run(ctx, o); err != nil && ctx.Err() == nil {
		slog.Error("agent stopped", "err", err) // no -public-ip, say
		os.Exit(1)
	}
}

func run(ctx context.Context, o options) error {
	m, err := etcd.New(etcd.Options{Endpoints: []string{o.etcd}, Node: o.node}) // whose endpoints no peer lease may cover
	if err != nil {
		return err
	}
	defer m.Close()
	n, err := agent.NewNetwork(agent.NetworkConfig{Manager: m, PublicIP: o.publicIP, Namespace: o.ns,
		Datapaths: map[string]lease.DatapathFactory{"vxlan": vxlan.NewFactory(vxlan.FactoryConfig{})}})
	if err != nil {
		return err
	}
	if o.statusAddr != "" { // the status document weftctl reads, with bounded clients
		l, err := net.Listen("tcp", o.statusAddr)
		if err != nil {
			return err
		}
		srv := status.NewServer(status.Source{Network: n, MaxPage: status.DefaultLimit}.Handler(), status.Limits{}, slog.Default())
		go srv.Serve(l)
		defer srv.Close()
	}
	go follow(ctx, n, o.subnetFile)
	return n.Run(ctx)
}

// follow reads the Network level-based (Changed, then Snapshot: no change is
// missed). subnet.env names the lease while the node routes it, and is gone
// while it holds none; no IPMasq, as this agent sets no NAT rules.
func follow(ctx context.Context, n *agent.Network, file string) {
	for last := ""; ; {
		changed, s := n.Changed(), n.Snapshot()
		count := s.PeerCounts()
		if line := fmt.Sprint(s.Ready, s.Why, s.HasState, s.State, count); line != last {
			var err error
			if st := s.State; s.HasState {
				err = subnetenv.Write(file, subnetenv.File{Network: st.Config.Network, Subnet: st.Lease.Key.IPv4, MTU: st.MTU})
			} else {
				_, err = subnetenv.Withdraw(file)
			}
			slog.Info("network", "ready", s.Ready, "why", s.Why, "subnet", s.Lease.Key, "mtu", s.MTU, "peers", count, "subnet.env error", err)
			last = line
		}
		select {
		case <-changed:
		case <-ctx.Done():
			return
		}
	}
}
