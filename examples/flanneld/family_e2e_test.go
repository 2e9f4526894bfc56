package main

import (
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/google/nftables"

	"github.com/weftnet/weft/hostrules"
	"github.com/weftnet/weft/subnetenv"
)

// TestIPv6DroppedFromConfig: a dual-stack cluster run with --ip-masq is
// made IPv4-only, and the node restarted as it asks. The node's IPv6 masquerade table goes with the IPv6
// network (left, it would masquerade a network no longer the cluster's
// for as long as the host runs); the IPv4 one stays.
func TestIPv6DroppedFromConfig(t *testing.T) {
	t.Parallel()
	c := newCluster(t, 1, `{"Network": "10.244.0.0/16", "EnableIPv6": true, "IPv6Network": "fd00:10:244::/56", "Backend": {"Type": "vxlan"}}`)
	a := c.start(c.host(1), "--ip-masq", "--iptables-resync", "1")
	a.WaitReady()
	hasTable := func(fam nftables.TableFamily) bool {
		conn, err := nftables.New(nftables.WithNetNSFd(int(a.Host.Handle)))
		if err != nil {
			t.Fatal(err)
		}
		tables, err := conn.ListTablesOfFamily(fam)
		if err != nil {
			t.Fatal(err)
		}
		for _, tb := range tables {
			if tb.Name == hostrules.MasqueradeTable {
				return true
			}
		}
		return false
	}
	waitFor(t, 20*time.Second, "both masquerade tables", func() bool {
		return hasTable(nftables.TableFamilyIPv4) && hasTable(nftables.TableFamilyIPv6)
	})
	// A change of families takes a restart (the daemon says so).
	c.putConfig(netConf16)
	waitFor(t, 10*time.Second, "the restart asked for", func() bool { return strings.Contains(a.Out.String(), "needs a restart") })
	if err := a.Stop(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	first := a
	a = c.start(a.Host, "--ip-masq", "--iptables-resync", "1")
	a.WaitReady()
	waitFor(t, 20*time.Second, "subnet.env without IPv6", func() bool {
		f, err := subnetenv.Read(a.SubnetFile)
		return err == nil && f.Subnet.IsValid() && !f.IPv6Network.IsValid()
	})
	waitFor(t, 20*time.Second, "the IPv6 masquerade table gone", func() bool { return !hasTable(nftables.TableFamilyIPv6) })
	for _, d := range []*daemon{first, a} {
		if strings.Contains(d.Out.String(), "!ERROR") {
			t.Errorf("a log line could not encode a value:\n%s", d.Out)
		}
	}
	if !hasTable(nftables.TableFamilyIPv4) {
		t.Errorf("the IPv4 masquerade table is gone too")
	}
}
