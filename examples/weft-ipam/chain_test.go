package main

import (
	"bytes"
	"encoding/json"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"testing"

	"github.com/vishvananda/netlink"

	"github.com/weftnet/weft/internal/cnitest"
	"github.com/weftnet/weft/internal/netnstest"
)

// cniBin makes a CNI plugin directory holding flannel's plugin (built
// from its module), Debian's bridge and this weft-ipam.
func cniBin(t testing.TB) string {
	t.Helper()
	dir := t.TempDir()
	debian := cnitest.Debian(t, "bridge", "portmap")
	if err := cnitest.InstallFlannel(dir); err != nil {
		cnitest.FlannelUnavailable(t, err)
	}
	for name, from := range map[string]string{"bridge": debian[0], "portmap": debian[1], "weft-ipam": bin, "weft-announce": announceBin} {
		if err := os.Symlink(from, filepath.Join(dir, name)); err != nil {
			t.Fatal(err)
		}
	}
	return dir
}

// shippedConflist is 10-flannel.conflist, the chain the manifests install.
type shippedConflist struct {
	Name    string           `json:"name"`
	Plugins []map[string]any `json:"plugins"`
}

// readShippedConflist reads 10-flannel.conflist afresh: callers change
// what it holds.
func readShippedConflist(t testing.TB) shippedConflist {
	t.Helper()
	raw, err := os.ReadFile("10-flannel.conflist")
	if err != nil {
		t.Fatal(err)
	}
	var list shippedConflist
	if err := json.Unmarshal(raw, &list); err != nil {
		t.Fatal(err)
	}
	return list
}

// shippedChainConfig is the first plugin of 10-flannel.conflist (the one
// the manifests install), as the runtime hands it to flannel's plugin,
// with the node's files moved under dir and the CNI version the plugin
// build speaks.
func shippedChainConfig(t *testing.T, dir string) []byte {
	t.Helper()
	list := readShippedConflist(t)
	conf := list.Plugins[0]
	if conf["type"] != "flannel" {
		t.Fatalf("the conflist's first plugin is %v, not flannel", conf["type"])
	}
	ipam := conf["ipam"].(map[string]any)
	if ipam["type"] != "weft-ipam" || ipam["dataDir"] != "/var/lib/cni/networks" || ipam["subnetFile"] != "/run/flannel/subnet.env" {
		t.Fatalf("the conflist's ipam: %v", ipam)
	}
	ipam["dataDir"] = filepath.Join(dir, "networks")
	ipam["subnetFile"] = filepath.Join(dir, "subnet.env")
	conf["subnetFile"] = filepath.Join(dir, "subnet.env") // the flannel plugin's own
	conf["dataDir"] = filepath.Join(dir, "flannel")       // where it keeps the delegate's config
	conf["name"] = list.Name
	conf["cniVersion"] = "0.4.0"
	out, err := json.Marshal(conf)
	if err != nil {
		t.Fatal(err)
	}
	return out
}

// TestShippedChain runs the shipped CNI config as a node's runtime does:
// flannel's plugin reads subnet.env and delegates to bridge, which asks
// weft-ipam for the address. A pod gets an address of the node's subnet
// on eth0 behind cni0; deleted and added again under the same name (a
// restart: a new container ID), it gets the same address; another pod
// gets another.
func TestShippedChain(t *testing.T) {
	netnstest.RequirePrivileged(t)
	cni := cniBin(t)
	dir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, "subnet.env"), []byte("FLANNEL_NETWORK=10.244.0.0/16\nFLANNEL_SUBNET=10.244.3.1/24\nFLANNEL_MTU=1450\nFLANNEL_IPMASQ=false\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	conf := shippedChainConfig(t, dir)
	host := netnstest.NewNamespace(t, "weft-node")

	run := func(command, container string, pod *netnstest.Namespace, name string) string {
		t.Helper()
		// The runtime runs in the node's namespace; the plugin makes
		// cni0 there.
		cmd := exec.Command("ip", "netns", "exec", host.Name, filepath.Join(cni, "flannel"))
		cmd.Env = []string{"CNI_COMMAND=" + command, "CNI_CONTAINERID=" + container, "CNI_NETNS=/var/run/netns/" + pod.Name,
			"CNI_IFNAME=eth0", "CNI_PATH=" + cni, "CNI_ARGS=" + podArgs(name), "PATH=" + os.Getenv("PATH")}
		cmd.Stdin = bytes.NewReader(conf)
		var out, errOut bytes.Buffer
		cmd.Stdout, cmd.Stderr = &out, &errOut
		if err := cmd.Run(); err != nil {
			t.Fatalf("%s %s: %v\n%s%s", command, container, err, out.String(), errOut.String())
		}
		return out.String()
	}
	add := func(container string, pod *netnstest.Namespace, name string) netip.Addr {
		t.Helper()
		out := run("ADD", container, pod, name)
		var r struct {
			IPs []struct{ Address string }
		}
		if err := json.Unmarshal([]byte(out), &r); err != nil || len(r.IPs) != 1 {
			t.Fatalf("ADD %s: %v\n%s", container, err, out)
		}
		p, err := netip.ParsePrefix(r.IPs[0].Address)
		if err != nil {
			t.Fatal(err)
		}
		// The address is on the pod's eth0.
		eth, err := pod.Netlink().LinkByName("eth0")
		if err != nil {
			t.Fatalf("ADD %s: %v", container, err)
		}
		addrs, _ := pod.Netlink().AddrList(eth, netlink.FAMILY_V4)
		if len(addrs) != 1 || addrs[0].IP.String() != p.Addr().String() {
			t.Fatalf("ADD %s: result %v, pod's eth0 holds %v", container, p, addrs)
		}
		return p.Addr()
	}

	web := netnstest.NewNamespace(t, "weft-pod")
	first := add("c1", web, "web-0")
	if !netip.MustParsePrefix("10.244.3.0/24").Contains(first) || first == netip.MustParseAddr("10.244.3.1") {
		t.Fatalf("web-0 got %v; want an address of 10.244.3.0/24 other than the gateway", first)
	}
	if _, err := host.Netlink().LinkByName("cni0"); err != nil {
		t.Errorf("no cni0 on the node: %v", err)
	}
	other := netnstest.NewNamespace(t, "weft-pod")
	if ip := add("c2", other, "db-0"); ip == first {
		t.Fatalf("db-0 got web-0's %v", ip)
	}
	run("DEL", "c1", web, "web-0")
	restarted := netnstest.NewNamespace(t, "weft-pod")
	if again := add("c3", restarted, "web-0"); again != first {
		t.Errorf("web-0, restarted, got %v; it had %v", again, first)
	}
	run("DEL", "c3", restarted, "web-0")
	run("DEL", "c2", other, "db-0")
}
