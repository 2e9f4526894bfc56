package lease

import (
	"encoding/json"
	"errors"
	"net/netip"
	"os"
	"strings"
	"testing"
)

func TestAttrsMarshal(t *testing.T) {
	vxlan := json.RawMessage(`{"VNI":1,"VtepMAC":"0e:5a:11:22:33:44"}`)
	tests := []struct {
		name string
		in   Attrs
		want string
	}{
		{"zero", Attrs{}, `{"PublicIP":"0.0.0.0","PublicIPv6":null}`},
		{
			"flannel ipv4",
			Attrs{PublicIP: netip.MustParseAddr("198.18.0.7"), BackendType: "vxlan", BackendData: vxlan},
			`{"PublicIP":"198.18.0.7","PublicIPv6":null,"BackendType":"vxlan","BackendData":{"VNI":1,"VtepMAC":"0e:5a:11:22:33:44"}}`,
		},
		{
			"owner",
			Attrs{PublicIP: netip.MustParseAddr("198.18.0.7"), BackendType: "vxlan", BackendData: vxlan, Owner: "node-a"},
			`{"PublicIP":"198.18.0.7","PublicIPv6":null,"BackendType":"vxlan","BackendData":{"VNI":1,"VtepMAC":"0e:5a:11:22:33:44"},"WeftOwner":"node-a"}`,
		},
		{
			"ipv6 only",
			Attrs{PublicIPv6: netip.MustParseAddr("fd00::7"), BackendType: "vxlan", BackendV6Data: vxlan},
			`{"PublicIP":"0.0.0.0","PublicIPv6":"fd00::7","BackendType":"vxlan","BackendV6Data":{"VNI":1,"VtepMAC":"0e:5a:11:22:33:44"}}`,
		},
		{
			"whitespace in backend data is compacted",
			Attrs{PublicIP: netip.MustParseAddr("10.0.0.1"), BackendData: json.RawMessage("{ \"VNI\" : 1 }")},
			`{"PublicIP":"10.0.0.1","PublicIPv6":null,"BackendData":{"VNI":1}}`,
		},
		{
			"null backend data is omitted",
			Attrs{PublicIP: netip.MustParseAddr("10.0.0.1"), BackendData: json.RawMessage("null")},
			`{"PublicIP":"10.0.0.1","PublicIPv6":null}`,
		},
	}
	for _, tt := range tests {
		got, err := json.Marshal(tt.in)
		if err != nil {
			t.Errorf("%s: %v", tt.name, err)
			continue
		}
		if string(got) != tt.want {
			t.Errorf("%s:\n got %s\nwant %s", tt.name, got, tt.want)
		}
	}
}

func TestAttrsMarshalRejectsWrongFamily(t *testing.T) {
	for _, a := range []Attrs{
		{PublicIP: netip.MustParseAddr("fd00::1")},
		{PublicIPv6: netip.MustParseAddr("10.0.0.1")},
		{PublicIPv6: netip.MustParseAddr("::ffff:10.0.0.1")},
		{PublicIP: netip.MustParseAddr("10.0.0.1"), BackendData: json.RawMessage("{bad")},
	} {
		if b, err := json.Marshal(a); err == nil {
			t.Errorf("Marshal(%+v) = %s, want error", a, b)
		}
	}
}

