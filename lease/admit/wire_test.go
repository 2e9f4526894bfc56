package admit_test

import (
	"encoding/json"
	"math"
	"math/rand/v2"
	"testing"

	"github.com/weftnet/weft/lease"
	"github.com/weftnet/weft/lease/admit"
	"github.com/weftnet/weft/vxlan"
)

// TestAppendBackendData: the backend data a save writes for each peer is
// json.Marshal's encoding of vxlan.BackendData, for any VNI and lease.MAC.
func TestAppendBackendData(t *testing.T) {
	rng := rand.New(rand.NewPCG(1, 2))
	for i := range 1000 {
		var mac lease.MAC
		for j := range mac {
			mac[j] = byte(rng.IntN(256))
		}
		vni := []int{0, 1, 4096, 1<<24 - 1, -1, math.MaxInt, math.MinInt}[i%7]
		want, err := json.Marshal(vxlan.BackendData{VNI: vni, VtepMAC: mac})
		if err != nil {
			t.Fatal(err)
		}
		got := admit.AppendBackendData(nil, vni, mac)
		if string(got) != string(want) {
			t.Fatalf("AppendBackendData(%d, %s) = %s, json.Marshal gives %s", vni, mac, got, want)
		}
		if len(got) > admit.MaxBackendData {
			t.Fatalf("%s is %d bytes, more than MaxBackendData (%d)", got, len(got), admit.MaxBackendData)
		}
	}
}

// TestVNI: admission's VNI is the Backend's, flannel's 1 when it names
// none, as vxlan.ParseConfig reads it.
func TestVNI(t *testing.T) {
	for _, raw := range []string{``, `null`, `{}`, `{"Type":"vxlan"}`, `{"VNI":0}`, `{"vni":7}`, `{"VNI":4096,"Port":4789}`} {
		want, err := vxlan.ParseConfig(json.RawMessage(raw))
		if err != nil {
			t.Fatal(err)
		}
		if got := admit.VNI(json.RawMessage(raw)); got != want.VNI {
			t.Errorf("VNI(%s) = %d, vxlan.ParseConfig says %d", raw, got, want.VNI)
		}
	}
}
