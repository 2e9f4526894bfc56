package main

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"net/netip"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/vishvananda/netlink"
	clientv3 "go.etcd.io/etcd/client/v3"
	"golang.org/x/sys/unix"

	"github.com/weftnet/weft/internal/netnstest"
	"github.com/weftnet/weft/lease"
	"github.com/weftnet/weft/vxlan"
)

// benchConf holds every fakeLease: the peers are in 10/8, and the node's
// own subnet in 11/8, so that one range deletion of 10. takes every peer
// and not the node's own lease.
const benchConf = `{"Network": "10.0.0.0/7", "SubnetMin": "11.0.0.0", "Backend": {"Type": "vxlan"}}`

// fakeLease is a peer's lease as another node would write it.
func fakeLease(i int) (key, value string) {
	j := i + 1
	subnet := netip.PrefixFrom(netip.AddrFrom4([4]byte{10, byte(j >> 8), byte(j), 0}), 24)
	data, _ := json.Marshal(vxlan.BackendData{VNI: 1, VtepMAC: vxlan.DeriveMAC(fmt.Sprint("peer-", j), 1)})
	attrs, _ := json.Marshal(lease.Attrs{
		PublicIP: netip.AddrFrom4([4]byte{172, 31, byte(j >> 8), byte(j)}), BackendType: "vxlan",
		BackendData: data, Owner: fmt.Sprint("peer-", j),
	})
	return keyOf(subnet), string(attrs)
}

func fillLeases(b testing.TB, c *cluster, n int) {
	var ops []clientv3.Op
	for i := range n {
		k, v := fakeLease(i)
		ops = append(ops, clientv3.OpPut(k, v))
		if len(ops) == 128 || i == n-1 {
			if _, err := c.admin.Txn(context.Background()).Then(ops...).Commit(); err != nil {
				b.Fatal(err)
			}
			ops = ops[:0]
		}
	}
}

// peakRSS reads a process's high-water resident set, in MiB.
func peakRSS(pid int) float64 {
	status, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return 0
	}
	for _, line := range strings.Split(string(status), "\n") {
		if f := strings.Fields(line); len(f) == 3 && f[0] == "VmHWM:" {
			kb, _ := strconv.Atoi(f[1])
			return float64(kb) / 1024
		}
	}
	return 0
}

