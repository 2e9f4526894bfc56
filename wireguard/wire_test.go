package wireguard

import (
	"encoding/json"
	"errors"
	"net/netip"
	"strings"
	"testing"
	"time"

	"golang.org/x/crypto/curve25519"

	"github.com/weftnet/weft/lease"
)

// A fixed key pair for golden values: the private key is RFC 7748's
// Alice's scalar, and pubB64 its public key as `wg pubkey` prints it.
const (
	privHex = "77076d0a7318a57d3c16c17251b26645df4c2f87ebc0992ab177fba51db92c2a"
	pubB64  = "hSDwCYkwp1R0i33ctD73Wg2/Og0mOBr066SpjqqbTmo="
)

// flannelLeaseAttrs and flannelWireguardAttrs have the field names, types,
// order and tags of flannel v0.28's lease.LeaseAttrs (pkg/lease) and
// wireguardLeaseAttrs (pkg/backend/wireguard/wireguard_network.go), so
// that encoding/json gives what flanneld writes.
type flannelLeaseAttrs struct {
	PublicIP      string
	PublicIPv6    *string
	BackendType   string          `json:",omitempty"`
	BackendData   json.RawMessage `json:",omitempty"`
	BackendV6Data json.RawMessage `json:",omitempty"`
}

type flannelWireguardAttrs struct {
	PublicKey string
	Port      uint16
}

func TestGoldenLeaseValues(t *testing.T) {
	pub, err := ParseKey(pubB64)
	if err != nil {
		t.Fatal(err)
	}
	cfg, _ := ParseConfig(nil)
	v6 := "fd30::7"
	fv4, _ := json.Marshal(flannelWireguardAttrs{pubB64, 51820})
	fv6, _ := json.Marshal(flannelWireguardAttrs{pubB64, 51821})
	for _, c := range []struct {
		name       string
		ipv4, ipv6 bool
		flannel    flannelLeaseAttrs
		golden     string
	}{
		{"ipv4", true, false,
			flannelLeaseAttrs{PublicIP: "198.18.0.7", BackendType: "wireguard", BackendData: fv4},
			`{"PublicIP":"198.18.0.7","PublicIPv6":null,"BackendType":"wireguard","BackendData":{"PublicKey":"hSDwCYkwp1R0i33ctD73Wg2/Og0mOBr066SpjqqbTmo=","Port":51820}}`},
		{"dual-stack", true, true,
			flannelLeaseAttrs{PublicIP: "198.18.0.7", PublicIPv6: &v6, BackendType: "wireguard", BackendData: fv4, BackendV6Data: fv6},
			`{"PublicIP":"198.18.0.7","PublicIPv6":"fd30::7","BackendType":"wireguard","BackendData":{"PublicKey":"hSDwCYkwp1R0i33ctD73Wg2/Og0mOBr066SpjqqbTmo=","Port":51820},"BackendV6Data":{"PublicKey":"hSDwCYkwp1R0i33ctD73Wg2/Og0mOBr066SpjqqbTmo=","Port":51821}}`},
	} {
		t.Run(c.name, func(t *testing.T) {
			want, _ := json.Marshal(c.flannel)
			if string(want) != c.golden {
				t.Fatalf("flannel's encoding\n%s\nis not the golden value\n%s", want, c.golden)
			}
			var v6addr netip.Addr
			if c.ipv6 {
				v6addr = netip.MustParseAddr(v6)
			}
			attrs, err := cfg.Attrs(pub, netip.MustParseAddr("198.18.0.7"), v6addr, c.ipv4, c.ipv6)
			if err != nil {
				t.Fatal(err)
			}
			got, err := json.Marshal(attrs)
			if err != nil || string(got) != c.golden {
				t.Fatalf("weft writes\n%s (%v)\nflannel\n%s", got, err, c.golden)
			}
			// Read back as a peer: flannel's value admits, with the key.
			var back lease.Attrs
			if err := json.Unmarshal([]byte(c.golden), &back); err != nil {
				t.Fatal(err)
			}
			for _, fam := range []bool{false, true} {
				if fam && !c.ipv6 {
					continue
				}
				u, err := Admit(lease.Lease{Attrs: back}, fam, Key{})
				if err != nil || u != pubB64 {
					t.Fatalf("Admit(ipv6=%v) = %q, %v", fam, u, err)
				}
			}
		})
	}
	// The kube annotation backend-data is the data itself (flannel writes
	// string(attrs.BackendData)).
	d, err := ParseBackendData(json.RawMessage(`{"PublicKey":"` + pubB64 + `","Port":51820}`))
	if err != nil || d.PublicKey != pub || d.Port != 51820 {
		t.Fatalf("annotation value: %+v, %v", d, err)
	}
	if b, _ := d.MarshalJSON(); string(b) != string(fv4) {
		t.Fatalf("annotation value %s, flannel's %s", b, fv4)
	}
}

func TestPublicKeyOfPrivate(t *testing.T) {
	priv, err := hexKey(privHex)
	if err != nil {
		t.Fatal(err)
	}
	if got := priv.PublicKey().String(); got != pubB64 {
		t.Fatalf("public key %s, want RFC 7748's %s", got, pubB64)
	}
}

