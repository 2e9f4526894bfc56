package kube

import (
	"encoding/json"
	"errors"
	"net/netip"
	"strings"
	"testing"

	"github.com/weftnet/weft/lease"
)

func TestAnnotationKey(t *testing.T) {
	for _, tc := range []struct{ prefix, want string }{
		{DefaultAnnotationPrefix, "flannel.alpha.coreos.com/backend-data"},
		{"example.com", "example.com/backend-data"},
		{"example.com/net", "example.com/net-backend-data"},
		// As flannel: a prefix ending in "/" or "-" is used as it is.
		{"example.com/", "example.com/backend-data"},
		{"example.com/net-", "example.com/net-backend-data"},
	} {
		if got := (annotations{tc.prefix}).key(annBackendData); got != tc.want {
			t.Errorf("prefix %q: key %q, want %q", tc.prefix, got, tc.want)
		}
	}
}

// TestAnnotationsRoundTrip: what encode writes, decode reads back, for
// every family combination and for a prefix with a "/", through the one
// key builder.
func TestAnnotationsRoundTrip(t *testing.T) {
	v4 := lease.Attrs{PublicIP: netip.MustParseAddr("192.0.2.7"), BackendType: "vxlan",
		BackendData: json.RawMessage(`{"VNI":1,"VtepMAC":"0e:00:00:00:00:07"}`)}
	v6 := lease.Attrs{PublicIPv6: netip.MustParseAddr("2001:db8::7"), BackendType: "vxlan",
		BackendV6Data: json.RawMessage(`{"VNI":1,"VtepMAC":"0e:00:00:00:00:08"}`)}
	dual := v4
	dual.PublicIPv6, dual.BackendV6Data = v6.PublicIPv6, v6.BackendV6Data
	for _, prefix := range []string{DefaultAnnotationPrefix, "example.com/net"} {
		a := annotations{prefix}
		for name, attrs := range map[string]lease.Attrs{"v4": v4, "v6": v6, "dual": dual} {
			ann := map[string]string{}
			for k, v := range a.encode(attrs) {
				if !strings.HasPrefix(k, prefix) {
					t.Errorf("%s: key %q lacks the prefix %q", name, k, prefix)
				}
				if v != nil {
					ann[k] = *v
				}
			}
			if ann[a.key(annSubnetManager)] != "true" {
				t.Errorf("%s: kube-subnet-manager not published", name)
			}
			got, err := a.decode("node-1", ann)
			want := attrs
			want.Owner = "node-1"
			if err != nil || !got.Equal(want) {
				t.Errorf("%s, prefix %s: decode(encode) = %+v, %v; want %+v", name, prefix, got, err, want)
			}
		}
	}
	// A family turned off is removed, not left advertised.
	if p := (annotations{DefaultAnnotationPrefix}).encode(v4)["flannel.alpha.coreos.com/public-ipv6"]; p != nil {
		t.Errorf("IPv4-only attrs keep public-ipv6 = %q", *p)
	}
}

