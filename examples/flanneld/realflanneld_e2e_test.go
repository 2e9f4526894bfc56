package main

import (
	"context"
	"net/netip"
	"path/filepath"
	"syscall"
	"testing"
	"time"

	"github.com/weftnet/weft/internal/daemontest"
	"github.com/weftnet/weft/internal/flanneldtest"
	"github.com/weftnet/weft/internal/netnstest"
	"github.com/weftnet/weft/subnetenv"
)

// realFlanneld runs flannel's own flanneld on h against the cluster's
// etcd, with its subnet.env where c.start would put weft's.
func (c *cluster) realFlanneld(bin string, h *netnstest.Host) *daemon {
	c.t.Helper()
	return flanneldtest.Start(c.t, h, bin, filepath.Join(c.dir, h.Name, "subnet.env"), c.srv.Endpoint())
}

// dataplane is what a node has programmed for its peers: the routes,
// neighbours and FDB entries of flannel.1.
func dataplane(t testing.TB, h *netnstest.Host) string {
	t.Helper()
	return ipOut(t, h, "ip", "route", "show", "dev", "flannel.1") +
		ipOut(t, h, "ip", "neigh", "show", "dev", "flannel.1") +
		ipOut(t, h, "bridge", "fdb", "show", "dev", "flannel.1")
}

// podOf is the address of the pod on d's node: the second of its subnet.
func podOf(d *daemon) netip.Addr { return d.Env().Subnet.Addr().Next().Next() }

func leaseOf(t testing.TB, c *cluster, f subnetenv.File) string {
	t.Helper()
	resp, err := c.admin.Get(context.Background(), keyOf(f.Subnet))
	if err != nil || len(resp.Kvs) != 1 {
		t.Fatalf("lease of %v: %v %v", f.Subnet, err, resp)
	}
	return string(resp.Kvs[0].Value)
}

// TestRealFlanneldMixed runs weft's flanneld beside flannel's own
// (flanneldtest.Version) in one VXLAN cluster in etcd mode, in both start
// orders: each programs the other, overlay traffic flows both ways, a
// restart of either keeps its subnet, and a node migrated from flannel's
// flanneld to weft's and back keeps its subnet and leaves the other
// node's routes, neighbours and FDB unchanged.
func TestRealFlanneldMixed(t *testing.T) {
	for _, order := range []string{"weft-first", "flanneld-first"} {
		t.Run(order, func(t *testing.T) {
			netnstest.RequirePrivileged(t)
			real := flanneldtest.Build(t)
			c := newCluster(t, 3, netConf16)
			var w, f *daemon
			if order == "weft-first" {
				w = c.start(c.host(1))
				w.WaitReady()
				f = c.realFlanneld(real, c.host(2))
			} else {
				f = c.realFlanneld(real, c.host(2))
				flanneldtest.WaitReady(t, f)
				w = c.start(c.host(1))
				w.WaitReady()
			}
			flanneldtest.WaitReady(t, f, w.Env())
			w.WaitPeers(1)
			// The third node runs weft: it sees one weft and one
			// flannel lease.
			w3 := c.start(c.host(3))
			w3.WaitReady()
			w3.WaitPeers(2)
			flanneldtest.WaitReady(t, f, w.Env(), w3.Env())
			all := []*daemon{w, f, w3}
			// A pod on each node: an address in its subnet on a bridge
			// (the pods' bridge; no dummy driver here), which every other node's pods ping.
			for _, d := range all {
				ipOut(t, d.Host, "ip", "link", "add", "pod0", "type", "bridge")
				ipOut(t, d.Host, "ip", "addr", "add", podOf(d).String()+"/32", "dev", "pod0")
				ipOut(t, d.Host, "ip", "link", "set", "pod0", "up")
			}
			reachAll := func(step string) {
				t.Helper()
				for _, a := range all {
					for _, b := range all {
						if a != b {
							if err := daemontest.Reach(t, a, b); err != nil {
								t.Fatalf("%s: %s -> %s: %v", step, a.Host.Name, b.Host.Name, err)
							}
							if err := a.Host.WaitPing(podOf(a), podOf(b), 10*time.Second); err != nil {
								t.Fatalf("%s: pod ping %s -> %s: %v", step, a.Host.Name, b.Host.Name, err)
							}
						}
					}
				}
			}
			reachAll("mixed cluster")
			t.Logf("flanneld's lease: %s\nweft's lease: %s", leaseOf(t, c, f.Env()), leaseOf(t, c, w.Env()))

			// Restarts keep subnets.
			ws, fs := w.Env().Subnet, f.Env().Subnet
			if err := w.Stop(syscall.SIGTERM); err != nil {
				t.Fatalf("weft's exit: %v", err)
			}
			w = c.start(c.host(1))
			w.WaitReady()
			if got := w.Env().Subnet; got != ws {
				t.Fatalf("weft restarted with %v, had %v", got, ws)
			}
			if err := f.Stop(syscall.SIGTERM); err != nil {
				t.Logf("flanneld's exit after SIGTERM: %v", err)
			}
			f = c.realFlanneld(real, c.host(2))
			flanneldtest.WaitReady(t, f, w.Env(), w3.Env())
			if got := f.Env().Subnet; got != fs {
				t.Fatalf("flanneld restarted with %v, had %v", got, fs)
			}
			all = []*daemon{w, f, w3}
			reachAll("after restarts")

			// Migration of host 2: flannel's flanneld -> weft's -> flannel's.
			before1, before3 := dataplane(t, c.host(1)), dataplane(t, c.host(3))
			leaseBefore := leaseOf(t, c, f.Env())
			f.Stop(syscall.SIGTERM)
			m := c.start(c.host(2))
			m.WaitReady()
			m.WaitPeers(2)
			if got := m.Env().Subnet; got != fs {
				t.Fatalf("weft on flanneld's node took %v, flanneld had %v", got, fs)
			}
			all = []*daemon{w, m, w3}
			reachAll("migrated to weft")
			if after := dataplane(t, c.host(1)); after != before1 {
				t.Errorf("migrating %s to weft changed %s's dataplane:\nbefore:\n%s\nafter:\n%s", c.host(2).Name, c.host(1).Name, before1, after)
			}
			if after := dataplane(t, c.host(3)); after != before3 {
				t.Errorf("migrating %s to weft changed %s's dataplane:\nbefore:\n%s\nafter:\n%s", c.host(2).Name, c.host(3).Name, before3, after)
			}
			t.Logf("lease by flanneld: %s\nlease by weft: %s", leaseBefore, leaseOf(t, c, m.Env()))
			if err := m.Stop(syscall.SIGTERM); err != nil {
				t.Fatalf("weft's exit: %v", err)
			}
			f = c.realFlanneld(real, c.host(2))
			flanneldtest.WaitReady(t, f, w.Env(), w3.Env())
			if got := f.Env().Subnet; got != fs {
				t.Fatalf("flanneld back on its node took %v, had %v", got, fs)
			}
			all = []*daemon{w, f, w3}
			reachAll("migrated back to flanneld")
			if after := dataplane(t, c.host(1)); after != before1 {
				t.Errorf("migrating %s back to flanneld changed %s's dataplane:\nbefore:\n%s\nafter:\n%s", c.host(2).Name, c.host(1).Name, before1, after)
			}
		})
	}
}
