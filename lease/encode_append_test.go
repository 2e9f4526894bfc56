package lease

import (
	"bytes"
	"encoding/json"
	"math/rand/v2"
	"net/netip"
	"strings"
	"testing"
)

// TestAppendJSONIsMarshalJSON: AppendJSON writes the bytes MarshalJSON
// returns, and fails where it fails, for plain attributes and for every
// kind of unusual content, drawn at random.
func TestAppendJSONIsMarshalJSON(t *testing.T) {
	strs := []string{"", "vxlan", "node-1", `a"b`, `a\b`, "a<b", "a&b", "é", "a\nb", "a b", strings.Repeat("x", MaxOwnerSize+1)}
	datas := []json.RawMessage{nil, json.RawMessage("null"), json.RawMessage(" null "), json.RawMessage(`{"VNI":1,"VtepMAC":"0e:00:00:00:00:01"}`),
		json.RawMessage(`{"VNI": 1}`), json.RawMessage(`{"a":"<&>"}`), json.RawMessage(`{"a":"\u00e9"}`), json.RawMessage(`{"a":"é"}`),
		json.RawMessage(`{"a":`), json.RawMessage(`[1,2]`), json.RawMessage(`"s"`), json.RawMessage{}}
	addrs4 := []netip.Addr{{}, netip.MustParseAddr("198.18.0.7"), netip.MustParseAddr("fd00::1"), netip.MustParseAddr("::ffff:1.2.3.4")}
	addrs6 := []netip.Addr{{}, netip.MustParseAddr("fd00::1"), netip.MustParseAddr("1.2.3.4"), netip.MustParseAddr("fe80::1%eth0"), netip.MustParseAddr("::ffff:1.2.3.4")}
	r := rand.New(rand.NewPCG(1, 2))
	pick := func(n int) int { return r.IntN(n) }
	for range 5000 {
		a := Attrs{
			PublicIP: addrs4[pick(len(addrs4))], PublicIPv6: addrs6[pick(len(addrs6))],
			BackendType: strs[pick(len(strs))], Owner: strs[pick(len(strs))],
			BackendData: datas[pick(len(datas))], BackendV6Data: datas[pick(len(datas))],
		}
		want, werr := a.MarshalJSON()
		got, gerr := a.AppendJSON([]byte("prefix"))
		if (werr == nil) != (gerr == nil) {
			t.Fatalf("%+v: MarshalJSON error %v, AppendJSON error %v", a, werr, gerr)
		}
		if werr == nil && !bytes.Equal(got, append([]byte("prefix"), want...)) {
			t.Fatalf("%+v:\nAppendJSON  %s\nMarshalJSON %s", a, got, want)
		}
	}
}
