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
