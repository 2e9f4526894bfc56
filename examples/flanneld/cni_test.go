package main

import (
	"bytes"
	"encoding/json"
	"fmt"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"sync"
	"testing"

	"github.com/weftnet/weft/internal/netnstest"
)

// flannelCNIModule is the flannel CNI plugin's last release inside
// containernetworking/plugins, the code flannel's own cni-plugin grew
// from: it reads subnet.env and delegates to bridge with host-local
// ranges filled in from FLANNEL_SUBNET (as examples/weft-ipam's chain
// test builds it).
const flannelCNIModule = "github.com/containernetworking/plugins/plugins/meta/flannel@v0.9.1"

var (
	flannelCNIOnce sync.Once
	flannelCNIDir  string
	flannelCNIErr  error
)

// flannelCNI returns a CNI plugin directory holding flannel's plugin,
// built from its module once per test process, and Debian's bridge and
// host-local (package containernetworking-plugins). It skips without
// them, or fails if .ci/run's WEFT_REQUIRE_FLANNEL_CNI or
// WEFT_REQUIRE_HOSTLOCAL says they must be there.
func flannelCNI(t *testing.T) string {
	t.Helper()
	for _, p := range []string{"/usr/lib/cni/bridge", "/usr/lib/cni/host-local"} {
		if _, err := os.Stat(p); err != nil {
			if os.Getenv("WEFT_REQUIRE_HOSTLOCAL") != "" {
				t.Fatalf("Debian's CNI plugin: %v (apt-get install containernetworking-plugins)", err)
			}
			t.Skipf("Debian's CNI plugin: %v", err)
		}
	}
	flannelCNIOnce.Do(func() {
		dir, err := os.MkdirTemp("", "weft-flannel-cni-")
		if err != nil {
			flannelCNIErr = err
			return
		}
		install := exec.Command("go", "install", flannelCNIModule)
		install.Env = append(os.Environ(), "GOBIN="+dir, "CGO_ENABLED=0", "GOFLAGS=")
		if out, err := install.CombinedOutput(); err != nil {
			flannelCNIErr = fmt.Errorf("building flannel's CNI plugin (%s): %v\n%s", flannelCNIModule, err, out)
			return
		}
		for _, name := range []string{"bridge", "host-local"} {
			if err := os.Symlink("/usr/lib/cni/"+name, filepath.Join(dir, name)); err != nil {
				flannelCNIErr = err
				return
			}
		}
		flannelCNIDir = dir
	})
	if flannelCNIErr != nil {
		if os.Getenv("WEFT_REQUIRE_FLANNEL_CNI") != "" {
			t.Fatal(flannelCNIErr)
		}
		t.Skip(flannelCNIErr)
	}
	return flannelCNIDir
}

// removeFlannelCNI removes what flannelCNI built; TestMain calls it.
func removeFlannelCNI() {
	if flannelCNIDir != "" {
		os.RemoveAll(flannelCNIDir)
	}
}

// cniNode runs flannel's CNI plugin on a simulated host as its runtime
// would, with the plugin's files (its delegate's config, host-local's
// reservations) in a directory of the test's.
type cniNode struct {
	t    *testing.T
	bin  string
	host *netnstest.Host
	conf []byte
	n    int
}

func newCNINode(t *testing.T, host *netnstest.Host, subnetFile string) *cniNode {
	t.Helper()
	dir := t.TempDir()
	conf, err := json.Marshal(map[string]any{
		"cniVersion": "0.4.0", "name": "cbr0", "type": "flannel",
		"subnetFile": subnetFile, "dataDir": filepath.Join(dir, "flannel"),
		"delegate": map[string]any{"isDefaultGateway": true},
		"ipam":     map[string]any{"type": "host-local", "dataDir": filepath.Join(dir, "networks")},
	})
	if err != nil {
		t.Fatal(err)
	}
	return &cniNode{t: t, bin: flannelCNI(t), host: host, conf: conf}
}

// add runs an ADD for a new pod namespace and returns the address the
// pod got, or the plugin's error output.
func (c *cniNode) add() (netip.Prefix, error) {
	c.t.Helper()
	c.n++
	pod := netnstest.NewNamespace(c.t, "weft-pod")
	container := fmt.Sprintf("c%d-%s", c.n, pod.Name)
	cmd := exec.Command("ip", "netns", "exec", c.host.Name, filepath.Join(c.bin, "flannel"))
	cmd.Env = []string{"CNI_COMMAND=ADD", "CNI_CONTAINERID=" + container, "CNI_NETNS=/var/run/netns/" + pod.Name,
		"CNI_IFNAME=eth0", "CNI_PATH=" + c.bin, "PATH=" + os.Getenv("PATH")}
	cmd.Stdin = bytes.NewReader(c.conf)
	var out, errOut bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errOut
	if err := cmd.Run(); err != nil {
		return netip.Prefix{}, fmt.Errorf("%v: %s%s", err, bytes.TrimSpace(out.Bytes()), bytes.TrimSpace(errOut.Bytes()))
	}
	var r struct {
		IPs []struct{ Address string }
	}
	if err := json.Unmarshal(out.Bytes(), &r); err != nil || len(r.IPs) != 1 {
		c.t.Fatalf("ADD: %v\n%s", err, out.String())
	}
	p, err := netip.ParsePrefix(r.IPs[0].Address)
	if err != nil {
		c.t.Fatal(err)
	}
	return p, nil
}