func TestDecodeAnnotations(t *testing.T) {
	a := annotations{DefaultAnnotationPrefix}
	base := func() map[string]string {
		return map[string]string{
			a.key(annBackendType): "vxlan", a.key(annPublicIP): "192.0.2.7",
			a.key(annBackendData): `{"VNI":1,"VtepMAC":"0e:00:00:00:00:07"}`,
		}
	}
	with := func(k, v string) map[string]string {
		m := base()
		m[a.key(k)] = v
		return m
	}
	for _, tc := range []struct {
		name    string
		ann     map[string]string
		public  string
		errPart string // "" for success
	}{
		{"plain", base(), "192.0.2.7", ""},
		{"overwrite wins", with(annPublicIPOverwrite, "203.0.113.9"), "203.0.113.9", ""},
		{"empty overwrite ignored", with(annPublicIPOverwrite, ""), "192.0.2.7", ""},
		{"bad public ip", with(annPublicIP, "192.0.2"), "", "flannel.alpha.coreos.com/public-ip"},
		{"v6 in the v4 field", with(annPublicIP, "2001:db8::1"), "", "not an IPv4 address"},
		{"bad overwrite", with(annPublicIPOverwrite, "x"), "", "public-ip-overwrite"},
		{"v4 in the v6 overwrite", with(annPublicIPv6Overwr, "192.0.2.9"), "", "public-ipv6-overwrite"},
		{"backend data not JSON", with(annBackendData, `{"VNI":1,`), "", "backend-data"},
		{"backend data not an object", with(annBackendData, `[1]`), "", "not a JSON object"},
		{"null backend data", with(annBackendData, "null"), "192.0.2.7", ""},
		{"no backend type", with(annBackendType, ""), "", "BackendType is empty"},
		{"no address at all", with(annPublicIP, ""), "", "neither PublicIP nor PublicIPv6"},
	} {
		got, err := a.decode("n", tc.ann)
		switch {
		case tc.errPart == "" && err != nil:
			t.Errorf("%s: %v", tc.name, err)
		case tc.errPart == "" && got.PublicIP.String() != tc.public:
			t.Errorf("%s: public IP %v, want %s", tc.name, got.PublicIP, tc.public)
		case tc.errPart != "" && (err == nil || !strings.Contains(err.Error(), tc.errPart)):
			t.Errorf("%s: err %v, want one naming %q", tc.name, err, tc.errPart)
		}
	}
	var ae *annotationError
	if _, err := a.decode("n", with(annBackendData, "{")); !errors.As(err, &ae) || ae.key != a.key(annBackendData) {
		t.Errorf("error %v does not name the annotation", err)
	}
}

// FuzzDecodeAnnotations: any annotation values either decode to attributes
// that validate and survive an encode/decode round trip, or fail with an
// error; never a panic.
func FuzzDecodeAnnotations(f *testing.F) {
	f.Add("vxlan", "192.0.2.7", `{"VNI":1,"VtepMAC":"0e:00:00:00:00:07"}`, "", "", "")
	f.Add("vxlan", "", "", "2001:db8::1", `{"VNI":1}`, "203.0.113.1")
	f.Add("vxlan", "192.0.2.7", `{`, "", "null", "")
	f.Fuzz(func(t *testing.T, typ, public, data, public6, data6, overwrite string) {
		a := annotations{DefaultAnnotationPrefix}
		ann := map[string]string{a.key(annBackendType): typ, a.key(annPublicIP): public, a.key(annBackendData): data,
			a.key(annPublicIPv6): public6, a.key(annBackendV6Data): data6, a.key(annPublicIPOverwrite): overwrite}
		attrs, err := a.decode("n", ann)
		if err != nil {
			return
		}
		if err := attrs.Validate(); err != nil {
			t.Fatalf("decoded attrs do not validate: %v", err)
		}
		again := map[string]string{}
		for k, v := range a.encode(attrs) {
			if v != nil {
				again[k] = *v
			}
		}
		back, err := a.decode("n", again)
		if err != nil || !back.Equal(attrs) {
			t.Fatalf("round trip: %+v, %v; want %+v", back, err, attrs)
		}
	})
}

// TestDecodeIPv6Overwrite: the IPv6 overwrite replaces the IPv6 public IP
// peers see, and leaves the IPv4 one alone.
func TestDecodeIPv6Overwrite(t *testing.T) {
	a := annotations{DefaultAnnotationPrefix}
	got, err := a.decode("n", map[string]string{
		a.key(annBackendType): "vxlan", a.key(annPublicIP): "192.0.2.7", a.key(annPublicIPv6): "2001:db8::7",
		a.key(annPublicIPv6Overwr): "2001:db8::99",
	})
	if err != nil || got.PublicIPv6 != netip.MustParseAddr("2001:db8::99") || got.PublicIP != netip.MustParseAddr("192.0.2.7") {
		t.Errorf("decode = %+v, %v", got, err)
	}
}
