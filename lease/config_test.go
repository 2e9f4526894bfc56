package lease

import (
	"bytes"
	"encoding/json"
	"errors"
	"net/netip"
	"os"
	"reflect"
	"strings"
	"testing"
)

func pfx(s string) netip.Prefix { return netip.MustParsePrefix(s) }
func addr(s string) netip.Addr  { return netip.MustParseAddr(s) }

func TestParseConfigDefaults(t *testing.T) {
	tests := []struct {
		name string
		in   string
		want Config
	}{
		{
			"kube-flannel default", `{"Network": "10.244.0.0/16", "Backend": {"Type": "vxlan"}}`,
			Config{EnableIPv4: true, Network: pfx("10.244.0.0/16"), SubnetLen: 24,
				SubnetMin: addr("10.244.1.0"), SubnetMax: addr("10.244.255.0"),
				BackendType: "vxlan", Backend: json.RawMessage(`{"Type": "vxlan"}`)},
		},
		{
			"no backend defaults to vxlan", `{"Network": "10.0.0.0/8"}`,
			Config{EnableIPv4: true, Network: pfx("10.0.0.0/8"), SubnetLen: 24,
				SubnetMin: addr("10.0.1.0"), SubnetMax: addr("10.255.255.0"), BackendType: "vxlan"},
		},
		{
			"/22 still gets /24", `{"Network": "10.1.4.0/22"}`,
			Config{EnableIPv4: true, Network: pfx("10.1.4.0/22"), SubnetLen: 24,
				SubnetMin: addr("10.1.5.0"), SubnetMax: addr("10.1.7.0"), BackendType: "vxlan"},
		},
		{
			"/23 gets prefix+2", `{"Network": "10.1.4.0/23"}`,
			Config{EnableIPv4: true, Network: pfx("10.1.4.0/23"), SubnetLen: 25,
				SubnetMin: addr("10.1.4.128"), SubnetMax: addr("10.1.5.128"), BackendType: "vxlan"},
		},
		{
			"/28 is the smallest network", `{"Network": "10.1.4.16/28"}`,
			Config{EnableIPv4: true, Network: pfx("10.1.4.16/28"), SubnetLen: 30,
				SubnetMin: addr("10.1.4.20"), SubnetMax: addr("10.1.4.28"), BackendType: "vxlan"},
		},
		{
			"explicit range", `{"Network": "10.5.0.0/16", "SubnetLen": 26, "SubnetMin": "10.5.1.0", "SubnetMax": "10.5.20.192"}`,
			Config{EnableIPv4: true, Network: pfx("10.5.0.0/16"), SubnetLen: 26,
				SubnetMin: addr("10.5.1.0"), SubnetMax: addr("10.5.20.192"), BackendType: "vxlan"},
		},
		{
			"min equals max", `{"Network": "10.5.0.0/16", "SubnetMin": "10.5.7.0", "SubnetMax": "10.5.7.0"}`,
			Config{EnableIPv4: true, Network: pfx("10.5.0.0/16"), SubnetLen: 24,
				SubnetMin: addr("10.5.7.0"), SubnetMax: addr("10.5.7.0"), BackendType: "vxlan"},
		},
		{
			"field names are case-insensitive", `{"network": "10.5.0.0/16", "Subnetlen": 25, "BACKEND": {"type": "host-gw"}}`,
			Config{EnableIPv4: true, Network: pfx("10.5.0.0/16"), SubnetLen: 25,
				SubnetMin: addr("10.5.0.128"), SubnetMax: addr("10.5.255.128"),
				BackendType: "host-gw", Backend: json.RawMessage(`{"type": "host-gw"}`)},
		},
		{
			"null means absent", `{"Network": "10.5.0.0/16", "SubnetLen": null, "Backend": null, "EnableIPv6": null}`,
			Config{EnableIPv4: true, Network: pfx("10.5.0.0/16"), SubnetLen: 24,
				SubnetMin: addr("10.5.1.0"), SubnetMax: addr("10.5.255.0"), BackendType: "vxlan"},
		},
		{
			"backend without type", `{"Network": "10.5.0.0/16", "Backend": {"VNI": 4096}}`,
			Config{EnableIPv4: true, Network: pfx("10.5.0.0/16"), SubnetLen: 24,
				SubnetMin: addr("10.5.1.0"), SubnetMax: addr("10.5.255.0"), BackendType: "vxlan", Backend: json.RawMessage(`{"VNI": 4096}`)},
		},
		{
			"unknown fields are listed", `{"Network": "10.5.0.0/16", "Networks": ["10.6.0.0/16"], "SubnetLength": 26}`,
			Config{EnableIPv4: true, Network: pfx("10.5.0.0/16"), SubnetLen: 24,
				SubnetMin: addr("10.5.1.0"), SubnetMax: addr("10.5.255.0"), BackendType: "vxlan",
				Unknown: []string{"Networks", "SubnetLength"}},
		},
		{
			"0.0.0.0 and :: mean default, as in flannel", `{"EnableIPv6": true, "Network": "10.5.0.0/16", "SubnetMin": "0.0.0.0", "SubnetMax": "0.0.0.0",
				"IPv6Network": "fd00:10::/48", "IPv6SubnetMin": "::", "IPv6SubnetMax": "::"}`,
			Config{EnableIPv4: true, EnableIPv6: true, Network: pfx("10.5.0.0/16"), SubnetLen: 24,
				SubnetMin: addr("10.5.1.0"), SubnetMax: addr("10.5.255.0"),
				IPv6Network: pfx("fd00:10::/48"), IPv6SubnetLen: 64,
				IPv6SubnetMin: addr("fd00:10:0:1::"), IPv6SubnetMax: addr("fd00:10:0:ffff::"), BackendType: "vxlan"},
		},
		{
			"ipv6 only", `{"EnableIPv4": false, "EnableIPv6": true, "IPv6Network": "fd00:10::/48"}`,
			Config{EnableIPv6: true, IPv6Network: pfx("fd00:10::/48"), IPv6SubnetLen: 64,
				IPv6SubnetMin: addr("fd00:10:0:1::"), IPv6SubnetMax: addr("fd00:10:0:ffff::"), BackendType: "vxlan"},
		},
		{
			"ipv6 /64 network gets /66", `{"EnableIPv4": false, "EnableIPv6": true, "IPv6Network": "fd00:10::/64"}`,
			Config{EnableIPv6: true, IPv6Network: pfx("fd00:10::/64"), IPv6SubnetLen: 66,
				IPv6SubnetMin: addr("fd00:10::4000:0:0:0"), IPv6SubnetMax: addr("fd00:10::c000:0:0:0"), BackendType: "vxlan"},
		},
		{
			"ipv6 /124 is the smallest network", `{"EnableIPv4": false, "EnableIPv6": true, "IPv6Network": "fd00::10/124"}`,
			Config{EnableIPv6: true, IPv6Network: pfx("fd00::10/124"), IPv6SubnetLen: 126,
				IPv6SubnetMin: addr("fd00::14"), IPv6SubnetMax: addr("fd00::1c"), BackendType: "vxlan"},
		},
		{
			"ipv6 with 2^64 subnets", `{"EnableIPv4": false, "EnableIPv6": true, "IPv6Network": "fd00::/32", "IPv6SubnetLen": 96}`,
			Config{EnableIPv6: true, IPv6Network: pfx("fd00::/32"), IPv6SubnetLen: 96,
				IPv6SubnetMin: addr("fd00::1:0:0"), IPv6SubnetMax: addr("fd00:0:ffff:ffff:ffff:ffff::"), BackendType: "vxlan"},
		},
		{
			"dual stack", `{"EnableIPv6": true, "Network": "10.244.0.0/16", "IPv6Network": "2001:cafe:42:0::/56",
				"IPv6SubnetMin": "2001:cafe:42:10::", "EnableNFTables": true}`,
			Config{EnableIPv4: true, EnableIPv6: true,
				Network: pfx("10.244.0.0/16"), SubnetLen: 24, SubnetMin: addr("10.244.1.0"), SubnetMax: addr("10.244.255.0"),
				IPv6Network: pfx("2001:cafe:42::/56"), IPv6SubnetLen: 64,
				IPv6SubnetMin: addr("2001:cafe:42:10::"), IPv6SubnetMax: addr("2001:cafe:42:ff::"),
				EnableNFTables: true, BackendType: "vxlan"},
		},
		{
			"disabled family is not validated", `{"EnableIPv4": false, "EnableIPv6": true, "IPv6Network": "fd00::/48", "SubnetLen": 31}`,
			Config{EnableIPv6: true, SubnetLen: 31, IPv6Network: pfx("fd00::/48"), IPv6SubnetLen: 64,
				IPv6SubnetMin: addr("fd00:0:0:1::"), IPv6SubnetMax: addr("fd00:0:0:ffff::"), BackendType: "vxlan"},
		},
	}
	for _, tt := range tests {
		got, err := ParseConfig([]byte(tt.in))
		if err != nil {
			t.Errorf("%s: %v", tt.name, err)
			continue
		}
		if !reflect.DeepEqual(got, tt.want) {
			t.Errorf("%s:\n got %+v\nwant %+v", tt.name, got, tt.want)
		}
		// What is cached on disk parses back to the same config.
		data, err := json.Marshal(got)
		if err != nil {
			t.Errorf("%s: marshal: %v", tt.name, err)
			continue
		}
		want := tt.want
		want.Unknown = nil // of the document it was parsed from
		if want.Backend != nil {
			var b bytes.Buffer
			json.Compact(&b, want.Backend)
			want.Backend = b.Bytes()
		}
		again, err := ParseConfig(data)
		if err != nil || !reflect.DeepEqual(again, want) {
			t.Errorf("%s: %s parses back to %+v, %v; want %+v", tt.name, data, again, err, want)
		}
	}
}

