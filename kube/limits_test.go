package kube

import (
	"strings"
	"testing"

	corev1 "k8s.io/api/core/v1"

	"github.com/weftnet/weft/internal/leasetest"
	"github.com/weftnet/weft/lease"
)

// TestOversizeAnnotations: a Node whose lease annotations are over their
// limit (backend-data padded to 200 KiB, as the API server allows) is
// kept in the informer's cache as the annotation's size alone, and its
// lease reaches the watcher as Invalid, naming the node, the annotation
// and the limit; written again within it, the lease is a Changed one.
func TestOversizeAnnotations(t *testing.T) {
	huge := peerNode("huge", 5)
	key := "flannel.alpha.coreos.com/backend-data"
	huge.Annotations[key] = `{"VNI":1,"VtepMAC":"0e:00:00:00:00:05","Pad":"` + strings.Repeat("x", 200<<10) + `"}`
	e := newFakeEnv(t, dualNetConf, peerNode("self", 1), huge)
	b := leasetest.Watch(t, e.m)
	var got lease.Lease
	for _, ev := range b.Snapshot(t).Events {
		if ev.Lease.Key.IPv4.String() == cidr4(5) {
			got = ev.Lease
		}
	}
	if !strings.Contains(got.Invalid, "huge") || !strings.Contains(got.Invalid, key) || !strings.Contains(got.Invalid, "over the limit of 512") {
		t.Errorf("lease of the padded node: %+v; want it invalid, naming the node, the annotation and the limit", got)
	}
	if !got.Attrs.Equal(lease.Attrs{}) {
		t.Errorf("the invalid lease kept attributes %+v", got.Attrs)
	}
	cached, err := e.m.lister.Get("huge")
	if err != nil {
		t.Fatal(err)
	}
	if v := cached.Annotations[key]; len(v) > 64 {
		t.Errorf("the informer's cache keeps %d bytes of the annotation", len(v))
	}

	e.update(t, "huge", func(n *corev1.Node) { n.Annotations[key] = `{"VNI":1,"VtepMAC":"0e:00:00:00:00:05"}` })
	b.WaitLeases(t, "the lease written again within the limit", func(m map[lease.Key]lease.Attrs) bool {
		for k, a := range m {
			if k.IPv4.String() == cidr4(5) {
				return a.Owner == "huge"
			}
		}
		return false
	})
}
