package apitest_test

import (
	"context"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/weftnet/weft/internal/daemontest"
	"github.com/weftnet/weft/internal/netnstest"
	"github.com/weftnet/weft/internal/testutil"
	"github.com/weftnet/weft/localstate"
)

// TestFlanneldKubeOfflineReboot is TestOfflineReboot in kube mode: two
// flanneld daemons run as flannel's service account with traffic flowing;
// the API server goes away (its only route is cut); host 1 reboots (the
// daemon killed, its device and subnet.env gone, its state directory
// kept) and starts as the upstream manifest runs it, with POD_NAME and
// POD_NAMESPACE and no node name. It cannot read its Pod, boots as the
// node its local state names, programs its peer from the cached
// annotations and carries traffic. When the API server is back it runs on
// it again, with no write to its Node and no change in its kernel.
func TestFlanneldKubeOfflineReboot(t *testing.T) {
	c, bin, h1, h2, kc := kubeMode(t)
	s := c.scope(t, "offline", `{"Network": "10.121.0.0/16", "Backend": {"Type": "vxlan"}}`)
	s.createNode(h1.Name, "10.121.1.0/24")
	s.createNode(h2.Name, "10.121.2.0/24")
	dir := t.TempDir()
	args := []string{"--kube-subnet-mgr", "--kubeconfig-file", kc, "--net-config-path", s.netConf, "--resync-interval", "2s"}
	subnetFile := func(h *netnstest.Host) string { return filepath.Join(dir, h.Name, "subnet.env") }
	a := daemontest.Start(t, h1, bin, subnetFile(h1), args...)
	b := daemontest.Start(t, h2, bin, subnetFile(h2), args...)
	for _, d := range []*daemontest.Daemon{a, b} {
		d.WaitReady()
		d.WaitPeers(1)
	}
	reach := func() {
		t.Helper()
		for _, pair := range [][2]*daemontest.Daemon{{a, b}, {b, a}} {
			if err := daemontest.Reach(t, pair[0], pair[1]); err != nil {
				t.Fatalf("%s -> %s: %v", pair[0].Host.Name, pair[1].Host.Name, err)
			}
		}
	}
	reach()
	store := localstate.NewStore(daemontest.StateDir(a.SubnetFile), localstate.Identity{Network: "kube flannel.alpha.coreos.com", Node: h1.Name}, 0)
	testutil.WaitFor(t, 10*time.Second, "host 1's local state to hold its peer", func() bool {
		st, err := store.Load()
		return err == nil && len(st.Peers) == 1 && st.Lease.Key.IPv4.String() == "10.121.1.0/24"
	})
	before := a.Env()
	version := s.node(h1.Name).ResourceVersion

	c.proxy.pause()
	if err := a.Stop(syscall.SIGKILL); err != nil && !strings.Contains(err.Error(), "killed") {
		t.Fatal(err)
	}
	link, err := h1.Netlink().LinkByName("flannel.1")
	if err != nil {
		t.Fatal(err)
	}
	if err := h1.Netlink().LinkDel(link); err != nil {
		t.Fatal(err)
	}
	if err := os.Remove(a.SubnetFile); err != nil {
		t.Fatal(err)
	}
	booted := time.Now()
	a = daemontest.StartEnv(t, h1, bin, a.SubnetFile, []string{"POD_NAME=kube-flannel-ds-x", "POD_NAMESPACE=kube-flannel"},
		append(args, "--offline-after", "1s")...)
	a.WaitReady()
	a.WaitPeers(1)
	t.Logf("rebooted with the API server down: ready with its peer programmed %v after start (--offline-after 1s, and 1s for the Pod)", time.Since(booted).Round(time.Millisecond))
	if code, body := a.Readyz(); code != http.StatusOK || !strings.Contains(body, "running from the local state since") {
		t.Errorf("/readyz %d %q; want 200 saying it runs from the local state", code, body)
	}
	if !strings.Contains(a.Out.String(), "booting as the node the local state was written for") {
		t.Errorf("the daemon did not say it took its node name from the local state:\n%s", a.Out)
	}
	if got := a.Env(); got.Subnet != before.Subnet || got.MTU != before.MTU {
		t.Errorf("subnet.env after the offline boot: %+v; before the reboot %+v", got, before)
	}
	reach()

	changes := h1.WatchKernel(t)
	c.proxy.resume()
	testutil.WaitFor(t, 30*time.Second, "host 1 to run on the API server again", func() bool {
		code, body := a.Readyz()
		return code == http.StatusOK && strings.TrimSpace(body) == "ready"
	})
	time.Sleep(3 * time.Second) // a resync (2s) after the listing
	if seen := changes(); len(seen) > 0 {
		t.Errorf("reconnecting changed host 1's kernel %d times: %v", len(seen), seen)
	}
	if now := s.node(h1.Name).ResourceVersion; now != version {
		n, _ := c.admin.CoreV1().Nodes().Get(context.Background(), h1.Name, metav1.GetOptions{})
		t.Errorf("host 1's Node was written on reconnection (resourceVersion %s, was %s): %+v", now, version, n.ObjectMeta)
	}
	reach()
}