func TestParseBackendData(t *testing.T) {
	for _, c := range []struct {
		in   string
		port int
		err  string
	}{
		{`{"PublicKey":"` + pubB64 + `","Port":51820}`, 51820, ""},
		{`{"PublicKey":"` + pubB64 + `"}`, 0, ""}, // flannel before Port: the receiver's own port
		{`{"publickey":"` + pubB64 + `","port":7,"Extra":1}`, 7, ""},
		{`null`, 0, "missing"},
		{`{"Port":51820}`, 0, "no PublicKey"},
		{`{"PublicKey":"abc","Port":1}`, 0, "not base64"},
		{`{"PublicKey":"` + strings.Repeat("A", 43) + `=","Port":1}`, 0, "low-order"},
		{`{"PublicKey":"` + pubB64 + `","Port":65536}`, 0, "not a UDP port"},
		{`{"PublicKey":"` + pubB64 + `","Port":-1}`, 0, "not a UDP port"},
		{`[]`, 0, "not a"},
	} {
		d, err := ParseBackendData(json.RawMessage(c.in))
		switch {
		case c.err == "" && (err != nil || d.Port != c.port):
			t.Errorf("%s: %+v, %v; want port %d", c.in, d, err, c.port)
		case c.err != "" && (err == nil || !strings.Contains(err.Error(), c.err) || !errors.Is(err, ErrBackendData)):
			t.Errorf("%s: %v; want an ErrBackendData saying %q", c.in, err, c.err)
		}
	}
}

func TestAdmit(t *testing.T) {
	pub, _ := ParseKey(pubB64)
	data := json.RawMessage(`{"PublicKey":"` + pubB64 + `","Port":51820}`)
	ok := lease.Lease{Attrs: lease.Attrs{BackendType: BackendType, BackendData: data}}
	if u, err := Admit(ok, false, Key{1}); err != nil || u != pubB64 {
		t.Fatalf("Admit: %q, %v", u, err)
	}
	for name, c := range map[string]struct {
		l    lease.Lease
		v6   bool
		own  Key
		want string
	}{
		"other backend":  {lease.Lease{Attrs: lease.Attrs{BackendType: "vxlan", BackendData: data}}, false, Key{}, "BackendType"},
		"own key":        {ok, false, pub, "this node's own"},
		"no v6 data":     {ok, true, Key{}, "BackendV6Data"},
		"malformed data": {lease.Lease{Attrs: lease.Attrs{BackendType: BackendType, BackendData: json.RawMessage(`{"PublicKey":1}`)}}, false, Key{}, "BackendData"},
	} {
		if _, err := Admit(c.l, c.v6, c.own); err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%s: %v; want an error naming %q", name, err, c.want)
		}
	}
}

func TestParseConfig(t *testing.T) {
	def, err := ParseConfig(nil)
	if err != nil || def != (Config{ListenPort: 51820, ListenPortV6: 51821, Mode: ModeSeparate}) {
		t.Fatalf("defaults %+v, %v", def, err)
	}
	psk := pubB64
	c, err := ParseConfig(json.RawMessage(`{"Type":"wireguard","listenport":5000,"ListenPortV6":5001,"MTU":1500,"PSK":"` + psk + `","PersistentKeepaliveInterval":25,"Mode":"auto"}`))
	if err != nil || c.ListenPort != 5000 || c.ListenPortV6 != 5001 || c.MTU != 1500 || c.PSK.String() != psk || c.PersistentKeepaliveInterval != 25*time.Second || c.Mode != ModeAuto {
		t.Fatalf("%+v, %v", c, err)
	}
	for in, field := range map[string]string{
		`{"Type":"vxlan"}`:                      "Backend.Type",
		`{"ListenPort":0}`:                      "Backend.ListenPort",
		`{"ListenPort":"51820"}`:                "Backend.ListenPort",
		`{"ListenPortV6":70000}`:                "Backend.ListenPortV6",
		`{"MTU":1300}`:                          "Backend.MTU",
		`{"PSK":"nope"}`:                        "Backend.PSK",
		`{"PersistentKeepaliveInterval":-1}`:    "Backend.PersistentKeepaliveInterval",
		`{"PersistentKeepaliveInterval":"25s"}`: "Backend.PersistentKeepaliveInterval",
		`{"Mode":"tunnel"}`:                     "Backend.Mode",
		`[1]`:                                   "Backend",
	} {
		_, err := ParseConfig(json.RawMessage(in))
		var ce *lease.ConfigError
		if !errors.As(err, &ce) || ce.Field != field || !errors.Is(err, lease.ErrInvalidConfig) {
			t.Errorf("%s: %v; want a ConfigError naming %s", in, err, field)
		}
	}
}

func TestDevices(t *testing.T) {
	c, _ := ParseConfig(nil)
	if d := c.Devices(true, true); len(d) != 2 || d[0] != (DeviceSpec{"flannel-wg", 51820, true, false}) || d[1] != (DeviceSpec{"flannel-wg-v6", 51821, false, true}) {
		t.Fatalf("separate: %+v", d)
	}
	c.Mode = ModeAuto
	if d := c.Devices(true, true); len(d) != 1 || d[0] != (DeviceSpec{"flannel-wg", 51820, true, true}) {
		t.Fatalf("auto: %+v", d)
	}
}

// TestLowOrderKeys: every key checkPublic refuses is one X25519 refuses
// (its shared secret would be all zeros), with the top bit either way,
// and random keys pass both.
func TestLowOrderKeys(t *testing.T) {
	probe, _ := GenerateKey()
	for _, l := range lowOrder {
		for _, top := range []byte{0, 0x80} {
			k := l
			k[31] |= top
			if checkPublic(k) == nil {
				t.Errorf("%x passes", k)
			}
			if _, err := curve25519.X25519(probe[:], k[:]); err == nil {
				t.Errorf("%x is not of low order: X25519 takes it", k)
			}
		}
	}
	for range 100 {
		k, _ := GenerateKey()
		pub := k.PublicKey()
		if _, err := curve25519.X25519(probe[:], pub[:]); err != nil || checkPublic(pub) != nil {
			t.Fatalf("%s refused", pub)
		}
	}
}
