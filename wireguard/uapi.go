package wireguard

import (
	"bufio"
	"encoding/hex"
	"fmt"
	"io"
	"net"
	"net/netip"
	"strconv"
	"strings"
	"time"

	"golang.zx2c4.com/wireguard/wgctrl/wgtypes"
)

// The user-space device speaks WireGuard's cross-platform configuration
// protocol (key=value lines, keys in hex), the one wgctrl speaks to a
// wireguard-go socket. These two functions are that translation, so that
// the datapath configures both engines with the same wgtypes.Config and
// reads both as the same wgtypes.Device.

// encodeUAPI writes cfg as a "set" operation's body.
func encodeUAPI(w io.Writer, cfg wgtypes.Config) error {
	b := bufio.NewWriter(w)
	if cfg.PrivateKey != nil {
		fmt.Fprintf(b, "private_key=%s\n", hex.EncodeToString(cfg.PrivateKey[:]))
	}
	if cfg.ListenPort != nil {
		fmt.Fprintf(b, "listen_port=%d\n", *cfg.ListenPort)
	}
	if cfg.FirewallMark != nil {
		fmt.Fprintf(b, "fwmark=%d\n", *cfg.FirewallMark)
	}
	if cfg.ReplacePeers {
		b.WriteString("replace_peers=true\n")
	}
	for _, p := range cfg.Peers {
		fmt.Fprintf(b, "public_key=%s\n", hex.EncodeToString(p.PublicKey[:]))
		if p.Remove {
			b.WriteString("remove=true\n")
			continue
		}
		if p.UpdateOnly {
			b.WriteString("update_only=true\n")
		}
		if p.PresharedKey != nil {
			fmt.Fprintf(b, "preshared_key=%s\n", hex.EncodeToString(p.PresharedKey[:]))
		}
		if p.Endpoint != nil {
			fmt.Fprintf(b, "endpoint=%s\n", p.Endpoint.String())
		}
		if p.PersistentKeepaliveInterval != nil {
			fmt.Fprintf(b, "persistent_keepalive_interval=%d\n", int(p.PersistentKeepaliveInterval.Seconds()))
		}
		if p.ReplaceAllowedIPs {
			b.WriteString("replace_allowed_ips=true\n")
		}
		for _, a := range p.AllowedIPs {
			fmt.Fprintf(b, "allowed_ip=%s\n", a.String())
		}
	}
	return b.Flush()
}

// decodeUAPI reads a "get" operation's reply into a Device.
func decodeUAPI(r io.Reader, name string) (*wgtypes.Device, error) {
	d := &wgtypes.Device{Name: name, Type: wgtypes.Userspace}
	var p *wgtypes.Peer
	flush := func() {
		if p != nil {
			d.Peers = append(d.Peers, *p)
			p = nil
		}
	}
	s := bufio.NewScanner(r)
	s.Buffer(make([]byte, 64<<10), 64<<10)
	for s.Scan() {
		line := s.Text()
		if line == "" {
			break
		}
		k, v, ok := strings.Cut(line, "=")
		if !ok {
			return nil, fmt.Errorf("wireguard: device %s: malformed line %q", name, line)
		}
		var err error
		switch k {
		case "errno":
			if v != "0" {
				return nil, fmt.Errorf("wireguard: device %s: errno %s", name, v)
			}
		case "private_key":
			var key Key
			if key, err = hexKey(v); err == nil {
				d.PrivateKey = wgtypes.Key(key)
				d.PublicKey = wgtypes.Key(key.PublicKey())
			}
		case "listen_port":
			d.ListenPort, err = strconv.Atoi(v)
		case "fwmark":
			d.FirewallMark, err = strconv.Atoi(v)
		case "public_key":
			flush()
			var key Key
			key, err = hexKey(v)
			p = &wgtypes.Peer{PublicKey: wgtypes.Key(key)}
		default:
			if p == nil {
				continue // a device field of a newer protocol
			}
			err = peerLine(p, k, v)
		}
		if err != nil {
			return nil, fmt.Errorf("wireguard: device %s: %s: %w", name, line, err)
		}
	}
	flush()
	return d, s.Err()
}

func peerLine(p *wgtypes.Peer, k, v string) error {
	var err error
	switch k {
	case "preshared_key":
		var key Key
		key, err = hexKey(v)
		p.PresharedKey = wgtypes.Key(key)
	case "endpoint":
		var ap netip.AddrPort
		if ap, err = netip.ParseAddrPort(v); err == nil {
			p.Endpoint = net.UDPAddrFromAddrPort(ap)
		}
	case "last_handshake_time_sec":
		var sec int64
		if sec, err = strconv.ParseInt(v, 10, 64); err == nil && sec != 0 {
			p.LastHandshakeTime = time.Unix(sec, int64(p.LastHandshakeTime.Nanosecond()))
		}
	case "last_handshake_time_nsec":
		var ns int64
		if ns, err = strconv.ParseInt(v, 10, 64); err == nil && !p.LastHandshakeTime.IsZero() {
			p.LastHandshakeTime = time.Unix(p.LastHandshakeTime.Unix(), ns)
		}
	case "tx_bytes":
		p.TransmitBytes, err = strconv.ParseInt(v, 10, 64)
	case "rx_bytes":
		p.ReceiveBytes, err = strconv.ParseInt(v, 10, 64)
	case "persistent_keepalive_interval":
		var sec int
		sec, err = strconv.Atoi(v)
		p.PersistentKeepaliveInterval = time.Duration(sec) * time.Second
	case "allowed_ip":
		var pf netip.Prefix
		if pf, err = netip.ParsePrefix(v); err == nil {
			p.AllowedIPs = append(p.AllowedIPs, net.IPNet{IP: pf.Addr().AsSlice(), Mask: net.CIDRMask(pf.Bits(), pf.Addr().BitLen())})
		}
	case "protocol_version":
		p.ProtocolVersion, err = strconv.Atoi(v)
	}
	return err
}

func hexKey(s string) (Key, error) {
	var k Key
	b, err := hex.DecodeString(s)
	if err != nil || len(b) != len(k) {
		return k, fmt.Errorf("not a 32-byte hex key")
	}
	copy(k[:], b)
	return k, nil
}
