package kube

import (
	"context"
	"fmt"
	"runtime"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	kwatch "k8s.io/apimachinery/pkg/watch"
	"k8s.io/client-go/informers"
	"k8s.io/client-go/kubernetes/fake"
	clienttesting "k8s.io/client-go/testing"
	"k8s.io/client-go/tools/cache"

	"github.com/weftnet/weft/lease"
)

const benchNodes = 5000

// managedFields stands in for the kubelet's field set, about 1.5 KB.
var managedFields = []byte(`{"f:status":{"f:images":{},"f:conditions":{},"f:nodeInfo":{"f:bootID":"` + strings.Repeat("0", 1400) + `"}}}`)

// realisticNode is a Node as a kubelet and flannel leave it: labels,
// managed fields, conditions, addresses, a list of images, node info, and
// flannel's annotations.
func realisticNode(i int) *corev1.Node {
	n := peerNode(fmt.Sprintf("node-%05d", i), 1)
	n.Spec.PodCIDR = fmt.Sprintf("10.%d.%d.0/24", 100+i/256, i%256)
	n.Spec.PodCIDRs = []string{n.Spec.PodCIDR}
	n.Annotations["flannel.alpha.coreos.com/public-ip"] = fmt.Sprintf("192.168.%d.%d", i/256, i%256)
	n.Annotations["flannel.alpha.coreos.com/public-ipv6"] = ""
	n.Annotations["node.alpha.kubernetes.io/ttl"] = "0"
	n.Annotations["volumes.kubernetes.io/controller-managed-attach-detach"] = "true"
	n.Labels = map[string]string{"kubernetes.io/hostname": n.Name, "kubernetes.io/os": "linux", "kubernetes.io/arch": "amd64",
		"node.kubernetes.io/instance-type": "m5.xlarge", "topology.kubernetes.io/zone": "zone-a"}
	n.ManagedFields = []metav1.ManagedFieldsEntry{{Manager: "kubelet", Operation: metav1.ManagedFieldsOperationUpdate, APIVersion: "v1",
		FieldsType: "FieldsV1", FieldsV1: metav1.NewFieldsV1(string(managedFields))}}
	for _, t := range []corev1.NodeConditionType{corev1.NodeReady, corev1.NodeMemoryPressure, corev1.NodeDiskPressure, corev1.NodePIDPressure, corev1.NodeNetworkUnavailable} {
		n.Status.Conditions = append(n.Status.Conditions, corev1.NodeCondition{Type: t, Status: corev1.ConditionFalse,
			Reason: "KubeletHasSufficientResources", Message: "kubelet has sufficient resources available"})
	}
	n.Status.Addresses = []corev1.NodeAddress{{Type: corev1.NodeInternalIP, Address: n.Annotations["flannel.alpha.coreos.com/public-ip"]}, {Type: corev1.NodeHostName, Address: n.Name}}
	for j := range 30 {
		n.Status.Images = append(n.Status.Images, corev1.ContainerImage{
			Names:     []string{fmt.Sprintf("registry.example/team/app-%d@sha256:%064d", j, j), fmt.Sprintf("registry.example/team/app-%d:v1.%d.0", j, j)},
			SizeBytes: 50 << 20})
	}
	n.Status.NodeInfo = corev1.NodeSystemInfo{MachineID: fmt.Sprintf("%032d", i), KernelVersion: "6.1.0-18-amd64", OSImage: "Debian GNU/Linux 12 (bookworm)",
		ContainerRuntimeVersion: "containerd://1.7.13", KubeletVersion: "v1.37.1", OperatingSystem: "linux", Architecture: "amd64"}
	return n
}

func benchClient(b *testing.B) *fake.Clientset {
	c := fake.NewClientset()
	for i := range benchNodes {
		if err := c.Tracker().Add(realisticNode(i)); err != nil {
			b.Fatal(err)
		}
	}
	return c
}

