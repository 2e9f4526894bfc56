package wireguard

import (
	"bytes"
	"encoding/json"
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/weftnet/weft/lease"
)

// BackendType is the WireGuard backend's BackendType in leases and
// net-conf.json.
const BackendType = "wireguard"

// Defaults of Config, flannel's.
const (
	DefaultListenPort   = 51820
	DefaultListenPortV6 = 51821
)

// Overhead is what WireGuard adds to a packet at most: an outer IPv6
// header (40), UDP (8), the message type, receiver index and counter (16)
// and the authentication tag (16). flannel subtracts it for either
// underlay family.
const Overhead = 80

// Mode says how a dual-stack node carries its two families.
type Mode string

// The modes, flannel's.
const (
	// ModeSeparate: one device per family, flannel-wg for IPv4 (on
	// ListenPort, endpoints PublicIP) and flannel-wg-v6 for IPv6 (on
	// ListenPortV6, endpoints PublicIPv6). The default.
	ModeSeparate Mode = "separate"
	// ModeAuto: one device, flannel-wg, carrying both families; each
	// peer's endpoint is its IPv4 address unless only IPv6 is public on
	// both ends (flannel's rule).
	ModeAuto Mode = "auto"
	// ModeIPv4 and ModeIPv6: one device, every endpoint of that family.
	ModeIPv4 Mode = "ipv4"
	ModeIPv6 Mode = "ipv6"
)

// Config is net-conf.json's Backend object for WireGuard:
//
//	{"Type": "wireguard", "ListenPort": 51820, "ListenPortV6": 51821, "MTU": 0,
//	 "PSK": "<base64>", "PersistentKeepaliveInterval": 25, "Mode": "separate"}
//
// Field names match case-insensitively, as in flannel.
type Config struct {
	// ListenPort is the UDP port of flannel-wg. Default 51820.
	ListenPort int
	// ListenPortV6 is the UDP port of flannel-wg-v6 (separate mode).
	// Default 51821.
	ListenPortV6 int
	// MTU stands for the uplink's MTU: the devices get MTU minus Overhead.
	// 0, the default, takes the uplink's.
	MTU int
	// PSK is a preshared key every peer uses; the zero Key for none.
	PSK Key
	// PersistentKeepaliveInterval is how often an idle peer is sent a
	// keepalive (net-conf.json gives seconds); 0, the default, sends none.
	PersistentKeepaliveInterval time.Duration
	// Mode is how a dual-stack node carries both families. Default
	// ModeSeparate.
	Mode Mode
}

