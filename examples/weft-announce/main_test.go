package main

import (
	"encoding/json"
	"fmt"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/vishvananda/netlink"

	"github.com/weftnet/weft/internal/netnstest"
)

var bin string

func TestMain(m *testing.M) {
	dir, err := os.MkdirTemp("", "weft-announce-")
	if err != nil {
		panic(err)
	}
	bin = filepath.Join(dir, "weft-announce")
	build := exec.Command("go", "build", "-o", bin, ".")
	build.Env = append(os.Environ(), "CGO_ENABLED=0")
	if out, err := build.CombinedOutput(); err != nil {
		fmt.Fprintf(os.Stderr, "go build: %v\n%s", err, out)
		os.Exit(1)
	}
	code := m.Run()
	os.RemoveAll(dir)
	os.Exit(code)
}

// prevResult is what bridge returns for a pod: the bridge, the host veth,
// the pod's eth0 (in its sandbox), and its addresses on eth0.
func prevResult(netns string) string {
	return `{"cniVersion": "1.0.0", "interfaces": [{"name": "cni0"}, {"name": "veth1"}, {"name": "eth0", "sandbox": "` + netns + `"}],
		"ips": [{"address": "10.9.0.2/24", "gateway": "10.9.0.1", "interface": 2}, {"address": "fd09::2/64", "interface": 2}],
		"routes": [{"dst": "0.0.0.0/0", "gw": "10.9.0.1"}], "dns": {}}`
}

// run runs the plugin in namespace ns (the node's) with conf on stdin.
func run(ns, command, netnsPath, conf string) (string, error) {
	cmd := exec.Command("ip", "netns", "exec", ns, bin)
	if ns == "" {
		cmd = exec.Command(bin)
	}
	cmd.Env = []string{"CNI_COMMAND=" + command, "CNI_CONTAINERID=c1", "CNI_NETNS=" + netnsPath, "CNI_IFNAME=eth0", "CNI_PATH=/opt/cni/bin"}
	cmd.Stdin = strings.NewReader(conf)
	out, err := cmd.Output()
	return string(out), err
}

// TestPassesResultThrough: ADD announces and prints the previous result
// as it came (its addresses, routes and interfaces); DEL and CHECK do
// nothing and succeed, also for a sandbox that is gone.
func TestPassesResultThrough(t *testing.T) {
	netnstest.RequirePrivileged(t)
	node := netnstest.NewNamespace(t, "weft-node")
	pod := netnstest.NewNamespace(t, "weft-pod")
	v := &netlink.Veth{LinkAttrs: netlink.LinkAttrs{Name: "veth1"}, PeerName: "eth0", PeerNamespace: netlink.NsFd(int(pod.Handle))}
	if err := node.Netlink().LinkAdd(v); err != nil {
		t.Fatal(err)
	}
	for _, ns := range []*netnstest.Namespace{node, pod} {
		name := map[*netnstest.Namespace]string{node: "veth1", pod: "eth0"}[ns]
		l, _ := ns.Netlink().LinkByName(name)
		if err := ns.Netlink().LinkSetUp(l); err != nil {
			t.Fatal(err)
		}
	}
	path := "/var/run/netns/" + pod.Name
	conf := `{"cniVersion": "1.0.0", "name": "cbr0", "type": "weft-announce", "prevResult": ` + prevResult(path) + `}`
	out, err := run(node.Name, "ADD", path, conf)
	if err != nil {
		t.Fatalf("ADD: %v\n%s", err, out)
	}
	var got, want map[string]any
	json.Unmarshal([]byte(out), &got)
	json.Unmarshal([]byte(prevResult(path)), &want)
	delete(want, "dns")
	delete(got, "dns")
	g, _ := json.Marshal(got)
	w, _ := json.Marshal(want)
	if string(g) != string(w) {
		t.Errorf("ADD printed\n%s\nwant the previous result\n%s", g, w)
	}
	for _, cmd := range []string{"CHECK", "DEL"} {
		if out, err := run(node.Name, cmd, "/var/run/netns/weft-gone", conf); err != nil {
			t.Errorf("%s: %v\n%s", cmd, err, out)
		}
	}
}

