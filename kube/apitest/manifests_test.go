package apitest_test

import (
	"context"
	"encoding/json"
	"os"
	"path/filepath"
	"reflect"
	"slices"
	"strings"
	"testing"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/discovery"
	"k8s.io/client-go/discovery/cached/memory"
	"k8s.io/client-go/dynamic"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/restmapper"
	"sigs.k8s.io/kustomize/api/krusty"
	"sigs.k8s.io/kustomize/kyaml/filesys"
	"sigs.k8s.io/yaml"

	"github.com/weftnet/weft/kube/apitest"
)

const kustomization = "kustomization.yaml"

// optionalManifests are applied beside the kustomization's, by choice.
var optionalManifests = []string{"rbac-allocator.yaml"}

// kustomize is what the tests read of the kustomization.
type kustomize struct {
	Resources []string `json:"resources"`
	Images    []struct {
		Name    string `json:"name"`
		NewName string `json:"newName"`
		NewTag  string `json:"newTag"`
	} `json:"images"`
}

func readKustomization(t *testing.T) kustomize {
	t.Helper()
	data, err := os.ReadFile(filepath.Join(manifests, kustomization))
	if err != nil {
		t.Fatal(err)
	}
	var k kustomize
	if err := yaml.Unmarshal(data, &k); err != nil {
		t.Fatalf("%s: %v", kustomization, err)
	}
	return k
}

// TestKustomization: the kustomization deploys every manifest but the
// optional ones, and names weft's image once, as the DaemonSet spells it;
// the only other image is flannel's CNI plugin.
func TestKustomization(t *testing.T) {
	k := readKustomization(t)
	entries, err := os.ReadDir(manifests)
	if err != nil {
		t.Fatal(err)
	}
	var files []string
	for _, e := range entries {
		if e.Name() != kustomization && !slices.Contains(optionalManifests, e.Name()) {
			files = append(files, e.Name())
		}
	}
	got := slices.Sorted(slices.Values(k.Resources))
	if !slices.Equal(got, files) {
		t.Errorf("the kustomization deploys %v; the manifests are %v (optional: %v)", got, files, optionalManifests)
	}
	if len(k.Images) != 1 || k.Images[0].Name != "weft-flanneld" || k.Images[0].NewTag == "" {
		t.Fatalf("kustomization images %+v: want weft-flanneld, once, with a tag", k.Images)
	}
	ds := daemonSet(t)
	for _, c := range slices.Concat(ds.Spec.Template.Spec.InitContainers, ds.Spec.Template.Spec.Containers) {
		name, _, _ := strings.Cut(c.Image, ":")
		if name != k.Images[0].Name && !strings.HasPrefix(c.Image, "flannel/flannel-cni-plugin:") {
			t.Errorf("container %s runs image %q: neither weft's (%s) nor flannel's CNI plugin", c.Name, c.Image, k.Images[0].Name)
		}
	}
}

func daemonSet(t *testing.T) *appsv1.DaemonSet {
	t.Helper()
	for _, obj := range decodeManifest(t, "daemonset.yaml") {
		if ds, ok := obj.(*appsv1.DaemonSet); ok {
			return ds
		}
	}
	t.Fatal("daemonset.yaml holds no DaemonSet")
	return nil
}

