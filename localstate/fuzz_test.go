package localstate_test

import (
	"testing"

	"github.com/weftnet/weft/localstate"
)

// FuzzDecode: no input panics, and whatever decodes encodes and decodes
// again to the same bytes.
func FuzzDecode(f *testing.F) {
	s := sample()
	s.Written = now
	good, err := localstate.Encode(s)
	if err != nil {
		f.Fatal(err)
	}
	f.Add(good)
	f.Add(good[:len(good)/3])
	f.Add([]byte(`{"weftLocalState":1}`))
	f.Add([]byte(`{"weftLocalState":null}`))
	f.Fuzz(func(t *testing.T, data []byte) {
		st, err := localstate.Decode(data)
		if err != nil {
			return
		}
		once, err := localstate.Encode(st)
		if err != nil {
			t.Fatalf("decoded but does not encode: %v", err)
		}
		again, err := localstate.Decode(once)
		if err != nil {
			t.Fatalf("its own encoding does not decode: %v\n%s", err, once)
		}
		twice, _ := localstate.Encode(again)
		if string(once) != string(twice) {
			t.Fatalf("not stable:\n%s\n%s", once, twice)
		}
	})
}
