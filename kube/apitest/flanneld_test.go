package apitest_test

import (
	"encoding/json"
	"fmt"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/clientcmd"
	clientcmdapi "k8s.io/client-go/tools/clientcmd/api"

	"github.com/weftnet/weft/internal/daemontest"
	"github.com/weftnet/weft/internal/netnstest"
	"github.com/weftnet/weft/internal/testutil"
)

func TestMain(m *testing.M) {
	code := m.Run()
	daemontest.RemoveBuilt()
	os.Exit(code)
}

// kubeconfig writes a kubeconfig for server that authenticates as the
// admin and acts as user (impersonation), trusting the test server's CA
// under its own name.
func kubeconfig(t testing.TB, admin *rest.Config, server, user string, groups ...string) string {
	t.Helper()
	u, err := url.Parse(admin.Host)
	if err != nil {
		t.Fatal(err)
	}
	ca := admin.TLSClientConfig.CAData
	if len(ca) == 0 {
		if ca, err = os.ReadFile(admin.TLSClientConfig.CAFile); err != nil {
			t.Fatal(err)
		}
	}
	cfg := clientcmdapi.NewConfig()
	name := admin.TLSClientConfig.ServerName // the loopback config's own name
	if name == "" {
		name = u.Hostname()
	}
	cfg.Clusters["test"] = &clientcmdapi.Cluster{Server: "https://" + server, CertificateAuthorityData: ca, TLSServerName: name}
	cfg.AuthInfos["test"] = &clientcmdapi.AuthInfo{Token: admin.BearerToken, Impersonate: user, ImpersonateGroups: groups}
	cfg.Contexts["test"] = &clientcmdapi.Context{Cluster: "test", AuthInfo: "test"}
	cfg.CurrentContext = "test"
	path := filepath.Join(t.TempDir(), "kubeconfig")
	if err := clientcmd.WriteToFile(*cfg, path); err != nil {
		t.Fatal(err)
	}
	return path
}

// kubeMode is what the kube-mode daemon tests share: a kube-apiserver with
// the shipped RBAC, the flanneld binary, two hosts for daemons, and a
// kubeconfig as flanneld's service account reaching the API server through
// a third host.
func kubeMode(t *testing.T) (c *cluster, bin string, h1, h2 *netnstest.Host, kc string) {
	t.Helper()
	netnstest.RequirePrivileged(t)
	c = newCluster(t)
	bin = daemontest.Flanneld(t)
	seg := netnstest.NewSegment(t, 3)
	ctl := seg.Hosts[0]
	target, err := url.Parse(c.srv.Admin.Host)
	if err != nil {
		t.Fatal(err)
	}
	c.proxy = newProxy(t, ctl, target.Host)
	server := c.proxy.addr
	for _, f := range []string{"namespace.yaml", "rbac.yaml"} {
		apply(t, c.admin, f)
	}
	kc = kubeconfig(t, c.srv.Admin, server, "system:serviceaccount:kube-flannel:flannel",
		"system:serviceaccounts", "system:serviceaccounts:kube-flannel", "system:authenticated")
	return c, bin, seg.Hosts[1], seg.Hosts[2], kc
}