// BenchmarkDaemon starts flanneld on a new host with N peers' leases in
// etcd and reports: convergence (daemon start to /readyz, which needs
// subnet.env written and every peer programmed), the daemon's peak RSS
// (N=0 is the floor), and the latency from a new peer's lease being
// written to its route being in the kernel (p50 and p99 over newPeers new
// peers): from the write (new-peer-*, etcd's commit and its WAL's fsync
// included, as issue 30's harness measured) and from the commit
// (commit-to-route-*, the node's part, which the 1 ms target judges). The
// local state is on, as by default. The daemon is built as the image
// ships it (static, stripped): its binary's pages are most of the floor.
//
// It fails when a figure misses issue 30's targets (benchTargets): peak
// RSS always, as it does not depend on the machine's load; the times only
// with WEFT_BENCH_QUIET=1, on a quiet machine, and are logged otherwise.
//
// flanneld measured here: convergence 0.58 s at 1,000 and 2.8 s at 5,000;
// new-peer p50 1.3 ms at 1,000 and 1.75 ms at 5,000; peak RSS 45 MB at
// 1,000 and 75 MB at 20,000.
func BenchmarkDaemon(b *testing.B) {
	// Judged once every size has run: a failed benchmark prints no
	// figures, and they are what make bench-check needs.
	var misses []string
	defer func() {
		for _, m := range misses {
			b.Error(m)
		}
	}()
	for _, n := range []int{0, 1000, 5000, 20000} {
		target := benchTargets[n]
		b.Run(fmt.Sprintf("peers=%d", n), func(b *testing.B) {
			var converge, rss, p50, p99, c50, c99 []float64
			for i := 0; i < b.N; i++ {
				c := newCluster(b, 1, benchConf)
				fillLeases(b, c, n)
				h := c.host(1)
				start := time.Now()
				// The daemon's default resync (30s), as deployed; the e2e
				// fixture's 2s would put a full resync in the way of about
				// one event in fifty.
				d := c.start(h, "--resync-interval", "30s")
				waitFor(b, 5*time.Minute, "convergence", func() bool { code, _ := d.Readyz(); return code == http.StatusOK })
				converge = append(converge, time.Since(start).Seconds())
				if os.Getenv("WEFT_BENCH_LOG") != "" {
					// The daemon's own timeline of its start.
					b.Logf("start %v; daemon log:\n%s", start.Format("15:04:05.000"), d.Out.String())
				}
				if os.Getenv(profileEnv) != "" {
					// The start's CPU profile ends here; the new peers'
					// begins.
					_ = d.Cmd.Process.Signal(syscall.SIGUSR1)
				}

				// New peers, one at a time: lease written -> route in the
				// kernel. The subscription starts now, after the flood of
				// notifications convergence causes.
				routes := make(chan netlink.RouteUpdate, 64)
				done := make(chan struct{})
				if err := netlink.RouteSubscribeAt(h.Handle, routes, done); err != nil {
					b.Fatal(err)
				}
				var lat, fromCommit []float64
				for k := range newPeers {
					key, value := fakeLease(n + k)
					dst := keyToPrefix(key)
					for len(routes) > 0 {
						<-routes
					}
					t0 := time.Now()
					if _, err := c.admin.Put(context.Background(), key, value); err != nil {
						b.Fatal(err)
					}
					t1 := time.Now() // committed: etcd's WAL fsync is behind
					deadline := time.NewTimer(10 * time.Second)
				wait:
					for {
						select {
						case u, ok := <-routes:
							if !ok {
								b.Fatal("route subscription ended")
							}
							if u.Type == unixNewRoute && u.Dst != nil && u.Dst.String() == dst {
								break wait
							}
						case <-deadline.C:
							b.Fatalf("route to %s did not appear", dst)
						}
					}
					deadline.Stop()
					lat = append(lat, float64(time.Since(t0).Microseconds())/1000)
					fromCommit = append(fromCommit, float64(time.Since(t1).Microseconds())/1000)
				}
				q50, q99 := percentiles(lat)
				p50, p99 = append(p50, q50), append(p99, q99)
				q50, q99 = percentiles(fromCommit)
				c50, c99 = append(c50, q50), append(c99, q99)
				rss = append(rss, peakRSS(d.Cmd.Process.Pid))
				close(done)
				d.Stop(syscallTERM)
				flushDatapath(b, h)
			}
			b.ReportMetric(mean(converge), "converge-s")
			b.ReportMetric(mean(rss), "peak-rss-MiB")
			b.ReportMetric(mean(p50), "new-peer-p50-ms")
			b.ReportMetric(mean(p99), "new-peer-p99-ms")
			b.ReportMetric(mean(c50), "commit-to-route-p50-ms")
			b.ReportMetric(mean(c99), "commit-to-route-p99-ms")
			if target.rss > 0 && mean(rss) > target.rss {
				misses = append(misses, fmt.Sprintf("peers=%d: peak RSS %.1f MiB, issue 30's target is at most %.0f MiB", n, mean(rss), target.rss))
			}
			quiet := os.Getenv("WEFT_BENCH_QUIET") == "1"
			for _, miss := range []struct {
				what          string
				got, target   float64
				unit, targetf string
			}{
				{"start to converged", mean(converge), target.converge, "s", "%.1f"},
				{"new-peer p99 (from the lease's commit)", mean(c99), target.p99, "ms", "%.0f"},
			} {
				if miss.target == 0 || miss.got < miss.target {
					continue
				}
				msg := fmt.Sprintf("peers=%d: %s %.3g %s, issue 30's target on a quiet machine is under "+miss.targetf+" %s", n, miss.what, miss.got, miss.unit, miss.target, miss.unit)
				if quiet {
					misses = append(misses, msg)
				} else {
					b.Log(msg + " (not judged: WEFT_BENCH_QUIET is not 1)")
				}
			}
		})
	}
}

// newPeers is how many new peers BenchmarkDaemon times, one at a time:
// enough for a p99 that is not the worst of a few.
const newPeers = 500

// benchTargets are issue 30's targets for BenchmarkDaemon, by peers: peak
// RSS at most rss MiB, start to converged under converge seconds, new-peer
// p99 under p99 ms; zero is no target.
var benchTargets = map[int]struct{ rss, converge, p99 float64 }{
	0:     {p99: 1},
	1000:  {rss: 26, p99: 1},
	5000:  {rss: 30, p99: 1},
	20000: {rss: 40, converge: 0.6, p99: 1},
}

