package lease

import (
	"bytes"
	"encoding/json"
	"errors"
	"net/netip"
	"os"
	"path/filepath"
	"testing"
)

// addFileSeeds adds every file matching pattern as a seed.
func addFileSeeds(f *testing.F, pattern string) {
	files, err := filepath.Glob(pattern)
	if err != nil || len(files) == 0 {
		f.Fatalf("no seed files match %s: %v", pattern, err)
	}
	for _, name := range files {
		data, err := os.ReadFile(name)
		if err != nil {
			f.Fatal(err)
		}
		f.Add(data)
	}
}

// FuzzParseConfig checks that ParseConfig never panics, that every error is
// a *ConfigError, and that every Config it accepts is complete and
// self-consistent.
func FuzzParseConfig(f *testing.F) {
	addFileSeeds(f, "testdata/flannel/net-conf*.json")
	f.Fuzz(func(t *testing.T, data []byte) {
		c, err := ParseConfig(data)
		if err != nil {
			var ce *ConfigError
			if !errors.As(err, &ce) || !errors.Is(err, ErrInvalidConfig) {
				t.Fatalf("error %v is not a *ConfigError", err)
			}
			return
		}
		if !c.EnableIPv4 && !c.EnableIPv6 {
			t.Fatal("accepted a config with both families disabled")
		}
		for _, fam := range []struct {
			on      bool
			network netip.Prefix
			r       Range
		}{{c.EnableIPv4, c.Network, c.IPv4Range()}, {c.EnableIPv6, c.IPv6Network, c.IPv6Range()}} {
			if !fam.on {
				if fam.r != (Range{}) {
					t.Fatalf("disabled family has range %v", fam.r)
				}
				continue
			}
			if !fam.r.IsValid() {
				t.Fatalf("accepted config has invalid range %v", fam.r)
			}
			if !fam.network.Contains(fam.r.First.Addr()) || !fam.network.Contains(fam.r.Last.Addr()) ||
				fam.r.First.Bits() < fam.network.Bits()+2 {
				t.Fatalf("range %v does not fit network %v", fam.r, fam.network)
			}
			if _, err := NewAllocator(fam.r, nil); err != nil {
				t.Fatalf("allocator rejects accepted range: %v", err)
			}
		}
		if c.BackendType == "" {
			t.Fatal("empty BackendType")
		}
		for _, name := range c.Unknown {
			if lookupField(name) != nil {
				t.Fatalf("known field %q listed as unknown", name)
			}
		}
	})
}

// FuzzParseKey checks that ParseKey never panics and that what it accepts is
// valid and canonical: formatting it gives back the input exactly.
func FuzzParseKey(f *testing.F) {
	for _, s := range []string{"10.244.3.0-24", "10.244.3.0-24&fd00:1::-64", "0.0.0.0-0&fd00:1::-64", "10.0.0.0-8", "1.2.3.4-32&::-1"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		k, err := ParseKey(s)
		if err != nil {
			if !errors.Is(err, ErrInvalidKey) {
				t.Fatalf("error %v does not match ErrInvalidKey", err)
			}
			return
		}
		if !k.IsValid() {
			t.Fatalf("ParseKey(%q) = invalid %#v", s, k)
		}
		if k.String() != s {
			t.Fatalf("ParseKey(%q).String() = %q", s, k.String())
		}
	})
}

// FuzzAttrsJSON checks that decoding never panics, and that whatever decodes
// encodes and decodes again to equal attributes.
func FuzzAttrsJSON(f *testing.F) {
	addFileSeeds(f, "testdata/flannel/lease-value*.json")
	f.Add([]byte(`{"PublicIP":"0.0.0.0","PublicIPv6":"fd00::1","WeftOwner":"n"}`))
	f.Fuzz(func(t *testing.T, data []byte) {
		var a Attrs
		if err := json.Unmarshal(data, &a); err != nil {
			if len(data) > MaxValueSize && !errors.Is(err, ErrTooLarge) {
				t.Fatalf("a value of %d bytes refused for another reason: %v", len(data), err)
			}
			return
		}
		// Nothing kept is over its limit.
		if len(data) > MaxValueSize || len(a.BackendType) > MaxBackendTypeSize || len(a.Owner) > MaxOwnerSize ||
			len(a.BackendData) > MaxBackendDataSize || len(a.BackendV6Data) > MaxBackendDataSize {
			t.Fatalf("accepted %d bytes with a field over its limit: %+v", len(data), a)
		}
		out, err := json.Marshal(a)
		if err != nil {
			t.Fatalf("decoded %+v from %q but cannot encode it: %v", a, data, err)
		}
		var back Attrs
		if err := json.Unmarshal(out, &back); err != nil {
			t.Fatalf("cannot decode own output %s: %v", out, err)
		}
		if !back.Equal(a) {
			t.Fatalf("round trip changed %+v to %+v", a, back)
		}
		if again, _ := json.Marshal(back); !bytes.Equal(again, out) {
			t.Fatalf("encoding is not stable: %s then %s", out, again)
		}
	})
}
