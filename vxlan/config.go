package vxlan

import (
	"bytes"
	"encoding/json"
	"fmt"
	"strconv"
	"strings"

	"github.com/weftnet/weft/lease"
)

// Defaults and limits of the vxlan backend settings.
const (
	DefaultVNI = 1
	maxVNI     = 1<<24 - 1
	// KernelDefaultPort is the UDP port Linux uses when none is given. It is
	// not IANA's 4789, which flannel does not use by default either.
	KernelDefaultPort = 8472
)

// Config is the "Backend" object of net-conf.json for the vxlan backend:
//
//	{"Type": "vxlan", "VNI": 1, "Port": 8472, "MTU": 0, "GBP": false, "Learning": false, "DirectRouting": false,
//	 "TXChecksumOffload": "auto"}
//
// Field names match case-insensitively, as in flannel. TXChecksumOffload is
// weft's; flannel ignores it.
type Config struct {
	// VNI is the VXLAN network identifier, 0 to 16777215. Default 1. The
	// device is named flannel.<VNI>.
	VNI int
	// Port is the UDP destination port. 0, the default, means the kernel's
	// 8472.
	Port int
	// MTU overrides the device MTU. 0, the default, derives it from the
	// underlay: its MTU minus 50 for an IPv4 underlay, minus 70 for IPv6.
	MTU int
	// GBP turns on VXLAN Group Based Policy. Default false.
	GBP bool
	// Learning turns on the kernel's source address learning. Default
	// false: the reconciler programs every peer.
	Learning bool
	// DirectRouting routes to a peer on the same L2 network directly via its
	// public IP, without encapsulation. Default false.
	DirectRouting bool
	// TXChecksumOffload is the devices' TX checksum offload: "auto" (the
	// default, also ""), "on" or "off". Auto turns it off on kernels
	// before 5.7, which corrupt the outer UDP checksum of VXLAN packets
	// NATed twice, and on otherwise. A weft extension.
	TXChecksumOffload ChecksumOffload
}

// ChecksumOffload is a setting of the VXLAN devices' TX checksum offload.
type ChecksumOffload string

// The settings of ChecksumOffload.
const (
	// ChecksumOffloadAuto turns the offload off on kernels before 5.7
	// (as Calico does), on otherwise. "" means the same.
	ChecksumOffloadAuto ChecksumOffload = "auto"
	ChecksumOffloadOn   ChecksumOffload = "on"
	ChecksumOffloadOff  ChecksumOffload = "off"
)

// ParseChecksumOffload parses "auto", "on" or "off" (any case; "" is
// auto).
func ParseChecksumOffload(s string) (ChecksumOffload, error) {
	switch m := ChecksumOffload(strings.ToLower(strings.TrimSpace(s))); m {
	case "", ChecksumOffloadAuto:
		return ChecksumOffloadAuto, nil
	case ChecksumOffloadOn, ChecksumOffloadOff:
		return m, nil
	}
	return "", fmt.Errorf("TX checksum offload %q: use auto, on or off", s)
}

