package kube

import (
	"fmt"
	"net/netip"
	"strings"

	corev1 "k8s.io/api/core/v1"

	"github.com/weftnet/weft/lease"
)

// podCIDRs returns a node's subnets: spec.podCIDRs, or spec.podCIDR when
// the list is empty (clusters from before dual-stack). A node may hold one
// subnet of each family. The zero Key means none is assigned yet.
func podCIDRs(node *corev1.Node) (lease.Key, error) {
	cidrs := node.Spec.PodCIDRs
	field := "spec.podCIDRs"
	if len(cidrs) == 0 && node.Spec.PodCIDR != "" {
		cidrs, field = []string{node.Spec.PodCIDR}, "spec.podCIDR"
	}
	var k lease.Key
	for _, c := range cidrs {
		p, err := netip.ParsePrefix(c)
		if err != nil || p != p.Masked() {
			return lease.Key{}, fmt.Errorf("node %s: %s %q is not a CIDR with its host bits zero", node.Name, field, c)
		}
		dst := &k.IPv4
		if p.Addr().Is6() {
			dst = &k.IPv6
		}
		if dst.IsValid() {
			return lease.Key{}, fmt.Errorf("node %s: %s %v holds two CIDRs of one family", node.Name, field, cidrs)
		}
		*dst = p
	}
	return k, nil
}

// inNetwork checks a node's subnets against the network config: each must
// lie inside the Network of its family, and the families the config
// enables must be there. The error names both CIDRs, or the missing family.
func inNetwork(k lease.Key, conf lease.Config) error {
	for _, f := range []struct {
		on      bool
		subnet  netip.Prefix
		network netip.Prefix
		name    string
	}{
		{conf.EnableIPv4, k.IPv4, conf.Network, "Network"},
		{conf.EnableIPv6, k.IPv6, conf.IPv6Network, "IPv6Network"},
	} {
		switch {
		case f.on && !f.subnet.IsValid():
			fam := "IPv4"
			if f.name != "Network" {
				fam = "IPv6"
			}
			return fmt.Errorf("the node's PodCIDRs hold no %s CIDR, but net-conf.json enables %s %s", fam, f.name, f.network)
		case f.on && (f.subnet.Bits() < f.network.Bits() || !f.network.Contains(f.subnet.Addr())):
			return fmt.Errorf("PodCIDR %s is outside the %s %s in net-conf.json: kube-controller-manager's --cluster-cidr and the %s must agree", f.subnet, f.name, f.network, f.name)
		}
	}
	return nil
}

// keyFor returns the lease key of a node's subnets for the families conf
// enables, the others dropped.
func keyFor(k lease.Key, conf lease.Config) lease.Key {
	if !conf.EnableIPv4 {
		k.IPv4 = netip.Prefix{}
	}
	if !conf.EnableIPv6 {
		k.IPv6 = netip.Prefix{}
	}
	return k
}

// olderClaimant returns the name of a Node, older than node by creation
// time (then by name, as peer admission orders them), that publishes a
// lease overlapping k in a family conf enables: a misconfiguration in which
// the older Node keeps the subnet on every peer, so this one must not route
// it. A Node that publishes no usable lease is no peer anywhere, and does
// not count. It returns "" if there is none.
func (m *Manager) olderClaimant(node *corev1.Node, k lease.Key, conf lease.Config, nodes []*corev1.Node) string {
	best := ""
	var bestNode *corev1.Node
	for _, o := range nodes {
		if o.Name == node.Name {
			continue
		}
		l, ok := m.leaseOf(o, conf)
		if !ok {
			continue
		}
		if !k.Overlaps(l.Key) || !nodeOlder(o, node) {
			continue
		}
		if bestNode == nil || nodeOlder(o, bestNode) {
			best, bestNode = o.Name, o
		}
	}
	return best
}

// nodeOlder reports whether a was created before b, unknown times last,
// then by name: the order of lease.Lease.Older for Nodes.
func nodeOlder(a, b *corev1.Node) bool {
	sa, sb := seniority(a), seniority(b)
	if sa != sb {
		return lease.CompareSeniority(sa, lease.Key{}, sb, lease.Key{}) < 0
	}
	return a.Name < b.Name
}

// seniority is a Node's lease seniority: its creation time in Unix
// seconds, 0 if unknown.
func seniority(n *corev1.Node) int64 {
	if n.CreationTimestamp.IsZero() {
		return 0
	}
	return n.CreationTimestamp.Unix()
}

// cidrText writes a node's PodCIDRs as kubectl shows them.
func cidrText(k lease.Key) string {
	var parts []string
	for _, p := range []netip.Prefix{k.IPv4, k.IPv6} {
		if p.IsValid() {
			parts = append(parts, p.String())
		}
	}
	return strings.Join(parts, ",")
}
