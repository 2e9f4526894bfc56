package kube

import (
	"context"
	"encoding/json"
	"errors"
	"io"
	"log/slog"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/client-go/kubernetes/fake"
	clienttesting "k8s.io/client-go/testing"

	"github.com/weftnet/weft/internal/leasetest"
	"github.com/weftnet/weft/internal/testutil"
	"github.com/weftnet/weft/lease"
)

const testNetConf = `{"Network": "10.244.0.0/16", "Backend": {"Type": "vxlan"}}`

// fakeEnv is a Manager on the fake clientset, for the package's logic; the
// nested module kube/apitest runs the same against a real kube-apiserver.
type fakeEnv struct {
	client *fake.Clientset
	m      *Manager
	logs   *testutil.SyncBuffer
}

func newFakeEnv(t *testing.T, netConf string, nodes ...*corev1.Node) *fakeEnv {
	t.Helper()
	path := filepath.Join(t.TempDir(), "net-conf.json")
	if err := os.WriteFile(path, []byte(netConf), 0o644); err != nil {
		t.Fatal(err)
	}
	e := &fakeEnv{client: fake.NewClientset(), logs: &testutil.SyncBuffer{}}
	for _, n := range nodes {
		e.create(t, n)
	}
	m, err := New(Options{Nodes: WithoutWatchList(e.client.CoreV1().Nodes()), NodeName: "self", NetConfPath: path, ConfigPollInterval: 20 * time.Millisecond,
		Logger: slog.New(slog.NewTextHandler(e.logs, nil))})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { m.Close() })
	e.m = m
	return e
}

