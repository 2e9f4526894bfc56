package localstate_test

import (
	"io"
	"testing"

	"github.com/weftnet/weft/localstate"
)

// BenchmarkEncode20k encodes a state of 20,000 peers, as a save does
// (twice when the state changed: for its digest, then into the file).
func BenchmarkEncode20k(b *testing.B) {
	st := manyPeers(20000)
	b.ReportAllocs()
	for b.Loop() {
		if err := localstate.EncodeTo(io.Discard, st); err != nil {
			b.Fatal(err)
		}
	}
}
