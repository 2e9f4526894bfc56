//go:build linux

package status

import (
	"fmt"
	"net/netip"
	"slices"
	"testing"

	"github.com/weftnet/weft/lease"
	"github.com/weftnet/weft/lease/admit"
	"github.com/weftnet/weft/vxlan"
)

// testRows are ten IPv4 peers (3 failed, 5 unreachable by probe, with a
// rejected lease at its subnet too) and one IPv6 peer, node n1's.
func testRows() ([]row, map[netip.Prefix]bool) {
	var rows []row
	failing := map[netip.Prefix]bool{}
	for i := range 10 {
		sub := netip.MustParsePrefix(fmt.Sprintf("10.244.%d.0/24", i))
		p := vxlan.Peer{Subnet: sub, PublicIP: netip.MustParseAddr(fmt.Sprintf("192.0.2.%d", i))}
		ps := vxlan.PeerStatus{Peer: p, Desired: p, Wanted: true, Programmed: true}
		switch i {
		case 3:
			ps.Programmed, ps.Err = false, "in the way"
			failing[sub] = true
		case 5:
			failing[sub] = true // unreachable
		}
		rows = append(rows, row{family: "ipv4", subnet: sub, ps: &ps, owner: fmt.Sprintf("n%d", i)})
		if i == 5 {
			rows = append(rows, row{family: "ipv4", subnet: sub, verdict: &admit.Verdict{Peer: admit.Peer{Subnet: sub, Key: lease.Key{IPv4: sub}}, Reason: "overlap"}})
		}
		if i == 6 { // two leases rejected at one subnet: paging must keep both
			for _, k := range []string{"10.244.6.0/24", "10.244.6.0/25"} {
				key := lease.Key{IPv4: netip.MustParsePrefix(k)}
				rows = append(rows, row{family: "ipv4", subnet: sub, verdict: &admit.Verdict{Peer: admit.Peer{Subnet: sub, Key: key}, Reason: "subnet-conflict"}})
			}
		}
	}
	v6 := netip.MustParsePrefix("fd00:0:0:1::/64")
	p := vxlan.Peer{Subnet: v6, PublicIP: netip.MustParseAddr("fd30::1")}
	rows = append(rows, row{family: "ipv6", subnet: v6, ps: &vxlan.PeerStatus{Peer: p, Desired: p, Wanted: true, Programmed: true}, owner: "n1"})
	return rows, failing
}

func names(ps []Peer) []string {
	out := []string{}
	for _, p := range ps {
		out = append(out, p.Family+" "+p.Subnet+" "+p.State)
	}
	return out
}

func TestPage(t *testing.T) {
	rows, failing := testRows()
	var src Source
	for _, tc := range []struct {
		name string
		q    Query
		want []string
		next bool
	}{
		{"failing", Query{Failing: true}, []string{"ipv4 10.244.3.0/24 failed", "ipv4 10.244.5.0/24 programmed"}, false},
		{"rejected", Query{Rejected: true}, []string{"ipv4 10.244.5.0/24 rejected", "ipv4 10.244.6.0/24 rejected", "ipv4 10.244.6.0/24 rejected"}, false},
		{"failing or rejected", Query{Failing: true, Rejected: true}, []string{"ipv4 10.244.3.0/24 failed", "ipv4 10.244.5.0/24 programmed", "ipv4 10.244.5.0/24 rejected", "ipv4 10.244.6.0/24 rejected", "ipv4 10.244.6.0/24 rejected"}, false},
		{"by node", Query{Peer: "n7"}, []string{"ipv4 10.244.7.0/24 programmed"}, false},
		{"by node, both families", Query{Peer: "n1"}, []string{"ipv4 10.244.1.0/24 programmed", "ipv6 fd00:0:0:1::/64 programmed"}, false},
		{"by address in the subnet", Query{Peer: "10.244.2.17"}, []string{"ipv4 10.244.2.0/24 programmed"}, false},
		{"by public IP", Query{Peer: "192.0.2.4"}, []string{"ipv4 10.244.4.0/24 programmed"}, false},
		{"by subnet, unmasked", Query{Peer: "10.244.8.9/24"}, []string{"ipv4 10.244.8.0/24 programmed"}, false},
		{"no match", Query{Peer: "nobody"}, []string{}, false},
		{"a page", Query{Limit: 2}, []string{"ipv4 10.244.0.0/24 programmed", "ipv4 10.244.1.0/24 programmed"}, true},
		{"a filtered page exactly full", Query{Failing: true, Limit: 2}, []string{"ipv4 10.244.3.0/24 failed", "ipv4 10.244.5.0/24 programmed"}, false},
	} {
		got, next := src.page(rows, tc.q, failing)
		if !slices.Equal(names(got), tc.want) || (next != "") != tc.next {
			t.Errorf("%s: %v, next %q; want %v, next %v", tc.name, names(got), next, tc.want, tc.next)
		}
	}
	// Following the pages yields every peer once, in order, whatever the
	// page size, and the rejected lease after the admitted one.
	for size := 1; size <= len(rows)+1; size++ {
		var walked []Peer
		q := Query{Limit: size}
		for {
			got, next := src.page(rows, q, failing)
			walked = append(walked, got...)
			if next == "" {
				break
			}
			if _, err := parsePlace(next); err != nil {
				t.Fatalf("next %q does not parse: %v", next, err)
			}
			q.After = next
		}
		all, _ := src.page(rows, Query{Limit: MaxLimit}, failing)
		if len(walked) != len(rows) || !slices.Equal(names(walked), names(all)) {
			t.Errorf("pages of %d walked %v, want %v", size, names(walked), names(all))
		}
	}
}
