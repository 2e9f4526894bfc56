package kube

import (
	"context"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes/fake"

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
	m, err := New(Options{Client: e.client, NodeName: "self", NetConfPath: path, ConfigPollInterval: 20 * time.Millisecond,
		Logger: slog.New(slog.NewTextHandler(e.logs, nil))})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(m.Close)
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
