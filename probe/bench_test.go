//go:build linux

package probe

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"net/netip"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/google/nftables"
	"github.com/google/nftables/binaryutil"
	"github.com/google/nftables/expr"

	"github.com/weftnet/weft/internal/netnstest"
	"github.com/weftnet/weft/internal/testutil"
)

// BenchmarkProbeCost is one round of probing, with its path MTU checks
// and underlay checks, at 1,000 and 20,000 peers, all healthy or with
// 2·Sample failing: Sample whose overlay drops everything while their
// underlay answers, and Sample behind a path MTU black hole. Host b's
// kernel answers for every peer (a local route for 10/8 and 12/8): the
// replies are real. It reports the checks a round (at most 2·Sample, the
// issue's bound, or the benchmark fails), the echo requests and bytes
// sent a round, and the process's CPU a round.
func BenchmarkProbeCost(b *testing.B) {
	for _, peers := range []int{1000, 20000} {
		for _, failing := range []int{0, 2 * DefaultSample} {
			b.Run(fmt.Sprintf("peers=%d/failing=%d", peers, failing), func(b *testing.B) { benchProbeCost(b, peers, failing) })
		}
	}
}

func benchProbeCost(b *testing.B, peers, failing int) {
	seg := netnstest.NewSegment(b, 2)
	a, h := seg.Hosts[0], seg.Hosts[1]
	via := h.Addr.Addr().String()
	// b answers for 10/8 and 12/8; 11/8 it neither answers nor forwards.
	// b drops what comes to 12/8 above 1400 bytes, as a black hole would.
	for _, cmd := range [][]string{
		{"ip", "-n", h.Name, "route", "add", "local", "10.0.0.0/8", "dev", "lo"},
		{"ip", "-n", h.Name, "route", "add", "local", "12.0.0.0/8", "dev", "lo"},
		{"ip", "-n", a.Name, "route", "add", "10.0.0.0/8", "via", via},
		{"ip", "-n", a.Name, "route", "add", "11.0.0.0/8", "via", via},
		{"ip", "-n", a.Name, "route", "add", "12.0.0.0/8", "via", via},
	} {
		run(b, cmd...)
	}
	dropLarge(b, h, 12, 1400)
	targets := make([]Target, peers)
	for i := range targets {
		first := byte(10)
		switch {
		case i < failing/2:
			first = 11
		case i < failing:
			first = 12
		}
		addr := netip.AddrFrom4([4]byte{first, byte(i >> 8), byte(i), 0})
		targets[i] = Target{Subnet: netip.PrefixFrom(addr, 24), Addr: addr, PublicIP: h.Addr.Addr(), MTU: 1500, Encap: "UDP 8472"}
	}
	var checks atomic.Int64
	p, err := New(Config{
		Namespace: a.Handle, Targets: func() []Target { return targets },
		Interval: time.Hour, Timeout: 50 * time.Millisecond,
		Logger:   slog.New(slog.NewTextHandler(io.Discard, nil)),
		OnResult: func(Target, Result) { checks.Add(1) },
	})
	if err != nil {
		b.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- p.Run(ctx) }()
	b.Cleanup(func() { cancel(); <-done })
	testutil.WaitFor(b, 10*time.Second, "the first round", func() bool { return checks.Load() >= DefaultSample })
	// Every failing peer known, as in a steady state, in which each timed
	// round re-probes them.
	for _, t := range targets[:failing] {
		p.check(ctx, t)
	}
	if c := p.Counts(); c.Unreachable+c.MTUBlackHoles < failing {
		b.Fatalf("only %+v of %d failing peers found", c, failing)
	}

	sent0, bytes0 := p.Sent()
	checks0 := checks.Load()
	cpu0 := cpuTime()
	rounds := 0
	b.ResetTimer()
	for b.Loop() {
		p.round(ctx)
		rounds++
	}
	b.StopTimer()
	sent1, bytes1 := p.Sent()
	perRound := func(v int64) float64 { return float64(v) / float64(rounds) }
	probes := perRound(checks.Load() - checks0)
	if probes > 2*DefaultSample {
		b.Fatalf("%.1f probes a round, above the bound of 2·Sample = %d", probes, 2*DefaultSample)
	}
	var echoes int64
	for k := range numKinds {
		echoes += sent1[k] - sent0[k]
	}
	b.ReportMetric(probes, "probes/round")
	b.ReportMetric(perRound(echoes), "sent/round")
	b.ReportMetric(perRound(bytes1-bytes0), "sent-B/round")
	b.ReportMetric(float64((cpuTime()-cpu0).Microseconds())/float64(rounds), "cpu-us/round")
}

// dropLarge adds, in h's namespace, an input rule that drops packets to
// first/8 larger than size bytes.
func dropLarge(b *testing.B, h *netnstest.Host, first byte, size uint32) {
	c, err := nftables.New(nftables.WithNetNSFd(int(h.Handle)))
	if err != nil {
		b.Fatal(err)
	}
	table := c.AddTable(&nftables.Table{Family: nftables.TableFamilyIPv4, Name: "weft_bench_large"})
	chain := c.AddChain(&nftables.Chain{Name: "input", Table: table, Type: nftables.ChainTypeFilter,
		Hooknum: nftables.ChainHookInput, Priority: nftables.ChainPriorityFilter})
	c.AddRule(&nftables.Rule{Table: table, Chain: chain, Exprs: []expr.Any{
		&expr.Payload{DestRegister: 1, Base: expr.PayloadBaseNetworkHeader, Offset: 16, Len: 1},
		&expr.Cmp{Op: expr.CmpOpEq, Register: 1, Data: []byte{first}},
		&expr.Meta{Key: expr.MetaKeyLEN, Register: 1},
		&expr.Cmp{Op: expr.CmpOpGt, Register: 1, Data: binaryutil.NativeEndian.PutUint32(size)},
		&expr.Verdict{Kind: expr.VerdictDrop},
	}})
	if err := c.Flush(); err != nil {
		b.Fatal(err)
	}
}

// cpuTime is the process's user and system CPU time.
func cpuTime() time.Duration {
	var ru syscall.Rusage
	syscall.Getrusage(syscall.RUSAGE_SELF, &ru)
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}
