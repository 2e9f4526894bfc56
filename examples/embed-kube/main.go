// Command embed-kube is a minimal custom agent on Kubernetes: the Node's
// PodCIDR is its lease, the VXLAN overlay carries it, and a CNI config
// (bridge, host-local IPAM) follows the node's state, which it logs.
//
//	NODE_NAME=$(hostname) embed-kube -kubeconfig /etc/weft/kubeconfig -iface eth0
package main

import (
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"log/slog"
	"os"
	"os/signal"
	"strings"
	"syscall"

	"k8s.io/client-go/tools/clientcmd"

	"github.com/weftnet/weft/agent"
	"github.com/weftnet/weft/kube"
	"github.com/weftnet/weft/lease"
	"github.com/weftnet/weft/underlay"
	"github.com/weftnet/weft/vxlan"
)

type options struct{ kubeconfig, node, iface, cniConf string } // net-conf.json: kube.DefaultNetConfPath

func main() {
	var o options
	flag.StringVar(&o.kubeconfig, "kubeconfig", "", "kubeconfig file (default: in-cluster)")
	flag.StringVar(&o.node, "node", os.Getenv("NODE_NAME"), "this node's Node name (default $NODE_NAME)")
	flag.StringVar(&o.iface, "iface", "", "underlay interface (default: the default route's)")
	flag.StringVar(&o.cniConf, "cni-conf", "/etc/cni/net.d/10-weft.conflist", "CNI config to write")
	flag.Parse()
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if err := run(ctx, o); err != nil && ctx.Err() == nil {
		slog.Error("agent stopped", "err", err) // the kubeconfig, or no Node name
		os.Exit(1)
	}
}

func run(ctx context.Context, o options) error {
	rc, err := clientcmd.BuildConfigFromFlags("", o.kubeconfig)
	if err != nil {
		return err
	}
	nodes, err := kube.NewNodeClient(rc)
	if err != nil {
		return err
	}
	m, err := kube.New(kube.Options{Nodes: nodes, NodeName: o.node})
	if err != nil {
		return err
	}
	defer m.Close()
	n, err := agent.NewNetwork(agent.NetworkConfig{Manager: m, FindPublic: underlay.Policy{Interfaces: strings.Fields(o.iface)}.FindPublic,
		Datapaths: map[string]lease.DatapathFactory{"vxlan": vxlan.NewFactory(vxlan.FactoryConfig{})}})
	if err != nil {
		return err
	}
	go follow(ctx, n, o.cniConf)
	return n.Run(ctx)
}

// follow reads the Network level-based (Changed, then Snapshot: no change is missed). The CNI
// config names the subnet while the node routes it, and is gone while it holds none.
func follow(ctx context.Context, n *agent.Network, path string) {
	for last := ""; ; {
		changed, s := n.Changed(), n.Snapshot()
		if line := fmt.Sprint(s.Ready, s.Why, s.HasState, s.State, s.PeerCounts()); line != last {
			slog.Info("network", "ready", s.Ready, "why", s.Why, "subnet", s.Lease.Key, "mtu", s.MTU, "peers", s.PeerCounts(), "cni config error", syncCNIConfig(path, s))
			last = line
		}
		select {
		case <-changed:
		case <-ctx.Done():
			return
		}
	}
}

// syncCNIConfig writes the config for the node's State, replacing path by a
// rename (the kubelet never reads half), or removes it while there is none.
func syncCNIConfig(path string, s agent.Snapshot) error {
	if !s.HasState {
		os.Remove(path) // gone already, as a rule; the kubelet reports the network not ready
		return nil
	}
	ipam := map[string]any{"type": "host-local", "ranges": [][]map[string]string{{{"subnet": s.State.Lease.Key.IPv4.String()}}}, "routes": []map[string]string{{"dst": s.State.Config.Network.String()}}}
	data, _ := json.MarshalIndent(map[string]any{"cniVersion": "1.0.0", "name": "weft", "plugins": []any{
		map[string]any{"type": "bridge", "bridge": "cni0", "isGateway": true, "mtu": s.State.MTU, "ipam": ipam}}}, "", "  ")
	if err := os.WriteFile(path+".tmp", data, 0o644); err != nil {
		return err
	}
	return os.Rename(path+".tmp", path)
}
