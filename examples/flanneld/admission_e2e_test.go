package main

import (
	"context"
	"fmt"
	"net/netip"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/weftnet/weft/internal/daemontest"
	"github.com/weftnet/weft/status"
)

// TestHostileKeysDaemon runs flanneld among hostile subnet keys written by
// hand, as an operator's tool or an attacker would: one over half the
// address space, one for etcd's own address, one with a broadcast VtepMAC,
// one over another daemon's subnet and one with another daemon's VtepMAC.
// Every daemon stays ready, counts each rejection by rule, programs only
// its honest peer, and passes traffic; one started while the keys exist
// writes subnet.env and passes traffic too; and etcd, whose address one
// key names, stays reachable, so the keys' deletion is seen.
func TestHostileKeysDaemon(t *testing.T) {
	t.Parallel()
	c := newCluster(t, 3, netConf16)
	a, b := c.startTwo()
	etcdAddr := c.host(0).Addr.Addr()
	macOf := func(d *daemon) string {
		out := ipOut(t, d.Host, "ip", "-br", "link", "show", "flannel.1")
		return strings.Fields(out)[2]
	}
	value := func(public, mac string) string {
		return fmt.Sprintf(`{"PublicIP":%q,"PublicIPv6":null,"BackendType":"vxlan","BackendData":{"VNI":1,"VtepMAC":%q}}`, public, mac)
	}
	aSub := a.Env().Subnet.Masked()
	hostile := map[string]string{
		"128.0.0.0-1":             value("172.30.0.77", "0e:00:00:00:77:01"),
		etcdAddr.String() + "-32": value("172.30.0.77", "0e:00:00:00:77:02"),
		"10.244.0.0-25":           value("172.30.0.77", "ff:ff:ff:ff:ff:ff"), // 10.244.0.0/24 is never given out
		strings.Replace(aSub.String(), "/", "-", 1) + "&fd00:77::-64": `{"PublicIP":"172.30.0.77","PublicIPv6":"fd30::77","BackendType":"vxlan","BackendData":{"VNI":1,"VtepMAC":"0e:00:00:00:77:03"}}`,
		"10.244.0.128-25": value("172.30.0.78", macOf(b)),
		// Padded past the size limit: reported by key and limit, and
		// nothing of it kept.
		"10.244.250.0-24": strings.Replace(value("172.30.0.79", "0e:00:00:00:77:04"), "{", `{"Padding":"`+strings.Repeat("x", 64<<10)+`",`, 1),
	}

	// Readiness is sampled from here to the end.
	ready := daemontest.WatchReady(a, b)
	for k, v := range hostile {
		c.put(t, "/coreos.com/network/subnets/"+k, v)
	}
	wantMetrics := []string{
		`weft_peers_rejected{reason="subnet"} 2`, // half the space, etcd's address: both outside the Network
		`weft_peers_rejected{reason="vtep-mac"} 1`,
		`weft_peers_rejected{reason="subnet-conflict"} 1`,
		`weft_peers_rejected{reason="identity-conflict"} 1`,
		`weft_peers_rejected{reason="value"} 1`,
	}
	for _, d := range []*daemon{a, b} {
		waitFor(t, 10*time.Second, d.Host.Name+" to reject every hostile key", func() bool {
			_, body := d.Get("/metrics")
			for _, m := range wantMetrics {
				if d == a && strings.Contains(m, "subnet-conflict") {
					m = `weft_peers_rejected{reason="own-subnet"} 1` // a's own subnet
				}
				if !strings.Contains(body, m) {
					return false
				}
			}
			return true
		})
		d.WaitPeers(1)
	}
	reachPairs(t, [][2]*daemon{{a, b}, {b, a}})
	for _, d := range []*daemon{a, b} {
		if out := ipOut(t, d.Host, "ip", "route", "show", "proto", "157"); strings.Count(strings.TrimSpace(out), "\n") != 0 {
			t.Errorf("%s routes more than its one honest peer:\n%s", d.Host.Name, out)
		}
		if !strings.Contains(d.Out.String(), "rejected a peer lease") {
			t.Errorf("%s logged no rejection", d.Host.Name)
		}
		if out := d.Out.String(); !strings.Contains(out, "lease=10.244.250.0-24") || !strings.Contains(out, "over the limit of 16384") || strings.Contains(out, "xxxxxxxx") {
			t.Errorf("%s did not report the padded lease by key and limit, or logged its padding", d.Host.Name)
		}
		// The status lists it with the other rejections.
		if code, body := d.Get(status.Path + "?rejected=1"); code != 200 || !strings.Contains(body, `"subnet": "10.244.250.0/24"`) ||
			!strings.Contains(body, `"value"`) || !strings.Contains(body, "over the limit of 16384") {
			t.Errorf("%s: status of the rejected leases: %d\n%s", d.Host.Name, code, body)
		}
	}

	late := c.start(c.host(3))
	late.WaitReady()
	late.WaitPeers(2)
	if late.Env().Subnet.Masked() == aSub {
		t.Fatal("the late daemon took a's subnet")
	}
	reachPairs(t, [][2]*daemon{{late, a}, {a, late}, {late, b}, {b, late}})

	// etcd stays reachable: the keys' deletion reaches every daemon.
	for k := range hostile {
		c.del(t, "/coreos.com/network/subnets/"+k)
	}
	for _, d := range []*daemon{a, b, late} {
		waitFor(t, 10*time.Second, d.Host.Name+" to see the deletions", func() bool {
			_, body := d.Get("/metrics")
			return strings.Contains(body, "weft_peers_rejected{") && !containsNonZeroRejection(body)
		})
	}
	reachPairs(t, [][2]*daemon{{a, b}, {b, late}})
	ready.Check(t, "a daemon was not ready")
}

