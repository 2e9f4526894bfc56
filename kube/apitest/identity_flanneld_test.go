package apitest_test

import (
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/weftnet/weft/internal/daemontest"
	"github.com/weftnet/weft/internal/testutil"
)

// TestFlanneldKubeCloneHosts is item 8 of issue 29 with processes: two
// flanneld daemons on two hosts run as one Node (cloned VMs), with the
// shipped RBAC. The first keeps the Node and stays ready; the second
// answers /readyz not ready, naming both hosts' addresses and the fix,
// writes no subnet.env (so the CNI plugin gives its pods no address in the
// first host's subnet), and the Node's writes stay within a bound over a
// window. When the first stops, the second takes the Node over.
func TestFlanneldKubeCloneHosts(t *testing.T) {
	c, bin, h1, h2, kc := kubeMode(t)
	s := c.scope(t, "clone", `{"Network": "10.121.0.0/16", "Backend": {"Type": "vxlan"}}`)
	name := "clone-" + filepath.Base(t.TempDir())
	s.createNode(name, "10.121.1.0/24")
	dir := t.TempDir()
	start := func(h string) *daemontest.Daemon {
		host := h1
		if h == h2.Name {
			host = h2
		}
		return daemontest.StartEnv(t, host, bin, filepath.Join(dir, h, "subnet.env"), nil,
			"--node-name", name, "--kube-subnet-mgr", "--kubeconfig-file", kc, "--net-config-path", s.netConf)
	}
	a := start(h1.Name)
	a.WaitReady()
	b := start(h2.Name)
	ipA, ipB := h1.Addr.Addr().String(), h2.Addr.Addr().String()
	testutil.WaitFor(t, 40*time.Second, "the second host to say it collides", func() bool {
		code, body := b.Readyz()
		if code == http.StatusOK {
			t.Fatalf("the second host is ready as the Node the first holds: %s", body)
		}
		return strings.Contains(body, ipA) && strings.Contains(body, ipB)
	})
	_, body := b.Readyz()
	t.Logf("second host's /readyz: %s", body)
	if !strings.Contains(body, "NODE_NAME") {
		t.Errorf("the second host's /readyz does not say the fix: %s", body)
	}

	// Over a window of two rounds (of six 5 s challenge timeouts): a
	// claim and its answer per round, with room for a round in progress at
	// one end.
	writes := nodeWrites(t, s, name)
	time.Sleep(time.Minute)
	if n := writes.Load(); n > 6 {
		t.Errorf("%d writes to the Node in a minute of collision, want at most 6", n)
	} else {
		t.Logf("%d writes to the Node in a minute of collision", n)
	}
	if code, body := a.Readyz(); code != http.StatusOK {
		t.Errorf("the first host is not ready: %s", body)
	}
	if got := s.node(name).Annotations["flannel.alpha.coreos.com/public-ip"]; got != ipA {
		t.Errorf("public-ip %q, want the first host's %s", got, ipA)
	}
	if _, err := os.Stat(b.SubnetFile); !os.IsNotExist(err) {
		t.Errorf("the second host wrote subnet.env: %v", err)
	}
	if !strings.Contains(a.Out.String(), "answered, so it stays here") {
		t.Error("the first host did not log the collision")
	}

	// The first host stops: the second's next claim is not answered, and
	// it takes the Node over: within a round and a challenge timeout.
	a.Stop(syscall.SIGTERM)
	testutil.WaitFor(t, time.Minute, "the second host to take the Node over", func() bool {
		code, _ := b.Readyz()
		return code == http.StatusOK
	})
	if got := b.Env().Subnet.String(); got != "10.121.1.0/24" {
		t.Errorf("the second host's subnet.env after the takeover: %s", got)
	}
	if got := s.node(name).Annotations["flannel.alpha.coreos.com/public-ip"]; got != ipB {
		t.Errorf("public-ip %q after the takeover, want %s", got, ipB)
	}
}
