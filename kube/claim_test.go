package kube

import (
	"net/netip"
	"strings"
	"testing"

	"github.com/weftnet/weft/lease"
)

func claimConf(t testing.TB, dual bool) lease.Config {
	doc := `{"Network": "10.244.0.0/16", "Backend": {"Type": "vxlan"}}`
	if dual {
		doc = `{"Network": "10.244.0.0/16", "EnableIPv6": true, "IPv6Network": "fd00:10::/56", "IPv6SubnetLen": 64, "Backend": {"Type": "vxlan"}}`
	}
	c, err := lease.ParseConfig([]byte(doc))
	if err != nil {
		t.Fatal(err)
	}
	return c
}

// TestClaimRules: a claim takes space only as one PodCIDR a node could be
// given; every other value is bad, with a reason saying why.
func TestClaimRules(t *testing.T) {
	v4, dual := claimConf(t, false), claimConf(t, true)
	for _, tc := range []struct {
		conf  lease.Config
		value string
		want  string // the claim, or the start of the reason
		ok    bool
	}{
		{v4, "10.244.3.0/24", "10.244.3.0-24", true},
		{v4, " 10.244.3.0/24 ", "10.244.3.0-24", true},
		{v4, "10.244.3.0/24,fd00:10::/64", "10.244.3.0-24", true}, // IPv6 not enabled: ignored
		{dual, "10.244.3.0/24,fd00:10:0:7::/64", "10.244.3.0-24&fd00:10:0:7::-64", true},
		{v4, "10.244.0.0/16", "10.244.0.0/16 is not a PodCIDR's size", false},
		{v4, "0.0.0.0/0", "0.0.0.0/0 is not inside", false},
		{v4, "::/0", "no CIDR in the Network", false},
		{v4, "10.245.3.0/24", "10.245.3.0/24 is not inside", false},
		{v4, "10.244.3.0/25", "10.244.3.0/25 is not a PodCIDR's size", false},
		{v4, "10.244.3.7/24", "10.244.3.7/24 has host bits set", false},
		{v4, "10.244.3.0/24,10.244.4.0/24", "two CIDRs of one family", false},
		{v4, "10.244.3.0/24,", `"" is not a CIDR`, false},
		{v4, "zzz", `"zzz" is not a CIDR`, false},
		{v4, strings.Repeat("1", 200), "200 bytes", false},
		{dual, "10.244.3.0/24", "no CIDR in the IPv6Network", false},
		{dual, "10.244.3.0/24,fd00:10::/56", "fd00:10::/56 is not a PodCIDR's size", false},
	} {
		k, ok, err := claimOf(tc.value, tc.conf)
		if ok != tc.ok {
			t.Errorf("%q: ok %v, err %v", tc.value, ok, err)
			continue
		}
		if ok && k.String() != tc.want {
			t.Errorf("%q: claim %v, want %s", tc.value, k, tc.want)
		}
		if !ok && (err == nil || !strings.HasPrefix(err.Error(), tc.want)) {
			t.Errorf("%q: err %v, want %q...", tc.value, err, tc.want)
		}
	}
	if _, ok, err := claimOf("", v4); ok || err != nil {
		t.Errorf("no claim: %v %v", ok, err)
	}
}

