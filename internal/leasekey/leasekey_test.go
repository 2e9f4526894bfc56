package leasekey

import (
	"testing"

	"github.com/weftnet/weft/lease"
)

// TestRoundTrip: every kind of key unpacks to itself, and distinct keys
// pack apart.
func TestRoundTrip(t *testing.T) {
	seen := map[Packed]lease.Key{}
	for _, s := range []string{"10.244.3.0-24", "10.244.3.0-25", "10.244.3.0-24&fd00::-64", "10.244.3.0-24&fd00::-56", "255.255.255.255-32"} {
		k, err := lease.ParseKey(s)
		if err != nil {
			t.Fatal(err)
		}
		p := Pack(k)
		if p.Key() != k {
			t.Errorf("%s: unpacked as %s", k, p.Key())
		}
		if o, dup := seen[p]; dup {
			t.Errorf("%s and %s pack alike", k, o)
		}
		seen[p] = k
	}
	if (lease.Key{}) != Pack(lease.Key{}).Key() {
		t.Error("the zero Key does not round-trip")
	}
}

// TestCompareHalf: packed halves order as their prefixes do, by address
// and then length.
func TestCompareHalf(t *testing.T) {
	keys := []string{"10.0.0.0-8", "10.244.0.0-16", "10.244.3.0-24", "10.244.3.0-25", "10.244.3.128-25", "192.168.0.0-24&fd00::-64", "192.168.0.0-24&fd00::-56", "192.168.0.0-24&fd00:1::-64"}
	for _, a := range keys {
		for _, b := range keys {
			ka, _ := lease.ParseKey(a)
			kb, _ := lease.ParseKey(b)
			want := ka.IPv4.Addr().Compare(kb.IPv4.Addr())
			if want == 0 {
				want = cmpInt(ka.IPv4.Bits(), kb.IPv4.Bits())
			}
			if got := Pack(ka).CompareHalf(Pack(kb), false); got != want {
				t.Errorf("IPv4 halves of %s and %s: %d, want %d", a, b, got, want)
			}
			if !ka.IPv6.IsValid() || !kb.IPv6.IsValid() {
				continue
			}
			want = ka.IPv6.Addr().Compare(kb.IPv6.Addr())
			if want == 0 {
				want = cmpInt(ka.IPv6.Bits(), kb.IPv6.Bits())
			}
			if got := Pack(ka).CompareHalf(Pack(kb), true); got != want {
				t.Errorf("IPv6 halves of %s and %s: %d, want %d", a, b, got, want)
			}
		}
	}
}

func cmpInt(a, b int) int {
	switch {
	case a < b:
		return -1
	case a > b:
		return 1
	}
	return 0
}
