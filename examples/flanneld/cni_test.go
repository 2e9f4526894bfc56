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

	"github.com/weftnet/weft/internal/cnitest"
	"github.com/weftnet/weft/internal/netnstest"
)

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
	debian := cnitest.Debian(t, "bridge", "host-local")
	flannelCNIOnce.Do(func() {
		dir, err := os.MkdirTemp("", "weft-flannel-cni-")
		if err != nil {
			flannelCNIErr = err
			return
		}
		if err := cnitest.InstallFlannel(dir); err != nil {
			flannelCNIErr = err
			return
		}
		for _, from := range debian {
			if err := os.Symlink(from, filepath.Join(dir, filepath.Base(from))); err != nil {
				flannelCNIErr = err
				return
			}
		}
		flannelCNIDir = dir
	})
	if flannelCNIErr != nil {
		cnitest.FlannelUnavailable(t, flannelCNIErr)
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
