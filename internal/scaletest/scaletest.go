// Package scaletest is what the control-plane scale harnesses share (vxlan's
// BenchmarkScale against etcd, kube/apitest's BenchmarkKubeScale against a
// kube-apiserver): the agents' addresses and subnets, the herd start, and
// the measurement of a change's arrival at every agent.
package scaletest

import (
	"net/netip"
	"slices"
	"sync"
	"time"

	"github.com/weftnet/weft/internal/testutil"
)

// SubnetOf is agent i's subnet, a /24 of 10.0.0.0/8, for i below 60,000
// (the /24s above stay free for the harnesses' own leases).
func SubnetOf(i int) netip.Prefix {
	return netip.PrefixFrom(netip.AddrFrom4([4]byte{10, byte(i >> 8), byte(i), 0}), 24)
}

// PublicOf is agent i's underlay address, in 172.16.0.0/12.
func PublicOf(i int) netip.Addr {
	return netip.AddrFrom4([4]byte{172, byte(16 + i>>16), byte(i >> 8), byte(i)})
}

// WaitArrivals waits until each of n agents has received something
// written at wrote (arrived(i) is the Unix nanoseconds agent i got it, 0
// before), and returns how long each took, sorted. It fails t after
// timeout, naming what.
func WaitArrivals(t testutil.T, what string, n int, wrote time.Time, timeout time.Duration, arrived func(i int) int64) []time.Duration {
	t.Helper()
	deadline := time.Now().Add(timeout)
	out := make([]time.Duration, 0, n)
	for {
		out = out[:0]
		for i := range n {
			if at := arrived(i); at != 0 {
				out = append(out, time.Unix(0, at).Sub(wrote))
			}
		}
		if len(out) == n {
			slices.Sort(out)
			return out
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s reached %d of %d agents in %v", what, len(out), n, timeout)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// Percentile returns the p-th percentile of sorted ds, 0 if it is empty.
func Percentile(ds []time.Duration, p float64) time.Duration {
	if len(ds) == 0 {
		return 0
	}
	return ds[min(len(ds)-1, int(float64(len(ds))*p))]
}

// StartHerd starts n agents within spread, as a cluster restarting at
// once does: agent i at i/n of the way through, each by start(i) on a
// goroutine of its own. It returns them once all have started.
func StartHerd[A any](n int, spread time.Duration, start func(i int) A) []A {
	agents := make([]A, n)
	var wg sync.WaitGroup
	for i := range n {
		delay := spread * time.Duration(i) / time.Duration(max(n, 1))
		wg.Go(func() {
			time.Sleep(delay)
			agents[i] = start(i)
		})
	}
	wg.Wait()
	return agents
}
