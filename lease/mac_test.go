package lease_test

import (
	"encoding/json"
	"net/netip"
	"strings"
	"testing"

	"github.com/weftnet/weft/lease"
	"github.com/weftnet/weft/lease/admit"
)

// TestMACIsText: a MAC is flannel's colon text wherever it is marshalled,
// on its own and inside admission's peers (which marshalled it as an array
// of numbers while admission had a MAC type of its own), and text reads
// back to the same MAC.
func TestMACIsText(t *testing.T) {
	mac := lease.MAC{0x0e, 0x5a, 0x11, 0x22, 0x33, 0x44}
	for _, v := range []any{mac, admit.Peer{Key: lease.Key{IPv4: netip.MustParsePrefix("10.244.3.0/24")}, VtepMAC: mac}} {
		b, err := json.Marshal(v)
		if err != nil {
			t.Fatal(err)
		}
		if !strings.Contains(string(b), `"0e:5a:11:22:33:44"`) {
			t.Errorf("%T marshals as %s; want the MAC as text", v, b)
		}
	}
	var back lease.MAC
	if err := json.Unmarshal([]byte(`"0e:5a:11:22:33:44"`), &back); err != nil || back != mac {
		t.Errorf("unmarshal: %v, %v", back, err)
	}
	for _, bad := range []string{`"zz"`, `"00:11:22:33:44:55:66:77"`, `""`} {
		if err := json.Unmarshal([]byte(bad), &back); err == nil {
			t.Errorf("unmarshal %s succeeded", bad)
		}
	}
}
