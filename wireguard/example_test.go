package wireguard_test

import (
	"encoding/json"
	"fmt"
	"net/netip"

	"github.com/weftnet/weft/wireguard"
)

// What a WireGuard node publishes in its lease: flannel's format, which
// flanneld reads as it reads its own.
func ExampleConfig_Attrs() {
	cfg, err := wireguard.ParseConfig(json.RawMessage(`{"Type":"wireguard","PersistentKeepaliveInterval":25}`))
	if err != nil {
		panic(err)
	}
	// In an agent: key, _, err := wireguard.LoadOrCreateKey(wireguard.KeyFile("/var/lib/weft"))
	pub, _ := wireguard.ParseKey("hSDwCYkwp1R0i33ctD73Wg2/Og0mOBr066SpjqqbTmo=")
	attrs, err := cfg.Attrs(pub, netip.MustParseAddr("198.18.0.7"), netip.Addr{}, true, false)
	if err != nil {
		panic(err)
	}
	b, _ := json.Marshal(attrs)
	fmt.Println(string(b))
	fmt.Println(cfg.Devices(true, false)[0].Name, cfg.PersistentKeepaliveInterval)
	// Output:
	// {"PublicIP":"198.18.0.7","PublicIPv6":null,"BackendType":"wireguard","BackendData":{"PublicKey":"hSDwCYkwp1R0i33ctD73Wg2/Og0mOBr066SpjqqbTmo=","Port":51820}}
	// flannel-wg 25s
}
