package wireguard

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"net/netip"

	"github.com/weftnet/weft/lease"
)

// BackendData is the WireGuard backend's part of a lease, per family
// (BackendData for IPv4, BackendV6Data for IPv6), flannel's
//
//	{"PublicKey":"<base64>","Port":51820}
//
// Port 0 (flannel before v0.18 published none) means the receiver's own
// listen port for the family.
type BackendData struct {
	PublicKey Key
	Port      int
}

// MarshalJSON writes exactly what flannel writes: PublicKey then Port.
func (d BackendData) MarshalJSON() ([]byte, error) {
	if d.Port < 0 || d.Port > 65535 {
		return nil, fmt.Errorf("wireguard: port %d is not a UDP port", d.Port)
	}
	return fmt.Appendf(nil, `{"PublicKey":%q,"Port":%d}`, d.PublicKey.String(), d.Port), nil
}

// ErrBackendData is wrapped by every error ParseBackendData returns.
var ErrBackendData = errors.New("invalid WireGuard backend data")

// ParseBackendData parses one family's backend data. Unknown fields are
// ignored, as flannel does. The error names the field and what is wrong.
func ParseBackendData(raw json.RawMessage) (BackendData, error) {
	b := bytes.TrimSpace(raw)
	if len(b) == 0 || bytes.Equal(b, []byte("null")) {
		return BackendData{}, fmt.Errorf("%w: missing; a WireGuard node publishes {\"PublicKey\":...,\"Port\":...}", ErrBackendData)
	}
	var w struct {
		PublicKey *string
		Port      json.RawMessage
	}
	if err := json.Unmarshal(b, &w); err != nil {
		return BackendData{}, fmt.Errorf("%w: %s is not a {\"PublicKey\":...,\"Port\":...} object", ErrBackendData, quote(string(b)))
	}
	if w.PublicKey == nil {
		return BackendData{}, fmt.Errorf("%w: no PublicKey", ErrBackendData)
	}
	k, err := ParseKey(*w.PublicKey)
	if err != nil {
		return BackendData{}, fmt.Errorf("%w: PublicKey: %v", ErrBackendData, err)
	}
	if err := checkPublic(k); err != nil {
		return BackendData{}, fmt.Errorf("%w: PublicKey %s: %v", ErrBackendData, k, err)
	}
	d := BackendData{PublicKey: k}
	if p := w.Port; len(p) != 0 && !bytes.Equal(p, []byte("null")) {
		// flannel's field is a uint16: anything else fails its decode.
		var port uint16
		if err := json.Unmarshal(p, &port); err != nil {
			return BackendData{}, fmt.Errorf("%w: Port %s is not a UDP port (0 to 65535)", ErrBackendData, quote(string(p)))
		}
		d.Port = int(port)
	}
	return d, nil
}

// Attrs returns the attributes a WireGuard node publishes with its lease
// before acquiring it: its public addresses (the zero Addr for none), and
// for each family it runs, its public key and the port its device for that
// family listens on. In separate mode that is flannel's lease exactly. In
// the one-device modes flannel publishes ListenPortV6 for IPv6 although its
// one device listens on ListenPort; weft publishes the port it listens on,
// so that peers, flannel's included, reach it.
func (c Config) Attrs(public Key, public4, public6 netip.Addr, ipv4, ipv6 bool) (lease.Attrs, error) {
	a := lease.Attrs{PublicIP: public4, PublicIPv6: public6, BackendType: BackendType}
	for _, dev := range c.Devices(ipv4, ipv6) {
		if dev.IPv4 {
			b, err := BackendData{PublicKey: public, Port: dev.Port}.MarshalJSON()
			if err != nil {
				return lease.Attrs{}, err
			}
			a.BackendData = b
		}
		if dev.IPv6 {
			b, err := BackendData{PublicKey: public, Port: dev.Port}.MarshalJSON()
			if err != nil {
				return lease.Attrs{}, err
			}
			a.BackendV6Data = b
		}
	}
	return a, nil
}

// Admit is the WireGuard rule for a peer lease's backend part in one
// family: its BackendType is wireguard and its backend data names a usable
// public key that is not this node's own (own; the zero Key skips that
// check). It returns the key, the peer's uniqueness key within the backend:
// admission admits only the oldest lease with a given key, so that a lease
// carrying another node's key can never take that node's AllowedIPs or
// endpoint. The error says what is wrong and how to fix it.
func Admit(l lease.Lease, ipv6 bool, own Key) (unique string, err error) {
	d, err := admit(l, ipv6, own, ParseBackendData)
	if err != nil {
		return "", err
	}
	return d.PublicKey.String(), nil
}

// admit is Admit with the parser given, so that a datapath can cache what
// it parsed (checking a key costs a scalar multiplication).
func admit(l lease.Lease, ipv6 bool, own Key, parse func(json.RawMessage) (BackendData, error)) (BackendData, error) {
	if l.Attrs.BackendType != BackendType {
		return BackendData{}, fmt.Errorf("BackendType %q, but this network runs %q; the two nodes' net-conf.json Backend.Type differ", l.Attrs.BackendType, BackendType)
	}
	raw, field := l.Attrs.BackendData, "BackendData"
	if ipv6 {
		raw, field = l.Attrs.BackendV6Data, "BackendV6Data"
	}
	d, err := parse(raw)
	if err != nil {
		return BackendData{}, fmt.Errorf("%s: %w; the node holding the lease must publish its WireGuard key", field, err)
	}
	if !own.IsZero() && d.PublicKey == own {
		return BackendData{}, fmt.Errorf("%s PublicKey %s is this node's own; a node that copied this node's key file must generate its own (delete its key file and restart it)", field, d.PublicKey)
	}
	return d, nil
}
