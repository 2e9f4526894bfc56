package kube

import (
	"context"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/weftnet/weft/internal/leasetest"
	"github.com/weftnet/weft/lease"
)

const dualNetConf = `{"Network": "10.244.0.0/16", "EnableIPv6": true, "IPv6Network": "fd00:10:244::/56", "Backend": {"Type": "vxlan"}}`

// peerNode is a node that publishes a dual-stack lease, as weft or flannel
// would.
func peerNode(name string, i int) *corev1.Node {
	a := annotations{DefaultAnnotationPrefix}
	n := nodeWith(name, "", cidr4(i), cidr6(i))
	n.Annotations = map[string]string{}
	for k, v := range a.encode(lease.Attrs{PublicIP: mustAddr("192.0.2." + itoa(i)), PublicIPv6: mustAddr("2001:db8::" + itoa(i)),
		BackendType: "vxlan", BackendData: []byte(`{"VNI":1}`), BackendV6Data: []byte(`{"VNI":1}`)}) {
		if v != nil {
			n.Annotations[k] = *v
		}
	}
	return n
}

func itoa(i int) string {
	return strings.TrimLeft(string([]byte{byte('0' + i/100), byte('0' + i/10%10), byte('0' + i%10)}), "0")
}
func cidr4(i int) string { return "10.244." + itoa(i) + ".0/24" }
func cidr6(i int) string { return "fd00:10:244:" + itoa(i) + "::/64" }

func describe(events []lease.Event) string {
	var s []string
	for _, e := range events {
		s = append(s, e.Type.String()+" "+e.Lease.Key.String())
	}
	return strings.Join(s, ", ")
}

func TestWatchLeases(t *testing.T) {
	notYet := nodeWith("not-yet", "", cidr4(3), cidr6(3)) // no kube-subnet-manager annotation
	bad := peerNode("bad", 4)
	bad.Annotations["flannel.alpha.coreos.com/backend-data"] = `{"VNI":`
	e := newFakeEnv(t, dualNetConf, peerNode("self", 1), peerNode("a", 2), notYet, bad)
	b := leasetest.Watch(t, e.m)

	snap := b.Snapshot(t).Events
	if !b.Batches()[0].Snapshot || describe(snap) != "added 10.244.1.0-24&fd00:10:244:1::-64, added 10.244.2.0-24&fd00:10:244:2::-64" {
		t.Fatalf("snapshot: %s", describe(snap))
	}
	if !strings.Contains(e.logs.String(), "peer=bad") || !strings.Contains(e.logs.String(), "backend-data") {
		t.Errorf("no warning names the malformed node and annotation:\n%s", e.logs)
	}

	steps := []struct {
		what   string
		change func()
		want   string
	}{
		{"a new public IP", func() {
			e.update(t, "a", func(n *corev1.Node) { n.Annotations["flannel.alpha.coreos.com/public-ip"] = "192.0.2.99" })
		}, "changed 10.244.2.0-24&fd00:10:244:2::-64"},
		{"only the IPv6 PodCIDR changes", func() {
			// PodCIDRs are write-once in a real API server, but a node
			// re-created under the same name gets new ones.
			e.update(t, "a", func(n *corev1.Node) { n.Spec.PodCIDRs = []string{cidr4(2), cidr6(22)} })
		}, "removed 10.244.2.0-24&fd00:10:244:2::-64, added 10.244.2.0-24&fd00:10:244:22::-64"},
		{"a node joins the subnet manager", func() {
			e.update(t, "not-yet", func(n *corev1.Node) { n.Annotations = peerNode("not-yet", 3).Annotations })
		}, "added 10.244.3.0-24&fd00:10:244:3::-64"},
		{"the malformed node is fixed", func() {
			e.update(t, "bad", func(n *corev1.Node) { n.Annotations["flannel.alpha.coreos.com/backend-data"] = `{"VNI":1}` })
		}, "added 10.244.4.0-24&fd00:10:244:4::-64"},
		{"a node is deleted", func() {
			if err := e.client.CoreV1().Nodes().Delete(context.Background(), "a", metav1.DeleteOptions{}); err != nil {
				t.Fatal(err)
			}
		}, "removed 10.244.2.0-24&fd00:10:244:22::-64"},
	}
	for _, s := range steps {
		n := len(b.Batches())
		s.change()
		if got := describe(b.Batch(t, n).Events); got != s.want {
			t.Errorf("%s: %s, want %s", s.what, got, s.want)
		}
	}
	// An update that changes nothing of a lease sends nothing.
	n := len(b.Batches())
	e.update(t, "self", func(n *corev1.Node) { n.Labels = map[string]string{"x": "y"} })
	e.update(t, "self", func(n *corev1.Node) { n.Annotations["flannel.alpha.coreos.com/public-ip"] = "192.0.2.50" })
	if got := describe(b.Batch(t, n).Events); got != "changed 10.244.1.0-24&fd00:10:244:1::-64" {
		t.Errorf("after a label change and an address change: %s", got)
	}
}

