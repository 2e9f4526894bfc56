package kube_test

import (
	"context"
	"fmt"
	"log"
	"net/netip"
	"os"
	"path/filepath"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes/fake"
	"k8s.io/client-go/rest"

	"github.com/weftnet/weft/kube"
	"github.com/weftnet/weft/lease"
)

// In a DaemonSet's pod: the service account's credentials, and the node's
// name from NODE_NAME (the downward API's spec.nodeName). Hand m to
// agent.NetworkConfig.Manager; the Network reads the Node's annotations
// and clears its NetworkUnavailable condition itself.
func ExampleNew() {
	rc, err := rest.InClusterConfig()
	if err != nil {
		log.Fatal(err)
	}
	nodes, err := kube.NewNodeClient(rc) // core/v1 only: no clientset in the binary
	if err != nil {
		log.Fatal(err)
	}
	m, err := kube.New(kube.Options{Nodes: nodes}) // NodeName from $NODE_NAME
	if err != nil {
		log.Fatal(err)
	}
	defer m.Close()
	fmt.Println("node", m.Node())
}

// client-go's fake clientset, for an embedder's tests: wrapped so that the
// informer lists Nodes plainly, which the fake can serve.
func ExampleWithoutWatchList() {
	dir, err := os.MkdirTemp("", "kube-example-")
	if err != nil {
		log.Fatal(err)
	}
	defer os.RemoveAll(dir)
	conf := filepath.Join(dir, "net-conf.json")
	if err := os.WriteFile(conf, []byte(`{"Network": "10.244.0.0/16", "Backend": {"Type": "vxlan"}}`), 0o644); err != nil {
		log.Fatal(err)
	}
	client := fake.NewClientset(&corev1.Node{
		ObjectMeta: metav1.ObjectMeta{Name: "node-a"},
		Spec:       corev1.NodeSpec{PodCIDR: "10.244.7.0/24", PodCIDRs: []string{"10.244.7.0/24"}},
	})
	m, err := kube.New(kube.Options{Nodes: kube.WithoutWatchList(client.CoreV1().Nodes()), NodeName: "node-a", NetConfPath: conf})
	if err != nil {
		log.Fatal(err)
	}
	defer m.Close()
	l, err := m.Acquire(context.Background(), lease.AcquireRequest{Attrs: lease.Attrs{PublicIP: netip.MustParseAddr("192.0.2.7"), BackendType: "vxlan",
		BackendData: []byte(`{"VNI":1,"VtepMAC":"0e:00:00:00:00:07"}`)}})
	if err != nil {
		log.Fatal(err)
	}
	fmt.Println("node-a holds", l.Key)
	// Output: node-a holds 10.244.7.0-24
}
