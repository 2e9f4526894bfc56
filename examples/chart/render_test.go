// Package chart_test tests the Helm chart in weft/ through Helm's own Go
// library (Helm 4), with no helm binary: rendered as helm template and
// helm install render it, compared with examples/manifests'
// kustomization, applied to a real kube-apiserver, and run under its
// RBAC. It is a module of its own so that weft's module does not depend
// on Helm.
package chart_test

import (
	"bufio"
	"bytes"
	"encoding/json"
	"errors"
	"io"
	"maps"
	"os"
	"reflect"
	"slices"
	"testing"

	"helm.sh/helm/v4/pkg/action"
	"helm.sh/helm/v4/pkg/chart/loader"
	release "helm.sh/helm/v4/pkg/release/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	utilyaml "k8s.io/apimachinery/pkg/util/yaml"
	"sigs.k8s.io/kustomize/api/krusty"
	"sigs.k8s.io/kustomize/kyaml/filesys"
	"sigs.k8s.io/yaml"
)

const (
	chartDir  = "weft"
	manifests = "../manifests"
	// The optional manifest, applied beside the kustomization's by
	// choice; the chart renders it with weft.assignPodCIDRs.
	allocatorManifest = "../manifests/rbac-allocator.yaml"
)

// render is what helm template (and helm install) renders of the chart
// with vals over its defaults (as --set-json or -f give them), parsed
// into objects.
func render(t *testing.T, vals map[string]any) []*unstructured.Unstructured {
	t.Helper()
	ch, err := loader.Load(chartDir)
	if err != nil {
		t.Fatalf("loading the chart: %v", err)
	}
	install := action.NewInstall(action.NewConfiguration())
	install.DryRunStrategy = action.DryRunClient
	install.ReleaseName = "weft"
	install.Namespace = "default"
	install.Replace = true
	rel, err := install.Run(ch, vals)
	if err != nil {
		t.Fatalf("rendering the chart with %v: %v", vals, err)
	}
	r, ok := rel.(*release.Release)
	if !ok {
		t.Fatalf("release %T", rel)
	}
	return parseObjects(t, []byte(r.Manifest))
}

// parseObjects reads every object of a YAML stream.
func parseObjects(t *testing.T, data []byte) []*unstructured.Unstructured {
	t.Helper()
	var out []*unstructured.Unstructured
	r := utilyaml.NewYAMLReader(bufio.NewReader(bytes.NewReader(data)))
	for {
		doc, err := r.Read()
		if errors.Is(err, io.EOF) {
			return out
		}
		if err != nil {
			t.Fatal(err)
		}
		var m map[string]any
		if err := yaml.Unmarshal(doc, &m); err != nil {
			t.Fatalf("%v in:\n%s", err, doc)
		}
		if len(m) == 0 {
			continue
		}
		out = append(out, &unstructured.Unstructured{Object: m})
	}
}

// kustomizeBuild is what `kubectl apply -k examples/manifests` sends.
func kustomizeBuild(t *testing.T) []*unstructured.Unstructured {
	t.Helper()
	res, err := krusty.MakeKustomizer(krusty.MakeDefaultOptions()).Run(filesys.MakeFsOnDisk(), manifests)
	if err != nil {
		t.Fatalf("kustomize build %s: %v", manifests, err)
	}
	var out []*unstructured.Unstructured
	for _, r := range res.Resources() {
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

// canonical is objs keyed by kind/namespace/name, each as plain JSON
// values, with ConfigMap data that is JSON parsed: two renders of the
// same objects compare equal whatever their YAML spelling.
func canonical(t *testing.T, objs []*unstructured.Unstructured) map[string]any {
	t.Helper()
	out := map[string]any{}
	for _, o := range objs {
		data, err := json.Marshal(o.Object)
		if err != nil {
			t.Fatal(err)
		}
		var v map[string]any
		if err := json.Unmarshal(data, &v); err != nil {
			t.Fatal(err)
		}
		if o.GetKind() == "ConfigMap" {
			d, _ := v["data"].(map[string]any)
			for k, s := range d {
				var parsed any
				if str, ok := s.(string); ok && json.Unmarshal([]byte(str), &parsed) == nil {
					d[k] = parsed
				}
			}
		}
		key := o.GetKind() + "/" + o.GetNamespace() + "/" + o.GetName()
		if _, dup := out[key]; dup {
			t.Errorf("%s twice", key)
		}
		out[key] = v
	}
	return out
}

// TestChartDefaultIsTheKustomization: with its default values the chart
// renders exactly the objects examples/manifests' kustomization builds.
func TestChartDefaultIsTheKustomization(t *testing.T) {
	got, want := canonical(t, render(t, nil)), canonical(t, kustomizeBuild(t))
	if !slices.Equal(slices.Sorted(maps.Keys(got)), slices.Sorted(maps.Keys(want))) {
		t.Fatalf("the chart renders %v; the kustomization builds %v", slices.Sorted(maps.Keys(got)), slices.Sorted(maps.Keys(want)))
	}
	for k := range want {
		if !reflect.DeepEqual(got[k], want[k]) {
			a, _ := yaml.Marshal(got[k])
			b, _ := yaml.Marshal(want[k])
			t.Errorf("%s differs.\nthe chart's:\n%s\nthe kustomization's:\n%s", k, a, b)
		}
	}
}

// TestChartAllocatorIsTheOptionalManifest: weft.assignPodCIDRs adds
// exactly rbac-allocator.yaml's objects, and the flag.
func TestChartAllocatorIsTheOptionalManifest(t *testing.T) {
	objs := render(t, map[string]any{"weft": map[string]any{"assignPodCIDRs": true}})
	got := canonical(t, objs)
	data, err := os.ReadFile(allocatorManifest)
	if err != nil {
		t.Fatal(err)
	}
	want := canonical(t, parseObjects(t, data))
	for k, v := range want {
		if !reflect.DeepEqual(got[k], v) {
			t.Errorf("%s: the chart's %v, the manifest's %v", k, got[k], v)
		}
	}
	if args := agentArgs(t, objs); !slices.Contains(args, "--kube-assign-pod-cidrs") {
		t.Errorf("args %v lack --kube-assign-pod-cidrs", args)
	}
	if len(got) != len(canonical(t, render(t, nil)))+len(want) {
		t.Errorf("weft.assignPodCIDRs renders %d objects, want the default's and the allocator's %d", len(got), len(want))
	}
}

// find returns the rendered object of kind and name.
func find(t *testing.T, objs []*unstructured.Unstructured, kind, name string) *unstructured.Unstructured {
	t.Helper()
	for _, o := range objs {
		if o.GetKind() == kind && o.GetName() == name {
			return o
		}
	}
	t.Fatalf("no %s %s rendered", kind, name)
	return nil
}

// agentArgs is the agent container's args.
func agentArgs(t *testing.T, objs []*unstructured.Unstructured) []string {
	t.Helper()
	cs, _, _ := unstructured.NestedSlice(find(t, objs, "DaemonSet", "kube-flannel-ds").Object, "spec", "template", "spec", "containers")
	var out []string
	for _, a := range cs[0].(map[string]any)["args"].([]any) {
		out = append(out, a.(string))
	}
	return out
}
