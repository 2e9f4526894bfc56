package chart_test

import (
	"slices"
	"strings"
	"testing"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime"

	"github.com/weftnet/weft/lease"
	"github.com/weftnet/weft/vxlan"
)

// valueSets are the value sets the tests render and apply besides the
// defaults, as an operator's -f values.yaml gives them.
var valueSets = map[string]map[string]any{
	"dual stack, backend settings, images and scheduling": {
		"podCidr": "10.42.0.0/16", "podCidrv6": "fd00:42::/56",
		"global": map[string]any{"imagePullSecrets": []any{map[string]any{"name": "regcred"}}},
		"flannel": map[string]any{
			"image":       map[string]any{"repository": "registry.example/weft-flanneld", "tag": "v1.2.3"},
			"flannel_cni": map[string]any{"image": map[string]any{"repository": "registry.example/flannel-cni-plugin", "tag": "v1.9.1"}},
			"args":        []any{"--ip-masq", "--kube-subnet-mgr", "--iface-regex=^eth"},
			"backendPort": 4789, "vni": 4096, "mtu": 1400, "directRouting": true,
			"tolerations":  []any{map[string]any{"operator": "Exists"}},
			"nodeSelector": map[string]any{"kubernetes.io/os": "linux"},
			"resources":    map[string]any{"requests": map[string]any{"cpu": "50m", "memory": "40Mi"}},
			"healthz":      map[string]any{"port": 9471},
			"cniBinDir":    "/var/lib/rancher/k3s/data/cni",
		},
	},
	"weft's own: state, status socket, probing, allocator": {
		"weft": map[string]any{
			"stateDir": "/var/lib/weft-alt", "statusSocket": "/run/weft-alt/status.sock", "assignPodCIDRs": true,
			"probing": map[string]any{"interval": "30s", "sample": 4, "timeout": "2s", "affectsReadiness": true},
		},
	},
	"IPv6 only, no health server, no local state, existing namespace": {
		"podCidr": "", "podCidrv6": "fd00:7::/48", "createNamespace": false, "namespace": "weft-system",
		"flannel": map[string]any{"healthz": map[string]any{"port": 0}},
		"weft":    map[string]any{"stateDir": "", "statusSocket": ""},
	},
}

// typed converts a rendered object into its API type.
func typed[T any](t *testing.T, o *unstructured.Unstructured) *T {
	t.Helper()
	v := new(T)
	if err := runtime.DefaultUnstructuredConverter.FromUnstructuredWithValidation(o.Object, v, true); err != nil {
		t.Fatalf("%s %s: %v", o.GetKind(), o.GetName(), err)
	}
	return v
}

