package lease

import (
	"encoding/json"
	"errors"
	"strings"
	"testing"
)

// TestAttrsSizeLimits: a value, or a field, over its limit is refused by
// size before anything of it is kept, naming the field and the limit;
// flannel's largest value with a node name as long as Kubernetes allows
// is within every limit; and weft never writes a value its readers would
// refuse.
func TestAttrsSizeLimits(t *testing.T) {
	pad := func(n int) string { return strings.Repeat("x", n) }
	for _, tc := range []struct {
		name, value, field string
	}{
		{"value", `{"PublicIP":"192.0.2.1","BackendType":"vxlan","Padding":"` + pad(MaxValueSize) + `"}`, "value"},
		{"backend type", `{"PublicIP":"192.0.2.1","BackendType":"` + pad(MaxBackendTypeSize+1) + `"}`, "BackendType"},
		{"owner", `{"PublicIP":"192.0.2.1","BackendType":"vxlan","WeftOwner":"` + pad(MaxOwnerSize+1) + `"}`, "WeftOwner"},
		{"backend data", `{"PublicIP":"192.0.2.1","BackendType":"vxlan","BackendData":{"VNI":1,"VtepMAC":"0e:00:00:00:00:01","P":"` + pad(MaxBackendDataSize) + `"}}`, "BackendData"},
		{"backend v6 data", `{"PublicIPv6":"2001:db8::1","BackendType":"vxlan","BackendV6Data":"` + pad(MaxBackendDataSize) + `"}`, "BackendV6Data"},
	} {
		var a Attrs
		err := json.Unmarshal([]byte(tc.value), &a)
		var se *SizeError
		if !errors.As(err, &se) || se.Field != tc.field || !errors.Is(err, ErrTooLarge) || !errors.Is(err, ErrInvalidAttrs) {
			t.Errorf("%s: error %v, want a *SizeError for %s wrapping ErrTooLarge and ErrInvalidAttrs", tc.name, err, tc.field)
			continue
		}
		if msg := err.Error(); !strings.Contains(msg, tc.field) || !strings.Contains(msg, "over the limit of") || len(msg) > 200 {
			t.Errorf("%s: message %q does not name the field and the limit briefly", tc.name, msg)
		}
		if a.BackendType != "" || a.Owner != "" || a.BackendData != nil {
			t.Errorf("%s: refused value left %+v", tc.name, a)
		}
	}

	largest := `{"PublicIP":"255.255.255.254","PublicIPv6":"2001:db8:ffff:ffff:ffff:ffff:ffff:fffe","BackendType":"wireguard",` +
		`"BackendData":{"PublicKey":"` + pad(44) + `","Port":51820},"BackendV6Data":{"PublicKey":"` + pad(44) + `","Port":51821},` +
		`"WeftOwner":"` + pad(MaxOwnerSize) + `"}`
	var a Attrs
	if err := json.Unmarshal([]byte(largest), &a); err != nil {
		t.Fatalf("the largest lawful value is refused: %v", err)
	}
	if _, err := json.Marshal(a); err != nil {
		t.Fatalf("the largest lawful value cannot be written back: %v", err)
	}
	a.Owner = pad(MaxOwnerSize + 1)
	if _, err := json.Marshal(a); !errors.Is(err, ErrTooLarge) {
		t.Errorf("writing an owner over the limit: %v, want ErrTooLarge", err)
	}
}

// TestQuote: what a writer put in a field is cut for a message, on a rune
// boundary, saying how long it was.
func TestQuote(t *testing.T) {
	if got := Quote("short", 10); got != `"short"` {
		t.Errorf("Quote(short) = %s", got)
	}
	got := Quote(strings.Repeat("é", 100), 11)
	if got != `"ééééé"... (200 bytes)` {
		t.Errorf("Quote(long) = %s", got)
	}
}
