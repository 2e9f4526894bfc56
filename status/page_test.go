//go:build linux

package status

import (
	"fmt"
	"slices"
	"testing"
)

func testPeers() []Peer {
	var all []Peer
	for i := range 10 {
		p := Peer{Family: "ipv4", Subnet: fmt.Sprintf("10.244.%d.0/24", i), Node: fmt.Sprintf("n%d", i), PublicIP: fmt.Sprintf("192.0.2.%d", i), State: StateProgrammed}
		switch i {
		case 3:
			p.State, p.Err = StateFailed, "in the way"
		case 5:
			p.Probe = &Probe{Reachable: false, Err: "no reply"}
		case 7:
			p.Probe = &Probe{Reachable: true}
		}
		all = append(all, p)
		if i == 5 {
			all = append(all, Peer{Family: "ipv4", Subnet: p.Subnet, State: StateRejected, Reason: "overlap"})
		}
	}
	all = append(all, Peer{Family: "ipv6", Subnet: "fd00:0:0:1::/64", Node: "n1", State: StateProgrammed})
	return all
}

func subnets(ps []Peer) []string {
	out := []string{}
	for _, p := range ps {
		out = append(out, p.Family+" "+p.Subnet+" "+p.State)
	}
	return out
}

func TestPage(t *testing.T) {
	all := testPeers()
	for _, tc := range []struct {
		name string
		q    Query
		want []string
		next bool
	}{
		{"failing", Query{Failing: true}, []string{"ipv4 10.244.3.0/24 failed", "ipv4 10.244.5.0/24 programmed"}, false},
		{"rejected", Query{Rejected: true}, []string{"ipv4 10.244.5.0/24 rejected"}, false},
		{"failing or rejected", Query{Failing: true, Rejected: true}, []string{"ipv4 10.244.3.0/24 failed", "ipv4 10.244.5.0/24 programmed", "ipv4 10.244.5.0/24 rejected"}, false},
		{"by node", Query{Peer: "n7"}, []string{"ipv4 10.244.7.0/24 programmed"}, false},
		{"by node, both families", Query{Peer: "n1"}, []string{"ipv4 10.244.1.0/24 programmed", "ipv6 fd00:0:0:1::/64 programmed"}, false},
		{"by address in the subnet", Query{Peer: "10.244.2.17"}, []string{"ipv4 10.244.2.0/24 programmed"}, false},
		{"by public IP", Query{Peer: "192.0.2.4"}, []string{"ipv4 10.244.4.0/24 programmed"}, false},
		{"by subnet, unmasked", Query{Peer: "10.244.8.9/24"}, []string{"ipv4 10.244.8.0/24 programmed"}, false},
		{"no match", Query{Peer: "nobody"}, []string{}, false},
		{"summary only", Query{Limit: -1}, []string{}, false},
		{"a page", Query{Limit: 2}, []string{"ipv4 10.244.0.0/24 programmed", "ipv4 10.244.1.0/24 programmed"}, true},
		{"a filtered page exactly full", Query{Failing: true, Limit: 2}, []string{"ipv4 10.244.3.0/24 failed", "ipv4 10.244.5.0/24 programmed"}, false},
	} {
		got, next := page(all, tc.q)
		if !slices.Equal(subnets(got), tc.want) || (next != "") != tc.next {
			t.Errorf("%s: %v, next %q; want %v, next %v", tc.name, subnets(got), next, tc.want, tc.next)
		}
	}
	// Following the pages yields every peer once, in order.
	var walked []Peer
	q := Query{Limit: 3}
	for {
		got, next := page(all, q)
		walked = append(walked, got...)
		if next == "" {
			break
		}
		q.After = next
	}
	if !slices.Equal(subnets(walked), subnets(all)) {
		t.Errorf("paging walked %v, want %v", subnets(walked), subnets(all))
	}
}