// TestDaemonSetWiring: the DaemonSet installs weft-ipam, weft-announce and the CNI config
// with weft's installer, flannel's plugin from flannel's image, reads
// flannel's environment and NODE_NAME, probes /healthz and /readyz on the
// health port it serves, asks for the capabilities it uses and no more,
// and keeps its local state on the node.
func TestDaemonSetWiring(t *testing.T) {
	ds := daemonSet(t)
	// kube-flannel.yml's selector, which an apply over it cannot change.
	if sel := ds.Spec.Selector; sel == nil || len(sel.MatchLabels) != 2 || sel.MatchLabels["app"] != "flannel" || sel.MatchLabels["k8s-app"] != "flannel" {
		t.Errorf("selector %+v: want kube-flannel's, app=flannel and k8s-app=flannel", sel)
	}
	pod := ds.Spec.Template.Spec
	inits := map[string]corev1.Container{}
	for _, c := range pod.InitContainers {
		inits[c.Name] = c
	}
	install, ok := inits["install-cni"]
	if !ok || !slices.Equal(install.Command, []string{"/opt/bin/weft-install-cni"}) || !slices.Contains(install.Args, "--plugin=/opt/bin/weft-ipam") ||
		!slices.Contains(install.Args, "--plugin=/opt/bin/weft-announce") {
		t.Errorf("no init container running weft-install-cni for weft-ipam and weft-announce (which the conflist chains): %+v", install)
	}
	if p, ok := inits["install-cni-plugin"]; !ok || !strings.HasPrefix(p.Image, "flannel/flannel-cni-plugin:") {
		t.Errorf("no init container installing flannel's CNI plugin: %+v", p)
	}
	agent := pod.Containers[0]
	env := map[string]string{}
	for _, e := range agent.Env {
		if e.ValueFrom != nil && e.ValueFrom.FieldRef != nil {
			env[e.Name] = e.ValueFrom.FieldRef.FieldPath
		}
	}
	for name, path := range map[string]string{"NODE_NAME": "spec.nodeName", "POD_NAME": "metadata.name", "POD_NAMESPACE": "metadata.namespace"} {
		if env[name] != path {
			t.Errorf("env %s from %q, want the downward API's %s", name, env[name], path)
		}
	}
	var port string
	for _, a := range agent.Args {
		if v, ok := strings.CutPrefix(a, "--healthz-port="); ok {
			port = v
		}
	}
	for what, probe := range map[string]*corev1.Probe{"/readyz": agent.ReadinessProbe, "/healthz": agent.LivenessProbe} {
		if probe == nil || probe.HTTPGet == nil || probe.HTTPGet.Path != what || probe.HTTPGet.Port.String() != port {
			t.Errorf("probe %s: %+v; want an HTTP GET on the --healthz-port %s", what, probe, port)
		}
	}
	sc := agent.SecurityContext
	if sc == nil || sc.Privileged == nil || *sc.Privileged || sc.Capabilities == nil ||
		!slices.Equal(slices.Sorted(slices.Values(sc.Capabilities.Add)), []corev1.Capability{"NET_ADMIN", "NET_RAW"}) {
		t.Errorf("security context %+v: want unprivileged, with NET_ADMIN and NET_RAW", sc)
	}
	if agent.Resources.Requests.Memory().IsZero() || agent.Resources.Requests.Cpu().IsZero() || !agent.Resources.Limits.Cpu().IsZero() {
		t.Errorf("resources %+v: want CPU and memory requests, and no CPU limit", agent.Resources)
	}
	mounts := map[string]bool{}
	for _, m := range agent.VolumeMounts {
		mounts[m.MountPath] = true
	}
	for _, p := range []string{"/run/flannel", "/var/lib/weft", "/run/weft", "/run/xtables.lock"} {
		if !mounts[p] {
			t.Errorf("the agent does not mount %s", p)
		}
	}
}

// kustomizeBuild is what `kubectl apply -k dir` sends: the objects of
// the kustomization in dir, built as kubectl builds them.
func kustomizeBuild(t *testing.T, dir string) []*unstructured.Unstructured {
	t.Helper()
	k := krusty.MakeKustomizer(krusty.MakeDefaultOptions())
	res, err := k.Run(filesys.MakeFsOnDisk(), dir)
	if err != nil {
		t.Fatalf("kustomize build %s: %v", dir, err)
	}
	var out []*unstructured.Unstructured
	for _, r := range res.Resources() {
		// Through JSON: the resource's map holds ints, which
		// unstructured objects do not take.
		data, err := r.MarshalJSON()
		if err != nil {
			t.Fatal(err)
		}
		obj := &unstructured.Unstructured{}
		if err := obj.UnmarshalJSON(data); err != nil {
			t.Fatal(err)
		}
		out = append(out, obj)
	}
	return out
}

