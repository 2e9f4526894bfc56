package hostrules

import (
	"net/netip"
	"strings"
	"testing"
)

// TestTargetRefused: a Target whose Subnet lies outside its Network, or
// whose prefixes are of the wrong family, is refused by Apply before
// anything is written, with an error naming the field; a well-formed one
// passes the check.
func TestTargetRefused(t *testing.T) {
	p := netip.MustParsePrefix
	for _, tc := range []struct {
		target Target
		want   string // "" for none
	}{
		{Target{Network: p("10.244.0.0/16"), Subnet: p("10.244.3.0/24"), IPv6Network: p("fd00::/56"), IPv6Subnet: p("fd00:0:0:3::/64")}, ""},
		{Target{Network: p("10.244.0.0/16")}, ""},
		{Target{}, ""},
		{Target{Network: p("10.244.0.0/16"), Subnet: p("10.245.3.0/24")}, "Target.Subnet 10.245.3.0/24 is not inside Target.Network 10.244.0.0/16"},
		{Target{Subnet: p("10.245.3.0/24")}, "Target.Subnet 10.245.3.0/24 has no Target.Network"},
		{Target{Network: p("10.0.0.0/24"), Subnet: p("10.0.0.0/16")}, "Target.Subnet 10.0.0.0/16 is not inside"},
		{Target{Network: p("fd00::/56")}, "Target.Network fd00::/56 is of the wrong family"},
		{Target{IPv6Network: p("fd00::/56"), IPv6Subnet: p("10.0.0.0/24")}, "Target.IPv6Subnet 10.0.0.0/24 is of the wrong family"},
	} {
		// Options with no rule set: a refusal comes from the check alone,
		// and an accepted Target writes nothing.
		err := New(Options{}).Apply(tc.target)
		switch {
		case tc.want == "" && err != nil:
			t.Errorf("%+v: %v", tc.target, err)
		case tc.want != "" && (err == nil || !strings.Contains(err.Error(), tc.want)):
			t.Errorf("%+v: error %v, want one saying %q", tc.target, err, tc.want)
		}
	}
}
