// Command embed-kube is a minimal custom agent on Kubernetes: its Node's PodCIDR is its lease,
// VXLAN carries it, and a CNI config (bridge, host-local) follows the node's state.
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
	"path/filepath"
	"strings"
	"syscall"

	"k8s.io/client-go/tools/clientcmd"

	"github.com/weftnet/weft/agent"
	"github.com/weftnet/weft/kube"
	"github.com/weftnet/weft/lease"
	"github.com/weftnet/weft/underlay"
	"github.com/weftnet/weft/vxlan"
)

func main() {
	kubeconfig := flag.String("kubeconfig", "", "kubeconfig file (default: in-cluster)")
	node := flag.String("node", os.Getenv("NODE_NAME"), "this node's Node name (default $NODE_NAME)")
	netConf := flag.String("net-conf", kube.DefaultNetConfPath, "net-conf.json")
	iface := flag.String("iface", "", "underlay interface (default: the default route's)")
	cniConf := flag.String("cni-conf", "/etc/cni/net.d/10-weft.conflist", "CNI config to write")
	flag.Parse()
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if err := run(ctx, *kubeconfig, kube.Options{NodeName: *node, NetConfPath: *netConf}, *iface, *cniConf); err != nil && ctx.Err() == nil {
		slog.Error("agent stopped", "err", err) // the kubeconfig, or no Node name
		os.Exit(1)
	}
}

func run(ctx context.Context, kubeconfig string, opts kube.Options, iface, cniConf string) error {
	rc, err := clientcmd.BuildConfigFromFlags("", kubeconfig)
	if err != nil {
		return err
	}
	if opts.Nodes, err = kube.NewNodeClient(rc); err != nil {
		return err
	}
	m, err := kube.New(opts)
	if err != nil {
		return err
	}
	defer m.Close()
	n, err := agent.NewNetwork(agent.NetworkConfig{Manager: m, FindPublic: underlay.Policy{Interfaces: strings.Fields(iface)}.FindPublic,
		Datapaths: map[string]lease.DatapathFactory{"vxlan": vxlan.NewFactory(vxlan.FactoryConfig{})},
		OnPeers: func(events []agent.PeerEvent) { // the edge-triggered side: what happened to each peer
			for _, e := range events {
				slog.Info("peer "+e.Kind.String(), "subnet", e.Peer.Subnet, "node", e.Owner, "public_ip", e.Peer.PublicIP, "reason", e.Reason)
			}
		}})
	if err != nil {
		return err
	}
	go follow(ctx, n, cniConf)
	return n.Run(ctx)
}

// follow keeps the CNI config matched to the State, read level-based (Changed, then Snapshot).
func follow(ctx context.Context, n *agent.Network, path string) {
	for last := ""; ; {
		changed, s := n.Changed(), n.Snapshot()
		if line := fmt.Sprint(s.HasState, s.State); line != last {
			slog.Info("network", "ready", s.Ready, "why", s.Why, "subnet", s.Lease.Key, "mtu", s.MTU, "cni config error", syncCNIConfig(path, s))
			last = line
		}
		select {
		case <-changed:
		case <-ctx.Done():
			return
		}
	}
}

// syncCNIConfig writes the State's config by a rename (never read half), or removes it.
func syncCNIConfig(path string, s agent.Snapshot) error {
	if !s.HasState {
		os.Remove(path) // the kubelet reports the network not ready
		return nil
	}
	data, _ := json.MarshalIndent(map[string]any{"cniVersion": "1.0.0", "name": "weft", "plugins": []any{map[string]any{"type": "bridge", "bridge": "cni0", "isGateway": true, "mtu": s.State.MTU,
		"ipam": map[string]any{"type": "host-local", "ranges": [][]map[string]string{{{"subnet": s.State.Lease.Key.IPv4.String()}}}, "routes": []map[string]string{{"dst": s.State.Config.Network.String()}}}}}}, "", "  ")
	os.MkdirAll(filepath.Dir(path), 0o755) // WriteFile says why, if it failed
	if err := os.WriteFile(path+".tmp", data, 0o644); err != nil {
		return err
	}
	return os.Rename(path+".tmp", path)
}