// TestFlannelLeaseValues reads values exactly as flanneld stores them in etcd
// and checks that they parse and re-encode byte for byte.
func TestFlannelLeaseValues(t *testing.T) {
	tests := []struct {
		file string
		want Attrs
	}{
		{"testdata/flannel/lease-value.json", Attrs{
			PublicIP:    netip.MustParseAddr("192.168.56.11"),
			BackendType: "vxlan",
			BackendData: json.RawMessage(`{"VNI":1,"VtepMAC":"5a:9d:8e:3f:21:c4"}`),
		}},
		{"testdata/flannel/lease-value-dualstack.json", Attrs{
			PublicIP:      netip.MustParseAddr("192.168.56.12"),
			PublicIPv6:    netip.MustParseAddr("fd00:56::12"),
			BackendType:   "vxlan",
			BackendData:   json.RawMessage(`{"VNI":1,"VtepMAC":"7e:10:3a:c2:9b:01"}`),
			BackendV6Data: json.RawMessage(`{"VNI":1,"VtepMAC":"be:44:02:7d:e1:5f"}`),
		}},
	}
	for _, tt := range tests {
		raw, err := os.ReadFile(tt.file)
		if err != nil {
			t.Fatal(err)
		}
		var got Attrs
		if err := json.Unmarshal(raw, &got); err != nil {
			t.Fatalf("%s: %v", tt.file, err)
		}
		if !got.Equal(tt.want) {
			t.Errorf("%s: got %+v, want %+v", tt.file, got, tt.want)
		}
		again, err := json.Marshal(got)
		if err != nil {
			t.Fatal(err)
		}
		if string(again) != string(raw) {
			t.Errorf("%s: re-encoded\n %s\nwant\n %s", tt.file, again, raw)
		}
	}
}

func TestAttrsUnmarshal(t *testing.T) {
	tests := []struct {
		in   string
		want Attrs
	}{
		{`{}`, Attrs{}},
		{`null`, Attrs{}},
		{`{"PublicIP":"0.0.0.0","PublicIPv6":null}`, Attrs{}},
		{`{"PublicIP":"","PublicIPv6":""}`, Attrs{}},
		{`{"PublicIP":null,"PublicIPv6":"::"}`, Attrs{}},
		{`{"publicip":"10.1.1.1","backendtype":"vxlan"}`, Attrs{PublicIP: netip.MustParseAddr("10.1.1.1"), BackendType: "vxlan"}},
		{`{"PublicIP":"10.1.1.1","WeftOwner":"n1","Future":{"x":1}}`, Attrs{PublicIP: netip.MustParseAddr("10.1.1.1"), Owner: "n1"}},
		{`{"PublicIP":"10.1.1.1","BackendData":null}`, Attrs{PublicIP: netip.MustParseAddr("10.1.1.1")}},
	}
	for _, tt := range tests {
		var got Attrs
		if err := json.Unmarshal([]byte(tt.in), &got); err != nil {
			t.Errorf("Unmarshal(%s): %v", tt.in, err)
			continue
		}
		if !got.Equal(tt.want) || (got.BackendData == nil) != (tt.want.BackendData == nil) {
			t.Errorf("Unmarshal(%s) = %+v, want %+v", tt.in, got, tt.want)
		}
	}
}

func TestAttrsUnmarshalErrors(t *testing.T) {
	tests := []struct{ in, want string }{
		{`{"PublicIP":"fd00::1"}`, `PublicIP "fd00::1" is not an IPv4 address`},
		{`{"PublicIP":"10.0.0.300"}`, `PublicIP "10.0.0.300" is not an IP address`},
		{`{"PublicIP":7}`, `PublicIP must be a string, got 7`},
		{`{"PublicIPv6":"10.0.0.1"}`, `PublicIPv6 "10.0.0.1" is not a plain IPv6 address`},
		{`{"PublicIPv6":"::ffff:10.0.0.1"}`, `PublicIPv6 "::ffff:10.0.0.1" is not a plain IPv6 address`},
		{`{"PublicIPv6":"fe80::1%eth0"}`, `PublicIPv6 "fe80::1%eth0" is not a plain IPv6 address`},
		{`{"BackendType":5}`, `invalid lease attributes`},
		{`[]`, `invalid lease attributes`},
	}
	for _, tt := range tests {
		a := Attrs{Owner: "unchanged"}
		err := a.UnmarshalJSON([]byte(tt.in))
		if err == nil {
			t.Errorf("Unmarshal(%s) = %+v, want error", tt.in, a)
			continue
		}
		if !errors.Is(err, ErrInvalidAttrs) || !strings.Contains(err.Error(), tt.want) {
			t.Errorf("Unmarshal(%s) error %q, want ErrInvalidAttrs mentioning %q", tt.in, err, tt.want)
		}
		if a.Owner != "unchanged" {
			t.Errorf("Unmarshal(%s) modified the receiver on error", tt.in)
		}
	}
	var a Attrs
	if err := json.Unmarshal([]byte(`{"PublicIP":`), &a); err == nil {
		t.Error("truncated JSON parsed")
	}
}

