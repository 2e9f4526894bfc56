//go:build linux

package probe

import (
	"context"
	"log/slog"
	"net/netip"
	"os/exec"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/weftnet/weft/internal/netnstest"
	"github.com/weftnet/weft/internal/testutil"
)

// TestProber, between simulated hosts: a peer that answers is reachable
// with a round trip; one whose replies are dropped (a blackhole route on
// its side, for the prober's address) turns unreachable within a round
// and recovers within one, each change logged once; a peer that never
// answers is re-probed every round and logged once; on-demand probes find
// peers by subnet, address and node name. Both families.
func TestProber(t *testing.T) {
	seg := netnstest.NewSegment(t, 2)
	a, b := seg.Hosts[0], seg.Hosts[1]
	ghost := netip.MustParseAddr("172.30.0.77") // on the segment, no host
	targets := []Target{
		{Subnet: netip.PrefixFrom(b.Addr.Addr(), 32), Addr: b.Addr.Addr(), PublicIP: b.Addr.Addr(), Node: "b"},
		{Subnet: netip.PrefixFrom(b.Addr6.Addr(), 128), Addr: b.Addr6.Addr(), Node: "b6"},
		{Subnet: netip.PrefixFrom(ghost, 32), Addr: ghost, Node: "ghost"},
	}
	logs := &testutil.SyncBuffer{}
	var mu sync.Mutex
	results := map[string]int{}
	p, ctx := runProber(t, Config{
		Namespace: a.Handle, Targets: func() []Target { return targets },
		Sample: 1, Interval: 300 * time.Millisecond, Timeout: 250 * time.Millisecond,
		Logger: slog.New(slog.NewTextHandler(logs, nil)),
		OnResult: func(t Target, r Result) {
			mu.Lock()
			defer mu.Unlock()
			results[t.Node]++
		},
	})
	if got, want := p.Period(3), 900*time.Millisecond; got != want {
		t.Errorf("Period(3) = %s, want %s", got, want)
	}

	reachable := func(s netip.Prefix, want bool) func() bool {
		return func() bool { r, ok := p.Result(s); return ok && r.Reachable == want }
	}
	testutil.WaitFor(t, 5*time.Second, "b reachable", reachable(targets[0].Subnet, true))
	testutil.WaitFor(t, 5*time.Second, "b reachable over IPv6", reachable(targets[1].Subnet, true))
	testutil.WaitFor(t, 5*time.Second, "the ghost unreachable", reachable(targets[2].Subnet, false))
	if r, _ := p.Result(targets[0].Subnet); r.RTT <= 0 || r.RTT > time.Second || r.Sent < 1 {
		t.Errorf("b's result %+v: want a round trip", r)
	}
	if r, _ := p.Result(targets[2].Subnet); !strings.Contains(r.Err, "no reply") {
		t.Errorf("the ghost's error %q, want no reply", r.Err)
	}

	// b drops what it would send back to a.
	run(t, "ip", "netns", "exec", b.Name, "ip", "route", "add", "blackhole", a.Addr.Addr().String()+"/32")
	dropped := time.Now()
	testutil.WaitFor(t, 5*time.Second, "b unreachable", reachable(targets[0].Subnet, false))
	// Within a period plus a probe: b is one of three peers, sampled one a round.
	if took, bound := time.Since(dropped), p.Period(3)+p.Config().Timeout+300*time.Millisecond; took > bound {
		t.Errorf("b found unreachable after %s, want within %s", took, bound)
	}
	run(t, "ip", "netns", "exec", b.Name, "ip", "route", "del", "blackhole", a.Addr.Addr().String()+"/32")
	restored := time.Now()
	testutil.WaitFor(t, 5*time.Second, "b reachable again", reachable(targets[0].Subnet, true))
	// Unreachable peers are re-probed every round.
	if took, bound := time.Since(restored), p.Config().Interval+p.Config().Timeout+300*time.Millisecond; took > bound {
		t.Errorf("b's recovery seen after %s, want within a round (%s)", took, bound)
	}
	time.Sleep(time.Second) // more rounds: nothing more to log
	out := logs.String()
	if n := strings.Count(out, "peer unreachable") - strings.Count(out, "peer unreachable over the overlay again"); n != 2 {
		t.Errorf("%d unreachable lines, want 2 (the ghost's and b's, once each):\n%s", n, out)
	}
	if n := strings.Count(out, "reachable over the overlay again"); n != 1 {
		t.Errorf("%d recovery lines, want 1 (b's):\n%s", n, out)
	}
	if c := p.Counts(); c != (Counts{Reachable: 2, Unreachable: 1}) {
		t.Errorf("Counts = %+v, want 2 reachable and 1 unreachable", c)
	}
	mu.Lock()
	if results["ghost"] < 3 {
		t.Errorf("the ghost was probed %d times; an unreachable peer is re-probed every round", results["ghost"])
	}
	mu.Unlock()

	for _, name := range []string{"b", b.Addr.Addr().String(), targets[0].Subnet.String()} {
		tg, r, err := p.Probe(ctx, name)
		if err != nil || tg.Subnet != targets[0].Subnet || !r.Reachable {
			t.Errorf("Probe(%q) = %+v, %+v, %v; want b, reachable", name, tg, r, err)
		}
	}
	if _, r, err := p.Probe(ctx, "ghost"); err != nil || r.Reachable {
		t.Errorf("Probe(ghost) = %+v, %v; want unreachable", r, err)
	}
	if _, _, err := p.Probe(ctx, "10.99.0.1"); err == nil || !strings.Contains(err.Error(), "not a current peer") {
		t.Errorf("Probe of no peer: %v", err)
	}
}