// flushDatapath removes the routes, then the nexthops, that a daemon left
// on a host. Left for the namespace's teardown, tens of thousands of
// nexthops with routes cost the kernel a FIB flush each, under the lock
// every netlink request in every namespace takes: seconds in which the
// next daemon measured would wait.
func flushDatapath(b *testing.B, h *netnstest.Host) {
	nl := h.Netlink()
	routes, err := nl.RouteListFiltered(netlink.FAMILY_V4, &netlink.Route{Protocol: vxlan.DefaultRouteProtocol}, netlink.RT_FILTER_PROTOCOL)
	if err != nil {
		b.Fatal(err)
	}
	for _, r := range routes {
		if err := nl.RouteDel(&netlink.Route{Dst: r.Dst, Protocol: r.Protocol, Priority: r.Priority, Table: r.Table}); err != nil {
			b.Fatalf("delete route %v: %v", r.Dst, err)
		}
	}
	if out, err := exec.Command("ip", "-n", h.Name, "nexthop", "flush").CombinedOutput(); err != nil {
		b.Fatalf("ip nexthop flush: %v\n%s", err, out)
	}
}

func mean(v []float64) float64 {
	s := 0.0
	for _, x := range v {
		s += x
	}
	return s / float64(len(v))
}

// keyToPrefix turns ".../subnets/10.1.2.0-24" into "10.1.2.0/24".
func keyToPrefix(key string) string {
	name := key[strings.LastIndexByte(key, '/')+1:]
	return strings.Replace(name, "-", "/", 1)
}

const unixNewRoute = unix.RTM_NEWROUTE

var syscallTERM = syscall.SIGTERM

// BenchmarkMassRemoval deletes every one of N peers' keys with one etcd
// request and reports how long flanneld takes to remove their routes
// (removal-s), and how long a new peer's key, written 100 ms into that
// removal, takes to reach the kernel (new-peer-during-ms).
//
// Before the removal was made linear, flanneld took 1.9 s for 5,000, 7.8 s
// for 10,000 and 10.6 s (quiet machine) to 82 s (loaded) for 20,000, and a
// new peer written during a 20,000-key removal waited as long.
func BenchmarkMassRemoval(b *testing.B) {
	for _, n := range []int{5000, 20000} {
		b.Run(fmt.Sprintf("peers=%d", n), func(b *testing.B) {
			var removal, during []float64
			for i := 0; i < b.N; i++ {
				b.StopTimer()
				c := newCluster(b, 1, benchConf)
				fillLeases(b, c, n)
				h := c.host(1)
				d := c.start(h, "--resync-interval", "30s")
				waitFor(b, 5*time.Minute, "convergence", func() bool { code, _ := d.Readyz(); return code == http.StatusOK })
				d.WaitPeers(n)

				routes := make(chan netlink.RouteUpdate, 4*n)
				done := make(chan struct{})
				if err := netlink.RouteSubscribeWithOptions(routes, done, netlink.RouteSubscribeOptions{
					Namespace: &h.Handle, ReceiveBufferSize: 64 << 20, ReceiveBufferForceSize: true,
				}); err != nil {
					b.Fatal(err)
				}
				_, newValue := fakeLease(0)
				newKey := keyOf(netip.MustParsePrefix("11.1.0.0/24"))
				b.StartTimer()
				t0 := time.Now()
				if _, err := c.admin.Delete(context.Background(), "/coreos.com/network/subnets/10.", clientv3.WithPrefix()); err != nil {
					b.Fatal(err)
				}
				put := make(chan time.Time, 1)
				go func() {
					time.Sleep(100 * time.Millisecond)
					at := time.Now()
					if _, err := c.admin.Put(context.Background(), newKey, strings.Replace(newValue, "peer-1", "peer-new", 1)); err == nil {
						put <- at
					}
				}()
				deleted, added := 0, time.Time{}
				deadline := time.NewTimer(2 * time.Minute)
				for deleted < n || added.IsZero() {
					select {
					case u := <-routes:
						switch {
						case u.Type == unix.RTM_DELROUTE && u.Protocol == vxlan.DefaultRouteProtocol:
							if deleted++; deleted == n {
								removal = append(removal, time.Since(t0).Seconds())
								b.StopTimer()
							}
						case u.Type == unixNewRoute && u.Dst != nil && u.Dst.String() == "11.1.0.0/24":
							added = time.Now()
						}
					case <-deadline.C:
						b.Fatalf("after 2 minutes, %d of %d routes removed; new peer programmed: %v", deleted, n, !added.IsZero())
					}
				}
				deadline.Stop()
				during = append(during, float64(added.Sub(<-put).Microseconds())/1000)
				close(done)
				d.WaitPeers(1)
				d.Stop(syscallTERM)
				flushDatapath(b, h)
			}
			b.ReportMetric(mean(removal), "removal-s")
			b.ReportMetric(mean(during), "new-peer-during-ms")
		})
	}
}