func TestParseConfigErrors(t *testing.T) {
	tests := []struct {
		in, field, want string
	}{
		{``, "", `net-conf.json: is empty; it must hold a JSON object such as {"Network": "10.244.0.0/16"}`},
		{"  \n", "", `net-conf.json: is empty; it must hold a JSON object such as {"Network": "10.244.0.0/16"}`},
		{`null`, "", `net-conf.json: must be a JSON object such as {"Network": "10.244.0.0/16"}`},
		{`["10.0.0.0/8"]`, "", `net-conf.json: must be a JSON object such as {"Network": "10.244.0.0/16"}`},
		{`{"Network": "10.0.0.0/8",}`, "", `net-conf.json: is not valid JSON: invalid character '}' looking for beginning of object key string`},
		{`{"Network": "10.0.0.0/8"`, "", `net-conf.json: is not valid JSON: unexpected EOF`},
		{`{"Network": "10.0.0.0/8"} {}`, "", `net-conf.json: has data after the closing brace of the JSON object`},
		{`{"Network": "10.0.0.0/8"} x`, "", `net-conf.json: has data after the closing brace of the JSON object`},
		{`{}`, "Network", `net-conf.json: Network is required when EnableIPv4 is true (the default); set it to the pod network, e.g. "10.244.0.0/16", or set "EnableIPv4": false for an IPv6-only network`},
		{`{"EnableIPv6": true, "IPv6Network": "fd00::/48"}`, "Network", `net-conf.json: Network is required when EnableIPv4 is true (the default); set it to the pod network, e.g. "10.244.0.0/16", or set "EnableIPv4": false for an IPv6-only network`},
		{`{"Network": "10.1.4.0/29", "SubnetLen": 30}`, "Network", `net-conf.json: Network 10.1.4.0/29 is too small; it must be /28 or larger to hold four /30 subnets`},
		{`{"Network": "10.1.0.0/16", "Backend": "` + strings.Repeat("x", 60) + `"}`, "Backend", `net-conf.json: Backend "xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx... must be a JSON object such as {"Type": "vxlan"}`},
		{`{"EnableIPv4": false}`, "EnableIPv4", `net-conf.json: EnableIPv4 false and EnableIPv6 false leave no network to run; set one of them to true`},
		{`{"EnableIPv4": "yes"}`, "EnableIPv4", `net-conf.json: EnableIPv4 "yes" must be true or false`},
		{`{"Network": "10.0.0.0/8", "network": "10.1.0.0/16"}`, "Network", `net-conf.json: Network is given twice (as "Network" and "network"); keep one`},
		{`{"Network": 10}`, "Network", `net-conf.json: Network 10 must be a string such as "10.244.0.0/16"`},
		{`{"Network": "10.0.0.0"}`, "Network", `net-conf.json: Network "10.0.0.0" is not a CIDR such as "10.244.0.0/16"`},
		{`{"Network": "10.244.0.1/16"}`, "Network", `net-conf.json: Network 10.244.0.1/16 has host bits set; use 10.244.0.0/16`},
		{`{"Network": "fd00::/48"}`, "Network", `net-conf.json: Network fd00::/48 is not an IPv4 network; put IPv6 networks in IPv6Network`},
		{`{"Network": "10.1.4.0/29"}`, "Network", `net-conf.json: Network 10.1.4.0/29 is too small; it must be /28 or larger to hold four /30 subnets`},
		{`{"Network": "10.0.0.0/16", "SubnetLen": 31}`, "SubnetLen", `net-conf.json: SubnetLen 31 is too long; at most 30, so that a subnet holds a gateway and pods`},
		{`{"Network": "10.0.0.0/16", "SubnetLen": 17}`, "SubnetLen", `net-conf.json: SubnetLen 17 is too short for Network 10.0.0.0/16; use at least 18 so that the network holds four subnets`},
		{`{"Network": "10.0.0.0/16", "SubnetLen": -1}`, "SubnetLen", `net-conf.json: SubnetLen -1 must be a whole number from 0 (the default) to 30`},
		{`{"Network": "10.0.0.0/16", "SubnetLen": 24.5}`, "SubnetLen", `net-conf.json: SubnetLen 24.5 must be a whole number from 0 (the default) to 30`},
		{`{"Network": "10.0.0.0/16", "SubnetLen": "24"}`, "SubnetLen", `net-conf.json: SubnetLen "24" must be a whole number from 0 (the default) to 30`},
		{`{"Network": "10.0.0.0/16", "SubnetLen": 33}`, "SubnetLen", `net-conf.json: SubnetLen 33 must be a whole number from 0 (the default) to 30`},
		{`{"Network": "10.5.0.0/16", "SubnetMin": "10.5.3.7"}`, "SubnetMin", `net-conf.json: SubnetMin 10.5.3.7 is not aligned to /24; use 10.5.3.0`},
		{`{"Network": "10.5.0.0/16", "SubnetMax": "10.5.3.128"}`, "SubnetMax", `net-conf.json: SubnetMax 10.5.3.128 is not aligned to /24; use 10.5.3.0`},
		{`{"Network": "10.5.0.0/16", "SubnetMin": "10.6.0.0"}`, "SubnetMin", `net-conf.json: SubnetMin 10.6.0.0 is outside Network 10.5.0.0/16`},
		{`{"Network": "10.5.0.0/16", "SubnetMax": "10.4.255.0"}`, "SubnetMax", `net-conf.json: SubnetMax 10.4.255.0 is outside Network 10.5.0.0/16`},
		{`{"Network": "10.5.0.0/16", "SubnetMin": "10.5.9.0", "SubnetMax": "10.5.3.0"}`, "SubnetMin", `net-conf.json: SubnetMin 10.5.9.0 is above SubnetMax 10.5.3.0; no subnet lies between them`},
		{`{"Network": "10.5.0.0/16", "SubnetMin": "fd00::"}`, "SubnetMin", `net-conf.json: SubnetMin fd00:: is not an IPv4 address`},
		{`{"Network": "10.5.0.0/16", "SubnetMin": "10.5.1"}`, "SubnetMin", `net-conf.json: SubnetMin "10.5.1" is not an IP address such as "10.244.1.0"`},
		{`{"Network": "10.5.0.0/16", "SubnetMin": 1}`, "SubnetMin", `net-conf.json: SubnetMin 1 must be a string such as "10.244.1.0"`},
		{`{"Network": "10.5.0.0/16", "Backend": "vxlan"}`, "Backend", `net-conf.json: Backend "vxlan" must be a JSON object such as {"Type": "vxlan"}`},
		{`{"Network": "10.5.0.0/16", "Backend": [1]}`, "Backend", `net-conf.json: Backend [1] must be a JSON object such as {"Type": "vxlan"}`},
		{`{"Network": "10.5.0.0/16", "Backend": {"Type": 1}}`, "Backend.Type", `net-conf.json: Backend.Type 1 must be a string such as "vxlan"`},
		{`{"EnableIPv6": true, "Network": "10.5.0.0/16"}`, "IPv6Network", `net-conf.json: IPv6Network is required when EnableIPv6 is true; set it to the pod network, e.g. "fd00:10:244::/56"`},
		{`{"EnableIPv4": false, "EnableIPv6": true, "IPv6Network": "10.0.0.0/8"}`, "IPv6Network", `net-conf.json: IPv6Network 10.0.0.0/8 is not an IPv6 network; put IPv4 networks in Network`},
		{`{"EnableIPv4": false, "EnableIPv6": true, "IPv6Network": "::ffff:10.0.0.0/104"}`, "IPv6Network", `net-conf.json: IPv6Network ::ffff:10.0.0.0/104 is not an IPv6 network; put IPv4 networks in Network`},
		{`{"EnableIPv4": false, "EnableIPv6": true, "IPv6Network": "fd00::1/48"}`, "IPv6Network", `net-conf.json: IPv6Network fd00::1/48 has host bits set; use fd00::/48`},
		{`{"EnableIPv4": false, "EnableIPv6": true, "IPv6Network": "fd00::/125"}`, "IPv6Network", `net-conf.json: IPv6Network fd00::/125 is too small; it must be /124 or larger to hold four /126 subnets`},
		{`{"EnableIPv4": false, "EnableIPv6": true, "IPv6Network": "fd00::/125", "IPv6SubnetLen": 126}`, "IPv6Network", `net-conf.json: IPv6Network fd00::/125 is too small; it must be /124 or larger to hold four /126 subnets`},
		{`{"EnableIPv4": false, "EnableIPv6": true, "IPv6Network": "fd00::/48", "IPv6SubnetLen": 127}`, "IPv6SubnetLen", `net-conf.json: IPv6SubnetLen 127 is too long; at most 126, so that a subnet holds a gateway and pods`},
		{`{"EnableIPv4": false, "EnableIPv6": true, "IPv6Network": "fd00::/48", "IPv6SubnetLen": 49}`, "IPv6SubnetLen", `net-conf.json: IPv6SubnetLen 49 is too short for IPv6Network fd00::/48; use at least 50 so that the network holds four subnets`},
		{`{"EnableIPv4": false, "EnableIPv6": true, "IPv6Network": "fd00::/48", "IPv6SubnetMin": "fd00:0:0:1::1"}`, "IPv6SubnetMin", `net-conf.json: IPv6SubnetMin fd00:0:0:1::1 is not aligned to /64; use fd00:0:0:1::`},
		{`{"EnableIPv4": false, "EnableIPv6": true, "IPv6Network": "fd00::/48", "IPv6SubnetMax": "fd01::"}`, "IPv6SubnetMax", `net-conf.json: IPv6SubnetMax fd01:: is outside IPv6Network fd00::/48`},
		{`{"EnableIPv4": false, "EnableIPv6": true, "IPv6Network": "fd00::/48", "IPv6SubnetMax": "10.0.0.0"}`, "IPv6SubnetMax", `net-conf.json: IPv6SubnetMax 10.0.0.0 is not a plain IPv6 address`},
	}
	for _, tt := range tests {
		c, err := ParseConfig([]byte(tt.in))
		if err == nil {
			t.Errorf("ParseConfig(%s) = %+v, want error", tt.in, c)
			continue
		}
		if err.Error() != tt.want {
			t.Errorf("ParseConfig(%s):\n got %s\nwant %s", tt.in, err, tt.want)
		}
		if !errors.Is(err, ErrInvalidConfig) {
			t.Errorf("ParseConfig(%s): error does not match ErrInvalidConfig", tt.in)
		}
		var ce *ConfigError
		if !errors.As(err, &ce) {
			t.Errorf("ParseConfig(%s): error %T is not a *ConfigError", tt.in, err)
		} else if ce.Field != tt.field {
			t.Errorf("ParseConfig(%s): error field = %q, want %q", tt.in, ce.Field, tt.field)
		}
	}
}