func (c *cluster) put(t *testing.T, key, value string) {
	t.Helper()
	if _, err := c.admin.Put(context.Background(), key, value); err != nil {
		t.Fatal(err)
	}
}

func (c *cluster) del(t *testing.T, key string) {
	t.Helper()
	if _, err := c.admin.Delete(context.Background(), key); err != nil {
		t.Fatal(err)
	}
}

// containsNonZeroRejection reports whether a metrics page counts any
// rejected peer.
func containsNonZeroRejection(body string) bool {
	for _, line := range strings.Split(body, "\n") {
		if strings.HasPrefix(line, "weft_peers_rejected{") && !strings.HasSuffix(line, " 0") {
			return true
		}
	}
	return false
}

// TestReservationOverPeerDaemon (issue 29, item 9): a reservation (a key
// with no etcd lease) under host 1's name, address and VTEP MAC covers
// host 2's older subnet with a /23. Host 1 restarts: it keeps its own
// subnet rather than adopt the reservation, so its route to host 2 stays
// and traffic flows both ways; its log names the reservation's key and
// the fix. Host 2 rejects the reservation, by key, as it overlaps its own
// subnet.
func TestReservationOverPeerDaemon(t *testing.T) {
	t.Parallel()
	c := newCluster(t, 2, netConf16)
	a, b := c.startTwo()
	reachPairs(t, [][2]*daemon{{a, b}, {b, a}})
	aSub, bSub := a.Env().Subnet.Masked(), b.Env().Subnet.Masked()
	resp, err := c.admin.Get(context.Background(), keyOf(aSub))
	if err != nil || len(resp.Kvs) != 1 {
		t.Fatalf("host 1's key: %v %v", resp, err)
	}
	wide := netip.PrefixFrom(bSub.Addr(), 23).Masked()
	c.put(t, keyOf(wide), string(resp.Kvs[0].Value))

	if err := a.Stop(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	a = c.start(a.Host)
	a.WaitReady()
	a.WaitPeers(1)
	if got := a.Env().Subnet.Masked(); got != aSub {
		t.Errorf("restarted host 1 runs %v; want its own %v, not the reservation %v over host 2's %v", got, aSub, wide, bSub)
	}
	if route := ipOut(t, a.Host, "ip", "route", "show", bSub.String()); !strings.Contains(route, "dev flannel.1") {
		t.Errorf("host 1 has no route to host 2's %v: %q", bSub, route)
	}
	reachPairs(t, [][2]*daemon{{a, b}, {b, a}})
	if out := a.Out.String(); !strings.Contains(out, "overlaps an older lease") || !strings.Contains(out, keyOf(wide)) || !strings.Contains(out, "etcdctl del") {
		t.Errorf("host 1 did not report the reservation %s with the fix:\n%s", keyOf(wide), out)
	}
	waitFor(t, 10*time.Second, "host 2 to reject the reservation by key", func() bool {
		out := b.Out.String()
		return strings.Contains(out, "rejected a peer lease") && strings.Contains(out, strings.Replace(wide.String(), "/", "-", 1))
	})
}
