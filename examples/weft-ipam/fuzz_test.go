package main

import (
	"os"
	"path/filepath"
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

// FuzzResolvConf: any resolv.conf parses without a panic, and every
// nameserver, search domain and option it returns came from a line of the
// file that named it.
func FuzzResolvConf(f *testing.F) {
	for _, s := range []string{
		"nameserver 10.96.0.10\nsearch default.svc.cluster.local svc.cluster.local\noptions ndots:5\n",
		"# comment\n; comment\ndomain cluster.local\nnameserver\n",
		"nameserver fd00::10\r\nsortlist 10.0.0.0\n\n\tnameserver   1.1.1.1  \n",
		"",
	} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, content string) {
		path := filepath.Join(t.TempDir(), "resolv.conf")
		if err := os.WriteFile(path, []byte(content), 0o644); err != nil {
			t.Fatal(err)
		}
		dns, err := parseResolvConf(path)
		if err != nil {
			if !strings.Contains(err.Error(), "ipam.resolvConf") {
				t.Fatalf("error without the field: %v", err)
			}
			return
		}
		for _, ns := range dns.Nameservers {
			if ns == "" || !strings.Contains(content, ns) {
				t.Fatalf("nameserver %q is not in the file", ns)
			}
		}
		for _, s := range append(dns.Search, dns.Options...) {
			if s == "" || !strings.Contains(content, s) {
				t.Fatalf("%q is not in the file", s)
			}
		}
	})
}
