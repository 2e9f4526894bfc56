package main

import (
	"bytes"
	"encoding/json"
	"fmt"
	"math/rand/v2"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

// These tests run the plugin as the container runtime does: the binary,
// built once, with CNI_* in the environment and the configuration on
// stdin.

// bin is weft-ipam; announceBin is weft-announce, which the shipped
// conflist chains after flannel's plugin.
var bin, announceBin string

func TestMain(m *testing.M) {
	dir, err := os.MkdirTemp("", "weft-ipam-")
	if err != nil {
		panic(err)
	}
	bin = filepath.Join(dir, "weft-ipam")
	announceBin = filepath.Join(dir, "weft-announce")
	// Static, as CNI plugins are built and shipped: a dynamically linked
	// binary pays for the loader on every one of the runtime's calls.
	for out, pkg := range map[string]string{bin: ".", announceBin: "../weft-announce"} {
		build := exec.Command("go", "build", "-o", out, pkg)
		build.Env = append(os.Environ(), "CGO_ENABLED=0")
		if msg, err := build.CombinedOutput(); err != nil {
			fmt.Fprintf(os.Stderr, "go build %s: %v\n%s", pkg, err, msg)
			os.Exit(1)
		}
	}
	code := m.Run()
	os.RemoveAll(dir)
	os.Exit(code)
}

// network is one network's configuration and store.
type network struct {
	t       testing.TB
	dataDir string
	conf    string
}

// newNetwork writes a subnet.env with the given FLANNEL_SUBNET and returns
// a network on it, with a configuration of the plugin's own form; extra
// is spliced into the "ipam" object.
func newNetwork(t testing.TB, subnet, extra string) *network {
	dir := t.TempDir()
	env := filepath.Join(dir, "subnet.env")
	if err := os.WriteFile(env, []byte("FLANNEL_NETWORK=10.244.0.0/16\nFLANNEL_SUBNET="+subnet+"\nFLANNEL_MTU=1450\nFLANNEL_IPMASQ=false\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	n := &network{t: t, dataDir: filepath.Join(dir, "data")}
	n.conf = fmt.Sprintf(`{"cniVersion": "1.1.0", "name": "cbr0", "ipam": {"type": "weft-ipam", "subnetFile": %q, "dataDir": %q%s}}`, env, n.dataDir, extra)
	return n
}

func (n *network) dir() string { return filepath.Join(n.dataDir, "cbr0") }

// call runs the plugin and returns stdout and the error of the run.
func (n *network) call(command, container, args, conf string) (string, error) {
	cmd := n.command(command, container, args, conf)
	var out, errOut bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errOut
	err := cmd.Run()
	if err != nil && errOut.Len() > 0 {
		err = fmt.Errorf("%w: %s", err, errOut.String())
	}
	return out.String(), err
}

func (n *network) command(command, container, args, conf string) *exec.Cmd {
	if conf == "" {
		conf = n.conf
	}
	cmd := exec.Command(bin)
	cmd.Env = []string{"CNI_COMMAND=" + command, "CNI_CONTAINERID=" + container, "CNI_NETNS=/var/run/netns/" + container,
		"CNI_IFNAME=eth0", "CNI_PATH=/opt/cni/bin", "CNI_ARGS=" + args}
	cmd.Stdin = strings.NewReader(conf)
	return cmd
}

// add runs ADD and returns the addresses of the result.
func (n *network) add(container, args string) []string {
	n.t.Helper()
	out, err := n.call("ADD", container, args, "")
	if err != nil {
		n.t.Fatalf("ADD %s: %v\n%s", container, err, out)
	}
	var r struct {
		CNIVersion string
		IPs        []struct{ Address, Gateway string }
	}
	if err := json.Unmarshal([]byte(out), &r); err != nil {
		n.t.Fatalf("ADD %s: %v\n%s", container, err, out)
	}
	var ips []string
	for _, ip := range r.IPs {
		ips = append(ips, ip.Address)
	}
	return ips
}

func (n *network) del(container string) {
	n.t.Helper()
	if out, err := n.call("DEL", container, "", ""); err != nil {
		n.t.Fatalf("DEL %s: %v\n%s", container, err, out)
	}
}

// reservations reads the store's reservations as host-local would.
func (n *network) reservations() map[string]string {
	n.t.Helper()
	entries, err := os.ReadDir(n.dir())
	if err != nil {
		n.t.Fatal(err)
	}
	out := map[string]string{}
	for _, e := range entries {
		if _, err := netip.ParseAddr(e.Name()); err != nil {
			continue
		}
		data, err := os.ReadFile(filepath.Join(n.dir(), e.Name()))
		if err != nil {
			n.t.Fatal(err)
		}
		out[e.Name()] = string(data)
	}
	return out
}

func podArgs(name string) string {
	return "IgnoreUnknown=1;K8S_POD_NAMESPACE=default;K8S_POD_NAME=" + name + ";K8S_POD_INFRA_CONTAINER_ID=x;K8S_POD_UID=uid-" + name
}

// TestPodRestart is seed 002's second half through the plugin: DEL then
// ADD with the same namespace and name and a new container ID gives the
// same IP. An ADD without a DEL of the last sandbox gets another, the last
// one's being live until its DEL (see TestSecondSandboxGetsItsOwnIP).
func TestPodRestart(t *testing.T) {
	n := newNetwork(t, "10.244.3.1/24", "")
	first := n.add("web-1", podArgs("web"))
	if len(first) != 1 || first[0] != "10.244.3.2/24" {
		t.Fatalf("first ADD: %v", first)
	}
	n.add("other-1", podArgs("other"))
	n.del("web-1")
	n.add("anon-1", "")
	if got := n.add("web-2", podArgs("web")); got[0] != first[0] {
		t.Errorf("after DEL and ADD: %v, want %v", got, first)
	}
	n.del("web-2")
	if got := n.add("web-3", podArgs("web")); got[0] != first[0] {
		t.Errorf("after another restart: %v, want %v", got, first)
	}
	if r := n.reservations(); r["10.244.3.2"] != "web-3\r\neth0" {
		t.Errorf("reservation of the pod's IP: %q", r["10.244.3.2"])
	}
	if _, err := n.call("CHECK", "web-3", podArgs("web"), ""); err != nil {
		t.Errorf("CHECK: %v", err)
	}
	if _, err := n.call("CHECK", "web-1", podArgs("web"), ""); err == nil {
		t.Error("CHECK of the old sandbox passed")
	}
	// DEL on missing state never fails.
	n.del("web-1")
	n.del("never-seen")
}

// TestParallelAdds: 50 plugin processes ADD at once; every IP is distinct
// and the store holds exactly their reservations.
func TestParallelAdds(t *testing.T) {
	n := newNetwork(t, "10.244.3.1/24", "")
	const procs = 50
	ips := make([]string, procs)
	var wg sync.WaitGroup
	for i := range procs {
		wg.Add(1)
		go func() {
			defer wg.Done()
			out, err := n.call("ADD", fmt.Sprintf("c%02d", i), podArgs(fmt.Sprintf("p%02d", i)), "")
			if err != nil {
				t.Errorf("ADD %d: %v", i, err)
				return
			}
			var r struct{ IPs []struct{ Address string } }
			json.Unmarshal([]byte(out), &r)
			if len(r.IPs) == 1 {
				ips[i] = r.IPs[0].Address
			}
		}()
	}
	wg.Wait()
	seen := map[string]int{}
	for i, ip := range ips {
		if j, dup := seen[ip]; dup || ip == "" {
			t.Errorf("containers %d and %d: %q", j, i, ip)
		}
		seen[ip] = i
	}
	r := n.reservations()
	if len(r) != procs {
		t.Errorf("%d reservations, want %d", len(r), procs)
	}
	for i, ip := range ips {
		if got := r[strings.TrimSuffix(ip, "/24")]; got != fmt.Sprintf("c%02d\r\neth0", i) {
			t.Errorf("%s holds %q, want container c%02d", ip, got, i)
		}
	}
}

// TestKillDuringAdd: an ADD killed with SIGKILL at a random point, 100
// times, each followed by the runtime's retry of the ADD. The ADDs are of
// 40 pods, so that most are restarts: the pod's previous sandbox is
// DELeted first, and its ADD then keeps the record and links its
// attachment, while a new pod's record is written into the spare the DEL
// left. At the end every pod's last sandbox holds exactly one IP, the one
// the pod had first; no earlier sandbox holds any, no IP is held twice,
// and the store holds nothing else.
func TestKillDuringAdd(t *testing.T) {
	n := newNetwork(t, "10.244.3.1/24", "")
	// An ADD takes a few milliseconds; kills land anywhere in it. The
	// shortest of a few, as the first runs from a cold cache.
	span := time.Hour
	for range 3 {
		start := time.Now()
		n.add("probe", podArgs("probe"))
		span = min(span, time.Since(start))
		n.del("probe")
	}
	const pods = 40
	first := map[string]string{} // pod -> its first IP
	last := map[string]string{}  // pod -> its last sandbox
	var killed, afterReserve, torn int
	for i := range 100 {
		pod, c := fmt.Sprintf("p%02d", i%pods), fmt.Sprintf("k%03d", i)
		if prev, ok := last[pod]; ok {
			if out, err := n.call("DEL", prev, podArgs(pod), ""); err != nil {
				t.Fatalf("DEL %s: %v\n%s", prev, err, out)
			}
		}
		cmd := n.command("ADD", c, podArgs(pod), "")
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		time.Sleep(time.Duration(rand.Int64N(int64(span))))
		cmd.Process.Signal(syscall.SIGKILL)
		cmd.Wait()
		if ws, ok := cmd.ProcessState.Sys().(syscall.WaitStatus); ok && ws.Signaled() {
			killed++
			for _, h := range n.reservations() {
				switch {
				case h == c+"\r\neth0":
					afterReserve++
				case h == "" || h == c:
					torn++
				}
			}
		}
		ips := n.add(c, podArgs(pod)) // the runtime retries
		if len(ips) != 1 {
			t.Fatalf("ADD %s: %v", c, ips)
		}
		if want, ok := first[pod]; ok && ips[0] != want {
			t.Errorf("pod %s restarted as %s got %s, want its %s", pod, c, ips[0], want)
		} else if !ok {
			first[pod] = ips[0]
		}
		last[pod] = c
	}
	t.Logf("%d of 100 ADDs killed, %d of them after reserving, %d mid-write (an ADD takes about %v)",
		killed, afterReserve, torn, span.Round(time.Microsecond))
	r := n.reservations()
	holders := map[string]string{}
	for ip, h := range r {
		if other, dup := holders[h]; dup {
			t.Errorf("%q holds %s and %s", h, other, ip)
		}
		holders[h] = ip
	}
	for pod, c := range last {
		if ip, ok := holders[c+"\r\neth0"]; !ok || ip+"/24" != first[pod] {
			t.Errorf("pod %s's last sandbox %s holds %q, want %s", pod, c, ip, first[pod])
		}
	}
	if len(r) != pods {
		t.Errorf("%d reservations for %d sandboxes: %v", len(r), pods, r)
	}
	entries, _ := os.ReadDir(n.dir())
	for _, e := range entries {
		if strings.Contains(e.Name(), ".tmp") {
			t.Errorf("temporary file %s left after the next ADD", e.Name())
		}
	}
}

// TestErrors: failures are CNI error results with a code and a message
// naming what to fix.
func TestErrors(t *testing.T) {
	n := newNetwork(t, "10.244.3.1/30", "") // one address: .2
	n.add("c1", "")
	for _, tc := range []struct {
		name, command, conf string
		code                int
		msg                 string
	}{
		{"exhausted", "ADD", "", 11, "no IP addresses available in range 10.244.3.0/30"},
		{"status when full", "STATUS", "", 50, "no IP addresses available in range 10.244.3.0/30"},
		{"not JSON", "ADD", `{"name":`, 6, "network config"},
		{"bad hintTTL", "ADD", strings.Replace(n.conf, `"type": "weft-ipam"`, `"type": "weft-ipam", "hintTTL": "soon"`, 1), 7, `ipam.hintTTL "soon"`},
		{"bad range", "ADD", strings.Replace(n.conf, `"type": "weft-ipam"`, `"type": "weft-ipam", "ranges": [[{"subnet": "10.244.3.0"}]]`, 1), 7, `ipam.ranges[0][0].subnet "10.244.3.0" is not a CIDR`},
		{"no subnet file", "ADD", strings.Replace(n.conf, "subnet.env", "missing.env", 1), 7, "missing.env"},
	} {
		out, err := n.call(tc.command, "c2", "", tc.conf)
		var e struct {
			Code uint
			Msg  string
		}
		json.Unmarshal([]byte(out), &e)
		if err == nil || e.Code != uint(tc.code) || !strings.Contains(e.Msg, tc.msg) {
			t.Errorf("%s: %v, result %s; want code %d and %q", tc.name, err, out, tc.code, tc.msg)
		}
	}
	// DEL works even without the subnet file.
	if _, err := n.call("DEL", "c1", "", strings.Replace(n.conf, "subnet.env", "missing.env", 1)); err != nil {
		t.Errorf("DEL without the subnet file: %v", err)
	}
	if _, err := n.call("STATUS", "", "", ""); err != nil {
		t.Errorf("STATUS with a free address: %v", err)
	}
}

// TestGCAndVersion: GC releases all but the valid attachments; VERSION
// lists spec versions up to 1.1.0.
func TestGCAndVersion(t *testing.T) {
	n := newNetwork(t, "10.244.3.1/24", "")
	for _, c := range []string{"a", "b", "c"} {
		n.add(c, podArgs(c))
	}
	gc := strings.Replace(n.conf, `"ipam"`, `"cni.dev/valid-attachments": [{"containerID": "b", "ifname": "eth0"}], "ipam"`, 1)
	if out, err := n.call("GC", "", "", gc); err != nil {
		t.Fatalf("GC: %v\n%s", err, out)
	}
	if r := n.reservations(); len(r) != 1 || r["10.244.3.3"] != "b\r\neth0" {
		t.Errorf("after GC: %v", r)
	}
	out, err := n.call("VERSION", "", "", `{"cniVersion": "1.1.0"}`)
	if err != nil || !strings.Contains(out, `"1.1.0"`) || !strings.Contains(out, `"0.3.1"`) {
		t.Errorf("VERSION: %v %s", err, out)
	}
}

// TestDualStack: one IP per family from subnet.env's two subnets.
func TestDualStack(t *testing.T) {
	n := newNetwork(t, "10.244.3.1/24", "")
	env := filepath.Join(filepath.Dir(n.dataDir), "subnet.env")
	os.WriteFile(env, []byte("FLANNEL_NETWORK=10.244.0.0/16\nFLANNEL_SUBNET=10.244.3.1/24\nFLANNEL_IPV6_NETWORK=fd00::/56\nFLANNEL_IPV6_SUBNET=fd00:0:0:3::1/64\nFLANNEL_MTU=1450\nFLANNEL_IPMASQ=false\n"), 0o644)
	if got := strings.Join(n.add("c1", ""), " "); got != "10.244.3.2/24 fd00:0:0:3::2/64" {
		t.Errorf("dual-stack ADD: %s", got)
	}
}