// ParseConfig parses net-conf.json's Backend object (lease.Config.Backend)
// for the vxlan backend. A nil or empty backend gives the defaults. Errors
// are *lease.ConfigError, and match lease.ErrInvalidConfig; they name the
// field, e.g. "net-conf.json: Backend.VNI 16777216 is out of range;
// use 0 to 16777215".
func ParseConfig(backend json.RawMessage) (Config, error) {
	c := Config{VNI: DefaultVNI}
	if len(bytes.TrimSpace(backend)) == 0 || bytes.Equal(bytes.TrimSpace(backend), []byte("null")) {
		return c, nil
	}
	var raw struct {
		Type          *string
		VNI, Port     json.RawMessage
		MTU           json.RawMessage
		GBP, Learning *bool
		DirectRouting *bool
		// TXChecksumOffload is raw so that a wrong type gets the
		// field's own hint, not the generic one.
		TXChecksumOffload json.RawMessage
	}
	if err := json.Unmarshal(backend, &raw); err != nil {
		if te, ok := err.(*json.UnmarshalTypeError); ok && te.Field != "" {
			return Config{}, &lease.ConfigError{Field: "Backend." + te.Field, Reason: fmt.Sprintf("must be a %s, not a JSON %s", kindOf(te.Field), te.Value), Err: err}
		}
		return Config{}, &lease.ConfigError{Field: "Backend", Reason: "is not a valid JSON object: " + err.Error(), Err: err}
	}
	if raw.Type != nil && *raw.Type != "vxlan" && *raw.Type != "" {
		return Config{}, &lease.ConfigError{Field: "Backend.Type", Value: strconv.Quote(*raw.Type), Reason: "is not a backend weft implements; it implements vxlan only"}
	}
	ints := []struct {
		name     string
		v        json.RawMessage
		dst      *int
		min, max int
		hint     string
	}{
		{"VNI", raw.VNI, &c.VNI, 0, maxVNI, "use 0 to 16777215"},
		{"Port", raw.Port, &c.Port, 0, 65535, "use 0 for the kernel's 8472, or a UDP port up to 65535"},
		{"MTU", raw.MTU, &c.MTU, 0, 65535, "use 0 to derive it from the underlay, or 68 to 65535"},
	}
	for _, f := range ints {
		if len(f.v) == 0 || bytes.Equal(f.v, []byte("null")) {
			continue
		}
		if c := f.v[0]; c != '-' && (c < '0' || c > '9') {
			return Config{}, &lease.ConfigError{Field: "Backend." + f.name, Reason: "must be a number, not " + string(f.v)}
		}
		n, err := json.Number(f.v).Int64()
		if err != nil {
			return Config{}, &lease.ConfigError{Field: "Backend." + f.name, Value: string(f.v), Reason: "is not a whole number; " + f.hint, Err: err}
		}
		if n < int64(f.min) || n > int64(f.max) {
			return Config{}, &lease.ConfigError{Field: "Backend." + f.name, Value: strconv.FormatInt(n, 10), Reason: "is out of range; " + f.hint}
		}
		*f.dst = int(n)
	}
	if c.MTU != 0 && c.MTU < 68 {
		return Config{}, &lease.ConfigError{Field: "Backend.MTU", Value: strconv.Itoa(c.MTU), Reason: "is below 68, the smallest IPv4 link MTU; use 0 to derive it from the underlay"}
	}
	for _, f := range []struct {
		v   *bool
		dst *bool
	}{{raw.GBP, &c.GBP}, {raw.Learning, &c.Learning}, {raw.DirectRouting, &c.DirectRouting}} {
		if f.v != nil {
			*f.dst = *f.v
		}
	}
	if v := raw.TXChecksumOffload; len(v) != 0 && !bytes.Equal(v, []byte("null")) {
		const hint = `use "auto" (off on kernels before 5.7), "on" or "off"`
		var str string
		if err := json.Unmarshal(v, &str); err != nil {
			return Config{}, &lease.ConfigError{Field: "Backend.TXChecksumOffload", Reason: "must be a string, not " + string(v) + "; " + hint}
		}
		m, err := ParseChecksumOffload(str)
		if err != nil {
			return Config{}, &lease.ConfigError{Field: "Backend.TXChecksumOffload", Value: strconv.Quote(str), Reason: "is not a setting; " + hint}
		}
		c.TXChecksumOffload = m
	}
	return c, nil
}

func kindOf(field string) string {
	switch field {
	case "Type":
		return "string"
	case "GBP", "Learning", "DirectRouting":
		return "boolean"
	}
	return "number"
}

// DeviceName returns flannel's name for the VXLAN device of a VNI:
// flannel.<VNI> for IPv4, flannel-v6.<VNI> for IPv6.
func DeviceName(vni int, ipv6 bool) string {
	if ipv6 {
		return fmt.Sprintf("flannel-v6.%d", vni)
	}
	return fmt.Sprintf("flannel.%d", vni)
}
