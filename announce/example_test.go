package announce_test

import (
	"context"
	"fmt"
	"net/netip"

	"github.com/weftnet/weft/announce"
)

// A chained CNI plugin, run in the node's namespace after the plugin that
// made the pod's interface, announces the pod's addresses from it.
func ExampleAnnounce() {
	rep, err := announce.Announce(context.Background(), announce.Target{
		NetNS:  "/var/run/netns/cni-1234", // CNI_NETNS
		IfName: "eth0",                    // CNI_IFNAME
		Addrs:  []netip.Addr{netip.MustParseAddr("10.244.3.7"), netip.MustParseAddr("fd00:10:244:3::7")},
	}, announce.Options{}) // 3 sends 50 ms apart, after waiting up to 2 s for the links
	if err != nil {
		fmt.Println(err)
		return
	}
	fmt.Printf("announced %s; node entries moved: %v; up: %v\n", rep.MAC, rep.Refreshed, rep.Up)
}