// TestClaimedSpace: another node's claim takes the space of each family
// that is good on its own, so that a claim made before a change between
// single- and dual-stack keeps blocking the family it still holds.
func TestClaimedSpace(t *testing.T) {
	v4, dual := claimConf(t, false), claimConf(t, true)
	for _, tc := range []struct {
		conf  lease.Config
		value string
		taken string // the prefixes taken, comma-separated
		bad   string // the start of the error, "" for none
	}{
		{dual, "10.244.3.0/24", "10.244.3.0/24", ""},
		{dual, "fd00:10:0:7::/64", "fd00:10:0:7::/64", ""},
		{dual, "10.244.3.0/24,fd00:10:0:7::/64", "10.244.3.0/24,fd00:10:0:7::/64", ""},
		{dual, "10.244.3.0/24,fd00:99::/64", "10.244.3.0/24", "fd00:99::/64 is not inside"},
		{dual, "10.244.0.0/16,fd00:10:0:7::/64", "fd00:10:0:7::/64", "10.244.0.0/16 is not a PodCIDR's size"},
		{dual, "0.0.0.0/0,::/0", "", "0.0.0.0/0 is not inside"},
		{v4, "10.244.3.0/24,fd00:99::/64", "10.244.3.0/24", ""}, // IPv6 off: ignored
		{v4, "fd00:10:0:7::/64", "", ""},
		{dual, "10.244.3.0/24,zzz", "", `"zzz" is not a CIDR`},
		{dual, "10.244.3.0/24,10.244.4.0/24", "", "two CIDRs of one family"},
		{dual, "", "", ""},
	} {
		taken, err := claimedSpace(tc.value, tc.conf)
		var got []string
		for _, p := range taken {
			got = append(got, p.String())
		}
		if strings.Join(got, ",") != tc.taken {
			t.Errorf("%q: takes %v, want %s", tc.value, got, tc.taken)
		}
		if tc.bad == "" && err != nil || tc.bad != "" && (err == nil || !strings.HasPrefix(err.Error(), tc.bad)) {
			t.Errorf("%q: err %v, want %q...", tc.value, err, tc.bad)
		}
	}
}

// FuzzClaim: whatever a node writes, a claim judged valid is exactly one
// PodCIDR of each enabled family inside its Network, and writing it back
// as setClaim does reads back the same.
func FuzzClaim(f *testing.F) {
	for _, s := range []string{"10.244.3.0/24", "0.0.0.0/0", "10.244.3.0/24,fd00:10::/64", "10.244.3.7/24", ",", "::/0", "10.244.3.0/24,10.244.4.0/24"} {
		f.Add(s, false)
		f.Add(s, true)
	}
	confs := [2]lease.Config{claimConf(f, false), claimConf(f, true)}
	f.Fuzz(func(t *testing.T, v string, dualStack bool) {
		conf := confs[0]
		if dualStack {
			conf = confs[1]
		}
		// Judged a family at a time, a claim takes at most one PodCIDR of
		// each enabled family, inside its network.
		taken, _ := claimedSpace(v, conf)
		var fams [2]int
		for _, p := range taken {
			network, bits, i := conf.Network, conf.SubnetLen, 0
			if p.Addr().Is6() {
				network, bits, i = conf.IPv6Network, conf.IPv6SubnetLen, 1
			}
			if fams[i]++; fams[i] > 1 || p.Bits() != bits || !network.Contains(p.Addr()) || p != p.Masked() {
				t.Fatalf("%q takes %v, more than one PodCIDR of a family inside its network", v, taken)
			}
		}
		k, ok, err := claimOf(v, conf)
		if !ok {
			if v != "" && err == nil {
				t.Fatalf("%q: neither a claim nor an error", v)
			}
			return
		}
		for _, f := range []struct {
			p       netip.Prefix
			network netip.Prefix
			bits    int
			on      bool
		}{{k.IPv4, conf.Network, conf.SubnetLen, conf.EnableIPv4}, {k.IPv6, conf.IPv6Network, conf.IPv6SubnetLen, conf.EnableIPv6}} {
			if f.on != f.p.IsValid() || f.on && (f.p.Bits() != f.bits || !f.network.Contains(f.p.Addr()) || f.p != f.p.Masked()) {
				t.Fatalf("%q gave claim %v, not one PodCIDR of each enabled family", v, k)
			}
		}
		taken, err = claimedSpace(v, conf)
		if err != nil || len(taken) != btoi(conf.EnableIPv4)+btoi(conf.EnableIPv6) {
			t.Fatalf("%q: a good claim %v takes %v, %v", v, k, taken, err)
		}
		back, ok, err := claimOf(cidrText(k), conf)
		if !ok || back != k {
			t.Fatalf("%q: claim %v reads back as %v, %v", v, k, back, err)
		}
	})
}

func btoi(b bool) int {
	if b {
		return 1
	}
	return 0
}
