package main

import (
	"io"
	"strings"
	"testing"

	"github.com/weftnet/weft/internal/netnstest"
)

// TestUnderlayFlags: the interface flags reach package underlay's policy
// (tested in full there), and a failure names the flags.
func TestUnderlayFlags(t *testing.T) {
	h := netnstest.NewSegment(t, 1).Hosts[0]
	for _, tc := range []struct {
		name  string
		args  []string
		iface string
		err   string
	}{
		{"--iface by name", []string{"--iface", "eth0"}, "eth0", ""},
		{"--iface by address", []string{"--iface", h.Addr.Addr().String()}, "eth0", ""},
		{"--iface-regex", []string{"--iface-regex", "^eth"}, "eth0", ""},
		{"--iface-can-reach", []string{"--iface-can-reach", h.Addr.Addr().Next().String()}, "eth0", ""},
		{"no match", []string{"--iface", "nope", "--iface-regex", "^wl"}, "", `--iface, --iface-regex`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c, err := parseFlags(tc.args, envOf(nil), io.Discard)
			if err != nil {
				t.Fatal(err)
			}
			p := underlayPolicy(c)
			p.Namespace = h.Handle
			ch, err := p.Choose(true, true)
			if err == nil && tc.err == "" && ch.Interface == tc.iface {
				return
			}
			if tc.err != "" {
				err = h.Do(func() error { _, err := findPublicAddrs(c, true, true); return err })
				if err != nil && strings.Contains(err.Error(), tc.err) && strings.Contains(err.Error(), `no interface matches interface "nope"`) {
					return
				}
			}
			t.Errorf("got %+v, %v", ch, err)
		})
	}
}