// TestChartValues: each value set reaches the objects where flannel's
// chart puts it, and net-conf.json is one weft's parser accepts with the
// network and backend asked for.
func TestChartValues(t *testing.T) {
	t.Run("dual stack", func(t *testing.T) {
		objs := render(t, valueSets["dual stack, backend settings, images and scheduling"])
		conf := netConf(t, objs)
		if conf.Network.String() != "10.42.0.0/16" || conf.IPv6Network.String() != "fd00:42::/56" || !conf.EnableIPv6 {
			t.Errorf("net-conf.json: %+v", conf)
		}
		b, err := vxlan.ParseConfig(conf.Backend)
		if err != nil || b.VNI != 4096 || b.Port != 4789 || b.MTU != 1400 || !b.DirectRouting || !strings.Contains(string(conf.Backend), `"Type": "vxlan"`) {
			t.Errorf("net-conf.json's Backend %s: %+v, %v", conf.Backend, b, err)
		}
		ds := typed[appsv1.DaemonSet](t, find(t, objs, "DaemonSet", "kube-flannel-ds"))
		pod := ds.Spec.Template.Spec
		agent := pod.Containers[0]
		if agent.Image != "registry.example/weft-flanneld:v1.2.3" || pod.InitContainers[1].Image != agent.Image ||
			pod.InitContainers[0].Image != "registry.example/flannel-cni-plugin:v1.9.1" {
			t.Errorf("images: %s, %s, %s", pod.InitContainers[0].Image, pod.InitContainers[1].Image, agent.Image)
		}
		if !slices.Equal(agent.Args, []string{"--ip-masq", "--kube-subnet-mgr", "--iface-regex=^eth", "--healthz-port=9471"}) {
			t.Errorf("args %q", agent.Args)
		}
		if agent.ReadinessProbe.HTTPGet.Port.IntValue() != 9471 || agent.LivenessProbe.HTTPGet.Port.IntValue() != 9471 {
			t.Errorf("probes not on the health port 9471: %+v %+v", agent.ReadinessProbe, agent.LivenessProbe)
		}
		if len(pod.Tolerations) != 1 || pod.Tolerations[0].Operator != corev1.TolerationOpExists || pod.Tolerations[0].Effect != "" ||
			pod.NodeSelector["kubernetes.io/os"] != "linux" || len(pod.ImagePullSecrets) != 1 || pod.ImagePullSecrets[0].Name != "regcred" {
			t.Errorf("scheduling: tolerations %+v, node selector %v, pull secrets %v", pod.Tolerations, pod.NodeSelector, pod.ImagePullSecrets)
		}
		// Helm merges maps: the default memory limit stays unless set
		// to null.
		if agent.Resources.Requests.Cpu().String() != "50m" || agent.Resources.Requests.Memory().String() != "40Mi" || agent.Resources.Limits.Memory().String() != "256Mi" {
			t.Errorf("resources %+v", agent.Resources)
		}
		if hostPath(pod, "cni-plugin") != "/var/lib/rancher/k3s/data/cni" {
			t.Errorf("cni-plugin from %q", hostPath(pod, "cni-plugin"))
		}
	})
	t.Run("weft's own", func(t *testing.T) {
		objs := render(t, valueSets["weft's own: state, status socket, probing, allocator"])
		ds := typed[appsv1.DaemonSet](t, find(t, objs, "DaemonSet", "kube-flannel-ds"))
		pod := ds.Spec.Template.Spec
		want := []string{"--kube-subnet-mgr", "--ip-masq", "--healthz-port=8471", "--state-dir=/var/lib/weft-alt", "--status-socket=/run/weft-alt/status.sock",
			"--probe-interval=30s", "--probe-sample=4", "--probe-timeout=2s", "--probe-affects-readiness", "--kube-assign-pod-cidrs"}
		if !slices.Equal(pod.Containers[0].Args, want) {
			t.Errorf("args %q, want %q", pod.Containers[0].Args, want)
		}
		if hostPath(pod, "state") != "/var/lib/weft-alt" || mountPath(pod.Containers[0], "state") != "/var/lib/weft-alt" ||
			hostPath(pod, "weft-run") != "/run/weft-alt" || mountPath(pod.Containers[0], "weft-run") != "/run/weft-alt" {
			t.Errorf("state and socket directories: %q %q %q %q", hostPath(pod, "state"), mountPath(pod.Containers[0], "state"), hostPath(pod, "weft-run"), mountPath(pod.Containers[0], "weft-run"))
		}
		find(t, objs, "ClusterRoleBinding", "flannel-pod-cidr-allocator")
	})
	t.Run("IPv6 only", func(t *testing.T) {
		objs := render(t, valueSets["IPv6 only, no health server, no local state, existing namespace"])
		conf := netConf(t, objs)
		if conf.EnableIPv4 || !conf.EnableIPv6 || conf.IPv6Network.String() != "fd00:7::/48" {
			t.Errorf("net-conf.json: %+v", conf)
		}
		for _, o := range objs {
			if o.GetKind() == "Namespace" {
				t.Errorf("createNamespace=false rendered Namespace %s", o.GetName())
			}
			if ns := o.GetNamespace(); ns != "" && ns != "weft-system" {
				t.Errorf("%s %s in namespace %s, want weft-system", o.GetKind(), o.GetName(), ns)
			}
		}
		crb := find(t, objs, "ClusterRoleBinding", "flannel")
		subjects, _, _ := unstructured.NestedSlice(crb.Object, "subjects")
		if subjects[0].(map[string]any)["namespace"] != "weft-system" {
			t.Errorf("the binding's subject: %v", subjects)
		}
		ds := typed[appsv1.DaemonSet](t, find(t, objs, "DaemonSet", "kube-flannel-ds"))
		agent := ds.Spec.Template.Spec.Containers[0]
		if agent.ReadinessProbe != nil || agent.LivenessProbe != nil {
			t.Errorf("probes without a health server: %+v %+v", agent.ReadinessProbe, agent.LivenessProbe)
		}
		if !slices.Contains(agent.Args, "--state-dir=") || !slices.Contains(agent.Args, "--status-socket=") || mountPath(agent, "state") != "" || mountPath(agent, "weft-run") != "" {
			t.Errorf("no state and no socket: args %q, mounts %+v", agent.Args, agent.VolumeMounts)
		}
	})
}

// netConf parses the rendered ConfigMap's net-conf.json as the agent does.
func netConf(t *testing.T, objs []*unstructured.Unstructured) lease.Config {
	t.Helper()
	cm := typed[corev1.ConfigMap](t, find(t, objs, "ConfigMap", "kube-flannel-cfg"))
	conf, err := lease.ParseConfig([]byte(cm.Data["net-conf.json"]))
	if err != nil {
		t.Fatalf("net-conf.json %s: %v", cm.Data["net-conf.json"], err)
	}
	if !strings.Contains(cm.Data["cni-conf.json"], `"weft-ipam"`) {
		t.Errorf("cni-conf.json lacks weft-ipam: %s", cm.Data["cni-conf.json"])
	}
	return conf
}

func hostPath(pod corev1.PodSpec, volume string) string {
	for _, v := range pod.Volumes {
		if v.Name == volume && v.HostPath != nil {
			return v.HostPath.Path
		}
	}
	return ""
}

func mountPath(c corev1.Container, volume string) string {
	for _, m := range c.VolumeMounts {
		if m.Name == volume {
			return m.MountPath
		}
	}
	return ""
}
