//go:build linux

package vxlan

import (
	"encoding/json"
	"math"
	"math/rand/v2"
	"testing"
)

// TestAppendBackendData: the backend data a save writes for each peer is
// json.Marshal's encoding of BackendData, for any VNI and MAC.
func TestAppendBackendData(t *testing.T) {
	rng := rand.New(rand.NewPCG(1, 2))
	for i := range 1000 {
		var mac MAC
		for j := range mac {
			mac[j] = byte(rng.IntN(256))
		}
		vni := []int{0, 1, 4096, 1<<24 - 1, -1, math.MaxInt, math.MinInt}[i%7]
		want, err := json.Marshal(BackendData{VNI: vni, VtepMAC: mac})
		if err != nil {
			t.Fatal(err)
		}
		got := appendBackendData(nil, vni, mac)
		if string(got) != string(want) {
			t.Fatalf("appendBackendData(%d, %s) = %s, json.Marshal gives %s", vni, mac, got, want)
		}
		if len(got) > maxBackendData {
			t.Fatalf("%s is %d bytes, more than maxBackendData (%d)", got, len(got), maxBackendData)
		}
	}
}
