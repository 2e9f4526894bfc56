// Command embed is a minimal custom network agent built on weft: it leases
// a subnet from etcd, runs the VXLAN overlay, writes subnet.env for the CNI
// plugin whenever the lease, the network or the MTU changes, and logs each
// peer change. examples/embed-kube is the same on the Kubernetes API.
//
//	embed -etcd http://10.0.0.1:2379 -node $(hostname) -public-ip 10.0.0.5
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
	"github.com/weftnet/weft/localstate"
	"github.com/weftnet/weft/status"
	"github.com/weftnet/weft/subnetenv"
)

type options struct {
	etcd, node, subnetFile string
	stateDir               string // "" keeps no local state
	statusAddr             string // "" serves no /status
	publicIP               netip.Addr
	ns                     netns.NsHandle // zero: this process's namespace
}

func main() {
	var o options
	var ip string
	flag.StringVar(&o.etcd, "etcd", "http://127.0.0.1:2379", "etcd endpoint")
	flag.StringVar(&o.node, "node", "", "stable node identity (default: hostname)")
	flag.StringVar(&ip, "public-ip", "", "this node's underlay address")
	flag.StringVar(&o.subnetFile, "subnet-file", subnetenv.DefaultPath, "where to write subnet.env")
	flag.StringVar(&o.stateDir, "state-dir", "", "keep the local state here, to boot from while etcd is unreachable (e.g. "+localstate.DefaultDir+")")
	flag.StringVar(&o.statusAddr, "status-addr", "", "serve /status here for weftctl --url (e.g. 127.0.0.1:8474)")
	flag.Parse()
	if o.node == "" {
		o.node, _ = os.Hostname()
	}
	var err error
	if o.publicIP, err = netip.ParseAddr(ip); err != nil {
		slog.Error("-public-ip is required", "err", err)
		os.Exit(2)
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if err := run(ctx, o); err != nil && ctx.Err() == nil {
		slog.Error("agent stopped", "err", err)
		os.Exit(1)
	}
}

func run(ctx context.Context, o options) error {
	// Read the previous subnet, so a restart keeps it if it is still free:
	// subnet.env, or the copy OnWithdraw kept while the node held no lease.
	var prev lease.Key
	if f, err := subnetenv.ReadLast(o.subnetFile); err == nil {
		prev = lease.Key{IPv4: f.Subnet, IPv6: f.IPv6Subnet}
	}
	m, err := etcd.New(etcd.Options{Endpoints: []string{o.etcd}, Node: o.node})
	if err != nil {
		return err
	}
	defer m.Close()

	cfg := agent.NetworkConfig{
		Manager: m, PublicIP: o.publicIP, Namespace: o.ns, Previous: prev,
		// subnet.env follows the lease, the network config and the MTU;
		// the Network calls this in order, once the node can route.
		OnState: func(st agent.State) {
			f := subnetenv.File{Network: st.Config.Network, Subnet: st.Lease.Key.IPv4, MTU: st.MTU}
			if err := subnetenv.Write(o.subnetFile, f); err != nil {
				slog.Error("write subnet.env", "err", err)
			}
		},
		// ...and goes while the node holds no lease (lost, given up, not
		// yet confirmed at start): no pod may get an address of a subnet
		// that another node may hold.
		OnWithdraw: func(w agent.Withdrawal) {
			if _, err := subnetenv.Withdraw(o.subnetFile); err != nil {
				slog.Error("remove subnet.env", "err", err, "reason", w.Reason.String())
			}
		},
		OnPeers: func(events []agent.PeerEvent) {
			for _, e := range events {
				slog.Info("peer "+e.Kind.String(), "subnet", e.Peer.Subnet, "node", e.Owner, "public_ip", e.Peer.PublicIP, "reason", e.Reason)
			}
		},
	}
	if o.stateDir != "" { // an etcd cut off at boot: run on what the node last knew
		cfg.LocalState = localstate.NewStore(o.stateDir, localstate.Identity{Network: "etcd " + etcd.DefaultPrefix, Node: o.node}, 0)
	}
	n, err := agent.NewNetwork(cfg)
	if err != nil {
		return err
	}
	if o.statusAddr != "" { // the status document weftctl reads
		l, err := net.Listen("tcp", o.statusAddr)
		if err != nil {
			return fmt.Errorf("status address %s: %w", o.statusAddr, err)
		}
		// A Server whose clients hold bounded memory, with pages cut for
		// an address others can reach.
		srv := status.NewServer(status.Source{Network: n, MaxPage: status.DefaultLimit}.Handler(), status.Limits{}, slog.Default())
		go srv.Serve(l)
		defer srv.Close()
	}
	return n.Run(ctx)
}
