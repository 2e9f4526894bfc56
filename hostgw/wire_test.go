package hostgw

import (
	"encoding/json"
	"errors"
	"net/netip"
	"strings"
	"testing"

	"github.com/weftnet/weft/lease"
)

// flannelLeaseAttrs has the field names, types, order and tags of flannel
// v0.28's lease.LeaseAttrs (pkg/lease), so that encoding/json gives what
// flanneld writes for a host-gw lease (pkg/backend/hostgw/hostgw.go sets
// BackendType alone).
type flannelLeaseAttrs struct {
	PublicIP      string
	PublicIPv6    *string
	BackendType   string          `json:",omitempty"`
	BackendData   json.RawMessage `json:",omitempty"`
	BackendV6Data json.RawMessage `json:",omitempty"`
}

// TestGoldenLeaseValues: weft's host-gw lease is flannel's byte for byte
// in etcd (no backend data at all), and reads back and admits from both
// forms flannel writes: absent in etcd, "null" in the kube annotation.
func TestGoldenLeaseValues(t *testing.T) {
	v6 := "fd30::7"
	for _, c := range []struct {
		name    string
		public6 netip.Addr
		flannel flannelLeaseAttrs
		golden  string
	}{
		{"ipv4", netip.Addr{}, flannelLeaseAttrs{PublicIP: "198.18.0.7", BackendType: "host-gw"},
			`{"PublicIP":"198.18.0.7","PublicIPv6":null,"BackendType":"host-gw"}`},
		{"dual-stack", netip.MustParseAddr(v6), flannelLeaseAttrs{PublicIP: "198.18.0.7", PublicIPv6: &v6, BackendType: "host-gw"},
			`{"PublicIP":"198.18.0.7","PublicIPv6":"fd30::7","BackendType":"host-gw"}`},
	} {
		want, _ := json.Marshal(c.flannel)
		if string(want) != c.golden {
			t.Fatalf("%s: flannel's encoding %s is not the golden %s", c.name, want, c.golden)
		}
		got, err := json.Marshal(Attrs(netip.MustParseAddr("198.18.0.7"), c.public6))
		if err != nil || string(got) != c.golden {
			t.Fatalf("%s: weft writes %s (%v), flannel %s", c.name, got, err, c.golden)
		}
	}
	// flannel's kube subnet manager writes the backend-data annotation as
	// json.RawMessage(nil).MarshalJSON(): "null".
	null, _ := json.RawMessage(nil).MarshalJSON()
	if string(null) != "null" {
		t.Fatalf("flannel's empty backend data is %s", null)
	}
	for _, raw := range []string{
		`{"PublicIP":"198.18.0.7","PublicIPv6":null,"BackendType":"host-gw"}`,
		`{"PublicIP":"198.18.0.7","PublicIPv6":null,"BackendType":"host-gw","BackendData":null}`,
	} {
		var a lease.Attrs
		if err := json.Unmarshal([]byte(raw), &a); err != nil {
			t.Fatal(err)
		}
		if a.BackendData != nil {
			t.Fatalf("%s: backend data %s, want none", raw, a.BackendData)
		}
		if _, err := Admit(lease.Lease{Attrs: a}, false); err != nil {
			t.Fatalf("%s: %v", raw, err)
		}
	}
}

func TestAdmit(t *testing.T) {
	ok := lease.Lease{Attrs: Attrs(netip.MustParseAddr("198.18.0.7"), netip.Addr{})}
	if u, err := Admit(ok, false); err != nil || u != "" {
		t.Fatalf("%q, %v", u, err)
	}
	if _, err := Admit(ok, true); err == nil || !strings.Contains(err.Error(), "PublicIPv6") {
		t.Fatalf("no IPv6 address: %v", err)
	}
	vx := ok
	vx.Attrs.BackendType = "vxlan"
	if _, err := Admit(vx, false); err == nil || !strings.Contains(err.Error(), "BackendType") {
		t.Fatalf("vxlan lease: %v", err)
	}
}

func TestParseConfig(t *testing.T) {
	for _, ok := range []string{``, `null`, `{"Type":"host-gw"}`, `{"type":"host-gw","VNI":1}`, `{}`} {
		if _, err := ParseConfig(json.RawMessage(ok)); err != nil {
			t.Errorf("%s: %v", ok, err)
		}
	}
	for in, field := range map[string]string{`{"Type":"vxlan"}`: "Backend.Type", `{"Type":1}`: "Backend.Type", `[]`: "Backend"} {
		_, err := ParseConfig(json.RawMessage(in))
		var ce *lease.ConfigError
		if !errors.As(err, &ce) || ce.Field != field {
			t.Errorf("%s: %v; want a ConfigError naming %s", in, err, field)
		}
	}
}

// FuzzParseConfig: any Backend either parses or is a ConfigError naming a
// Backend field.
func FuzzParseConfig(f *testing.F) {
	for _, s := range []string{`{"Type":"host-gw"}`, `null`, `{"Type":null}`, `{"Type":"vxlan"}`, `"host-gw"`} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		if _, err := ParseConfig(b); err != nil {
			var ce *lease.ConfigError
			if !errors.As(err, &ce) || !strings.HasPrefix(ce.Field, "Backend") {
				t.Fatalf("%s: %v", b, err)
			}
		}
	})
}

// FuzzAdmit: any lease value flannel's format can carry is admitted for a
// family only if it is host-gw and has that family's address.
func FuzzAdmit(f *testing.F) {
	for _, s := range []string{`{"PublicIP":"198.18.0.7","BackendType":"host-gw"}`, `{"PublicIPv6":"fd30::1","BackendType":"host-gw","BackendData":{"x":1}}`, `{"BackendType":"vxlan"}`} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		var a lease.Attrs
		if json.Unmarshal(b, &a) != nil {
			return
		}
		for _, v6 := range []bool{false, true} {
			_, err := Admit(lease.Lease{Attrs: a}, v6)
			public := a.PublicIP
			if v6 {
				public = a.PublicIPv6
			}
			if (err == nil) != (a.BackendType == BackendType && public.IsValid()) {
				t.Fatalf("%s ipv6=%v: %v", b, v6, err)
			}
		}
	})
}
