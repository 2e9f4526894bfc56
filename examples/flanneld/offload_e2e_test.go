package main

import (
	"encoding/json"
	"net/http"
	"os"
	"os/exec"
	"strings"
	"testing"
	"time"

	"github.com/weftnet/weft/internal/daemontest"
	"github.com/weftnet/weft/internal/netnstest"
	"github.com/weftnet/weft/status"
)

// ethtoolTX reads the device's tx-checksumming as Debian's `ethtool -k`
// shows it in h's namespace.
func ethtoolTX(t *testing.T, h *netnstest.Host, dev string) string {
	t.Helper()
	const bin = "/usr/sbin/ethtool"
	if _, err := os.Stat(bin); err != nil {
		if os.Getenv("WEFT_REQUIRE_ETHTOOL") != "" {
			t.Fatalf("%s: %v (WEFT_REQUIRE_ETHTOOL is set)", bin, err)
		}
		t.Skipf("%s: %v; install Debian's ethtool", bin, err)
	}
	out, err := exec.Command("ip", "netns", "exec", h.Name, bin, "-k", dev).CombinedOutput()
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

// TestTXChecksumOffloadDaemon runs two daemons on a net-conf.json whose
// Backend turns TX checksum offload off, one of them overriding it with
// --vxlan-tx-checksum-offload=on, the other following the config. Each device's offload is read back with
// ethtool, in the status document, in weftctl status and in the metric;
// then each device is deleted, and the daemon's re-created one has the
// same setting.
func TestTXChecksumOffloadDaemon(t *testing.T) {
	t.Parallel()
	c := newCluster(t, 2, `{"Network": "10.244.0.0/16", "Backend": {"Type": "vxlan", "TXChecksumOffload": "off"}}`)
	a := c.start(c.host(1), "--vxlan-tx-checksum-offload=on")
	b := c.start(c.host(2))
	ctl := daemontest.Build(t, "./examples/weftctl")
	for _, tc := range []struct {
		d         *daemon
		want, why string
		metric    string
	}{
		{a, "on", "on as configured", `weft_vxlan_tx_checksum_offload{family="ipv4"} 1`},
		{b, "off", "off as configured", `weft_vxlan_tx_checksum_offload{family="ipv4"} 0`},
	} {
		tc.d.WaitReady()
		name := tc.d.Host.Name
		if got := ethtoolTX(t, tc.d.Host, "flannel.1"); got != tc.want {
			t.Errorf("%s: ethtool shows tx-checksumming %s, want %s", name, got, tc.want)
		}
		out, _, code := weftctl(t, ctl, tc.d.Host, "--socket", socketOf(tc.d), "status", "-o", "json")
		var doc status.Document
		if err := json.Unmarshal([]byte(out), &doc); err != nil || code != 0 || len(doc.Families) != 1 {
			t.Fatalf("%s: weftctl status -o json: exit %d, %v\n%s", name, code, err, out)
		}
		if o := doc.Families[0].Device.TXChecksumOffload; o == nil || o.Mode != tc.want || o.Want != tc.want || o.State != tc.want || o.Why != tc.why || o.Err != "" {
			t.Errorf("%s: the status document's offload is %+v, want %s (%s)", name, o, tc.want, tc.why)
		}
		out, _, code = weftctl(t, ctl, tc.d.Host, "--socket", socketOf(tc.d), "status")
		if line := "TX checksum:   offload " + tc.want + " (" + tc.why + ")"; code != 0 || !strings.Contains(out, line) {
			t.Errorf("%s: weftctl status lacks %q:\n%s", name, line, out)
		}
		if code, body := tc.d.Get("/metrics"); code != http.StatusOK || !strings.Contains(body, tc.metric) {
			t.Errorf("%s: /metrics lacks %q", name, tc.metric)
		}

		// Deleted: the daemon's datapath creates the device again, with
		// the setting.
		old := ipOut(t, tc.d.Host, "ip", "-o", "link", "show", "flannel.1")
		ipOut(t, tc.d.Host, "ip", "link", "del", "flannel.1")
		waitFor(t, 20*time.Second, name+"'s flannel.1 re-created", func() bool {
			out, err := exec.Command("ip", "-n", name, "-o", "link", "show", "flannel.1").CombinedOutput()
			return err == nil && strings.Fields(string(out))[0] != strings.Fields(old)[0]
		})
		waitFor(t, 20*time.Second, name+"'s re-created flannel.1 set", func() bool {
			return ethtoolTX(t, tc.d.Host, "flannel.1") == tc.want
		})
		if _, body := tc.d.Get("/metrics"); !strings.Contains(body, tc.metric) {
			t.Errorf("%s: after the re-create, /metrics lacks %q", name, tc.metric)
		}
	}
}
