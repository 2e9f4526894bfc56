package main

import (
	"bytes"
	"encoding/json"
	"fmt"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"testing"

	"github.com/weftnet/weft/internal/netnstest"
)

// A cniRuntime runs the shipped conflist as a container runtime's CNI
// library does: each plugin in order for ADD, with the list's name and
// cniVersion and the previous plugin's result as prevResult; in reverse
// order for DEL, each given the ADD's result. Every plugin runs in the
// node's namespace, where it makes cni0; the pod's namespace is named by
// CNI_NETNS.
type cniRuntime struct {
	t       testing.TB
	bin     string // CNI_PATH
	node    *netnstest.Namespace
	name    string
	version string
	plugins []map[string]any
	results map[string][]byte // by container ID: the ADD's result
}

// newCNIRuntime reads 10-flannel.conflist, moves the node's files under
// dir, and sets the CNI version flannel's plugin build speaks. With
// withoutTypes, the named plugins are left out of the list (the chain as
// it was before they were added).
func newCNIRuntime(t testing.TB, bin, dir string, node *netnstest.Namespace, withoutTypes ...string) *cniRuntime {
	t.Helper()
	list := readShippedConflist(t)
	r := &cniRuntime{t: t, bin: bin, node: node, name: list.Name, version: "0.4.0", results: map[string][]byte{}}
	for _, p := range list.Plugins {
		if slices.Contains(withoutTypes, p["type"].(string)) {
			continue
		}
		if p["type"] == "flannel" {
			ipam := p["ipam"].(map[string]any)
			ipam["dataDir"] = filepath.Join(dir, "networks")
			ipam["subnetFile"] = filepath.Join(dir, "subnet.env")
			p["subnetFile"] = filepath.Join(dir, "subnet.env")
			p["dataDir"] = filepath.Join(dir, "flannel")
		}
		r.plugins = append(r.plugins, p)
	}
	return r
}

// types lists the plugins the runtime runs, in order.
func (r *cniRuntime) types() []string {
	var out []string
	for _, p := range r.plugins {
		out = append(out, p["type"].(string))
	}
	return out
}

// exec runs one plugin.
func (r *cniRuntime) exec(command, container string, pod *netnstest.Namespace, podName string, conf map[string]any, prev []byte) ([]byte, error) {
	c := map[string]any{}
	for k, v := range conf {
		c[k] = v
	}
	c["name"], c["cniVersion"] = r.name, r.version
	if prev != nil {
		c["prevResult"] = json.RawMessage(prev)
	}
	stdin, err := json.Marshal(c)
	if err != nil {
		return nil, err
	}
	cmd := exec.Command("ip", "netns", "exec", r.node.Name, filepath.Join(r.bin, conf["type"].(string)))
	cmd.Env = []string{"CNI_COMMAND=" + command, "CNI_CONTAINERID=" + container, "CNI_NETNS=/var/run/netns/" + pod.Name,
		"CNI_IFNAME=eth0", "CNI_PATH=" + r.bin, "CNI_ARGS=" + podArgs(podName), "PATH=" + os.Getenv("PATH")}
	cmd.Stdin = bytes.NewReader(stdin)
	var out, errOut bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errOut
	if err := cmd.Run(); err != nil {
		return nil, fmt.Errorf("%s %s of %s: %v\n%s%s", conf["type"], command, container, err, out.String(), errOut.String())
	}
	return out.Bytes(), nil
}

// add runs ADD through the list and returns the pod's addresses from the
// last result.
func (r *cniRuntime) add(container string, pod *netnstest.Namespace, podName string) podAddrs {
	r.t.Helper()
	var prev []byte
	for _, p := range r.plugins {
		out, err := r.exec("ADD", container, pod, podName, p, prev)
		if err != nil {
			r.t.Fatal(err)
		}
		prev = out
	}
	r.results[container] = prev
	var res struct {
		IPs []struct{ Address string }
	}
	if err := json.Unmarshal(prev, &res); err != nil {
		r.t.Fatalf("ADD %s: %v\n%s", container, err, prev)
	}
	var a podAddrs
	for _, ip := range res.IPs {
		p, err := netip.ParsePrefix(ip.Address)
		if err != nil {
			r.t.Fatalf("ADD %s: %v", container, err)
		}
		if p.Addr().Is4() {
			a.v4 = p.Addr()
		} else {
			a.v6 = p.Addr()
		}
	}
	return a
}

// del runs DEL through the list, in reverse order.
func (r *cniRuntime) del(container string, pod *netnstest.Namespace, podName string) {
	r.t.Helper()
	for _, p := range slices.Backward(r.plugins) {
		if _, err := r.exec("DEL", container, pod, podName, p, r.results[container]); err != nil {
			r.t.Fatal(err)
		}
	}
	delete(r.results, container)
}

// podAddrs are a pod's addresses, per family.
type podAddrs struct{ v4, v6 netip.Addr }

func (a podAddrs) all() []netip.Addr {
	var out []netip.Addr
	for _, ip := range []netip.Addr{a.v4, a.v6} {
		if ip.IsValid() {
			out = append(out, ip)
		}
	}
	return out
}

var icmpSeq = regexp.MustCompile(`icmp_seq=(\d+)`)

// ping sends count echo requests 100 ms apart from namespace ns to dst
// with iputils' ping, and returns the sequence numbers (1 to count)
// answered.
func ping(ns string, dst netip.Addr, count int) ([]int, error) {
	out, err := exec.Command("ip", "netns", "exec", ns, "ping", "-n", "-c", strconv.Itoa(count), "-i", "0.1", "-W", "1", dst.String()).CombinedOutput()
	var seqs []int
	for _, m := range icmpSeq.FindAllSubmatch(out, -1) {
		n, _ := strconv.Atoi(string(m[1]))
		if !slices.Contains(seqs, n) {
			seqs = append(seqs, n)
		}
	}
	if len(seqs) == 0 && err != nil {
		if _, ok := err.(*exec.ExitError); !ok {
			return nil, fmt.Errorf("ping %s from %s: %v\n%s", dst, ns, err, out)
		}
	}
	slices.Sort(seqs)
	return seqs, nil
}
