package main

import (
	"fmt"
	"os/exec"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/weftnet/weft/internal/flanneldtest"
	"github.com/weftnet/weft/internal/netnstest"
)

// BenchmarkRealFlanneld is BenchmarkDaemon's start with flannel's own
// flanneld (flanneldtest.Version) in the daemon's place, so that make
// bench prints its figures beside weft's: from the process's start to a
// route on flannel.1 for every one of N peers' leases (converge-s; it
// has no /readyz, so the routes are polled), and its peak RSS. It
// judges nothing: the figures are the yardstick. Skipped under -short.
func BenchmarkRealFlanneld(b *testing.B) {
	if testing.Short() {
		b.Skip("builds and runs flannel's flanneld at up to 5,000 peers")
	}
	netnstest.RequirePrivileged(b)
	real := flanneldtest.Build(b)
	for _, n := range []int{1000, 5000} {
		b.Run(fmt.Sprintf("peers=%d", n), func(b *testing.B) {
			var converge, rss []float64
			for i := 0; i < b.N; i++ {
				c := newCluster(b, 1, benchConf)
				fillLeases(b, c, n)
				h := c.host(1)
				start := time.Now()
				d := c.realFlanneld(real, h)
				waitFor(b, 5*time.Minute, "flanneld to program every peer", func() bool {
					if exited, err := d.Exited(); exited {
						b.Fatalf("flanneld exited: %v\n%s", err, d.Out)
					}
					out, _ := exec.Command("ip", "-n", h.Name, "route", "show", "dev", "flannel.1").Output()
					return strings.Count(string(out), "\n") >= n
				})
				converge = append(converge, time.Since(start).Seconds())
				rss = append(rss, peakRSS(d.Cmd.Process.Pid))
				d.Stop(syscall.SIGTERM)
			}
			b.ReportMetric(mean(converge), "converge-s")
			b.ReportMetric(mean(rss), "peak-rss-MiB")
		})
	}
}