// TestKustomizeSetsTheImage: an overlay that sets weft's image, as an
// operator's does, changes every container running it and nothing else.
func TestKustomizeSetsTheImage(t *testing.T) {
	shipped, err := filepath.Abs(manifests)
	if err != nil {
		t.Fatal(err)
	}
	overlay := t.TempDir()
	base, err := filepath.Rel(overlay, shipped) // kustomize takes no absolute paths
	if err != nil {
		t.Fatal(err)
	}
	k := "resources:\n  - " + base + "\nimages:\n  - name: weft-flanneld\n    newName: ops/weft-flanneld\n    newTag: v1.2.3\n"
	if err := os.WriteFile(filepath.Join(overlay, kustomization), []byte(k), 0o644); err != nil {
		t.Fatal(err)
	}
	var images []string
	for _, obj := range kustomizeBuild(t, overlay) {
		if obj.GetKind() != "DaemonSet" {
			continue
		}
		for _, field := range []string{"initContainers", "containers"} {
			cs, _, _ := unstructured.NestedSlice(obj.Object, "spec", "template", "spec", field)
			for _, c := range cs {
				images = append(images, c.(map[string]any)["image"].(string))
			}
		}
	}
	want := []string{"flannel/flannel-cni-plugin:v1.5.1-flannel1", "ops/weft-flanneld:v1.2.3", "ops/weft-flanneld:v1.2.3"}
	if !slices.Equal(images, want) {
		t.Errorf("images after the overlay: %v, want %v", images, want)
	}
}

// applier applies objects server-side, as kubectl apply --server-side
// does, with strict field validation: a misspelt field fails, as kubectl
// would refuse it.
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
	opts := metav1.PatchOptions{FieldManager: "weft-manifests-test", Force: &force, FieldValidation: "Strict"}
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

// shippedObjects is what `kubectl apply -k examples/manifests` sends,
// then the optional manifests.
func shippedObjects(t *testing.T) []*unstructured.Unstructured {
	t.Helper()
	objs := kustomizeBuild(t, manifests)
	if len(objs) == 0 {
		t.Fatal("the kustomization builds nothing")
	}
	for _, name := range optionalManifests {
		objs = append(objs, decodeUnstructured(t, name)...)
	}
	return objs
}

// checkStoredDaemonSet reads the DaemonSet back: weft's, whole.
func checkStoredDaemonSet(t *testing.T, ctx context.Context, s *apitest.Server) {
	t.Helper()
	admin, err := kubernetes.NewForConfig(s.Admin)
	if err != nil {
		t.Fatal(err)
	}
	ds, err := admin.AppsV1().DaemonSets("kube-flannel").Get(ctx, "kube-flannel-ds", metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	pod := ds.Spec.Template.Spec
	if c := pod.Containers[0]; c.Image != "weft-flanneld:dev" || c.ReadinessProbe == nil || c.SecurityContext == nil || len(pod.InitContainers) != 2 {
		t.Errorf("the stored DaemonSet is not weft's whole: image %q, %d init containers, probes and security context %v %v",
			c.Image, len(pod.InitContainers), c.ReadinessProbe != nil, c.SecurityContext != nil)
	}
}

// TestManifestsApply applies what `kubectl apply -k examples/manifests`
// sends, and the optional manifests, to a real API server: first as a
// strict server-side dry run, which runs validation and admission without
// storing anything, then for real; the objects read back as written.
func TestManifestsApply(t *testing.T) {
	t.Parallel()
	s := apitest.Start(t)
	a := newApplier(t, s)
	ctx := ctxFor(t, time.Minute)
	objs := shippedObjects(t)
	for _, dryRun := range []bool{true, false} {
		for _, obj := range objs {
			r := a.apply(t, ctx, obj, dryRun)
			_, err := r.Get(ctx, obj.GetName(), metav1.GetOptions{})
			switch {
			case dryRun && obj.GetKind() == "Namespace":
				// The namespaced objects' dry runs need their
				// namespace: it is made for real.
				a.apply(t, ctx, obj, false)
			case dryRun && err == nil:
				t.Errorf("%s %s exists after a dry run", obj.GetKind(), obj.GetName())
			case !dryRun && err != nil:
				t.Errorf("%s %s after applying: %v", obj.GetKind(), obj.GetName(), err)
			}
		}
	}
	checkStoredDaemonSet(t, ctx, s)
}

// TestManifestsApplyOverKubeFlannel: applied over a flannel install (its
// DaemonSet as kube-flannel.yml makes it, created by another field
// manager), the manifests replace it in place; a DaemonSet's selector
// cannot change, so any other selector would be refused here.
func TestManifestsApplyOverKubeFlannel(t *testing.T) {
	t.Parallel()
	s := apitest.Start(t)
	admin, err := kubernetes.NewForConfig(s.Admin)
	if err != nil {
		t.Fatal(err)
	}
	ctx := ctxFor(t, time.Minute)
	if _, err := admin.CoreV1().Namespaces().Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: "kube-flannel"}}, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	labels := map[string]string{"app": "flannel", "k8s-app": "flannel", "tier": "node"}
	flannels := &appsv1.DaemonSet{
		ObjectMeta: metav1.ObjectMeta{Name: "kube-flannel-ds", Namespace: "kube-flannel", Labels: labels},
		Spec: appsv1.DaemonSetSpec{
			Selector: &metav1.LabelSelector{MatchLabels: map[string]string{"app": "flannel", "k8s-app": "flannel"}},
			Template: corev1.PodTemplateSpec{
				ObjectMeta: metav1.ObjectMeta{Labels: labels},
				Spec: corev1.PodSpec{
					HostNetwork:        true,
					ServiceAccountName: "flannel",
					Containers: []corev1.Container{{
						Name: "kube-flannel", Image: "flannel/flannel:v0.26.7",
						Command: []string{"/opt/bin/flanneld"}, Args: []string{"--ip-masq", "--kube-subnet-mgr"},
					}},
				},
			},
		},
	}
	if _, err := admin.AppsV1().DaemonSets("kube-flannel").Create(ctx, flannels, metav1.CreateOptions{FieldManager: "kubectl-client-side-apply"}); err != nil {
		t.Fatal(err)
	}
	a := newApplier(t, s)
	for _, obj := range shippedObjects(t) {
		a.apply(t, ctx, obj, false)
	}
	checkStoredDaemonSet(t, ctx, s)
}

