// Command embed-kube is a minimal custom agent on the Kubernetes API: its
// Node's PodCIDR is its lease; it runs the VXLAN overlay, writes a CNI
// config (bridge, host-local IPAM on the subnet) whenever the subnet, the
// network or the MTU changes, and logs each peer change. The Network reads
// the Node's annotations and clears its NetworkUnavailable condition.
//
//	NODE_NAME=$(hostname) embed-kube -kubeconfig /etc/weft/kubeconfig -iface eth0
package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"io/fs"
	"log/slog"
	"os"
	"os/signal"
	"path/filepath"
	"syscall"

	"k8s.io/client-go/tools/clientcmd"

	"github.com/weftnet/weft/agent"
	"github.com/weftnet/weft/kube"
	"github.com/weftnet/weft/underlay"
)

type options struct{ kubeconfig, node, netConf, iface, cniConf string }

func main() {
	var o options
	flag.StringVar(&o.kubeconfig, "kubeconfig", "", "kubeconfig file (default: in-cluster)")
	flag.StringVar(&o.node, "node", os.Getenv("NODE_NAME"), "this node's Node name (default $NODE_NAME)")
	flag.StringVar(&o.netConf, "net-conf", kube.DefaultNetConfPath, "net-conf.json")
	flag.StringVar(&o.iface, "iface", "", "underlay interface (default: the default route's)")
	flag.StringVar(&o.cniConf, "cni-conf", "/etc/cni/net.d/10-weft.conflist", "CNI config to write")
	flag.Parse()
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if err := run(ctx, o); err != nil && ctx.Err() == nil {
		slog.Error("agent stopped", "err", err)
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
	m, err := kube.New(kube.Options{Nodes: nodes, NodeName: o.node, NetConfPath: o.netConf})
	if err != nil {
		return err
	}
	defer m.Close()
	var policy underlay.Policy
	if o.iface != "" {
		policy.Interfaces = []string{o.iface}
	}
	n, err := agent.NewNetwork(agent.NetworkConfig{
		Manager: m, FindPublic: policy.FindPublic,
		OnState: func(st agent.State) {
			if err := writeCNIConfig(o.cniConf, st); err != nil {
				slog.Error("write the CNI config", "err", err)
			}
		},
		// The config names the subnet: it goes with the lease, and the
		// kubelet reports the node's network not ready until the next
		// State writes it again.
		OnWithdraw: func(w agent.Withdrawal) {
			if err := os.Remove(o.cniConf); err != nil && !errors.Is(err, fs.ErrNotExist) {
				slog.Error("remove the CNI config", "err", err, "reason", w.Reason.String())
			}
		},
		OnPeers: func(events []agent.PeerEvent) {
			for _, e := range events {
				slog.Info("peer "+e.Kind.String(), "subnet", e.Peer.Subnet, "node", e.Owner, "public_ip", e.Peer.PublicIP, "reason", e.Reason)
			}
		},
	})
	if err != nil {
		return err
	}
	return n.Run(ctx)
}

// writeCNIConfig replaces path by a rename: the kubelet never reads half.
func writeCNIConfig(path string, st agent.State) error {
	ipam := map[string]any{"type": "host-local", "ranges": [][]map[string]string{{{"subnet": st.Lease.Key.IPv4.String()}}},
		"routes": []map[string]string{{"dst": st.Config.Network.String()}}}
	bridge := map[string]any{"type": "bridge", "bridge": "cni0", "isGateway": true, "mtu": st.MTU, "ipam": ipam}
	data, err := json.MarshalIndent(map[string]any{"cniVersion": "1.0.0", "name": "weft", "plugins": []any{bridge}}, "", "  ")
	if err != nil {
		return err
	}
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		return err
	}
	tmp := path + ".tmp"
	if err := os.WriteFile(tmp, data, 0o644); err != nil {
		return err
	}
	return os.Rename(tmp, path)
}