// BenchmarkWatchLeases5000 measures the kube lease manager's peer path at
// 5,000 nodes: from informer events to lease events, for the snapshot of
// every node (listed from the fake clientset) and then for an update of
// every node's public IP, fed to the informer's watch directly so that
// only the informer and this package are measured.
func BenchmarkWatchLeases5000(b *testing.B) {
	client := benchClient(b)
	conf := writeNetConf(b, `{"Network": "10.0.0.0/8", "Backend": {"Type": "vxlan"}}`)
	updates := make([]*corev1.Node, benchNodes)
	for j := range updates {
		updates[j] = realisticNode(j)
	}
	var snapRate, updateRate float64
	for i := 0; i < b.N; i++ {
		w := kwatch.NewFakeWithChanSize(benchNodes, false)
		client.PrependWatchReactor("nodes", func(clienttesting.Action) (bool, kwatch.Interface, error) { return true, w, nil })
		m, err := New(Options{Nodes: WithoutWatchList(client.CoreV1().Nodes()), NodeName: "node-00000", NetConfPath: conf, Logger: discard})
		if err != nil {
			b.Fatal(err)
		}
		ctx, cancel := context.WithCancel(context.Background())
		ch := make(chan lease.Batch, 64)
		done := make(chan error, 1)
		start := time.Now()
		go func() { done <- m.WatchLeases(ctx, ch) }()
		if snap := <-ch; len(snap.Events) != benchNodes {
			b.Fatalf("snapshot of %d leases", len(snap.Events))
		}
		snapRate += benchNodes / time.Since(start).Seconds()

		for j, n := range updates {
			n.Annotations["flannel.alpha.coreos.com/public-ip"] = fmt.Sprintf("192.%d.%d.%d", 170+i%2, j/256, j%256)
			n.ResourceVersion = fmt.Sprint(i*benchNodes + j + 1)
		}
		start = time.Now()
		go func() {
			for _, n := range updates {
				w.Modify(n.DeepCopy())
			}
		}()
		for changed := 0; changed < benchNodes; {
			changed += len((<-ch).Events)
		}
		updateRate += benchNodes / time.Since(start).Seconds()
		cancel()
		<-done
		m.Close()
	}
	b.ReportMetric(snapRate/float64(b.N), "snapshot-events/s")
	b.ReportMetric(updateRate/float64(b.N), "update-events/s")
}

// BenchmarkNodeMemory measures the heap the Node cache costs per node at
// 5,000 realistic nodes: the kube lease manager's informer, which keeps
// only what it reads of each Node, against a plain informer of whole Nodes
// (flannel's).
func BenchmarkNodeMemory(b *testing.B) {
	client := benchClient(b)
	conf := writeNetConf(b, testNetConf)
	heap := func() uint64 {
		runtime.GC()
		var ms runtime.MemStats
		runtime.ReadMemStats(&ms)
		return ms.HeapAlloc
	}
	var trimmed, whole float64
	for i := 0; i < b.N; i++ {
		before := heap()
		m, err := New(Options{Nodes: WithoutWatchList(client.CoreV1().Nodes()), NodeName: "node-00000", NetConfPath: conf, Logger: discard})
		if err != nil {
			b.Fatal(err)
		}
		if err := m.synced(context.Background()); err != nil {
			b.Fatal(err)
		}
		trimmed += float64(heap()-before) / benchNodes
		m.Close()

		before = heap()
		stop := make(chan struct{})
		f := informers.NewSharedInformerFactory(client, 0)
		inf := f.Core().V1().Nodes().Informer()
		f.Start(stop)
		cache.WaitForCacheSync(stop, inf.HasSynced)
		whole += float64(heap()-before) / benchNodes
		close(stop)
		f.Shutdown()
	}
	b.ReportMetric(trimmed/float64(b.N), "bytes/node")
	b.ReportMetric(whole/float64(b.N), "whole-node-informer-bytes/node")
}
