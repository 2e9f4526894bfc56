//go:build linux

package vxlan

import (
	"context"
	"errors"
	"os"
	"os/exec"
	"strings"
	"testing"
	"time"

	"github.com/weftnet/weft/internal/netnstest"
	"github.com/weftnet/weft/internal/testutil"
)

// ethtoolPath is Debian's ethtool, which .ci/run installs.
const ethtoolPath = "/usr/sbin/ethtool"

// txChecksumming reads the device's tx-checksumming line as Debian's
// `ethtool -k` shows it, in the host's namespace: "on" or "off".
func txChecksumming(t *testing.T, h *netnstest.Host, dev string) string {
	t.Helper()
	out, err := exec.Command("ip", "netns", "exec", h.Name, ethtoolPath, "-k", dev).CombinedOutput()
	if err != nil {
		t.Fatalf("ethtool -k %s: %v\n%s", dev, err, out)
	}
	for line := range strings.Lines(string(out)) {
		if v, ok := strings.CutPrefix(strings.TrimSpace(line), "tx-checksumming:"); ok {
			return strings.Fields(v)[0]
		}
	}
	t.Fatalf("ethtool -k %s shows no tx-checksumming:\n%s", dev, out)
	return ""
}

func requireEthtool(t *testing.T) {
	t.Helper()
	if _, err := os.Stat(ethtoolPath); err != nil {
		if os.Getenv("WEFT_REQUIRE_ETHTOOL") != "" {
			t.Fatalf("%s: %v (WEFT_REQUIRE_ETHTOOL is set)", ethtoolPath, err)
		}
		t.Skipf("%s: %v; install Debian's ethtool", ethtoolPath, err)
	}
}

// TestTXChecksumOffload runs a Datapath with each setting, on this kernel
// and on a kernel before 5.7, for the IPv4 and the IPv6 device, and reads the device's tx-checksumming back
// with ethtool: after the datapath set it up, and again after the device
// was deleted and the running datapath created it anew. Each setting is
// applied to the device the setting before left, so a change of setting
// corrects a device in place too.
func TestTXChecksumOffload(t *testing.T) {
	requireEthtool(t)
	h := netnstest.NewSegment(t, 1).Hosts[0]
	type setting struct {
		mode    ChecksumOffload
		release string // "": this kernel's
		want    string
		ipv6    bool
	}
	settings := []setting{
		{ChecksumOffloadOff, "", "off", false},
		{ChecksumOffloadOn, "", "on", false},
		{ChecksumOffloadOff, "6.1.0", "off", false},
		{"", "", "on", false},
		{ChecksumOffloadAuto, "5.4.0-150-generic", "off", false},
		{ChecksumOffloadAuto, "5.7.0", "on", false},
		{ChecksumOffloadOn, "4.19.0", "on", false},
		{ChecksumOffloadAuto, "3.10.0-1160.el7.x86_64", "off", false},
	}
	for _, tc := range settings[:4] {
		tc.ipv6 = true
		settings = append(settings, tc)
	}
	for _, tc := range settings {
		if tc.mode == "" && tc.release == "" {
			// Auto on the machine's own kernel: on unless it is before 5.7.
			on, _ := tc.mode.resolve(kernelRelease())
			tc.want = onOff(on)
		}
		t.Logf("%q on kernel %q, IPv6 %v: want %s", tc.mode, tc.release, tc.ipv6, tc.want)
		cfg := hostDeviceConfig(t, h, tc.ipv6)
		cfg.TXChecksumOffload = tc.mode
		dp, err := NewDatapath(DatapathConfig{Namespace: h.Handle, Device: cfg, ResyncInterval: time.Hour, Logger: quietLog, release: tc.release})
		if err != nil {
			t.Fatal(err)
		}
		dev := dp.Device()
		if got := txChecksumming(t, h, dev.Name); got != tc.want {
			t.Errorf("%q on %q: ethtool shows tx-checksumming %s, want %s", tc.mode, tc.release, got, tc.want)
		}
		st := dp.Status().Offload
		if st.State != tc.want || dev.TXChecksumOffload != tc.want || st.Err != "" || st.Why == "" {
			t.Errorf("%q on %q: status %+v, device %q, want state %s", tc.mode, tc.release, st, dev.TXChecksumOffload, tc.want)
		}

		// Deleted under the running datapath: it creates the device
		// again on the link notification, with the setting.
		ctx, cancel := context.WithCancel(context.Background())
		done := make(chan error, 1)
		go func() { done <- dp.Run(ctx) }()
		link, err := h.Netlink().LinkByName(dev.Name)
		if err != nil {
			t.Fatal(err)
		}
		if err := h.Netlink().LinkDel(link); err != nil {
			t.Fatal(err)
		}
		testutil.WaitFor(t, 10*time.Second, "the device re-created", func() bool {
			l, err := h.Netlink().LinkByName(dev.Name)
			return err == nil && l.Attrs().Index != dev.Index && dp.Device().Index == l.Attrs().Index
		})
		if got := txChecksumming(t, h, dev.Name); got != tc.want {
			t.Errorf("%q on %q, re-created: ethtool shows tx-checksumming %s, want %s", tc.mode, tc.release, got, tc.want)
		}
		if got := dp.Device().TXChecksumOffload; got != tc.want {
			t.Errorf("%q on %q, re-created: the device reports %q, want %s", tc.mode, tc.release, got, tc.want)
		}
		cancel()
		if err := <-done; err != nil && !errors.Is(err, context.Canceled) {
			t.Fatal(err)
		}
		dp.Close()
	}
}

