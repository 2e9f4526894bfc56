package chart_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net/netip"
	"os"
	"path/filepath"
	"slices"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/discovery"
	"k8s.io/client-go/discovery/cached/memory"
	"k8s.io/client-go/dynamic"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/restmapper"

	"github.com/weftnet/weft/internal/testutil"
	"github.com/weftnet/weft/kube"
	"github.com/weftnet/weft/kube/apitest"
	"github.com/weftnet/weft/lease"
)

func ctxFor(t *testing.T, d time.Duration) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), d)
	t.Cleanup(cancel)
	return ctx
}

// applier applies objects server-side, as helm 4 and kubectl apply
// --server-side do, with strict field validation: a misspelt field fails.
type applier struct {
	dyn    dynamic.Interface
	mapper *restmapper.DeferredDiscoveryRESTMapper
}

func newApplier(t *testing.T, s *apitest.Server) applier {
	t.Helper()
	dyn, err := dynamic.NewForConfig(s.Admin)
	if err != nil {
		t.Fatal(err)
	}
	dc, err := discovery.NewDiscoveryClientForConfig(s.Admin)
	if err != nil {
		t.Fatal(err)
	}
	return applier{dyn, restmapper.NewDeferredDiscoveryRESTMapper(memory.NewMemCacheClient(dc))}
}

// apply applies obj, as a dry run if asked, and returns the resource it
// went to.
func (a applier) apply(t *testing.T, ctx context.Context, obj *unstructured.Unstructured, dryRun bool) dynamic.ResourceInterface {
	t.Helper()
	gvk := obj.GroupVersionKind()
	m, err := a.mapper.RESTMapping(gvk.GroupKind(), gvk.Version)
	if err != nil {
		t.Fatalf("%s: %v", gvk, err)
	}
	force := true
	opts := metav1.PatchOptions{FieldManager: "weft-chart-test", Force: &force, FieldValidation: "Strict"}
	if dryRun {
		opts.DryRun = []string{metav1.DryRunAll}
	}
	body, err := obj.MarshalJSON()
	if err != nil {
		t.Fatal(err)
	}
	r := a.dyn.Resource(m.Resource).Namespace(obj.GetNamespace())
	if _, err := r.Patch(ctx, obj.GetName(), types.ApplyPatchType, body, opts); err != nil {
		t.Fatalf("applying %s %s (dry run %v): %v", gvk.Kind, obj.GetName(), dryRun, err)
	}
	return r
}

// applyAll applies objs as a strict dry run, which runs validation and
// admission without storing anything, then for real; the objects read
// back after. A namespace the chart does not create is made first, as
// the operator who set createNamespace=false made it.
func (a applier) applyAll(t *testing.T, s *apitest.Server, objs []*unstructured.Unstructured) {
	t.Helper()
	ctx := ctxFor(t, time.Minute)
	admin := kubernetes.NewForConfigOrDie(s.Admin)
	for _, o := range objs {
		if ns := o.GetNamespace(); ns != "" && !slices.ContainsFunc(objs, func(x *unstructured.Unstructured) bool { return x.GetKind() == "Namespace" && x.GetName() == ns }) {
			_, err := admin.CoreV1().Namespaces().Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: ns}}, metav1.CreateOptions{})
			if err != nil && !apierrors.IsAlreadyExists(err) {
				t.Fatal(err)
			}
		}
	}
	for _, dryRun := range []bool{true, false} {
		for _, obj := range objs {
			r := a.apply(t, ctx, obj, dryRun)
			_, err := r.Get(ctx, obj.GetName(), metav1.GetOptions{})
			switch {
			case dryRun && obj.GetKind() == "Namespace":
				// The namespaced objects' dry runs need their
				// namespace: it is made for real.
				a.apply(t, ctx, obj, false)
			case !dryRun && err != nil:
				t.Errorf("%s %s after applying: %v", obj.GetKind(), obj.GetName(), err)
			}
		}
	}
}