// TestRefusals: a configuration it cannot use is an error naming the
// field; nothing is announced.
func TestRefusals(t *testing.T) {
	for _, tc := range []struct{ name, conf, want string }{
		{"not chained", `{"cniVersion": "1.0.0", "name": "cbr0", "type": "weft-announce"}`, "no prevResult"},
		{"count", `{"cniVersion": "1.0.0", "name": "cbr0", "type": "weft-announce", "count": 1000, "prevResult": ` + prevResult("/x") + `}`, "count 1000"},
		{"interval", `{"cniVersion": "1.0.0", "name": "cbr0", "type": "weft-announce", "interval": "soon", "prevResult": ` + prevResult("/x") + `}`, `interval "soon"`},
		{"upTimeout", `{"cniVersion": "1.0.0", "name": "cbr0", "type": "weft-announce", "upTimeout": "2h", "prevResult": ` + prevResult("/x") + `}`, `upTimeout "2h"`},
		{"upTimeout past the runtime's patience", `{"cniVersion": "1.0.0", "name": "cbr0", "type": "weft-announce", "upTimeout": "30s", "prevResult": ` + prevResult("/x") + `}`, `upTimeout "30s"`},
		{"sends past the runtime's patience", `{"cniVersion": "1.0.0", "name": "cbr0", "type": "weft-announce", "count": 100, "interval": "1s", "prevResult": ` + prevResult("/x") + `}`, "count 100 with interval 1s"},
		{"not JSON", `{"cniVersion": "1.0.0",`, "network config"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			out, err := run("", "ADD", "/var/run/netns/weft-none", tc.conf)
			var e struct{ Msg string }
			json.Unmarshal([]byte(out), &e)
			if err == nil || !strings.Contains(e.Msg, tc.want) {
				t.Errorf("ADD: %v\n%s\nwant an error naming %q", err, out, tc.want)
			}
		})
	}
}

// TestPodAddrs: the addresses of the pod's own interface, not another's;
// every address when the result names no interface (older plugins).
func TestPodAddrs(t *testing.T) {
	_, _, prev, err := parse([]byte(`{"cniVersion": "1.0.0", "name": "n", "prevResult": {"cniVersion": "1.0.0",
		"interfaces": [{"name": "cni0"}, {"name": "eth0", "sandbox": "/x"}, {"name": "net1", "sandbox": "/x"}],
		"ips": [{"address": "10.9.0.2/24", "interface": 1}, {"address": "10.8.0.2/24", "interface": 2}, {"address": "fd09::2/64", "interface": 1}]}}`))
	if err != nil {
		t.Fatal(err)
	}
	if got := podAddrs(prev, "eth0"); !slices.Equal(got, []netip.Addr{netip.MustParseAddr("10.9.0.2"), netip.MustParseAddr("fd09::2")}) {
		t.Errorf("eth0: %v", got)
	}
	if got := podAddrs(prev, "eth9"); len(got) != 0 {
		t.Errorf("an interface the result does not name: %v", got)
	}
	_, _, old, err := parse([]byte(`{"cniVersion": "0.3.1", "name": "n", "prevResult": {"cniVersion": "0.3.1", "ips": [{"version": "4", "address": "10.9.0.2/24"}]}}`))
	if err != nil {
		t.Fatal(err)
	}
	if got := podAddrs(old, "eth0"); !slices.Equal(got, []netip.Addr{netip.MustParseAddr("10.9.0.2")}) {
		t.Errorf("a result naming no interface: %v", got)
	}
}

// FuzzParse: any configuration is parsed or refused, never a panic, and
// what is accepted is within the documented bounds.
func FuzzParse(f *testing.F) {
	f.Add([]byte(`{"cniVersion": "1.0.0", "name": "cbr0", "type": "weft-announce", "prevResult": ` + prevResult("/x") + `}`))
	f.Add([]byte(`{"cniVersion": "0.4.0", "name": "cbr0", "count": 3, "interval": "50ms", "upTimeout": "2s", "prevResult": {"cniVersion": "0.4.0", "ips": [{"version": "4", "address": "10.9.0.2/24"}]}}`))
	f.Fuzz(func(t *testing.T, data []byte) {
		_, opts, prev, err := parse(data)
		if err != nil {
			return
		}
		if opts.Count < 0 || opts.Count > 100 || opts.Interval < 0 || opts.Interval > 1e9 || opts.UpTimeout < 0 || opts.UpTimeout > 60e9 {
			t.Errorf("accepted %+v", opts)
		}
		podAddrs(prev, "eth0")
	})
}
