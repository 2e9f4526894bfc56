package apitest_test

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	utilyaml "k8s.io/apimachinery/pkg/util/yaml"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/kubernetes/scheme"

	"github.com/weftnet/weft/internal/leasetest"
	"github.com/weftnet/weft/internal/testutil"
	"github.com/weftnet/weft/kube"
	"github.com/weftnet/weft/lease"
)

const manifests = "../../examples/manifests"

// manifestDocs splits a YAML file of examples/manifests into its
// documents, blank ones dropped.
func manifestDocs(t *testing.T, name string) [][]byte {
	t.Helper()
	data, err := os.ReadFile(filepath.Join(manifests, name))
	if err != nil {
		t.Fatal(err)
	}
	var out [][]byte
	r := utilyaml.NewYAMLReader(bufioReader(data))
	for {
		doc, err := r.Read()
		if errors.Is(err, io.EOF) {
			return out
		}
		if err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		if len(bytes.TrimSpace(doc)) > 0 {
			out = append(out, doc)
		}
	}
}

// decodeManifest reads every object of a YAML file of examples/manifests.
func decodeManifest(t *testing.T, name string) []runtime.Object {
	t.Helper()
	var out []runtime.Object
	for _, doc := range manifestDocs(t, name) {
		obj, _, err := scheme.Codecs.UniversalDeserializer().Decode(doc, nil, nil)
		if err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		out = append(out, obj)
	}
	return out
}

// TestManifestsDecode: every shipped manifest is valid Kubernetes YAML of
// known kinds, and the DaemonSet runs the agent in kube mode as the
// service account the RBAC manifest binds.
func TestManifestsDecode(t *testing.T) {
	entries, err := os.ReadDir(manifests)
	if err != nil {
		t.Fatal(err)
	}
	kinds := map[string]bool{}
	var ds *appsv1.DaemonSet
	var cm *corev1.ConfigMap
	for _, e := range entries {
		if e.Name() == kustomization {
			continue
		}
		for _, obj := range decodeManifest(t, e.Name()) {
			kinds[fmt.Sprintf("%T", obj)] = true
			switch o := obj.(type) {
			case *appsv1.DaemonSet:
				ds = o
			case *corev1.ConfigMap:
				cm = o
			}
		}
	}
	for _, k := range []string{"*v1.ServiceAccount", "*v1.ClusterRole", "*v1.ClusterRoleBinding", "*v1.ConfigMap", "*v1.DaemonSet", "*v1.Namespace"} {
		if !kinds[k] {
			t.Errorf("no %s among the manifests", k)
		}
	}
	if ds == nil || cm == nil {
		t.Fatal("no DaemonSet or ConfigMap")
	}
	pod := ds.Spec.Template.Spec
	if pod.ServiceAccountName != "flannel" || !strings.Contains(strings.Join(pod.Containers[0].Args, " "), "--kube-subnet-mgr") {
		t.Errorf("DaemonSet pod: service account %q, args %v", pod.ServiceAccountName, pod.Containers[0].Args)
	}
	if _, err := lease.ParseConfig([]byte(cm.Data["net-conf.json"])); err != nil {
		t.Errorf("the ConfigMap's net-conf.json: %v", err)
	}
}

// apply creates a manifest's objects as the admin.
func apply(t *testing.T, admin kubernetes.Interface, name string) {
	t.Helper()
	ctx := ctxFor(t, 10*time.Second)
	for _, obj := range decodeManifest(t, name) {
		var err error
		switch o := obj.(type) {
		case *corev1.Namespace:
			_, err = admin.CoreV1().Namespaces().Create(ctx, o, metav1.CreateOptions{})
		case *corev1.ServiceAccount:
			_, err = admin.CoreV1().ServiceAccounts(o.Namespace).Create(ctx, o, metav1.CreateOptions{})
		case *rbacv1.ClusterRole:
			_, err = admin.RbacV1().ClusterRoles().Create(ctx, o, metav1.CreateOptions{})
		case *rbacv1.ClusterRoleBinding:
			_, err = admin.RbacV1().ClusterRoleBindings().Create(ctx, o, metav1.CreateOptions{})
		default:
			t.Fatalf("%s: apply does not know %T", name, obj)
		}
		if err != nil && !apierrors.IsAlreadyExists(err) {
			t.Fatalf("%s: %v", name, err)
		}
	}
}

