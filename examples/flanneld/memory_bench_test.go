package main

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"net/netip"
	"os"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/vishvananda/netlink"
	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/weftnet/weft/internal/netnstest"
	"github.com/weftnet/weft/internal/procstat"
	"github.com/weftnet/weft/vxlan"
)

// hostileHonest is how many honest peers the node under attack has.
const hostileHonest = 100

// newPeerBound is the most a new honest peer may take, at the 99th
// percentile, from its lease's commit to its route, while hostile keys
// are written: in milliseconds.
const newPeerBound = 250

// BenchmarkHostileMemory writes hostile subnet keys into etcd while an
// honest flanneld runs, and measures what they cost it: the growth of the
// daemon's peak resident set (VmHWM, reset when the attack starts, against
// its VmRSS then), scaled to the units; the peak of a second
// daemon that starts while the keys are there (the listing path), beside
// the first one's start; and the latency of new honest peers written
// during the attack, from the commit of their lease to their route,
// beside that without it.
//
// The daemon is a process of its own, so its RSS is the figure a
// DaemonSet's memory limit sees. The peak, not the RSS after the fact, is
// measured: the limit kills on the peak.
//
// Issue 29 saw 100,000 rejected keys grow the RSS by 220 MiB and 260 keys
// of 1 MB by 245 MiB. Targets: at most 32 MiB per 100,000 rejected keys and
// 16 MiB per 1,000 keys of 1 MB. Measured here, on a 2-core machine shared
// with other builds (load 4 to 14), before the bounds and after each step:
//
//	                           no bounds   bounds       kept keys    parts+digest  compact listing
//	rejected=100000, running   46–51 MiB   30.3–34.7    30.3–34.7    17.6–23.8     17.4–22.7
//	rejected=100000, starting  157–181 MiB 110–128      89–107       50.8–56.3     25.6–29.8
//	padded=1000x1MB, running   2,076 MiB   9.2–16.2     9.3–11.1     7.2–12.4      7.6–8.5
//	padded=1000x1MB, starting  2,722 MiB   11.2–19.1    12.3–16.5    9.6–17.0      9.0–14.9
//
// "kept keys": a kept listing held only the lease keys, and
// lease.Event.Prev became a pointer. "parts+digest": the first snapshot
// comes in parts that admission stages (no event slice of every lease),
// the watcher's view keeps a digest per lease rather than a copy, a Delta
// lists at most admit.MaxNews verdicts, and skipped keys are logged at a
// bounded rate. "compact listing": the listing OwnLease and Acquire hold,
// past 10 MiB as etcd's client decodes it, is records with only the values
// that mention the node (lease/etcd compact.go); a heap profile of the
// starting daemon at its peak held 23 MB live in it before (75,000 subnet
// keys, about 300 bytes each with their values, as etcd's client decodes
// them). Measured at load 2.0–8.6; the "parts+digest" column at 4.5–11.
//
// The figures move with the machine's load: a starved garbage collector
// lets the heap run past its goal.
func BenchmarkHostileMemory(b *testing.B) {
	for _, tc := range []struct {
		name  string
		keys  int
		unit  string  // the metric, per the unit
		scale float64 // the keys of that unit
		limit float64 // MiB per unit
		write func(b *testing.B, c *cluster, n int)
		// listed bounds a starting daemon's peak: the targets
		// (32 MiB for the rejected keys, as for a running daemon).
		listed float64
	}{
		{"rejected=100000", 100000, "MiB-per-100k-rejected", 100000, 32, writeRejected, 32},
		{"padded=1000x1MB", 1000, "MiB-per-1000x1MB", 1000, 16, writePadded, 16},
	} {
		b.Run(tc.name, func(b *testing.B) {
			var added, listed, p50, p99, base50, base99 []float64
			for i := 0; i < b.N; i++ {
				c := newCluster(b, 2, benchConf)
				fillLeases(b, c, hostileHonest)
				h := c.host(1)
				d := c.start(h, "--resync-interval", "30s")
				waitFor(b, 2*time.Minute, "convergence", func() bool { code, _ := d.Readyz(); return code == http.StatusOK })
				d.WaitPeers(hostileHonest)
				pid := d.Cmd.Process.Pid
				start := readProc(b, pid)
				lat := newLatency(b, c, h)
				next := hostileHonest
				var quiet []float64
				for range 20 {
					quiet = append(quiet, lat.add(next))
					next++
				}
				before := readProc(b, pid)
				resetPeak(b, pid)

				done := make(chan struct{})
				go func() {
					defer close(done)
					tc.write(b, c, tc.keys)
				}()
				var loud []float64
			attack:
				for {
					select {
					case <-done:
						break attack
					case <-time.After(50 * time.Millisecond):
					}
					loud = append(loud, lat.add(next))
					next++
				}
				// Events arrive in order: once a peer written after the
				// last hostile key is programmed, every hostile key has
				// been seen.
				for range max(0, 20-len(loud)) + 1 {
					loud = append(loud, lat.add(next))
					next++
				}
				after := readProc(b, pid)
				lat.close()
				added = append(added, mib(after.Peak-before.RSS)*tc.scale/float64(tc.keys))

				// A daemon that starts among the keys lists them.
				d2 := c.start(c.host(2), "--resync-interval", "30s")
				waitFor(b, 5*time.Minute, "the second daemon's convergence", func() bool { code, _ := d2.Readyz(); return code == http.StatusOK })
				listed = append(listed, mib(readProc(b, d2.Cmd.Process.Pid).Peak-start.Peak)*tc.scale/float64(tc.keys))

				q50, q99 := percentiles(quiet)
				l50, l99 := percentiles(loud)
				base50, base99 = append(base50, q50), append(base99, q99)
				p50, p99 = append(p50, l50), append(p99, l99)
				d2.Stop(syscallTERM)
				d.Stop(syscallTERM)
				flushDatapath(b, h)
			}
			b.ReportMetric(mean(added), tc.unit)
			b.ReportMetric(mean(listed), "listing-"+tc.unit)
			b.ReportMetric(mean(base50), "quiet-new-peer-p50-ms")
			b.ReportMetric(mean(base99), "quiet-new-peer-p99-ms")
			b.ReportMetric(mean(p50), "attack-new-peer-p50-ms")
			b.ReportMetric(mean(p99), "attack-new-peer-p99-ms")
			b.Logf("%s %.1f, listing %.1f; new-peer p50/p99 %.1f/%.1f ms quiet, %.1f/%.1f ms under the attack",
				tc.unit, mean(added), mean(listed), mean(base50), mean(base99), mean(p50), mean(p99))
			if got := mean(added); got > tc.limit {
				b.Errorf("the keys added %.1f %s to the daemon's peak RSS; the bound is %.0f", got, tc.unit, tc.limit)
			}
			if got := mean(listed); got > tc.listed {
				b.Errorf("a daemon starting among the keys peaked %.1f %s above one starting without; the bound is %.0f", got, tc.unit, tc.listed)
			}
			// Peer changes reach the kernel in well under a second
			// (design.md's scale); under the attack the daemon also
			// takes every hostile key, in order, ahead of the new peer.
			if got := mean(p99); got > newPeerBound {
				b.Errorf("new peers took %.1f ms (p99) to be programmed under the attack; the bound is %d", got, newPeerBound)
			}
		})
	}
}