// TestTXChecksumOffloadDrift changes the offload behind the datapath's
// back, as `ethtool -K` would, and checks the next reconcile restores it
// and records the repair.
func TestTXChecksumOffloadDrift(t *testing.T) {
	requireEthtool(t)
	h := netnstest.NewSegment(t, 1).Hosts[0]
	cfg := hostDeviceConfig(t, h, false)
	cfg.TXChecksumOffload = ChecksumOffloadOff
	dp, err := NewDatapath(DatapathConfig{Namespace: h.Handle, Device: cfg, ResyncInterval: time.Hour, Logger: quietLog})
	if err != nil {
		t.Fatal(err)
	}
	defer dp.Close()
	name := dp.Device().Name
	if out, err := exec.Command("ip", "netns", "exec", h.Name, ethtoolPath, "-K", name, "tx", "on").CombinedOutput(); err != nil {
		t.Fatalf("ethtool -K: %v\n%s", err, out)
	}
	if got := txChecksumming(t, h, name); got != "on" {
		t.Fatalf("ethtool -K tx on left %s; the test proves nothing", got)
	}
	if err := dp.Reconcile(); err != nil {
		t.Fatal(err)
	}
	if got := txChecksumming(t, h, name); got != "off" {
		t.Errorf("after a reconcile: tx-checksumming %s, want off", got)
	}
	var found bool
	for _, r := range dp.Status().Repairs {
		found = found || strings.Contains(r.Why, "TX checksum offload on corrected to off")
	}
	if !found {
		t.Errorf("no repair recorded: %+v", dp.Status().Repairs)
	}
}

func TestChecksumOffloadResolve(t *testing.T) {
	for _, tc := range []struct {
		mode    ChecksumOffload
		release string
		want    bool
	}{
		{"", "5.6.19", false},
		{ChecksumOffloadAuto, "5.7", true},
		{ChecksumOffloadAuto, "5.10.0-28-amd64", true},
		{ChecksumOffloadAuto, "4.18.0-553.el8_10.x86_64", false},
		{ChecksumOffloadAuto, "6.0", true},
		{ChecksumOffloadAuto, "garbage", false},
		{ChecksumOffloadAuto, "", false},
		{ChecksumOffloadOn, "3.10.0", true},
		{ChecksumOffloadOff, "6.18.44", false},
	} {
		if got, why := tc.mode.resolve(tc.release); got != tc.want || why == "" {
			t.Errorf("%q on %q: %v (%s), want %v", tc.mode, tc.release, got, why, tc.want)
		}
	}
	for in, want := range map[string]ChecksumOffload{"": ChecksumOffloadAuto, "AUTO": ChecksumOffloadAuto, " on": ChecksumOffloadOn, "off": ChecksumOffloadOff} {
		if got, err := ParseChecksumOffload(in); err != nil || got != want {
			t.Errorf("ParseChecksumOffload(%q) = %q, %v", in, got, err)
		}
	}
	if _, err := ParseChecksumOffload("disabled"); err == nil || !strings.Contains(err.Error(), "use auto, on or off") {
		t.Errorf("ParseChecksumOffload(disabled): %v", err)
	}
}
