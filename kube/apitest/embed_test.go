package apitest_test

import (
	"encoding/json"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"

	"github.com/weftnet/weft/internal/daemontest"
	"github.com/weftnet/weft/internal/netnstest"
	"github.com/weftnet/weft/internal/testutil"
)

// TestEmbedKubeExample runs examples/embed-kube, the kube-mode agent an
// embedder writes from the godoc, on two simulated hosts as flannel's
// service account against a real kube-apiserver: each writes a CNI config
// on its Node's PodCIDR with the device's MTU, logs the other as a peer,
// has its Node's NetworkUnavailable condition cleared, and the two
// subnets reach each other over VXLAN.
func TestEmbedKubeExample(t *testing.T) {
	c, _, h1, h2, kc := kubeMode(t)
	bin := daemontest.Build(t, "./examples/embed-kube")
	s := c.scope(t, "embed", `{"Network": "10.121.0.0/16", "Backend": {"Type": "vxlan"}}`)
	hosts := []*netnstest.Host{h1, h2}
	cidrs := []string{"10.121.1.0/24", "10.121.2.0/24"}
	dir := t.TempDir()
	var outs []*testutil.SyncBuffer
	for i, h := range hosts {
		s.createNode(h.Name, cidrs[i])
		out := &testutil.SyncBuffer{}
		cmd := exec.Command("ip", "netns", "exec", h.Name, bin, "-kubeconfig", kc, "-node", h.Name,
			"-net-conf", s.netConf, "-iface", netnstest.Underlay, "-cni-conf", filepath.Join(dir, h.Name, "10-weft.conflist"))
		cmd.Stdout, cmd.Stderr = out, out
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		done := make(chan error, 1)
		go func() { done <- cmd.Wait() }()
		t.Cleanup(func() {
			cmd.Process.Signal(os.Interrupt)
			select {
			case <-done:
			case <-time.After(10 * time.Second):
				cmd.Process.Kill()
				<-done
			}
			if t.Failed() {
				t.Logf("embed-kube on %s:\n%s", h.Name, out)
			}
		})
		outs = append(outs, out)
	}
	type conflist struct {
		Plugins []struct {
			Type string
			MTU  int
			IPAM struct {
				Ranges [][]struct{ Subnet string }
				Routes []struct{ Dst string }
			}
		}
	}
	for i, h := range hosts {
		path := filepath.Join(dir, h.Name, "10-weft.conflist")
		var cl conflist
		testutil.WaitFor(t, 30*time.Second, h.Name+"'s CNI config", func() bool {
			data, err := os.ReadFile(path)
			return err == nil && json.Unmarshal(data, &cl) == nil
		})
		if len(cl.Plugins) != 1 || cl.Plugins[0].MTU != 1450 || cl.Plugins[0].IPAM.Ranges[0][0].Subnet != cidrs[i] || cl.Plugins[0].IPAM.Routes[0].Dst != "10.121.0.0/16" {
			t.Errorf("%s's CNI config: %+v", h.Name, cl)
		}
		testutil.WaitFor(t, 20*time.Second, h.Name+"'s NetworkUnavailable=False", func() bool {
			for _, cond := range s.node(h.Name).Status.Conditions {
				if cond.Type == corev1.NodeNetworkUnavailable && cond.Status == corev1.ConditionFalse {
					return true
				}
			}
			return false
		})
		other := cidrs[1-i]
		testutil.WaitFor(t, 20*time.Second, h.Name+" logging its peer", func() bool {
			return strings.Contains(outs[i].String(), "peer programmed subnet="+other)
		})
	}
	to := netip.MustParsePrefix(cidrs[1]).Addr()
	echo := h2.ListenEcho(t, to)
	if err := h1.WaitExchange(netip.MustParsePrefix(cidrs[0]).Addr(), echo.Addr, 10*time.Second); err != nil {
		t.Fatalf("overlay traffic between the embedded agents: %v", err)
	}
}
