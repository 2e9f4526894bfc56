package vxlan

import (
	"encoding/json"
	"errors"
	"strings"
	"testing"

	"github.com/weftnet/weft/lease"
)

func TestParseConfig(t *testing.T) {
	tests := []struct {
		in   string
		want Config
	}{
		{``, Config{VNI: 1}},
		{`null`, Config{VNI: 1}},
		{`{}`, Config{VNI: 1}},
		{`{"Type": "vxlan"}`, Config{VNI: 1}},
		{`{"Type": "vxlan", "VNI": 4096, "Port": 4789, "MTU": 1400, "GBP": true, "Learning": true, "DirectRouting": true}`,
			Config{VNI: 4096, Port: 4789, MTU: 1400, GBP: true, Learning: true, DirectRouting: true}},
		{`{"vni": 0, "directrouting": true}`, Config{VNI: 0, DirectRouting: true}},
		{`{"VNI": 16777215, "Port": 0, "MTU": 0}`, Config{VNI: 16777215}},
		{`{"VNI": 7, "MacPrefix": "0e:2a", "Future": [1]}`, Config{VNI: 7}},
		{`{"TXChecksumOffload": "off"}`, Config{VNI: 1, TXChecksumOffload: ChecksumOffloadOff}},
		{`{"txchecksumoffload": "ON"}`, Config{VNI: 1, TXChecksumOffload: ChecksumOffloadOn}},
		{`{"TXChecksumOffload": "auto"}`, Config{VNI: 1, TXChecksumOffload: ChecksumOffloadAuto}},
		{`{"TXChecksumOffload": null}`, Config{VNI: 1}},
	}
	for _, tt := range tests {
		got, err := ParseConfig(json.RawMessage(tt.in))
		if err != nil {
			t.Errorf("ParseConfig(%s): %v", tt.in, err)
			continue
		}
		if got != tt.want {
			t.Errorf("ParseConfig(%s) = %+v, want %+v", tt.in, got, tt.want)
		}
	}
}

func TestParseConfigErrors(t *testing.T) {
	tests := []struct{ in, want string }{
		{`{"Type": "host-gw"}`, `net-conf.json: Backend.Type "host-gw" is not a backend weft implements; it implements vxlan only`},
		{`{"VNI": 16777216}`, `net-conf.json: Backend.VNI 16777216 is out of range; use 0 to 16777215`},
		{`{"VNI": -1}`, `net-conf.json: Backend.VNI -1 is out of range; use 0 to 16777215`},
		{`{"VNI": 1.5}`, `net-conf.json: Backend.VNI 1.5 is not a whole number; use 0 to 16777215`},
		{`{"VNI": "1"}`, `net-conf.json: Backend.VNI must be a number, not "1"`},
		{`{"Port": true}`, `net-conf.json: Backend.Port must be a number, not true`},
		{`{"Port": 65536}`, `net-conf.json: Backend.Port 65536 is out of range; use 0 for the kernel's 8472, or a UDP port up to 65535`},
		{`{"MTU": 67}`, `net-conf.json: Backend.MTU 67 is below 68, the smallest IPv4 link MTU; use 0 to derive it from the underlay`},
		{`{"MTU": 70000}`, `net-conf.json: Backend.MTU 70000 is out of range; use 0 to derive it from the underlay, or 68 to 65535`},
		{`{"GBP": "yes"}`, `net-conf.json: Backend.GBP must be a boolean, not a JSON string`},
		{`{"DirectRouting": 1}`, `net-conf.json: Backend.DirectRouting must be a boolean, not a JSON number`},
		{`{"Type": 1}`, `net-conf.json: Backend.Type must be a string, not a JSON number`},
		{`[1]`, `net-conf.json: Backend is not a valid JSON object`},
		{`{"TXChecksumOffload": "maybe"}`, `net-conf.json: Backend.TXChecksumOffload "maybe" is not a setting; use "auto" (off on kernels before 5.7), "on" or "off"`},
		{`{"TXChecksumOffload": false}`, `net-conf.json: Backend.TXChecksumOffload must be a string, not false; use "auto" (off on kernels before 5.7), "on" or "off"`},
	}
	for _, tt := range tests {
		c, err := ParseConfig(json.RawMessage(tt.in))
		if err == nil {
			t.Errorf("ParseConfig(%s) = %+v, want error", tt.in, c)
			continue
		}
		if !strings.HasPrefix(err.Error(), tt.want) {
			t.Errorf("ParseConfig(%s):\n got %s\nwant %s", tt.in, err, tt.want)
		}
		var ce *lease.ConfigError
		if !errors.Is(err, lease.ErrInvalidConfig) || !errors.As(err, &ce) || !strings.HasPrefix(ce.Field, "Backend") {
			t.Errorf("ParseConfig(%s): %T %v is not a *lease.ConfigError on a Backend field", tt.in, err, err)
		}
	}
}

func TestDeviceName(t *testing.T) {
	if got := DeviceName(1, false); got != "flannel.1" {
		t.Error(got)
	}
	if got := DeviceName(4096, true); got != "flannel-v6.4096" {
		t.Error(got)
	}
}

func FuzzParseConfig(f *testing.F) {
	for _, s := range []string{`{"Type": "vxlan", "VNI": 4096, "Port": 4789, "MTU": 1400, "GBP": true}`, `{}`, `{"VNI": 1e3}`, `{"TXChecksumOffload": "off"}`} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		c, err := ParseConfig(data)
		if err != nil {
			return
		}
		if c.VNI < 0 || c.VNI > maxVNI || c.Port < 0 || c.Port > 65535 || c.MTU != 0 && (c.MTU < 68 || c.MTU > 65535) {
			t.Fatalf("ParseConfig(%q) accepted out-of-range %+v", data, c)
		}
		if _, err := ParseChecksumOffload(string(c.TXChecksumOffload)); err != nil {
			t.Fatalf("ParseConfig(%q) accepted TX checksum offload %q", data, c.TXChecksumOffload)
		}
	})
}