// TestFlanneldKubeMode is seed 004 with processes: two flanneld daemons in
// kube mode, as the service account of examples/manifests, talk to a real
// kube-apiserver. One node has no PodCIDR: its daemon does not exit, it
// answers /readyz with "waiting for PodCIDR" and logs the fix. Once the
// PodCIDR is assigned, it proceeds without a restart: both write
// subnet.env, set NetworkUnavailable=False, and carry traffic between
// their pods' subnets over VXLAN.
func TestFlanneldKubeMode(t *testing.T) {
	c, bin, h1, h2, kc := kubeMode(t)
	s := c.scope(t, "e2e", `{"Network": "10.120.0.0/16", "Backend": {"Type": "vxlan"}}`)
	s.createNode(h1.Name, "10.120.1.0/24")
	s.createNode(h2.Name)
	// h1's Node already publishes a VTEP MAC (as after flannel ran there):
	// the daemon keeps it.
	const annotatedMAC = "0e:11:22:33:44:55"
	s.patchNode(h1.Name, `{"metadata":{"annotations":{"flannel.alpha.coreos.com/backend-data":"{\"VNI\":1,\"VtepMAC\":\"`+annotatedMAC+`\"}"}}}`)

	dir := t.TempDir()
	start := func(h *netnstest.Host) *daemontest.Daemon {
		return daemontest.Start(t, h, bin, filepath.Join(dir, h.Name, "subnet.env"),
			"--kube-subnet-mgr", "--kubeconfig-file", kc, "--net-config-path", s.netConf, "--resync-interval", "2s")
	}
	a, b := start(h1), start(h2)
	a.WaitReady()
	testutil.WaitFor(t, 20*time.Second, "the waiting node to say why", func() bool {
		code, body := b.Readyz()
		return code == http.StatusServiceUnavailable && strings.Contains(body, "waiting for PodCIDR")
	})
	for _, want := range []string{"has no PodCIDR yet", "--allocate-node-cidrs=true", "kubectl patch node " + h2.Name} {
		if !strings.Contains(b.Out.String(), want) {
			t.Errorf("the waiting daemon's log lacks %q", want)
		}
	}
	if b.Cmd.ProcessState != nil {
		t.Fatalf("the daemon without a PodCIDR exited: %v", b.Cmd.ProcessState)
	}

	s.patchNode(h2.Name, `{"spec":{"podCIDR":"10.120.2.0/24","podCIDRs":["10.120.2.0/24"]}}`)
	b.WaitReady()
	a.WaitPeers(1)
	b.WaitPeers(1)
	if got := b.Env().Subnet.String(); got != "10.120.2.0/24" {
		t.Errorf("subnet.env of the late node: %s", got)
	}
	for _, pair := range [][2]*daemontest.Daemon{{a, b}, {b, a}} {
		if err := daemontest.Reach(t, pair[0], pair[1]); err != nil {
			t.Fatalf("%s -> %s: %v", pair[0].Host.Name, pair[1].Host.Name, err)
		}
	}
	for _, h := range []*netnstest.Host{h1, h2} {
		testutil.WaitFor(t, 20*time.Second, h.Name+"'s NetworkUnavailable=False", func() bool {
			for _, cond := range s.node(h.Name).Status.Conditions {
				if cond.Type == corev1.NodeNetworkUnavailable && cond.Status == corev1.ConditionFalse {
					return true
				}
			}
			return false
		})
	}
	if link, err := h1.Netlink().LinkByName("flannel.1"); err != nil || link.Attrs().HardwareAddr.String() != annotatedMAC {
		t.Errorf("h1's VTEP: %v, want the annotated MAC %s", link, annotatedMAC)
	}
	if !strings.Contains(a.Out.String(), "keeping the VTEP MAC published for this node") {
		t.Error("no log line says the annotated MAC is kept")
	}
	_, metrics := a.Get("/metrics")
	if !strings.Contains(metrics, "weft_apiserver_errors_total 0") {
		t.Errorf("metrics lack weft_apiserver_errors_total 0:\n%s", grep(metrics, "weft_"))
	}
	// Every line of both logs, client-go's included, in the one format.
	for _, d := range []*daemontest.Daemon{a, b} {
		if bad := daemontest.OtherFormats(d.Out.String()); len(bad) != 0 {
			t.Errorf("%s: log lines not in the log's format:\n%s", d.Host.Name, strings.Join(bad, "\n"))
		}
	}
}

// TestFlanneldNodeNameFromPod: as the upstream kube-flannel.yml runs it,
// with POD_NAME and POD_NAMESPACE and no NODE_NAME or --node-name, the
// daemon takes its node's name from its Pod's spec.nodeName, with the
// shipped RBAC, and comes up as that node. The flannel variables it does
// not need are accepted.
func TestFlanneldNodeNameFromPod(t *testing.T) {
	c, bin, h1, _, kc := kubeMode(t)
	s := c.scope(t, "podname", `{"Network": "10.122.0.0/16", "Backend": {"Type": "vxlan"}}`)
	s.createNode(h1.Name, "10.122.1.0/24")
	if _, err := c.admin.CoreV1().Pods("kube-flannel").Create(ctxFor(t, 10*time.Second), &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{Name: "kube-flannel-ds-podname", Namespace: "kube-flannel"},
		Spec:       corev1.PodSpec{NodeName: h1.Name, Containers: []corev1.Container{{Name: "kube-flannel", Image: "weft-flanneld:dev"}}},
	}, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	d := daemontest.StartEnv(t, h1, bin, filepath.Join(t.TempDir(), "subnet.env"),
		[]string{"POD_NAME=kube-flannel-ds-podname", "POD_NAMESPACE=kube-flannel", "EVENT_QUEUE_DEPTH=5000", "CONT_WHEN_CACHE_NOT_READY=false"},
		"--ip-masq", "--kube-subnet-mgr", "--kubeconfig-file", kc, "--net-config-path", s.netConf)
	d.WaitReady()
	if got := d.Env().Subnet.Masked().String(); got != "10.122.1.0/24" {
		t.Errorf("subnet.env: %s, want the Node's PodCIDR", got)
	}
	if !strings.Contains(d.Out.String(), "node name from this agent's Pod") || !strings.Contains(d.Out.String(), "node="+h1.Name) {
		t.Errorf("the node name did not come from the Pod:\n%s", d.Out)
	}
}

func grep(s, sub string) string {
	var out []string
	for _, l := range strings.Split(s, "\n") {
		if strings.Contains(l, sub) {
			out = append(out, l)
		}
	}
	return fmt.Sprint(out)
}

