package main

import (
	"strings"
	"testing"
)

// FuzzParseRanges: any "ranges" either parse into ranges that hold their
// subnet's addresses, or fail with an error naming the field; never a
// panic.
func FuzzParseRanges(f *testing.F) {
	for _, s := range [][4]string{
		{"10.244.3.0/24", "", "", ""},
		{"10.244.3.1/24", "10.244.3.10", "10.244.3.20", "10.244.3.1"},
		{"fd00::/64", "", "", ""},
		{"10.244.3.0", "", "", ""},
		{"10.244.3.0/24", "x", "", ""},
	} {
		f.Add(s[0], s[1], s[2], s[3])
	}
	f.Fuzz(func(t *testing.T, subnet, start, end, gw string) {
		rs, err := parseRanges(ipamConf{Ranges: [][]rangeConf{{{Subnet: subnet, RangeStart: start, RangeEnd: end, Gateway: gw}}}})
		if err != nil {
			if !strings.Contains(err.Error(), "ipam.ranges[0][0].") {
				t.Fatalf("error without the field: %v", err)
			}
			return
		}
		if len(rs) != 1 || !rs[0].Subnet.IsValid() {
			t.Fatalf("ranges %+v", rs)
		}
	})
}
