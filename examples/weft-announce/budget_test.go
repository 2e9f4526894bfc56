package main

import (
	"net/netip"
	"testing"

	"github.com/vishvananda/netlink"

	"github.com/weftnet/weft/internal/netnstest"
)

// TestSlowAnnouncementCompletes: a configuration the plugin accepts
// ((count-1) x interval up to 10 s) is carried out: the ADD succeeds
// once every frame is sent, rather than failing the pod's sandbox at a
// fixed deadline partway through. Here 11 sends a second apart (10 s).
func TestSlowAnnouncementCompletes(t *testing.T) {
	netnstest.RequirePrivileged(t)
	if testing.Short() {
		t.Skip("sends for 10 s")
	}
	node := netnstest.NewNamespace(t, "weft-node")
	pod := netnstest.NewNamespace(t, "weft-pod")
	v := &netlink.Veth{LinkAttrs: netlink.LinkAttrs{Name: "veth1"}, PeerName: "eth0", PeerNamespace: netlink.NsFd(int(pod.Handle))}
	if err := node.Netlink().LinkAdd(v); err != nil {
		t.Fatal(err)
	}
	for ns, name := range map[*netnstest.Namespace]string{node: "veth1", pod: "eth0"} {
		l, _ := ns.Netlink().LinkByName(name)
		if err := ns.Netlink().LinkSetUp(l); err != nil {
			t.Fatal(err)
		}
	}
	pod.AddrAdd(t, "eth0", netip.MustParsePrefix("10.9.0.2/24"))
	path := "/var/run/netns/" + pod.Name
	conf := `{"cniVersion": "1.0.0", "name": "cbr0", "type": "weft-announce", "count": 11, "interval": "1s", "prevResult": ` + prevResult(path) + `}`
	if out, err := run(node.Name, "ADD", path, conf); err != nil {
		t.Fatalf("ADD with count 11, interval 1s: %v\n%s", err, out)
	}
}