// TestFlanneldKubeSpoofedAnnotations: a Node's own credentials can edit its
// own annotations, so a compromised node can claim another node's VTEP MAC
// or public IP there. Two flanneld daemons in kube mode run; a younger
// Node then claims one daemon's MAC, then the other's address (as its
// public-ip, then as a public-ip-overwrite). Every claim is rejected on
// both daemons, by rule, while both stay ready, route only to each other,
// and pass traffic; once the claims are withdrawn the node is a peer.
func TestFlanneldKubeSpoofedAnnotations(t *testing.T) {
	c, bin, h1, h2, kc := kubeMode(t)
	s := c.scope(t, "spoof", `{"Network": "10.121.0.0/16", "Backend": {"Type": "vxlan"}}`)
	s.createNode(h1.Name, "10.121.1.0/24")
	s.createNode(h2.Name, "10.121.2.0/24")
	dir := t.TempDir()
	start := func(h *netnstest.Host) *daemontest.Daemon {
		return daemontest.Start(t, h, bin, filepath.Join(dir, h.Name, "subnet.env"),
			"--kube-subnet-mgr", "--kubeconfig-file", kc, "--net-config-path", s.netConf, "--resync-interval", "2s")
	}
	a, b := start(h1), start(h2)
	for _, d := range []*daemontest.Daemon{a, b} {
		d.WaitReady()
		d.WaitPeers(1)
	}
	macOf := func(h *netnstest.Host) string {
		link, err := h.Netlink().LinkByName("flannel.1")
		if err != nil {
			t.Fatal(err)
		}
		return link.Attrs().HardwareAddr.String()
	}
	// Seniority is the Node's creation time, in seconds: the spoofer is
	// created in a later second than the honest nodes. Its PodCIDR sorts
	// before theirs, so that only seniority, not the key order that breaks
	// ties, can make it lose.
	time.Sleep(1100 * time.Millisecond)
	const spoofer = "spoofer-node"
	s.createNode(spoofer, "10.121.0.0/24")
	ann := func(kv map[string]string) {
		t.Helper()
		m := map[string]any{}
		for k, v := range kv {
			if v == "" {
				m["flannel.alpha.coreos.com/"+k] = nil
			} else {
				m["flannel.alpha.coreos.com/"+k] = v
			}
		}
		patch, _ := json.Marshal(map[string]any{"metadata": map[string]any{"annotations": m}})
		s.patchNode(spoofer, string(patch))
	}
	bd := func(mac string) string { return `{"VNI":1,"VtepMAC":"` + mac + `"}` }

	ready := daemontest.WatchReady(a, b)
	// b sees its own address claimed as a local address (public-ip);
	// everyone else, as another node's (identity-conflict).
	for _, claim := range []struct {
		name     string
		ann      map[string]string
		onA, onB string
	}{
		{"a's VTEP MAC", map[string]string{"kube-subnet-manager": "true", "backend-type": "vxlan", "public-ip": "172.30.0.77", "backend-data": bd(macOf(h1))}, "identity-conflict", "identity-conflict"},
		{"b's public IP", map[string]string{"public-ip": h2.Addr.Addr().String(), "backend-data": bd("0e:00:00:00:77:01")}, "identity-conflict", "public-ip"},
		{"b's public IP as an overwrite", map[string]string{"public-ip": "172.30.0.77", "public-ip-overwrite": h2.Addr.Addr().String()}, "identity-conflict", "public-ip"},
	} {
		ann(claim.ann)
		for _, d := range []*daemontest.Daemon{a, b} {
			want := `weft_peers_rejected{reason="` + claim.onA + `"} 1`
			if d == b {
				want = `weft_peers_rejected{reason="` + claim.onB + `"} 1`
			}
			testutil.WaitFor(t, 20*time.Second, claim.name+": "+d.Host.Name+" to reject it", func() bool {
				_, body := d.Get("/metrics")
				return strings.Contains(body, want)
			})
			if out, err := exec.Command("ip", "-n", d.Host.Name, "route", "show", "proto", "157").CombinedOutput(); err != nil || strings.Count(strings.TrimSpace(string(out)), "\n") != 0 || strings.Contains(string(out), "10.121.0.0/24") {
				t.Errorf("%s: %s routes %q, want its one honest peer", claim.name, d.Host.Name, out)
			}
		}
		for _, pair := range [][2]*daemontest.Daemon{{a, b}, {b, a}} {
			if err := daemontest.Reach(t, pair[0], pair[1]); err != nil {
				t.Fatalf("%s: %s -> %s: %v", claim.name, pair[0].Host.Name, pair[1].Host.Name, err)
			}
		}
		if fdb, _ := exec.Command("bridge", "-n", h1.Name, "fdb", "show", "dev", "flannel.1").CombinedOutput(); strings.Contains(string(fdb), "172.30.0.77") {
			t.Errorf("%s: an FDB entry points at the spoofer's address:\n%s", claim.name, fdb)
		}
	}
	// Claims withdrawn: the node, with its own identity, is a peer.
	ann(map[string]string{"public-ip": "172.30.0.77", "public-ip-overwrite": "", "backend-data": bd("0e:00:00:00:77:02")})
	for _, d := range []*daemontest.Daemon{a, b} {
		d.WaitPeers(2)
	}
	ready.Check(t, "a daemon was not ready")
}
