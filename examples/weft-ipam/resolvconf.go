package main

import (
	"bufio"
	"fmt"
	"os"
	"strings"

	"github.com/containernetworking/cni/pkg/types"
)

// parseResolvConf reads ipam.resolvConf as host-local does: "nameserver",
// "domain", "search" and "options" lines become the result's DNS; other
// lines and comments are ignored.
func parseResolvConf(path string) (types.DNS, error) {
	f, err := os.Open(path)
	if err != nil {
		return types.DNS{}, fmt.Errorf("weft-ipam: ipam.resolvConf: %w", err)
	}
	defer f.Close()
	var dns types.DNS
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		line := strings.TrimSpace(sc.Text())
		if line == "" || line[0] == '#' || line[0] == ';' {
			continue
		}
		fields := strings.Fields(line)
		if len(fields) < 2 {
			continue
		}
		switch fields[0] {
		case "nameserver":
			dns.Nameservers = append(dns.Nameservers, fields[1])
		case "domain":
			dns.Domain = fields[1]
		case "search":
			dns.Search = append(dns.Search, fields[1:]...)
		case "options":
			dns.Options = append(dns.Options, fields[1:]...)
		}
	}
	if err := sc.Err(); err != nil {
		return types.DNS{}, fmt.Errorf("weft-ipam: ipam.resolvConf %s: %w", path, err)
	}
	return dns, nil
}
