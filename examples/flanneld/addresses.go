package main

import (
	"fmt"

	"github.com/weftnet/weft/underlay"
)

// underlayPolicy is flannel's interface selection, from the flags:
// --iface, --iface-regex, --iface-can-reach, else the default route's
// interface; --public-ip and --public-ipv6 win for their family. See
// underlay.Policy.Choose.
func underlayPolicy(c config) underlay.Policy {
	return underlay.Policy{
		Interfaces: c.ifaces, Regexps: c.ifaceRegexes, CanReach: c.ifaceCanReach,
		PublicIP: c.publicIP, PublicIPv6: c.publicIPv6,
	}
}

// findPublicAddrs chooses the underlay for a network config enabling the
// given families, naming the flags in its error.
func findPublicAddrs(c config, ipv4, ipv6 bool) (underlay.Choice, error) {
	ch, err := underlayPolicy(c).Choose(ipv4, ipv6)
	if err != nil {
		return ch, fmt.Errorf("choosing the interface (--iface, --iface-regex, --iface-can-reach, or the default route; or set --public-ip/--public-ipv6): %w", err)
	}
	return ch, nil
}