// decodeUnstructured reads every object of a manifest as the API server
// takes it.
func decodeUnstructured(t *testing.T, name string) []*unstructured.Unstructured {
	t.Helper()
	var out []*unstructured.Unstructured
	for _, doc := range manifestDocs(t, name) {
		var obj unstructured.Unstructured
		if err := yaml.Unmarshal(doc, &obj.Object); err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		out = append(out, &obj)
	}
	return out
}

// TestCNIConfigIsTheTestedOne: the ConfigMap's cni-conf.json is
// examples/weft-ipam/10-flannel.conflist, the config the CNI tests run:
// flannel's plugin with weft-ipam in host-local's data directory.
func TestCNIConfigIsTheTestedOne(t *testing.T) {
	var cm *corev1.ConfigMap
	for _, obj := range decodeManifest(t, "configmap.yaml") {
		if c, ok := obj.(*corev1.ConfigMap); ok {
			cm = c
		}
	}
	if cm == nil {
		t.Fatal("configmap.yaml holds no ConfigMap")
	}
	tested, err := os.ReadFile("../../examples/weft-ipam/10-flannel.conflist")
	if err != nil {
		t.Fatal(err)
	}
	var shipped, want any
	if err := json.Unmarshal([]byte(cm.Data["cni-conf.json"]), &shipped); err != nil {
		t.Fatalf("cni-conf.json: %v", err)
	}
	if err := json.Unmarshal(tested, &want); err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(shipped, want) {
		t.Errorf("cni-conf.json differs from 10-flannel.conflist:\n%s", cm.Data["cni-conf.json"])
	}
	var list struct {
		Plugins []struct {
			Type string `json:"type"`
			IPAM struct {
				Type    string `json:"type"`
				DataDir string `json:"dataDir"`
			} `json:"ipam"`
		} `json:"plugins"`
	}
	if err := json.Unmarshal(tested, &list); err != nil || len(list.Plugins) == 0 || list.Plugins[0].Type != "flannel" ||
		list.Plugins[0].IPAM.Type != "weft-ipam" || list.Plugins[0].IPAM.DataDir != "/var/lib/cni/networks" {
		t.Errorf("the CNI config: %+v, %v; want flannel's plugin with weft-ipam in /var/lib/cni/networks", list, err)
	}
}