// TestShippedRBAC runs the agent's whole kube-mode flow (Acquire, Keep
// with the NetworkUnavailable condition, WatchLeases, and the allocator) as
// the service account of examples/manifests, under the RBAC authorizer:
// the shipped roles are enough, and the allocator needs its extra role.
func TestShippedRBAC(t *testing.T) {
	c := newCluster(t)
	const sa = "system:serviceaccount:kube-flannel:flannel"
	asSA := c.srv.As(sa, "system:serviceaccounts", "system:serviceaccounts:kube-flannel", "system:authenticated")
	s := c.scope(t, "rbac", fmt.Sprintf(netConf16, 110))
	s.createNode("rbac-a", "10.110.1.0/24")
	s.createNode("rbac-b") // for the allocator

	// Without the roles: forbidden.
	if _, err := kubernetes.NewForConfigOrDie(asSA).CoreV1().Nodes().List(ctxFor(t, 10*time.Second), metav1.ListOptions{}); !apierrors.IsForbidden(err) {
		t.Fatalf("listing nodes before the roles: %v, want Forbidden", err)
	}
	if _, err := kube.PodNodeName(ctxFor(t, 10*time.Second), asSA, "kube-flannel", "flannel-rbac-a"); !apierrors.IsForbidden(errors.Unwrap(err)) && !strings.Contains(fmt.Sprint(err), "forbidden") {
		t.Fatalf("reading the agent's Pod before the roles: %v, want Forbidden", err)
	}
	for _, f := range []string{"namespace.yaml", "rbac.yaml"} {
		apply(t, c.admin, f)
	}
	// The agent's own Pod, as the DaemonSet controller creates it, bound
	// to its node.
	if _, err := c.admin.CoreV1().Pods("kube-flannel").Create(ctxFor(t, 10*time.Second), &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{Name: "flannel-rbac-a", Namespace: "kube-flannel"},
		Spec:       corev1.PodSpec{NodeName: "rbac-a", Containers: []corev1.Container{{Name: "flanneld", Image: "weft-flanneld:dev"}}},
	}, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	// The authorizer learns of new bindings through an informer.
	testutil.WaitFor(t, 10*time.Second, "the binding to take effect", func() bool {
		_, err := kubernetes.NewForConfigOrDie(asSA).CoreV1().Nodes().List(ctxFor(t, 10*time.Second), metav1.ListOptions{})
		return err == nil
	})

	// No NODE_NAME: the node's name from the Pod, with the shipped roles.
	testutil.WaitFor(t, 10*time.Second, "the Pod's node name as the service account", func() bool {
		name, err := kube.PodNodeName(ctxFor(t, 10*time.Second), asSA, "kube-flannel", "flannel-rbac-a")
		return err == nil && name == "rbac-a"
	})
	a := s.manager("rbac-a", asSA)
	la := acquire(t, a, 1)
	w := leasetest.Watch(t, a)
	w.WaitLeases(t, "the node's own lease", func(m map[lease.Key]lease.Attrs) bool { _, ok := m[la.Key]; return ok })
	ctx, cancel := context.WithCancel(context.Background())
	kept := make(chan error, 1)
	go func() { kept <- a.Keep(ctx, la) }()
	a.NetworkReady()
	testutil.WaitFor(t, 20*time.Second, "NetworkUnavailable=False", func() bool {
		for _, c := range s.node("rbac-a").Status.Conditions {
			if c.Type == corev1.NodeNetworkUnavailable && c.Status == corev1.ConditionFalse {
				return true
			}
		}
		return false
	})
	cancel()
	if err := <-kept; !errors.Is(err, context.Canceled) {
		t.Errorf("Keep returned %v", err)
	}
	if st := a.Stats(); st.Errors != 0 {
		t.Errorf("%d API errors as the service account: %s", st.Errors, st.Condition)
	}

	// The allocator needs "patch" on nodes: refused with rbac.yaml alone,
	// granted by rbac-allocator.yaml.
	b := s.manager("rbac-b", asSA, func(o *kube.Options) { o.AssignPodCIDRs = true })
	got := make(chan lease.Lease, 1)
	go func() {
		l, err := b.Acquire(ctxFor(t, time.Minute), lease.AcquireRequest{Attrs: attrsFor(2)})
		if err != nil {
			t.Error(err)
		}
		got <- l
	}()
	testutil.WaitFor(t, 20*time.Second, "the allocator to be refused", func() bool {
		return strings.Contains(b.Stats().Condition, "forbidden")
	})
	apply(t, c.admin, "rbac-allocator.yaml")
	select {
	case l := <-got:
		if !l.Key.IPv4.IsValid() || s.node("rbac-b").Spec.PodCIDR != l.Key.IPv4.String() {
			t.Errorf("allocated lease %v, node's PodCIDR %q", l.Key, s.node("rbac-b").Spec.PodCIDR)
		}
	case <-time.After(40 * time.Second):
		t.Fatalf("the allocator did not succeed with rbac-allocator.yaml: %s", b.Stats().Condition)
	}
}

func bufioReader(b []byte) *bufio.Reader { return bufio.NewReader(bytes.NewReader(b)) }
