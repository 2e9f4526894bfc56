package hostgw

import (
	"fmt"
	"net/netip"

	"github.com/weftnet/weft/lease"
)

// BackendType is the host-gw backend's BackendType in leases and
// net-conf.json.
const BackendType = "host-gw"

// Attrs returns the attributes a host-gw node publishes with its lease
// before acquiring it: its public addresses (the zero Addr for a family
// it does not run) and the backend type, with no backend data.
func Attrs(public4, public6 netip.Addr) lease.Attrs {
	return lease.Attrs{PublicIP: public4, PublicIPv6: public6, BackendType: BackendType}
}

// Admit is the host-gw rule for a peer lease's backend part in one
// family. It returns the peer's uniqueness key within the backend, always
// "" (a host-gw peer has no identity but its public address, which
// admission keeps unique already), or an error saying what to fix.
func Admit(l lease.Lease, ipv6 bool) (unique string, err error) {
	if l.Attrs.BackendType != BackendType {
		return "", fmt.Errorf("BackendType %q, but this network runs %q; the two nodes' net-conf.json Backend.Type differ", l.Attrs.BackendType, BackendType)
	}
	public, field := l.Attrs.PublicIP, "PublicIP"
	if ipv6 {
		public, field = l.Attrs.PublicIPv6, "PublicIPv6"
	}
	if !public.IsValid() {
		return "", fmt.Errorf("%s is not set; host-gw routes the peer's subnet via that address", field)
	}
	return "", nil
}
