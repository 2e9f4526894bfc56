package wireguard

import (
	"bytes"
	"net"
	"net/netip"
	"strings"
	"testing"
	"time"

	"golang.zx2c4.com/wireguard/wgctrl/wgtypes"
)

// TestUAPIRoundTrip writes a configuration in the configuration protocol
// and reads a device's reply to the same effect.
func TestUAPIRoundTrip(t *testing.T) {
	priv, _ := hexKey(privHex)
	peer, _ := ParseKey(pubB64)
	pk, port := wgtypes.Key(priv), 51820
	ka := 25 * time.Second
	psk := wgtypes.Key{7}
	cfg := wgtypes.Config{PrivateKey: &pk, ListenPort: &port, ReplacePeers: true, Peers: []wgtypes.PeerConfig{{
		PublicKey: wgtypes.Key(peer), PresharedKey: &psk, Endpoint: net.UDPAddrFromAddrPort(netip.MustParseAddrPort("[fd30::2]:51821")),
		PersistentKeepaliveInterval: &ka, ReplaceAllowedIPs: true,
		AllowedIPs: []net.IPNet{{IP: net.IP{10, 244, 2, 0}, Mask: net.CIDRMask(24, 32)}},
	}, {PublicKey: wgtypes.Key{9}, Remove: true}}}
	var b bytes.Buffer
	if err := encodeUAPI(&b, cfg); err != nil {
		t.Fatal(err)
	}
	want := "private_key=" + privHex + "\nlisten_port=51820\nreplace_peers=true\npublic_key=8520f0098930a754748b7ddcb43ef75a0dbf3a0d26381af4eba4a98eaa9b4e6a\n" +
		"preshared_key=0700000000000000000000000000000000000000000000000000000000000000\nendpoint=[fd30::2]:51821\npersistent_keepalive_interval=25\nreplace_allowed_ips=true\nallowed_ip=10.244.2.0/24\n" +
		"public_key=0900000000000000000000000000000000000000000000000000000000000000\nremove=true\n"
	if b.String() != want {
		t.Fatalf("encoded\n%s\nwant\n%s", b.String(), want)
	}
	reply := "private_key=" + privHex + "\nlisten_port=51820\npublic_key=8520f0098930a754748b7ddcb43ef75a0dbf3a0d26381af4eba4a98eaa9b4e6a\n" +
		"preshared_key=0700000000000000000000000000000000000000000000000000000000000000\nprotocol_version=1\nendpoint=[fd30::2]:51821\n" +
		"last_handshake_time_sec=1700000000\nlast_handshake_time_nsec=5\ntx_bytes=10\nrx_bytes=20\npersistent_keepalive_interval=25\nallowed_ip=10.244.2.0/24\nerrno=0\n\n"
	d, err := decodeUAPI(strings.NewReader(reply), "flannel-wg")
	if err != nil {
		t.Fatal(err)
	}
	if Key(d.PublicKey) != priv.PublicKey() || d.ListenPort != 51820 || len(d.Peers) != 1 {
		t.Fatalf("device %+v", d)
	}
	p := d.Peers[0]
	got := have(p)
	exp := peerWant{key: peer, endpoint: netip.MustParseAddrPort("[fd30::2]:51821"), allowed: []netip.Prefix{netip.MustParsePrefix("10.244.2.0/24")}, keepalive: ka, psk: Key{7}}
	if !got.equal(exp) || p.LastHandshakeTime != time.Unix(1700000000, 5) || p.TransmitBytes != 10 || p.ReceiveBytes != 20 {
		t.Fatalf("peer %+v, as wanted %+v", p, got)
	}
	if _, err := decodeUAPI(strings.NewReader("errno=22\n\n"), "x"); err == nil {
		t.Fatal("errno=22 read as success")
	}
}
