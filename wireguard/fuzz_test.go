package wireguard

import (
	"encoding/json"
	"errors"
	"strings"
	"testing"

	"github.com/weftnet/weft/lease"
)

// FuzzParseBackendData: any peer's backend data either parses, and then
// writes back in flannel's form to the same value, or is refused with an
// ErrBackendData; never a panic.
func FuzzParseBackendData(f *testing.F) {
	for _, s := range []string{
		`{"PublicKey":"` + pubB64 + `","Port":51820}`, `{"PublicKey":"` + pubB64 + `"}`, `null`, `{}`, `{"PublicKey":null}`,
		`{"PublicKey":"` + pubB64 + `","Port":1e3}`, `{"PublicKey":"` + strings.Repeat("A", 44) + `"}`,
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		d, err := ParseBackendData(b)
		if err != nil {
			return
		}
		out, err := d.MarshalJSON()
		if err != nil {
			t.Fatalf("%+v parsed but does not marshal: %v", d, err)
		}
		back, err := ParseBackendData(out)
		if err != nil || back != d {
			t.Fatalf("%s -> %+v -> %s -> %+v, %v", b, d, out, back, err)
		}
		// Admission takes what parses, unless it is the node's own key.
		l := lease.Lease{Attrs: lease.Attrs{BackendType: BackendType, BackendData: json.RawMessage(b)}}
		if u, err := Admit(l, false, Key{}); err != nil || u != d.PublicKey.String() {
			t.Fatalf("Admit of parsed data: %q, %v", u, err)
		}
		if _, err := Admit(l, false, d.PublicKey); err == nil {
			t.Fatal("Admit took this node's own key")
		}
	})
}

// FuzzParseConfig: any net-conf.json Backend either parses to a config
// within its ranges or is refused with a ConfigError naming a field.
func FuzzParseConfig(f *testing.F) {
	for _, s := range []string{
		`{"Type":"wireguard"}`, `{"ListenPort":1,"ListenPortV6":65535,"MTU":1500,"PSK":"` + pubB64 + `","PersistentKeepaliveInterval":25,"Mode":"ipv6"}`,
		`{"Mode":"AUTO"}`, `{"MTU":0}`, `null`, `{"ListenPort":1.5}`, `{"PSK":""}`,
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		c, err := ParseConfig(b)
		if err != nil {
			var ce *lease.ConfigError
			if !errorsAs(err, &ce) || !strings.HasPrefix(ce.Field, "Backend") {
				t.Fatalf("%s: %v is not a ConfigError naming a Backend field", b, err)
			}
			return
		}
		if c.ListenPort < 1 || c.ListenPort > 65535 || c.ListenPortV6 < 1 || c.ListenPortV6 > 65535 || c.PersistentKeepaliveInterval < 0 ||
			(c.MTU != 0 && c.MTU-Overhead < 1280) || len(c.Devices(true, true)) == 0 {
			t.Fatalf("%s: out of range: %+v", b, c)
		}
	})
}

// FuzzDecodeUAPI: whatever a device answers is read or refused, never a
// panic.
func FuzzDecodeUAPI(f *testing.F) {
	f.Add([]byte("private_key=" + privHex + "\nlisten_port=51820\npublic_key=" + privHex + "\nendpoint=[::1]:1\nallowed_ip=10.0.0.0/8\nlast_handshake_time_sec=1\nlast_handshake_time_nsec=2\nerrno=0\n\n"))
	f.Add([]byte("errno=1\n"))
	f.Add([]byte("public_key=zz\n"))
	f.Fuzz(func(t *testing.T, b []byte) {
		decodeUAPI(strings.NewReader(string(b)), "x")
	})
}

func errorsAs(err error, target any) bool { return errors.As(err, target) }