// TestProberIgnoresOtherPings: echo replies every raw ICMP socket in the
// namespace sees, of another program's pings, never count as the
// prober's, even with its identifier and sequence numbers.
func TestProberIgnoresOtherPings(t *testing.T) {
	seg := netnstest.NewSegment(t, 1)
	a := seg.Hosts[0]
	ghost := netip.MustParseAddr("172.30.0.77") // silent
	p, ctx := runProber(t, Config{
		Namespace: a.Handle, Targets: func() []Target { return []Target{{Subnet: netip.PrefixFrom(ghost, 32), Addr: ghost}} },
		Interval: time.Hour, Timeout: 150 * time.Millisecond,
	})
	testutil.WaitFor(t, 5*time.Second, "the prober running", func() bool { _, ok := p.Result(netip.PrefixFrom(ghost, 32)); return ok })

	// Another pinger of a's own address, which answers at once, with the
	// prober's identifier: only the token tells the replies apart.
	other, err := openEchoer(a.Handle, false)
	if err != nil {
		t.Fatal(err)
	}
	defer other.close()
	go other.serve()
	p.mu.Lock()
	other.id = p.echoers[0].id
	p.mu.Unlock()
	stop := make(chan struct{})
	var pinging sync.WaitGroup
	pinging.Go(func() {
		replies := make(chan time.Duration, 100000)
		for {
			select {
			case <-stop:
				return
			case <-time.After(time.Millisecond):
			}
			if _, err := other.send(a.Addr.Addr(), 0, replies); err != nil {
				t.Error(err)
				return
			}
		}
	})
	for range 5 {
		_, r, err := p.Probe(ctx, ghost.String())
		if err != nil || r.Reachable {
			t.Errorf("the silent target: %+v, %v; another program's echo replies were taken for ours", r, err)
		}
	}
	close(stop)
	pinging.Wait()
}

// runProber makes a Prober of cfg and runs it until the test ends, when
// it checks that Run returned for the end of its context.
func runProber(t *testing.T, cfg Config) (*Prober, context.Context) {
	t.Helper()
	p, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- p.Run(ctx) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != context.Canceled {
			t.Errorf("Run returned %v, want context.Canceled", err)
		}
	})
	return p, ctx
}

func run(t testing.TB, args ...string) {
	t.Helper()
	if out, err := exec.Command(args[0], args[1:]...).CombinedOutput(); err != nil {
		t.Fatalf("%v: %v\n%s", args, err, out)
	}
}

// TestProberPausedWhileNotReady: rounds probe nothing while Ready says
// no, and keep the results they had; they resume when it says yes.
func TestProberPausedWhileNotReady(t *testing.T) {
	seg := netnstest.NewSegment(t, 1)
	a := seg.Hosts[0]
	self := Target{Subnet: netip.PrefixFrom(a.Addr.Addr(), 32), Addr: a.Addr.Addr()}
	var ready atomic.Bool
	probes := atomic.Int64{}
	p, _ := runProber(t, Config{
		Namespace: a.Handle, Targets: func() []Target { return []Target{self} }, Ready: ready.Load,
		Interval: 50 * time.Millisecond, Timeout: 40 * time.Millisecond,
		OnResult: func(Target, Result) { probes.Add(1) },
	})
	time.Sleep(300 * time.Millisecond)
	if n := probes.Load(); n != 0 {
		t.Fatalf("%d probes while not ready", n)
	}
	ready.Store(true)
	testutil.WaitFor(t, 5*time.Second, "a probe once ready", func() bool { r, ok := p.Result(self.Subnet); return ok && r.Reachable })
	ready.Store(false)
	time.Sleep(100 * time.Millisecond)
	before := probes.Load()
	time.Sleep(300 * time.Millisecond)
	if n := probes.Load(); n != before {
		t.Errorf("%d probes while paused again", n-before)
	}
	if _, ok := p.Result(self.Subnet); !ok {
		t.Error("a paused round forgot the result")
	}
}

// TestProbeCutShortIsNotRecorded: an on-demand probe whose caller gives
// up (a client hanging up, a shutdown) says nothing of the peer: no
// result, no log line, no metric.
func TestProbeCutShortIsNotRecorded(t *testing.T) {
	seg := netnstest.NewSegment(t, 1)
	a := seg.Hosts[0]
	ghost := netip.MustParseAddr("172.30.0.77") // silent
	sub := netip.PrefixFrom(ghost, 32)
	var results atomic.Int64
	p, _ := runProber(t, Config{
		Namespace: a.Handle, Targets: func() []Target { return []Target{{Subnet: sub, Addr: ghost}} },
		Ready: func() bool { return false }, Interval: time.Hour, Timeout: time.Second,
		OnResult: func(Target, Result) { results.Add(1) },
	})
	testutil.WaitFor(t, 5*time.Second, "the prober running", func() bool {
		_, _, err := p.Probe(context.Background(), "nobody")
		return err != nil && strings.Contains(err.Error(), "not a current peer")
	})
	short, stop := context.WithTimeout(context.Background(), 100*time.Millisecond)
	defer stop()
	if _, _, err := p.Probe(short, ghost.String()); err == nil {
		t.Error("a probe cut short returned no error")
	}
	if r, ok := p.Result(sub); ok || results.Load() != 0 {
		t.Errorf("a probe cut short was recorded: %+v (%d results)", r, results.Load())
	}
}