func TestParseConfigWrapsSyntaxError(t *testing.T) {
	_, err := ParseConfig([]byte(`{"Network": }`))
	var syn *json.SyntaxError
	if !errors.As(err, &syn) {
		t.Fatalf("error %v does not wrap *json.SyntaxError", err)
	}
}

// TestFlannelNetConf parses net-conf.json files exactly as flannel's manifests
// and documentation ship them.
func TestFlannelNetConf(t *testing.T) {
	tests := []struct {
		file    string
		v4, v6  Range
		backend string
	}{
		{"testdata/flannel/net-conf.json", Range{pfx("10.244.1.0/24"), pfx("10.244.255.0/24")}, Range{}, "vxlan"},
		{"testdata/flannel/net-conf-dualstack.json",
			Range{pfx("10.244.1.0/24"), pfx("10.244.255.0/24")},
			Range{pfx("2001:cafe:42:1::/64"), pfx("2001:cafe:42:ff::/64")}, "vxlan"},
		{"testdata/flannel/net-conf-etcd.json", Range{pfx("10.5.1.0/24"), pfx("10.5.20.0/24")}, Range{}, "vxlan"},
	}
	for _, tt := range tests {
		data, err := os.ReadFile(tt.file)
		if err != nil {
			t.Fatal(err)
		}
		c, err := ParseConfig(data)
		if err != nil {
			t.Errorf("%s: %v", tt.file, err)
			continue
		}
		if c.IPv4Range() != tt.v4 || c.IPv6Range() != tt.v6 || c.BackendType != tt.backend || len(c.Unknown) != 0 {
			t.Errorf("%s: v4 %v v6 %v backend %q unknown %q; want %v %v %q", tt.file, c.IPv4Range(), c.IPv6Range(), c.BackendType, c.Unknown, tt.v4, tt.v6, tt.backend)
		}
		if len(c.Backend) == 0 {
			t.Errorf("%s: raw Backend not kept", tt.file)
		}
	}
}

func TestConfigRanges(t *testing.T) {
	c, err := ParseConfig([]byte(`{"Network": "10.0.0.0/8"}`))
	if err != nil {
		t.Fatal(err)
	}
	if r := c.IPv4Range(); r != (Range{pfx("10.0.1.0/24"), pfx("10.255.255.0/24")}) || r.Len().Int64() != 65535 {
		t.Errorf("IPv4Range = %v with %v subnets", r, r.Len())
	}
	if r := c.IPv6Range(); r != (Range{}) {
		t.Errorf("IPv6Range of a v4-only config = %v", r)
	}
}