// writeRejected writes n keys that no node may program, in transactions
// of 128, in equal parts: a key that is no subnet key, a value that does
// not parse, a subnet outside the Network, and a subnet inside it that
// claims an honest peer's VTEP MAC and address (a conflict the honest,
// older, peer wins).
func writeRejected(b *testing.B, c *cluster, n int) {
	_, honest := fakeLease(0)
	var attrs map[string]any
	if err := json.Unmarshal([]byte(honest), &attrs); err != nil {
		b.Error(err)
		return
	}
	attrs["WeftOwner"] = "mallory"
	clash, _ := json.Marshal(attrs)
	var ops []clientv3.Op
	for i := range n {
		addr := func(first byte) netip.Prefix {
			return netip.PrefixFrom(netip.AddrFrom4([4]byte{first, 128 + byte(i>>16), byte(i >> 8), byte(i)}), 32)
		}
		var key, value string
		switch i % 4 {
		case 0:
			key, value = fmt.Sprintf("/coreos.com/network/subnets/not-a-subnet-%d", i), string(clash)
		case 1:
			key, value = keyOf(addr(11)), fmt.Sprintf(`{"PublicIP":"172.20.0.%d",`, i%250)
		case 2:
			key, value = keyOf(addr(20)), string(clash)
		case 3:
			key, value = keyOf(addr(11)), string(clash)
		}
		ops = append(ops, clientv3.OpPut(key, value))
		if len(ops) == 128 || i == n-1 {
			if _, err := c.admin.Txn(context.Background()).Then(ops...).Commit(); err != nil {
				b.Error(err)
				return
			}
			ops = ops[:0]
		}
	}
}