func TestAttrsValidate(t *testing.T) {
	ok := []Attrs{
		{PublicIP: netip.MustParseAddr("10.0.0.1"), BackendType: "vxlan"},
		{PublicIPv6: netip.MustParseAddr("fd00::1"), BackendType: "vxlan"},
	}
	for _, a := range ok {
		if err := a.Validate(); err != nil {
			t.Errorf("Validate(%+v) = %v", a, err)
		}
	}
	bad := map[string]Attrs{
		"neither PublicIP nor PublicIPv6": {BackendType: "vxlan"},
		"BackendType is empty":            {PublicIP: netip.MustParseAddr("10.0.0.1")},
	}
	for want, a := range bad {
		err := a.Validate()
		if !errors.Is(err, ErrInvalidAttrs) || !strings.Contains(err.Error(), want) {
			t.Errorf("Validate(%+v) = %v, want ErrInvalidAttrs saying %q", a, err, want)
		}
	}
}

func TestAttrsEqual(t *testing.T) {
	base := Attrs{
		PublicIP:    netip.MustParseAddr("10.0.0.1"),
		BackendType: "vxlan",
		BackendData: json.RawMessage(`{"VNI":1,"VtepMAC":"0e:00:00:00:00:01"}`),
		Owner:       "a",
	}
	for _, data := range []string{
		"{\"VNI\": 1,\n \"VtepMAC\": \"0e:00:00:00:00:01\"}", // whitespace
		`{"VtepMAC":"0e:00:00:00:00:01","VNI":1}`,            // key order
		`{"VNI":1,"VtepMAC":"0e:00:00:00:00:0\u0031"}`,       // escaping
	} {
		same := base
		same.BackendData = json.RawMessage(data)
		if !base.Equal(same) || !same.Equal(base) {
			t.Errorf("backend data %s compares unequal to %s", data, base.BackendData)
		}
	}
	// encoding/json escapes '&' when it re-encodes raw data; a value must
	// still equal itself after a round trip.
	amp := Attrs{PublicIP: base.PublicIP, BackendType: "vxlan", BackendData: json.RawMessage(`{"&0":0}`)}
	out, err := json.Marshal(amp)
	if err != nil {
		t.Fatal(err)
	}
	var back Attrs
	if err := json.Unmarshal(out, &back); err != nil {
		t.Fatal(err)
	}
	if !back.Equal(amp) {
		t.Errorf("round trip through %s made attrs unequal", out)
	}
	for name, mutate := range map[string]func(*Attrs){
		"PublicIP":      func(a *Attrs) { a.PublicIP = netip.MustParseAddr("10.0.0.2") },
		"PublicIPv6":    func(a *Attrs) { a.PublicIPv6 = netip.MustParseAddr("fd00::2") },
		"BackendType":   func(a *Attrs) { a.BackendType = "host-gw" },
		"BackendData":   func(a *Attrs) { a.BackendData = json.RawMessage(`{"VNI":1,"VtepMAC":"0e:00:00:00:00:02"}`) },
		"BackendV6Data": func(a *Attrs) { a.BackendV6Data = json.RawMessage(`{}`) },
		"VNI number":    func(a *Attrs) { a.BackendData = json.RawMessage(`{"VNI":1.0,"VtepMAC":"0e:00:00:00:00:01"}`) },
		"extra field":   func(a *Attrs) { a.BackendData = json.RawMessage(`{"VNI":1,"VtepMAC":"0e:00:00:00:00:01","X":null}`) },
		"Owner":         func(a *Attrs) { a.Owner = "b" },
	} {
		other := base
		mutate(&other)
		if base.Equal(other) || other.Equal(base) {
			t.Errorf("attrs differing in %s compare equal", name)
		}
	}
}
