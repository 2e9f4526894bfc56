package ipam_test

import (
	"fmt"
	"log"
	"net/netip"
	"os"
	"path/filepath"

	"github.com/weftnet/weft/ipam"
)

// A pod restarted under the same namespace and name gets its IP back.
func ExampleNew() {
	dir, err := os.MkdirTemp("", "ipam-example-")
	if err != nil {
		log.Fatal(err)
	}
	defer os.RemoveAll(dir)
	a, err := ipam.New(ipam.Config{
		Dir:    filepath.Join(dir, "cbr0"), // host-local's /var/lib/cni/networks/<name>
		Ranges: []ipam.Range{{Subnet: netip.MustParsePrefix("10.244.3.0/24")}},
	})
	if err != nil {
		log.Fatal(err)
	}
	pod := ipam.Pod{Namespace: "default", Name: "web-0"}
	first := ipam.Attachment{ContainerID: "sandbox-1", IfName: "eth0"}
	other := ipam.Attachment{ContainerID: "sandbox-x", IfName: "eth0"}
	ips, err := a.Allocate(first, pod)
	if err != nil {
		log.Fatal(err)
	}
	fmt.Println("web-0:", ips[0].Address, "gateway", ips[0].Gateway)
	if err := a.Release(first, pod); err != nil {
		log.Fatal(err)
	}
	if _, err := a.Allocate(other, ipam.Pod{Namespace: "default", Name: "other"}); err != nil {
		log.Fatal(err)
	}
	again, err := a.Allocate(ipam.Attachment{ContainerID: "sandbox-2", IfName: "eth0"}, pod)
	if err != nil {
		log.Fatal(err)
	}
	fmt.Println("web-0 restarted:", again[0].Address)
	// Output:
	// web-0: 10.244.3.2/24 gateway 10.244.3.1
	// web-0 restarted: 10.244.3.2/24
}
