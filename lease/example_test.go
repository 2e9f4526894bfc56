package lease_test

import (
	"encoding/json"
	"errors"
	"fmt"
	"net/netip"

	"github.com/weftnet/weft/lease"
)

func ExampleParseConfig() {
	c, err := lease.ParseConfig([]byte(`{"Network": "10.244.0.0/16", "Backend": {"Type": "vxlan", "VNI": 1}}`))
	if err != nil {
		panic(err)
	}
	fmt.Println(c.SubnetLen, c.IPv4Range(), c.BackendType)

	_, err = lease.ParseConfig([]byte(`{"Network": "10.5.0.0/16", "SubnetMin": "10.5.3.7"}`))
	fmt.Println(err)
	var ce *lease.ConfigError
	fmt.Println(errors.Is(err, lease.ErrInvalidConfig), errors.As(err, &ce) && ce.Field == "SubnetMin")
	// Output:
	// 24 10.244.1.0/24..10.244.255.0/24 vxlan
	// net-conf.json: SubnetMin 10.5.3.7 is not aligned to /24; use 10.5.3.0
	// true true
}

func ExampleParseKey() {
	k, err := lease.ParseKey("10.244.3.0-24&fd00:1::-64")
	if err != nil {
		panic(err)
	}
	fmt.Println(k.IPv4, k.IPv6)

	_, err = lease.ParseKey("10.244.3.1-24")
	fmt.Println(err)
	// Output:
	// 10.244.3.0/24 fd00:1::/64
	// invalid subnet key "10.244.3.1-24": 10.244.3.1/24 has host bits set; the subnet is 10.244.3.0/24
}

func ExampleAttrs() {
	a := lease.Attrs{
		PublicIP:    netip.MustParseAddr("198.18.0.7"),
		BackendType: "vxlan",
		BackendData: json.RawMessage(`{"VNI":1,"VtepMAC":"0e:5a:11:22:33:44"}`),
		Owner:       "node-7",
	}
	b, err := json.Marshal(a)
	if err != nil {
		panic(err)
	}
	fmt.Println(string(b))
	// Output:
	// {"PublicIP":"198.18.0.7","PublicIPv6":null,"BackendType":"vxlan","BackendData":{"VNI":1,"VtepMAC":"0e:5a:11:22:33:44"},"WeftOwner":"node-7"}
}

func ExampleDiff() {
	peer := func(key, ip string) lease.Lease {
		k, _ := lease.ParseKey(key)
		return lease.Lease{Key: k, Attrs: lease.Attrs{PublicIP: netip.MustParseAddr(ip)}}
	}
	before := []lease.Lease{peer("10.244.1.0-24", "192.0.2.1"), peer("10.244.2.0-24", "192.0.2.2")}
	after := []lease.Lease{peer("10.244.2.0-24", "192.0.2.22"), peer("10.244.3.0-24", "192.0.2.3")}
	for _, e := range lease.Diff(before, after) {
		fmt.Println(e.Type, e.Lease.Key, e.Lease.Attrs.PublicIP)
	}
	// Output:
	// removed 10.244.1.0-24 192.0.2.1
	// changed 10.244.2.0-24 192.0.2.22
	// added 10.244.3.0-24 192.0.2.3
}