// ParseConfig parses net-conf.json's Backend object for WireGuard. nil or
// null gives the defaults. Errors are *lease.ConfigError naming the field
// and the fix.
func ParseConfig(backend json.RawMessage) (Config, error) {
	c := Config{ListenPort: DefaultListenPort, ListenPortV6: DefaultListenPortV6, Mode: ModeSeparate}
	b := bytes.TrimSpace(backend)
	if len(b) == 0 || bytes.Equal(b, []byte("null")) {
		return c, nil
	}
	var raw struct {
		Type                        json.RawMessage
		ListenPort, ListenPortV6    json.RawMessage
		MTU                         json.RawMessage
		PSK                         json.RawMessage
		PersistentKeepaliveInterval json.RawMessage
		Mode                        json.RawMessage
	}
	if err := json.Unmarshal(b, &raw); err != nil {
		return Config{}, &lease.ConfigError{Field: "Backend", Reason: "is not a valid JSON object: " + err.Error(), Err: err}
	}
	if s, set, err := str("Type", raw.Type); err != nil {
		return Config{}, err
	} else if set && s != BackendType {
		return Config{}, &lease.ConfigError{Field: "Backend.Type", Value: strconv.Quote(s), Reason: "is not wireguard; this is the WireGuard backend's config"}
	}
	ints := []struct {
		name     string
		v        json.RawMessage
		dst      *int
		min, max int
		hint     string
	}{
		{"ListenPort", raw.ListenPort, &c.ListenPort, 1, 65535, "use a UDP port from 1 to 65535 (default 51820)"},
		{"ListenPortV6", raw.ListenPortV6, &c.ListenPortV6, 1, 65535, "use a UDP port from 1 to 65535 (default 51821)"},
		{"MTU", raw.MTU, &c.MTU, 0, 65535, "use 0 for the uplink's, or the underlay MTU (the device gets 80 less)"},
	}
	for _, f := range ints {
		if err := number(f.name, f.v, f.dst, f.min, f.max, f.hint); err != nil {
			return Config{}, err
		}
	}
	if c.MTU != 0 && c.MTU-Overhead < 1280 {
		return Config{}, &lease.ConfigError{Field: "Backend.MTU", Value: strconv.Itoa(c.MTU), Reason: "leaves the device under 1280 (MTU minus 80); use 0 for the uplink's, or 1360 or more"}
	}
	if s, set, err := str("PSK", raw.PSK); err != nil {
		return Config{}, err
	} else if set && s != "" {
		k, err := ParseKey(s)
		if err != nil {
			return Config{}, &lease.ConfigError{Field: "Backend.PSK", Reason: "is not a WireGuard key (44 characters of base64, as `wg genpsk` prints); " + err.Error()}
		}
		c.PSK = k
	}
	var keepalive int
	if err := number("PersistentKeepaliveInterval", raw.PersistentKeepaliveInterval, &keepalive, 0, 65535, "use seconds from 0 (none) to 65535"); err != nil {
		return Config{}, err
	}
	c.PersistentKeepaliveInterval = time.Duration(keepalive) * time.Second
	if s, set, err := str("Mode", raw.Mode); err != nil {
		return Config{}, err
	} else if set && s != "" {
		switch m := Mode(strings.ToLower(s)); m {
		case ModeSeparate, ModeAuto, ModeIPv4, ModeIPv6:
			c.Mode = m
		default:
			return Config{}, &lease.ConfigError{Field: "Backend.Mode", Value: strconv.Quote(s), Reason: "is not a mode; use separate, auto, ipv4 or ipv6"}
		}
	}
	return c, nil
}

// Devices returns the devices of a node running the given families: one
// per family in separate mode, else flannel-wg alone.
func (c Config) Devices(ipv4, ipv6 bool) []DeviceSpec {
	if c.Mode == ModeSeparate || c.Mode == "" {
		var out []DeviceSpec
		if ipv4 {
			out = append(out, DeviceSpec{Name: DeviceName, Port: c.ListenPort, IPv4: true})
		}
		if ipv6 {
			out = append(out, DeviceSpec{Name: DeviceNameV6, Port: c.ListenPortV6, IPv6: true})
		}
		return out
	}
	return []DeviceSpec{{Name: DeviceName, Port: c.ListenPort, IPv4: ipv4, IPv6: ipv6}}
}

// Device names, flannel's.
const (
	DeviceName   = "flannel-wg"
	DeviceNameV6 = "flannel-wg-v6"
)

// A DeviceSpec is one WireGuard device a node runs: its name, listen
// port, and the families it carries.
type DeviceSpec struct {
	Name       string
	Port       int
	IPv4, IPv6 bool
}

// str decodes an optional string field.
func str(name string, v json.RawMessage) (s string, set bool, err error) {
	if len(v) == 0 || bytes.Equal(v, []byte("null")) {
		return "", false, nil
	}
	if err := json.Unmarshal(v, &s); err != nil {
		return "", false, &lease.ConfigError{Field: "Backend." + name, Reason: "must be a string, not " + lease.Quote(string(v), 64)}
	}
	return s, true, nil
}

// number decodes an optional whole-number field within [min, max].
func number(name string, v json.RawMessage, dst *int, min, max int, hint string) error {
	if len(v) == 0 || bytes.Equal(v, []byte("null")) {
		return nil
	}
	if c := v[0]; c != '-' && (c < '0' || c > '9') {
		return &lease.ConfigError{Field: "Backend." + name, Reason: "must be a number, not " + lease.Quote(string(v), 64) + "; " + hint}
	}
	n, err := json.Number(v).Int64()
	if err != nil {
		return &lease.ConfigError{Field: "Backend." + name, Value: lease.Quote(string(v), 64), Reason: "is not a whole number; " + hint, Err: err}
	}
	if n < int64(min) || n > int64(max) {
		return &lease.ConfigError{Field: "Backend." + name, Value: strconv.FormatInt(n, 10), Reason: fmt.Sprintf("is out of range; %s", hint)}
	}
	*dst = int(n)
	return nil
}