// writePadded writes n leases of about 1 MB each, one a request (etcd's
// limit is 1.5 MiB a request), that would each be admitted but for their
// size: distinct subnets inside the Network, MACs and addresses, padded in
// turn in a field flannel does not know, in the backend data, and in the
// owner.
func writePadded(b *testing.B, c *cluster, n int) {
	pad := strings.Repeat("x", 1<<20)
	for i := range n {
		j := 60000 + i
		subnet := netip.PrefixFrom(netip.AddrFrom4([4]byte{11, 200, byte(i >> 8), byte(i)}), 32)
		mac := vxlan.DeriveMAC(fmt.Sprint("padded-", j), 1)
		public := netip.AddrFrom4([4]byte{172, 21, byte(i >> 8), byte(i)})
		data := map[string]any{"VNI": 1, "VtepMAC": mac.String()}
		attrs := map[string]any{"PublicIP": public.String(), "PublicIPv6": nil, "BackendType": "vxlan", "WeftOwner": fmt.Sprint("padded-", j)}
		switch i % 3 {
		case 0:
			attrs["Padding"] = pad
		case 1:
			data["Padding"] = pad
		case 2:
			attrs["WeftOwner"] = pad
		}
		attrs["BackendData"] = data
		value, _ := json.Marshal(attrs)
		if _, err := c.admin.Put(context.Background(), keyOf(subnet), string(value)); err != nil {
			b.Error(err)
			return
		}
	}
}

// latency measures how long a new honest peer's lease takes from its
// commit in etcd to a route in a host's kernel.
type latency struct {
	b      *testing.B
	c      *cluster
	routes chan netlink.RouteUpdate
	done   chan struct{}
}

func newLatency(b *testing.B, c *cluster, h *netnstest.Host) *latency {
	l := &latency{b: b, c: c, routes: make(chan netlink.RouteUpdate, 1024), done: make(chan struct{})}
	if err := netlink.RouteSubscribeAt(h.Handle, l.routes, l.done); err != nil {
		b.Fatal(err)
	}
	return l
}

// add writes honest peer i's lease and returns the milliseconds until its
// route appeared.
func (l *latency) add(i int) float64 {
	key, value := fakeLease(i)
	dst := keyToPrefix(key)
	for len(l.routes) > 0 {
		<-l.routes
	}
	// From the commit: how long etcd, busy with the attacker's writes,
	// takes to commit the put is not the node's doing.
	if _, err := l.c.admin.Put(context.Background(), key, value); err != nil {
		l.b.Fatal(err)
	}
	t0 := time.Now()
	deadline := time.NewTimer(2 * time.Minute)
	defer deadline.Stop()
	for {
		select {
		case u, ok := <-l.routes:
			if !ok {
				l.b.Fatal("route subscription ended")
			}
			if u.Type == unixNewRoute && u.Dst != nil && u.Dst.String() == dst {
				return float64(time.Since(t0).Microseconds()) / 1000
			}
		case <-deadline.C:
			l.b.Fatalf("route to %s did not appear", dst)
		}
	}
}

func (l *latency) close() { close(l.done) }

func percentiles(v []float64) (p50, p99 float64) {
	v = slices.Clone(v)
	slices.Sort(v)
	return v[len(v)/2], v[len(v)*99/100]
}

func readProc(b *testing.B, pid int) procstat.Sample {
	s, err := procstat.Read(pid)
	if err != nil {
		b.Fatal(err)
	}
	return s
}

// resetPeak resets a process's VmHWM to its RSS now (proc(5),
// clear_refs).
func resetPeak(b *testing.B, pid int) {
	if err := os.WriteFile(fmt.Sprintf("/proc/%d/clear_refs", pid), []byte("5"), 0); err != nil {
		b.Fatal(err)
	}
}

func mib(bytes int64) float64 { return float64(bytes) / (1 << 20) }
