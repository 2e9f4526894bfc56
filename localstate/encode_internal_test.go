package localstate

import (
	"bytes"
	"encoding/json"
	"math/rand/v2"
	"net/netip"
	"testing"
	"time"

	"github.com/weftnet/weft/lease"
)

// TestAppendPeerIsEncodingJSON: appendPeer writes the bytes encoding/json
// writes for a peer (as EncodeTo wrote them before), and fails where it
// fails, for leases drawn at random: dual-stack keys, expirations,
// seniorities, and attributes plain and unusual.
func TestAppendPeerIsEncodingJSON(t *testing.T) {
	keys := []string{"10.1.2.0-24", "10.1.2.0-24&fd00:1::-64", "0.0.0.0-0&fd00:2::-64"}
	owners := []string{"", "node-1", "a&b", "a\"b", "é"}
	datas := []json.RawMessage{nil, json.RawMessage(`{"VNI":1,"VtepMAC":"0e:00:00:00:00:01"}`), json.RawMessage(`{"VNI": 1}`), json.RawMessage(`{"a":"<"}`), json.RawMessage(`{`)}
	r := rand.New(rand.NewPCG(3, 4))
	var ref bytes.Buffer
	enc := json.NewEncoder(&ref)
	enc.SetEscapeHTML(true)
	for range 3000 {
		k, err := lease.ParseKey(keys[r.IntN(len(keys))])
		if err != nil {
			t.Fatal(err)
		}
		l := lease.Lease{Key: k, Seniority: int64(r.IntN(3)) * 12345, Attrs: lease.Attrs{
			PublicIP: netip.MustParseAddr("198.18.0.7"), BackendType: "vxlan",
			Owner: owners[r.IntN(len(owners))], BackendData: datas[r.IntN(len(datas))], BackendV6Data: datas[r.IntN(len(datas))],
		}}
		if r.IntN(3) == 0 {
			l.Expiration = time.Date(2026, 12, 8, 1, 2, 3, r.IntN(1e9), time.UTC)
		}
		ref.Reset()
		werr := enc.Encode(toFile(l))
		got, gerr := appendPeer([]byte("x"), l)
		if (werr == nil) != (gerr == nil) {
			t.Fatalf("%+v: encoding/json error %v, appendPeer error %v", l, werr, gerr)
		}
		if want := append([]byte("x"), bytes.TrimSuffix(ref.Bytes(), []byte("\n"))...); werr == nil && !bytes.Equal(got, want) {
			t.Fatalf("%+v:\nappendPeer    %s\nencoding/json %s", l, got, want)
		}
	}
}
