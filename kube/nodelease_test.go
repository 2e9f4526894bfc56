package kube

import (
	"net/netip"
	"strings"
	"testing"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/weftnet/weft/lease"
)

func nodeWith(name, podCIDR string, podCIDRs ...string) *corev1.Node {
	return &corev1.Node{ObjectMeta: metav1.ObjectMeta{Name: name}, Spec: corev1.NodeSpec{PodCIDR: podCIDR, PodCIDRs: podCIDRs}}
}

func TestPodCIDRs(t *testing.T) {
	for _, tc := range []struct {
		name     string
		node     *corev1.Node
		v4, v6   string
		errPart  string
		notValid bool
	}{
		{name: "none", node: nodeWith("n", ""), notValid: true},
		{name: "podCIDR only", node: nodeWith("n", "10.244.1.0/24"), v4: "10.244.1.0/24"},
		{name: "list wins", node: nodeWith("n", "10.244.9.0/24", "10.244.1.0/24"), v4: "10.244.1.0/24"},
		{name: "dual-stack", node: nodeWith("n", "10.244.1.0/24", "10.244.1.0/24", "fd00:10:244:1::/64"), v4: "10.244.1.0/24", v6: "fd00:10:244:1::/64"},
		{name: "IPv6 only", node: nodeWith("n", "fd00::/64", "fd00::/64"), v6: "fd00::/64"},
		{name: "host bits", node: nodeWith("n", "10.244.1.1/24"), errPart: `spec.podCIDR "10.244.1.1/24"`},
		{name: "garbage", node: nodeWith("n", "", "x"), errPart: `spec.podCIDRs "x"`},
		{name: "two IPv4", node: nodeWith("n", "", "10.244.1.0/24", "10.244.2.0/24"), errPart: "two CIDRs of one family"},
	} {
		k, err := podCIDRs(tc.node)
		if tc.errPart != "" {
			if err == nil || !strings.Contains(err.Error(), tc.errPart) || !strings.Contains(err.Error(), "node n") {
				t.Errorf("%s: err %v, want one naming the node and %q", tc.name, err, tc.errPart)
			}
			continue
		}
		if err != nil {
			t.Errorf("%s: %v", tc.name, err)
			continue
		}
		if tc.notValid != !k.IsValid() || (tc.v4 != "" && k.IPv4.String() != tc.v4) || (tc.v6 != "" && k.IPv6.String() != tc.v6) {
			t.Errorf("%s: %v", tc.name, k)
		}
	}
}

func TestInNetwork(t *testing.T) {
	conf := lease.Config{EnableIPv4: true, Network: netip.MustParsePrefix("10.244.0.0/16")}
	dual := conf
	dual.EnableIPv6, dual.IPv6Network = true, netip.MustParsePrefix("fd00:10:244::/56")
	key := func(v4, v6 string) lease.Key {
		var k lease.Key
		if v4 != "" {
			k.IPv4 = netip.MustParsePrefix(v4)
		}
		if v6 != "" {
			k.IPv6 = netip.MustParsePrefix(v6)
		}
		return k
	}
	for _, tc := range []struct {
		name    string
		k       lease.Key
		conf    lease.Config
		errPart []string
	}{
		{"inside", key("10.244.3.0/24", ""), conf, nil},
		{"the whole network", key("10.244.0.0/16", ""), conf, nil},
		{"outside", key("172.18.1.0/24", ""), conf, []string{"172.18.1.0/24", "10.244.0.0/16", "--cluster-cidr"}},
		{"wider than the network", key("10.0.0.0/8", ""), conf, []string{"10.0.0.0/8", "10.244.0.0/16"}},
		{"dual inside", key("10.244.3.0/24", "fd00:10:244:3::/64"), dual, nil},
		{"v6 outside", key("10.244.3.0/24", "fd00:99::/64"), dual, []string{"fd00:99::/64", "fd00:10:244::/56", "IPv6Network"}},
		{"v6 missing", key("10.244.3.0/24", ""), dual, []string{"no IPv6 CIDR", "IPv6Network"}},
		{"extra family ignored", key("10.244.3.0/24", "fd00:99::/64"), conf, nil},
	} {
		err := inNetwork(tc.k, tc.conf)
		if tc.errPart == nil {
			if err != nil {
				t.Errorf("%s: %v", tc.name, err)
			}
			continue
		}
		for _, part := range tc.errPart {
			if err == nil || !strings.Contains(err.Error(), part) {
				t.Errorf("%s: err %v, want it to name %q", tc.name, err, part)
			}
		}
	}
}

func mustAddr(s string) netip.Addr { return netip.MustParseAddr(s) }
