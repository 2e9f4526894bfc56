package hostgw_test

import (
	"encoding/json"
	"fmt"
	"net/netip"

	"github.com/weftnet/weft/hostgw"
)

// What a host-gw node publishes in its lease: flannel's format, with no
// backend data.
func ExampleAttrs() {
	b, _ := json.Marshal(hostgw.Attrs(netip.MustParseAddr("198.18.0.7"), netip.Addr{}))
	fmt.Println(string(b))
	// Output:
	// {"PublicIP":"198.18.0.7","PublicIPv6":null,"BackendType":"host-gw"}
}