func (e *fakeEnv) create(t *testing.T, n *corev1.Node) {
	t.Helper()
	if _, err := e.client.CoreV1().Nodes().Create(context.Background(), n, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
}

func (e *fakeEnv) update(t *testing.T, name string, change func(*corev1.Node)) {
	t.Helper()
	n, err := e.client.CoreV1().Nodes().Get(context.Background(), name, metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	change(n)
	if _, err := e.client.CoreV1().Nodes().Update(context.Background(), n, metav1.UpdateOptions{}); err != nil {
		t.Fatal(err)
	}
}

func testAttrs() lease.Attrs {
	return lease.Attrs{PublicIP: mustAddr("192.0.2.1"), BackendType: "vxlan", BackendData: []byte(`{"VNI":1,"VtepMAC":"0e:00:00:00:00:01"}`)}
}

// TestAcquireWaitsForPodCIDR is seed 004: the node has no PodCIDR. Acquire
// waits instead of failing, says why in Stats and in one actionable log
// line, and proceeds as soon as a PodCIDR is assigned.
func TestAcquireWaitsForPodCIDR(t *testing.T) {
	e := newFakeEnv(t, testNetConf, nodeWith("self", ""))
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	got := make(chan lease.Lease, 1)
	go func() {
		l, err := e.m.Acquire(ctx, lease.AcquireRequest{Attrs: testAttrs()})
		if err != nil {
			t.Error(err)
		}
		got <- l
	}()
	testutil.WaitFor(t, 10*time.Second, "the wait to be reported", func() bool {
		return e.m.Stats().Condition == "waiting for PodCIDR"
	})
	for _, want := range []string{"--allocate-node-cidrs=true", "--cluster-cidr", "--pod-network-cidr", "must equal or contain",
		`kubectl patch node self -p '{\"spec\":{\"podCIDR\":\"<cidr>\"}}'`, "network=10.244.0.0/16"} {
		if !strings.Contains(e.logs.String(), want) {
			t.Errorf("the log lacks %q:\n%s", want, e.logs)
		}
	}
	e.update(t, "self", func(n *corev1.Node) { n.Spec.PodCIDR = "10.244.7.0/24" })
	select {
	case l := <-got:
		if l.Key.IPv4.String() != "10.244.7.0/24" || l.Attrs.Owner != "self" || !l.Attrs.PublicIP.IsValid() {
			t.Errorf("lease %+v", l)
		}
	case <-ctx.Done():
		t.Fatal("Acquire did not proceed once the PodCIDR was assigned")
	}
	if c := e.m.Stats().Condition; c != "" {
		t.Errorf("condition %q after acquiring", c)
	}
	if n := strings.Count(e.logs.String(), "has no PodCIDR yet"); n != 1 {
		t.Errorf("the wait was logged %d times, want once (at most once a minute)", n)
	}
	n, _ := e.client.CoreV1().Nodes().Get(ctx, "self", metav1.GetOptions{})
	if n.Annotations["flannel.alpha.coreos.com/kube-subnet-manager"] != "true" || n.Annotations["flannel.alpha.coreos.com/public-ip"] != "192.0.2.1" {
		t.Errorf("annotations after Acquire: %v", n.Annotations)
	}
}

// TestAcquireOutsideNetwork: a PodCIDR outside the Network is reported
// naming both, and waited out until it is fixed.
func TestAcquireOutsideNetwork(t *testing.T) {
	e := newFakeEnv(t, testNetConf, nodeWith("self", "172.18.1.0/24"))
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	done := make(chan error, 1)
	go func() { _, err := e.m.Acquire(ctx, lease.AcquireRequest{Attrs: testAttrs()}); done <- err }()
	testutil.WaitFor(t, 10*time.Second, "the mismatch to be reported", func() bool {
		c := e.m.Stats().Condition
		return strings.Contains(c, "172.18.1.0/24") && strings.Contains(c, "10.244.0.0/16")
	})
	select {
	case err := <-done:
		t.Fatalf("Acquire returned %v instead of waiting", err)
	default:
	}
	cancel()
	if err := <-done; err != context.Canceled {
		t.Errorf("Acquire returned %v after cancel", err)
	}
}

// TestAcquireSharedPodCIDR: this node's PodCIDR is also an older Node's.
// Every peer keeps the older's lease (see TestWatchLeasesSharedPodCIDR),
// so this node waits, naming the other Node, until the clash ends; a
// younger Node with the same PodCIDR does not stop this one, nor does an
// even older Node that publishes no lease and so is no peer anywhere.
func TestAcquireSharedPodCIDR(t *testing.T) {
	self, older, younger := nodeWith("self", "10.244.7.0/24"), leasedNode("older", "10.244.7.0/24"), leasedNode("younger", "10.244.7.0/25")
	oldest := nodeWith("oldest-no-lease", "10.244.7.0/24")
	self.CreationTimestamp = metav1.Unix(1_700_000_100, 0)
	older.CreationTimestamp = metav1.Unix(1_700_000_000, 0)
	younger.CreationTimestamp = metav1.Unix(1_700_000_200, 0)
	oldest.CreationTimestamp = metav1.Unix(1_600_000_000, 0)
	e := newFakeEnv(t, testNetConf, self, older, younger, oldest)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	done := make(chan error, 1)
	go func() { _, err := e.m.Acquire(ctx, lease.AcquireRequest{Attrs: testAttrs()}); done <- err }()
	testutil.WaitFor(t, 10*time.Second, "the shared PodCIDR to be reported", func() bool {
		c := e.m.Stats().Condition
		// The condition is set before the line is logged: wait for both.
		return strings.Contains(c, "10.244.7.0/24") && strings.Contains(c, "Node older's") && strings.Contains(e.logs.String(), "older_node=")
	})
	if logs := e.logs.String(); !strings.Contains(logs, "older_node=older\n") || strings.Contains(logs, "older_node=younger") || strings.Contains(logs, "older_node=oldest") {
		t.Errorf("the log does not name the older node alone:\n%s", e.logs)
	}
	select {
	case err := <-done:
		t.Fatalf("Acquire returned %v instead of waiting", err)
	default:
	}
	cancel()
	<-done
	// The clash ends: the older Node gets another PodCIDR.
	e.update(t, "older", func(n *corev1.Node) { n.Spec.PodCIDR = "10.244.8.0/24" })
	testutil.WaitFor(t, 10*time.Second, "the cache to see the fix", func() bool {
		n, err := e.m.lister.Get("older")
		return err == nil && n.Spec.PodCIDR == "10.244.8.0/24"
	})
	l, err := e.m.Acquire(ctxFor(t, 10*time.Second), lease.AcquireRequest{Attrs: testAttrs()})
	if err != nil || l.Key.IPv4 != netip.MustParsePrefix("10.244.7.0/24") {
		t.Fatalf("after the fix: %v, %v", l.Key, err)
	}
}

// leasedNode is a Node with podCIDR that publishes an IPv4 lease.
func leasedNode(name, podCIDR string) *corev1.Node {
	n := nodeWith(name, podCIDR)
	n.Annotations = map[string]string{}
	for k, v := range (annotations{DefaultAnnotationPrefix}).encode(lease.Attrs{PublicIP: mustAddr("192.0.2.9"), BackendType: "vxlan", BackendData: []byte(`{"VNI":1}`)}) {
		if v != nil {
			n.Annotations[k] = *v
		}
	}
	return n
}

var discard = slog.New(slog.NewTextHandler(io.Discard, nil))

func writeNetConf(t testing.TB, conf string) string {
	path := filepath.Join(t.TempDir(), "net-conf.json")
	if err := os.WriteFile(path, []byte(conf), 0o644); err != nil {
		t.Fatal(err)
	}
	return path
}

// TestPublishRetriesConflicts: a patch refused for a conflict (the node
// changed since it was read) is computed again from a fresh read, and
// every patch carries the resourceVersion it was computed from. The fake
// clientset does not check resourceVersions, so the conflict is injected.
func TestPublishRetriesConflicts(t *testing.T) {
	n := nodeWith("self", "10.244.7.0/24")
	n.ResourceVersion = "7" // as a real API server sets; the fake leaves it as given
	e := newFakeEnv(t, testNetConf, n)
	var patches []string
	conflicts := 1
	e.client.PrependReactor("patch", "nodes", func(a clienttesting.Action) (bool, runtime.Object, error) {
		p := a.(clienttesting.PatchAction)
		patches = append(patches, string(p.GetPatch()))
		if conflicts > 0 {
			conflicts--
			return true, nil, apierrors.NewConflict(corev1.Resource("nodes"), "self", errors.New("the object has been modified"))
		}
		return false, nil, nil
	})
	l, err := e.m.Acquire(ctxFor(t, 30*time.Second), lease.AcquireRequest{Attrs: testAttrs()})
	if err != nil {
		t.Fatal(err)
	}
	if len(patches) != 2 {
		t.Fatalf("%d patches, want 2 (one refused, one retried): %v", len(patches), patches)
	}
	for _, p := range patches {
		var body struct {
			Metadata struct {
				ResourceVersion string            `json:"resourceVersion"`
				Annotations     map[string]string `json:"annotations"`
			} `json:"metadata"`
		}
		if err := json.Unmarshal([]byte(p), &body); err != nil || body.Metadata.ResourceVersion == "" {
			t.Errorf("patch without a resourceVersion precondition: %s", p)
		}
		if _, ok := body.Metadata.Annotations["flannel.alpha.coreos.com/public-ip"]; !ok || len(body.Metadata.Annotations) > 6 {
			t.Errorf("patch %s does not carry exactly the owned annotations", p)
		}
	}
	if l.Key.IPv4.String() != "10.244.7.0/24" {
		t.Errorf("lease %v", l.Key)
	}
	n, _ = e.client.CoreV1().Nodes().Get(context.Background(), "self", metav1.GetOptions{})
	if n.Annotations["flannel.alpha.coreos.com/public-ip"] != "192.0.2.1" {
		t.Errorf("annotations %v", n.Annotations)
	}
}

// TestHints reads node-public-ip and the published backend data.
func TestHints(t *testing.T) {
	n := nodeWith("self", "10.244.7.0/24")
	n.Annotations = map[string]string{
		"flannel.alpha.coreos.com/node-public-ip": "192.0.2.44",
		"flannel.alpha.coreos.com/backend-data":   `{"VNI":1,"VtepMAC":"0e:aa:bb:cc:dd:ee"}`,
	}
	e := newFakeEnv(t, testNetConf, n)
	h, err := e.m.Hints(ctxFor(t, 10*time.Second))
	if err != nil || h.PublicIP != mustAddr("192.0.2.44") || string(h.BackendData) != n.Annotations["flannel.alpha.coreos.com/backend-data"] || h.PublicIPv6.IsValid() || h.BackendV6Data != nil {
		t.Errorf("hints %+v, %v", h, err)
	}
	e.update(t, "self", func(n *corev1.Node) { n.Annotations["flannel.alpha.coreos.com/node-public-ipv6"] = "192.0.2.1" })
	if _, err := e.m.Hints(ctxFor(t, 10*time.Second)); err == nil || !strings.Contains(err.Error(), "node-public-ipv6") || !errors.Is(err, lease.ErrInvalidAttrs) {
		t.Errorf("a v4 address in node-public-ipv6: %v", err)
	}
}

var ctxFor = testutil.Context

// TestWatchConfigFile: net-conf.json is sent, then each change of it; a
// broken file is logged naming it, and the last good config stays.
func TestWatchConfigFile(t *testing.T) {
	e := newFakeEnv(t, testNetConf)
	w := leasetest.WatchConfig(t, e.m)
	if c := w.Next(t); c.Network.String() != "10.244.0.0/16" {
		t.Fatalf("first config %v", c.Network)
	}
	if err := os.WriteFile(e.m.confPath, []byte(`{"Network": "10.244.0.0/`), 0o644); err != nil {
		t.Fatal(err)
	}
	testutil.WaitFor(t, 10*time.Second, "the broken file to be logged", func() bool {
		return strings.Contains(e.logs.String(), "cannot use the network config") && strings.Contains(e.logs.String(), e.m.confPath)
	})
	if err := os.WriteFile(e.m.confPath, []byte(`{"Network": "10.0.0.0/8"}`), 0o644); err != nil {
		t.Fatal(err)
	}
	if c := w.Next(t); c.Network.String() != "10.0.0.0/8" {
		t.Fatalf("changed config %v", c.Network)
	}
	select {
	case c := <-w.C:
		t.Errorf("an extra config was sent: %v", c.Network)
	case <-time.After(200 * time.Millisecond):
	}
}

// TestUnwrappedFakeIsReported: client-go's typed fake, passed as it is,
// cannot stream the informer's first listing. The Manager says so, as its
// condition and in the log, instead of waiting in silence; wrapped with
// WithoutWatchList, the same fake works (every other test here).
func TestUnwrappedFakeIsReported(t *testing.T) {
	old := syncWarnAfter
	syncWarnAfter = 300 * time.Millisecond
	t.Cleanup(func() { syncWarnAfter = old })
	path := filepath.Join(t.TempDir(), "net-conf.json")
	if err := os.WriteFile(path, []byte(testNetConf), 0o644); err != nil {
		t.Fatal(err)
	}
	logs := &testutil.SyncBuffer{}
	m, err := New(Options{Nodes: fake.NewClientset().CoreV1().Nodes(), NodeName: "self", NetConfPath: path, Logger: slog.New(slog.NewTextHandler(logs, nil))})
	if err != nil {
		t.Fatal(err)
	}
	defer m.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	ch := make(chan lease.Batch, 1)
	done := make(chan error, 1)
	go func() { done <- m.WatchLeases(ctx, ch) }()
	testutil.WaitFor(t, 5*time.Second, "the wait reported", func() bool {
		return strings.Contains(m.Condition(), "has not arrived") && strings.Contains(logs.String(), "see kube.NodeClient")
	})
	select {
	case b := <-ch:
		t.Fatalf("a batch arrived through the unwrapped fake: %+v; the test no longer shows the problem the warning is for", b)
	default:
	}
	cancel()
	<-done
}
