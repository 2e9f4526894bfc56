package lease

import (
	"encoding/json"
	"errors"
	"net/netip"
	"strings"
	"testing"
)

// TestHostClaim: the claim's JSON is what lease/etcd stored as WeftClaim
// before the type moved here, and hosts are the same when an address is.
func TestHostClaim(t *testing.T) {
	a := Attrs{PublicIP: netip.MustParseAddr("192.0.2.1"), PublicIPv6: netip.MustParseAddr("2001:db8::1")}
	for _, tc := range []struct {
		c    HostClaim
		json string
		str  string
		same bool
	}{
		{HostClaim{PublicIP: netip.MustParseAddr("192.0.2.1")}, `{"PublicIP":"192.0.2.1"}`, "192.0.2.1", true},
		{HostClaim{PublicIPv6: netip.MustParseAddr("2001:db8::1")}, `{"PublicIPv6":"2001:db8::1"}`, "2001:db8::1", true},
		{HostClaim{PublicIP: netip.MustParseAddr("192.0.2.2"), PublicIPv6: netip.MustParseAddr("2001:db8::2")}, `{"PublicIP":"192.0.2.2","PublicIPv6":"2001:db8::2"}`, "192.0.2.2 2001:db8::2", false},
		{HostClaim{}, `{}`, "invalid IP", false},
	} {
		raw, err := json.Marshal(tc.c)
		if err != nil || string(raw) != tc.json {
			t.Errorf("%v: JSON %s, %v; want %s", tc.c, raw, err, tc.json)
		}
		var back HostClaim
		if err := json.Unmarshal(raw, &back); err != nil || back != tc.c {
			t.Errorf("%s reads back as %v, %v", raw, back, err)
		}
		if tc.c.String() != tc.str || tc.c.SameHost(a) != tc.same || tc.c.IsValid() != (tc.json != `{}`) {
			t.Errorf("%v: %q, same host %v", tc.c, tc.c.String(), tc.c.SameHost(a))
		}
	}
	err := CollisionError("n1", "its Node", HostOf(a), HostClaim{PublicIP: netip.MustParseAddr("192.0.2.9")}, "rename one")
	if !errors.Is(err, ErrIdentityCollision) || !strings.Contains(err.Error(), "192.0.2.1 2001:db8::1") || !strings.Contains(err.Error(), "192.0.2.9: rename one") {
		t.Errorf("collision error %v", err)
	}
}
