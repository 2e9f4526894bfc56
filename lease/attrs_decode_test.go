package lease

import (
	"encoding/json"
	"testing"
)

// BenchmarkAttrsUnmarshal decodes a lease value as flannel writes it: what
// every node pays for each lease a watch brings, a writer's rejected ones
// included (issue 29 item 6).
func BenchmarkAttrsUnmarshal(b *testing.B) {
	value := []byte(`{"PublicIP":"172.20.0.7","PublicIPv6":null,"BackendType":"vxlan","BackendData":{"VNI":1,"VtepMAC":"0e:00:00:00:00:07"},"WeftOwner":"node-7"}`)
	b.ReportAllocs()
	for b.Loop() {
		var a Attrs
		if err := a.UnmarshalJSON(value); err != nil {
			b.Fatal(err)
		}
	}
}

// FuzzPlainJSONString: the fast path for an address agrees with
// encoding/json on every string it takes, and takes none it would decode
// otherwise (escapes, non-ASCII, control bytes go to encoding/json).
func FuzzPlainJSONString(f *testing.F) {
	for _, s := range []string{`"172.20.0.7"`, `"fd00::1"`, `""`, `"a\"b"`, `"\u0031.2.3.4"`, "\"\xff\"", `"é"`, `1`, `"`, `null`} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, raw []byte) {
		s, ok := plainJSONString(raw)
		if !ok {
			return
		}
		var want string
		if err := json.Unmarshal(raw, &want); err != nil || want != s {
			t.Fatalf("%q: the fast path says %q, encoding/json %q (%v)", raw, s, want, err)
		}
	})
}