// TestWatchLeasesSeniority: a Node's lease is as senior as the Node, by its
// creation time, which every node reads alike.
func TestWatchLeasesSeniority(t *testing.T) {
	older, younger := peerNode("older", 2), peerNode("younger", 3)
	older.CreationTimestamp = metav1.Unix(1_700_000_000, 0)
	younger.CreationTimestamp = metav1.Unix(1_700_000_100, 0)
	e := newFakeEnv(t, dualNetConf, peerNode("self", 1), older, younger)
	b := leasetest.Watch(t, e.m)
	got := map[string]int64{}
	for _, ev := range b.Snapshot(t).Events {
		got[ev.Lease.Attrs.Owner] = ev.Lease.Seniority
	}
	if got["older"] != 1_700_000_000 || got["younger"] != 1_700_000_100 {
		t.Fatalf("seniorities %v, want the Nodes' creation times", got)
	}
}

// TestWatchLeasesSharedPodCIDR: two Nodes with the same PodCIDRs (a
// misconfiguration, or a node that set its own to another's) are one key.
// The older Node's lease is the one sent, whichever comes first; the
// younger neither displaces it nor, when deleted, takes it away; when the
// older goes, the younger's is sent in its place; and the clash is warned
// about, naming both.
func TestWatchLeasesSharedPodCIDR(t *testing.T) {
	victim, twin := peerNode("victim", 5), peerNode("twin", 66)
	victim.CreationTimestamp = metav1.Unix(1_700_000_000, 0)
	twin.CreationTimestamp = metav1.Unix(1_800_000_000, 0)
	twin.Spec.PodCIDRs, twin.Spec.PodCIDR = victim.Spec.PodCIDRs, victim.Spec.PodCIDR
	owners := func(events []lease.Event) string {
		var s []string
		for _, e := range events {
			s = append(s, e.Type.String()+" "+e.Lease.Attrs.Owner)
		}
		return strings.Join(s, ", ")
	}

	// Both exist at the snapshot: one lease for the key, the older's.
	e := newFakeEnv(t, dualNetConf, twin.DeepCopy(), victim.DeepCopy())
	b := leasetest.Watch(t, e.m)
	if got := owners(b.Snapshot(t).Events); got != "added victim" {
		t.Fatalf("snapshot: %s, want only the older node's lease", got)
	}
	if !strings.Contains(e.logs.String(), "same PodCIDRs") || !strings.Contains(e.logs.String(), "twin") {
		t.Errorf("no warning names both nodes:\n%s", e.logs)
	}

	// The younger comes later, and goes: nothing is sent.
	e = newFakeEnv(t, dualNetConf, victim.DeepCopy())
	b = leasetest.Watch(t, e.m)
	b.Snapshot(t)
	n := len(b.Batches())
	e.create(t, twin.DeepCopy())
	time.Sleep(300 * time.Millisecond) // time for the watch to handle it, were it to send anything
	if err := e.client.CoreV1().Nodes().Delete(context.Background(), "twin", metav1.DeleteOptions{}); err != nil {
		t.Fatal(err)
	}
	time.Sleep(300 * time.Millisecond)
	e.update(t, "victim", func(n *corev1.Node) { n.Annotations["flannel.alpha.coreos.com/public-ip"] = "192.0.2.55" })
	if got := owners(b.Batch(t, n).Events); got != "changed victim" {
		t.Fatalf("after the twin came and went: %s, want only the victim's own change", got)
	}

	// The older goes while the younger stays: the younger's is sent.
	e.create(t, twin.DeepCopy())
	time.Sleep(300 * time.Millisecond)
	n = len(b.Batches())
	if err := e.client.CoreV1().Nodes().Delete(context.Background(), "victim", metav1.DeleteOptions{}); err != nil {
		t.Fatal(err)
	}
	got := b.Batch(t, n).Events
	if owners(got) != "changed twin" || got[0].Prev.Attrs.Owner != "victim" {
		t.Fatalf("after the older node went: %s, want the twin's lease in its place", owners(got))
	}
}