// TestChartApply applies each value set's render, then the defaults', to
// a real kube-apiserver (strict dry run, then for real), and runs the
// agent's kube-mode flow as the chart's service account under the RBAC
// authorizer: the chart's roles are enough, for the lease and the
// NetworkUnavailable condition, and with weft.assignPodCIDRs for the
// allocator too.
func TestChartApply(t *testing.T) {
	s := apitest.Start(t)
	a := newApplier(t, s)
	admin := kubernetes.NewForConfigOrDie(s.Admin)
	const sa = "system:serviceaccount:kube-flannel:flannel"
	asSA := s.As(sa, "system:serviceaccounts", "system:serviceaccounts:kube-flannel", "system:authenticated")

	// Before any: the service account may not list Nodes.
	if _, err := kubernetes.NewForConfigOrDie(asSA).CoreV1().Nodes().List(ctxFor(t, 10*time.Second), metav1.ListOptions{}); !apierrors.IsForbidden(err) {
		t.Fatalf("listing nodes before the chart: %v, want Forbidden", err)
	}
	for _, name := range slices.Sorted(func(yield func(string) bool) {
		for k := range valueSets {
			if !yield(k) {
				return
			}
		}
	}) {
		t.Logf("applying %q", name)
		a.applyAll(t, s, render(t, valueSets[name]))
	}
	defaults := render(t, nil)
	a.applyAll(t, s, defaults)
	ds, err := admin.AppsV1().DaemonSets("kube-flannel").Get(ctxFor(t, 10*time.Second), "kube-flannel-ds", metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if c := ds.Spec.Template.Spec.Containers[0]; c.Image != "weft-flanneld:dev" || !slices.Equal(c.Args, []string{"--kube-subnet-mgr", "--ip-masq", "--healthz-port=8471"}) {
		t.Errorf("the stored DaemonSet after the defaults: image %q args %q", c.Image, c.Args)
	}

	// The agent's flow with the network config the chart ships.
	cm := find(t, defaults, "ConfigMap", "kube-flannel-cfg")
	conf, _, _ := unstructured.NestedString(cm.Object, "data", "net-conf.json")
	netConf := filepath.Join(t.TempDir(), "net-conf.json")
	if err := os.WriteFile(netConf, []byte(conf), 0o644); err != nil {
		t.Fatal(err)
	}
	for _, n := range []*corev1.Node{
		{ObjectMeta: metav1.ObjectMeta{Name: "chart-a"}, Spec: corev1.NodeSpec{PodCIDR: "10.244.1.0/24", PodCIDRs: []string{"10.244.1.0/24"}}},
		{ObjectMeta: metav1.ObjectMeta{Name: "chart-b"}},
	} {
		if _, err := admin.CoreV1().Nodes().Create(ctxFor(t, 10*time.Second), n, metav1.CreateOptions{}); err != nil {
			t.Fatal(err)
		}
	}
	// The authorizer learns of new bindings through an informer.
	testutil.WaitFor(t, 10*time.Second, "the chart's binding to take effect", func() bool {
		_, err := kubernetes.NewForConfigOrDie(asSA).CoreV1().Nodes().List(ctxFor(t, 10*time.Second), metav1.ListOptions{})
		return err == nil
	})
	logs := &testutil.SyncBuffer{}
	t.Cleanup(func() {
		if t.Failed() {
			t.Logf("the managers' log:\n%s", logs)
		}
	})
	manager := func(node string, assign bool) *kube.Manager {
		nodes, err := kube.NewNodeClient(asSA)
		if err != nil {
			t.Fatal(err)
		}
		m, err := kube.New(kube.Options{Nodes: nodes, NodeName: node, NetConfPath: netConf, AssignPodCIDRs: assign,
			Logger: slog.New(slog.NewTextHandler(logs, nil)).With("node", node)})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { m.Close() })
		return m
	}
	for i, node := range []struct {
		name   string
		assign bool
	}{{"chart-a", false}, {"chart-b", true}} {
		m := manager(node.name, node.assign)
		l, err := m.Acquire(ctxFor(t, 30*time.Second), lease.AcquireRequest{Attrs: lease.Attrs{
			PublicIP: netip.AddrFrom4([4]byte{192, 0, 2, byte(i + 1)}), BackendType: "vxlan",
			BackendData: json.RawMessage(fmt.Sprintf(`{"VNI":1,"VtepMAC":"0e:00:00:00:00:%02x"}`, i+1)),
		}})
		if err != nil {
			t.Fatalf("%s: acquiring as the chart's service account: %v", node.name, err)
		}
		if !netip.MustParsePrefix("10.244.0.0/16").Overlaps(l.Key.IPv4) {
			t.Errorf("%s: lease %v outside the chart's podCidr", node.name, l.Key)
		}
		ctx, cancel := context.WithCancel(context.Background())
		kept := make(chan error, 1)
		go func() { kept <- m.Keep(ctx, l) }()
		m.NetworkReady()
		testutil.WaitFor(t, 20*time.Second, node.name+"'s NetworkUnavailable=False", func() bool {
			n, err := admin.CoreV1().Nodes().Get(ctxFor(t, 10*time.Second), node.name, metav1.GetOptions{})
			if err != nil {
				return false
			}
			for _, c := range n.Status.Conditions {
				if c.Type == corev1.NodeNetworkUnavailable && c.Status == corev1.ConditionFalse {
					return true
				}
			}
			return false
		})
		cancel()
		if err := <-kept; !errors.Is(err, context.Canceled) {
			t.Errorf("%s: Keep returned %v", node.name, err)
		}
		if st := m.Stats(); st.Errors != 0 {
			t.Errorf("%s: %d API errors as the chart's service account: %s", node.name, st.Errors, st.Condition)
		}
	}
}
