//go:build linux

package vxlan

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"math"
	"net/http"
	"net/netip"
	"os"
	"runtime"
	"runtime/pprof"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"go.etcd.io/etcd/api/v3/v3rpc/rpctypes"
	clientv3 "go.etcd.io/etcd/client/v3"
	"golang.org/x/sync/errgroup"

	"github.com/weftnet/weft/agent"
	"github.com/weftnet/weft/internal/etcdtest"
	"github.com/weftnet/weft/internal/procstat"
	"github.com/weftnet/weft/internal/scaletest"
	"github.com/weftnet/weft/lease"
	"github.com/weftnet/weft/lease/etcd"
)

// The control-plane scale harness: N real agents in this process, each with
// its own etcd client, lease/etcd Manager, peer admission and Network, on a
// kernel in memory (fakeHost: N kernels cannot be had on one machine),
// against one etcd in a process of its own, so that etcd's CPU and memory
// are measured apart from the agents'.
//
// One machine cannot hold 5,000 full agents: each holds every peer (about
// 2 KiB a peer here, the recorder's kernel included, so 5,000 x 5,000 is
// some 50 GB) and spends CPU on each (tens of microseconds: 25 million
// peer entries are minutes of this machine's two cores). On a real
// cluster that cost is spread over the nodes; etcd's is not. So beyond
// the first WEFT_SCALE_FULL agents the harness runs control-plane agents:
// the same Manager, making the same calls a Network makes (OwnLease, then
// Acquire and Keep, WatchConfig and WatchLeases) and counting what
// arrives, without admission and a datapath. etcd sees the same clients.

// ownLeaseTimeout bounds a control-plane agent's OwnLease, as the
// Network's read of its own lease is bounded.
const ownLeaseTimeout = 5 * time.Second

const scaleNetConf = `{"Network": "10.0.0.0/8", "SubnetLen": 24, "Backend": {"Type": "vxlan"}}`

// scaleCluster is the etcd and the agents.
type scaleCluster struct {
	t      testing.TB
	srv    *etcdtest.Server
	admin  *clientv3.Client
	agents []*scaleAgent
	// full is how many agents, from the first, run a Network; the
	// others run the control plane only.
	full int
	// seeded is how many agents, from the first, have a lease in etcd
	// from before they start, and so a subnet.env naming it.
	seeded int
	log    *scaleLog
	// watch, when set, is the subnet whose first route each agent's
	// kernel records the time of (the fan-out measurement).
	watchMu sync.Mutex
	watch   netip.Prefix
}

type scaleAgent struct {
	i      int
	host   *fakeHost // nil for a control-plane agent
	m      *etcd.Manager
	net    *agent.Network // nil for a control-plane agent
	cancel context.CancelFunc
	done   chan error
	routed atomic.Int64 // Unix nanoseconds of the watched subnet's first route (or event); 0 before
	// A control-plane agent's: whether it holds its lease, and how many
	// leases its watch holds.
	held   atomic.Bool
	leases atomic.Int64
}

// startScaleEtcd starts etcd in its own process: Debian's when
// WEFT_ETCD_BINARY names it, else this module's embedded server.
func startScaleEtcd(t testing.TB) *etcdtest.Server {
	bin := os.Getenv(etcdtest.BinaryEnv)
	if bin == "" {
		bin = etcdtest.EmbeddedBinary(t)
	}
	return etcdtest.StartProcess(t, bin)
}

func newScaleCluster(t testing.TB) *scaleCluster {
	c := &scaleCluster{t: t, srv: startScaleEtcd(t), full: math.MaxInt, log: newScaleLog()}
	c.admin = c.srv.Client(t)
	if _, err := c.admin.Put(context.Background(), "/coreos.com/network/config", scaleNetConf); err != nil {
		t.Fatal(err)
	}
	return c
}

// watched records, for agent a, that dst reached it, if it is the
// subnet being fanned out.
func (c *scaleCluster) watched(a *scaleAgent, dst netip.Prefix) {
	c.watchMu.Lock()
	w := c.watch
	c.watchMu.Unlock()
	if w.IsValid() && dst == w {
		a.routed.CompareAndSwap(0, time.Now().UnixNano())
	}
}

// start starts agent i (a new one, or i again after stop): a full agent
// if i < c.full, else a control-plane one.
func (c *scaleCluster) start(i int) *scaleAgent {
	a := &scaleAgent{i: i, done: make(chan error, 1)}
	m, err := etcd.New(etcd.Options{Endpoints: []string{c.srv.DirectEndpoint()}, Node: fmt.Sprint("agent-", i), Logger: c.log.logger})
	if err != nil {
		c.t.Fatal(err)
	}
	a.m = m
	ctx, cancel := context.WithCancel(context.Background())
	a.cancel = cancel
	if i >= c.full {
		go func() { a.done <- c.runControlPlane(ctx, a) }()
		return a
	}
	a.host = newFakeHost(scaletest.PublicOf(i), 12)
	a.host.onRoute = func(dst netip.Prefix) { c.watched(a, dst) }
	a.net, err = agent.NewNetwork(agent.NetworkConfig{Manager: m, PublicIP: scaletest.PublicOf(i), Previous: c.previous(i), Host: a.host,
		Datapaths:      map[string]lease.DatapathFactory{"vxlan": NewFactory(FactoryConfig{host: a.host})},
		ResyncInterval: time.Hour, Logger: c.log.logger})
	if err != nil {
		c.t.Fatal(err)
	}
	go func() { a.done <- a.net.Run(ctx) }()
	return a
}

// attrsOf is what agent i publishes: its VTEP MAC is agent i's in the
// lease the harness seeds, and a Network keeps the MAC its lease
// publishes.
func attrsOf(i int) lease.Attrs {
	vtep, _ := json.Marshal(BackendData{VNI: 1, VtepMAC: lease.MAC{0x0e, 0, 0, byte(i >> 16), byte(i >> 8), byte(i)}})
	return lease.Attrs{PublicIP: scaletest.PublicOf(i), BackendType: "vxlan", BackendData: vtep}
}

// seed writes the leases of agents 0..n-1, as they would have written
// them, each on an etcd lease of its own: etcd holds them as before a
// whole cluster restarts, and no agent needs to write when it starts.
func (c *scaleCluster) seed(n int) {
	sem := make(chan struct{}, 32)
	var wg sync.WaitGroup
	for i := range n {
		sem <- struct{}{}
		wg.Go(func() {
			defer func() { <-sem }()
			ctx := context.Background()
			attrs := attrsOf(i)
			attrs.Owner = fmt.Sprint("agent-", i)
			value, _ := json.Marshal(attrs)
			grant, err := c.admin.Grant(ctx, int64(etcd.DefaultTTL/time.Second))
			if err == nil {
				s := scaletest.SubnetOf(i)
				_, err = c.admin.Put(ctx, fmt.Sprintf("/coreos.com/network/subnets/%s-%d", s.Addr(), s.Bits()), string(value), clientv3.WithLease(grant.ID))
			}
			if err != nil {
				c.t.Error(err)
			}
		})
	}
	wg.Wait()
	if c.t.Failed() {
		c.t.FailNow()
	}
	c.seeded = max(c.seeded, n)
}

// previous is the subnet agent i's subnet.env names: its seeded lease's,
// or none for an agent that never ran.
func (c *scaleCluster) previous(i int) lease.Key {
	if i >= c.seeded {
		return lease.Key{}
	}
	return lease.Key{IPv4: scaletest.SubnetOf(i)}
}

// revision is etcd's revision now.
func (c *scaleCluster) revision() int64 {
	resp, err := c.admin.Get(context.Background(), "/coreos.com/network/config")
	if err != nil {
		c.t.Fatal(err)
	}
	return resp.Header.Revision
}

// runControlPlane is a control-plane agent: the Manager calls a Network
// makes, in its order, with the leases counted instead of programmed.
func (c *scaleCluster) runControlPlane(ctx context.Context, a *scaleAgent) error {
	req := lease.AcquireRequest{Attrs: attrsOf(a.i), Previous: c.previous(a.i)}
	// As a Network, which goes on without (its warning is counted).
	octx, cancel := context.WithTimeout(ctx, ownLeaseTimeout)
	if _, _, err := a.m.OwnLease(octx, req); err != nil && ctx.Err() == nil {
		c.log.logger.Warn("cannot read this node's lease to keep the VTEP MACs it publishes", "err", err)
	}
	cancel()
	var g errgroup.Group
	leased := make(chan struct{})
	g.Go(func() error {
		return lease.Hold(ctx, a.m, req, func(lease.Lease) {
			if !a.held.Swap(true) {
				close(leased)
			}
		})
	})
	configs := make(chan lease.Config)
	g.Go(func() error { return a.m.WatchConfig(ctx, configs) })
	g.Go(func() error {
		for {
			select {
			case <-configs:
			case <-ctx.Done():
				return nil
			}
		}
	})
	batches := make(chan lease.Batch, 16)
	// As a Network: the peers are watched once the lease is held.
	g.Go(func() error {
		select {
		case <-leased:
			return a.m.WatchLeases(ctx, batches)
		case <-ctx.Done():
			return nil
		}
	})
	g.Go(func() error {
		// Counted, not kept: the Manager's view is the agent's copy,
		// and at thousands of agents a second one would not fit.
		var leases int64
		for {
			select {
			case b := <-batches:
				if b.Snapshot && b.Part == 0 {
					leases = 0 // a snapshot's later parts add to its first
				}
				for _, ev := range b.Events {
					switch ev.Type {
					case lease.Added:
						leases++
						c.watched(a, ev.Lease.Key.IPv4)
					case lease.Removed:
						leases--
					}
				}
				a.leases.Store(leases)
			case <-ctx.Done():
				return nil
			}
		}
	})
	g.Wait()
	return ctx.Err()
}

func (a *scaleAgent) stop() {
	a.cancel()
	<-a.done
	a.m.Close()
}

// startAll starts n agents within spread, as a herd: a cluster restarting
// at once.
func (c *scaleCluster) startAll(n int, spread time.Duration) {
	c.agents = scaletest.StartHerd(n, spread, c.start)
	c.t.Cleanup(c.stopAll)
}

func (c *scaleCluster) stopAll() {
	var wg sync.WaitGroup
	for _, a := range c.agents {
		if a != nil {
			wg.Go(a.stop)
		}
	}
	wg.Wait()
	c.agents = nil
}

// converged reports whether agent a is ready with want peers programmed
// (a control-plane agent: holds its lease, and its watch want others).
func (a *scaleAgent) converged(want int) bool {
	if a.net == nil {
		return a.held.Load() && a.leases.Load() == int64(want+1)
	}
	// The recorder's count first: cheap, where Counts walks every peer.
	if r, _, _ := a.host.counts(); r < want {
		return false
	}
	if ok, _ := a.net.Ready(); !ok {
		return false
	}
	v4, _ := DatapathsOf(a.net.Datapaths())
	return v4 != nil && v4.Counts().Programmed == want
}

// waitConverged waits until every agent has programmed want peers, and
// returns when the last one did, since start.
func (c *scaleCluster) waitConverged(want int, timeout time.Duration, start time.Time) time.Duration {
	deadline := time.Now().Add(timeout)
	pending := slices.Clone(c.agents)
	for len(pending) > 0 {
		pending = slices.DeleteFunc(pending, func(a *scaleAgent) bool { return a.converged(want) })
		if len(pending) == 0 {
			break
		}
		if time.Now().After(deadline) {
			a := pending[0]
			if a.net == nil {
				c.t.Fatalf("%d agents not converged after %v; agent %d (control plane): holds its lease %v, watches %d of %d\n%s", len(pending), timeout, a.i, a.held.Load(), a.leases.Load(), want+1, c.log)
			}
			ok, why := a.net.Ready()
			var counts Counts
			if v4, _ := DatapathsOf(a.net.Datapaths()); v4 != nil {
				counts = v4.Counts()
			}
			c.t.Fatalf("%d agents not converged after %v; agent %d: ready %v (%s), %d of %d programmed\n%s", len(pending), timeout, a.i, ok, why, counts.Programmed, want, c.log)
		}
		time.Sleep(50 * time.Millisecond)
	}
	return time.Since(start)
}

// fanOut writes one new lease, as a node joining would, and returns how
// long each agent took from the write to programming its route, sorted.
func (c *scaleCluster) fanOut(subnet netip.Prefix, timeout time.Duration) []time.Duration {
	c.watchMu.Lock()
	c.watch = subnet
	c.watchMu.Unlock()
	for _, a := range c.agents {
		a.routed.Store(0)
	}
	key := "/coreos.com/network/subnets/" + subnet.Addr().String() + "-" + strconv.Itoa(subnet.Bits())
	value := `{"PublicIP":"172.31.255.254","BackendType":"vxlan","BackendData":{"VNI":1,"VtepMAC":"0e:ff:ff:ff:ff:01"},"WeftOwner":"joiner"}`
	wrote := time.Now()
	if _, err := c.admin.Put(context.Background(), key, value); err != nil {
		c.t.Fatal(err)
	}
	out := scaletest.WaitArrivals(c.t, "the new lease", len(c.agents), wrote, timeout, func(i int) int64 { return c.agents[i].routed.Load() })
	if _, err := c.admin.Delete(context.Background(), key); err != nil {
		c.t.Fatal(err)
	}
	return out
}

// etcdMetrics reads counters of etcd's /metrics: the bytes it sent and
// received to clients, and the gRPC calls it started.
type etcdMetrics struct {
	sent, received, rpcs, ranges float64
}

func (c *scaleCluster) etcdMetrics() etcdMetrics {
	resp, err := http.Get(c.srv.Endpoint() + "/metrics")
	if err != nil {
		c.t.Fatal(err)
	}
	defer resp.Body.Close()
	var m etcdMetrics
	sc := bufio.NewScanner(resp.Body)
	sc.Buffer(make([]byte, 1<<20), 1<<20)
	for sc.Scan() {
		line := sc.Text()
		name, value, ok := strings.Cut(line, " ")
		if !ok || strings.HasPrefix(line, "#") {
			continue
		}
		v, err := strconv.ParseFloat(value, 64)
		if err != nil {
			continue
		}
		switch {
		case name == "etcd_network_client_grpc_sent_bytes_total":
			m.sent += v
		case name == "etcd_network_client_grpc_received_bytes_total":
			m.received += v
		case strings.HasPrefix(name, "grpc_server_started_total{"):
			m.rpcs += v
			if strings.Contains(name, `grpc_method="Range"`) {
				m.ranges += v
			}
		}
	}
	return m
}

// TestScale is the harness's correctness check, small enough for make
// test: 200 agents started as a herd against etcd in its own process all
// converge on each other, and a new lease reaches every one of them.
func TestScale(t *testing.T) {
	n := 200
	if testing.Short() {
		n = 50
	}
	c := newScaleCluster(t)
	// Half of them control-plane agents, which BenchmarkScale runs
	// beyond WEFT_SCALE_FULL: both kinds converge on each other.
	c.full = n / 2
	start := time.Now()
	c.startAll(n, time.Second)
	took := c.waitConverged(n-1, 3*time.Minute, start)
	t.Logf("%d agents converged %v after a herd start", n, took.Round(time.Millisecond))
	fan := c.fanOut(netip.MustParsePrefix("10.255.255.0/24"), time.Minute)
	t.Logf("a new lease reached all %d agents: p50 %v, p99 %v, max %v", n, scaletest.Percentile(fan, .5), scaletest.Percentile(fan, .99), fan[len(fan)-1])
	for _, a := range c.agents[:3] {
		if r, nb, f := a.host.counts(); r < n-1 || nb < n-1 || f < n-1 {
			t.Errorf("agent %d's kernel holds %d routes, %d neighbours, %d FDB entries; want at least %d each", a.i, r, nb, f, n-1)
		}
	}
}

// scaleEnv reads a number from environment variable name, def if unset.
func scaleEnv(b *testing.B, name string, def, least int) int {
	v := os.Getenv(name)
	if v == "" {
		return def
	}
	n, err := strconv.Atoi(v)
	if err != nil || n < least {
		b.Fatalf("%s=%q: want a number, %d or more", name, v, least)
	}
	return n
}

// scaleDuration reads a duration from environment variable name, def if
// unset.
func scaleDuration(b *testing.B, name string, def time.Duration) time.Duration {
	v := os.Getenv(name)
	if v == "" {
		return def
	}
	d, err := time.ParseDuration(v)
	if err != nil || d < 0 {
		b.Fatalf("%s=%q: want a duration such as 30s", name, v)
	}
	return d
}

// newBenchCluster starts the cluster a scale benchmark measures:
// WEFT_SCALE_AGENTS agents (default 1,000), the first WEFT_SCALE_FULL of
// them full (default all), with their N leases in etcd, as before a
// cluster restarts; no agent is running yet.
func newBenchCluster(b *testing.B) (*scaleCluster, int) {
	n := scaleEnv(b, "WEFT_SCALE_AGENTS", 1000, 2)
	if n > 60000 {
		b.Fatalf("WEFT_SCALE_AGENTS=%d: at most 60000 (their subnets, /24s of 10.0.0.0/8, stay clear of the fan-out's)", n)
	}
	c := newScaleCluster(b)
	c.full = scaleEnv(b, "WEFT_SCALE_FULL", n, 0)
	c.seed(n)
	return c, n
}

// sample reads etcd's process and this one's (the agents').
type scaleSample struct {
	etcd, agents procstat.Sample
	metrics      etcdMetrics
}

func (c *scaleCluster) sample() scaleSample {
	e, err := procstat.Read(c.srv.Pid())
	if err != nil {
		c.t.Fatal(err)
	}
	a, err := procstat.Read(os.Getpid())
	if err != nil {
		c.t.Fatal(err)
	}
	return scaleSample{e, a, c.etcdMetrics()}
}

// ms is d in milliseconds, for a metric.
func ms(d time.Duration) float64 { return float64(d.Microseconds()) / 1000 }

// BenchmarkScale is the control plane at N agents (see newBenchCluster
// for the variables that size it):
//
//   - herd: N agents started within one second against an etcd that
//     already holds their N leases (a whole cluster restarting at once),
//     until every one has programmed the N-1 others (a control-plane
//     agent: watches them); with etcd's CPU and peak RSS, the agents'
//     CPU and memory, and the bytes and gRPC calls per agent;
//   - fan-out: one new lease, until every agent has programmed it, p50
//     and p99;
//   - etcd loss: etcd killed for WEFT_SCALE_OUTAGE (default 20 s), with
//     the agents' CPU meanwhile, per agent; then started again, and the
//     time until every agent has programmed a lease written the moment
//     it is back.
//
// It reports figures as metrics; b.N is 1 (one herd is the measurement).
func BenchmarkScale(b *testing.B) {
	c, n := newBenchCluster(b)
	outage := scaleDuration(b, "WEFT_SCALE_OUTAGE", 20*time.Second)
	for b.Loop() {
		s0, rev0 := c.sample(), c.revision()
		start := time.Now()
		c.startAll(n, time.Second)
		took := c.waitConverged(n-1, 15*time.Minute, start)
		s1, rev1 := c.sample(), c.revision()
		writeHeapProfile(b)
		b.ReportMetric(took.Seconds(), "herd-s")
		// Writes fan out to every agent: a herd restart should make none.
		b.ReportMetric(float64(rev1-rev0)/float64(n), "writes/agent")
		b.ReportMetric((s1.etcd.CPU - s0.etcd.CPU).Seconds(), "etcd-cpu-s")
		b.ReportMetric(float64(s1.etcd.Peak)/(1<<20), "etcd-peak-MiB")
		b.ReportMetric((s1.metrics.sent-s0.metrics.sent)/float64(n)/1024, "KiB-to-agent")
		b.ReportMetric((s1.metrics.received-s0.metrics.received)/float64(n)/1024, "KiB-from-agent")
		b.ReportMetric((s1.metrics.rpcs-s0.metrics.rpcs)/float64(n), "rpcs/agent")
		b.ReportMetric(ms(s1.agents.CPU-s0.agents.CPU)/float64(n), "agent-cpu-ms")
		// The agents' memory: this process's, all of them together.
		b.ReportMetric(float64(s1.agents.RSS)/float64(n)/(1<<20), "agent-MiB")

		fan := c.fanOut(netip.MustParsePrefix("10.255.255.0/24"), time.Minute)
		b.ReportMetric(ms(scaletest.Percentile(fan, .5)), "fanout-p50-ms")
		b.ReportMetric(ms(scaletest.Percentile(fan, .99)), "fanout-p99-ms")

		if outage > 0 {
			c.srv.Stop()
			// The first seconds are the agents noticing; then they wait.
			time.Sleep(2 * time.Second)
			d0, _ := procstat.Read(os.Getpid())
			time.Sleep(outage)
			d1, _ := procstat.Read(os.Getpid())
			// The share of one core each agent used while etcd was down.
			b.ReportMetric(100*procstat.CPUShare(d0, d1)/float64(n), "down-cpu-%/agent")
			c.srv.Restart()
			back := c.fanOut(netip.MustParsePrefix("10.255.254.0/24"), 5*time.Minute)
			b.ReportMetric(back[len(back)-1].Seconds(), "reconverge-s")
			c.waitConverged(n-1, 5*time.Minute, time.Now())
		}
		c.stopAll()
	}
	b.Logf("the agents' warnings and errors, by message:\n%s", c.log)
}

// BenchmarkScaleChurn is the cluster's steady state under churn: 1% of the
// agents (at least one) restarted every minute, spread over it, for
// WEFT_SCALE_CHURN (default ten minutes), with etcd compacted every
// minute as kube-apiserver compacts it every five. It reports etcd's CPU
// and what it sent per minute, and the range reads (listings) per
// restarted agent: a compaction storm, every watcher listing again after
// a compaction, would show as many times more than the restarts'.
func BenchmarkScaleChurn(b *testing.B) {
	c, n := newBenchCluster(b)
	churn := scaleDuration(b, "WEFT_SCALE_CHURN", 10*time.Minute)
	minutes := max(1, int(churn/time.Minute))
	for b.Loop() {
		c.startAll(n, time.Second)
		c.waitConverged(n-1, 15*time.Minute, time.Now())
		s0 := c.sample()
		restarts := 0
		per := max(1, n/100)
		for m := range minutes {
			began := time.Now()
			for k := range per {
				i := (m*per + k) % n
				time.Sleep(time.Minute / time.Duration(per+1))
				c.agents[i].stop()
				c.agents[i] = c.start(i)
				restarts++
			}
			c.compact()
			if left := time.Minute - time.Since(began); left > 0 {
				time.Sleep(left)
			}
		}
		c.waitConverged(n-1, 5*time.Minute, time.Now())
		s1 := c.sample()
		mins := s1.etcd.Time.Sub(s0.etcd.Time).Minutes()
		b.ReportMetric(float64(restarts), "restarts")
		b.ReportMetric(100*procstat.CPUShare(s0.etcd, s1.etcd), "etcd-cpu-%")
		b.ReportMetric((s1.metrics.sent-s0.metrics.sent)/mins/(1<<20), "etcd-sent-MiB/min")
		b.ReportMetric((s1.metrics.ranges-s0.metrics.ranges)/float64(restarts), "ranges/restart")
		b.ReportMetric(float64(s1.etcd.RSS)/(1<<20), "etcd-MiB")
		c.stopAll()
	}
	b.Logf("the agents' warnings and errors, by message:\n%s", c.log)
}

// compact compacts etcd's history up to now.
func (c *scaleCluster) compact() {
	resp, err := c.admin.Get(context.Background(), "/coreos.com/network/config")
	if err != nil {
		c.t.Fatal(err)
	}
	// Compacted already when nothing was written since the last time.
	if _, err := c.admin.Compact(context.Background(), resp.Header.Revision); err != nil && !errors.Is(err, rpctypes.ErrCompacted) {
		c.t.Fatal(err)
	}
}

// writeHeapProfile writes the agents' heap, converged, to the file
// WEFT_SCALE_HEAPPROFILE names, if it is set: what each peer costs an
// agent (go tool pprof -sample_index=inuse_space).
func writeHeapProfile(b *testing.B) {
	path := os.Getenv("WEFT_SCALE_HEAPPROFILE")
	if path == "" {
		return
	}
	f, err := os.Create(path)
	if err != nil {
		b.Fatal(err)
	}
	defer f.Close()
	runtime.GC()
	if err := pprof.WriteHeapProfile(f); err != nil {
		b.Fatal(err)
	}
}

// scaleLog is the agents' log: thousands of agents cannot all be read, so
// it counts the warnings and errors by message and keeps one example of
// each, for a failure to show.
type scaleLog struct {
	logger *slog.Logger
	mu     sync.Mutex
	counts map[string]int
	sample map[string]string
}

func newScaleLog() *scaleLog {
	l := &scaleLog{counts: map[string]int{}, sample: map[string]string{}}
	l.logger = slog.New(scaleLogHandler{l, nil})
	return l
}

// String lists the warnings and errors, most frequent first.
func (l *scaleLog) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	msgs := slices.Collect(maps.Keys(l.counts))
	slices.SortFunc(msgs, func(a, b string) int { return l.counts[b] - l.counts[a] })
	var sb strings.Builder
	for _, m := range msgs {
		fmt.Fprintf(&sb, "%6d x %s (e.g. %s)\n", l.counts[m], m, l.sample[m])
	}
	return sb.String()
}

type scaleLogHandler struct {
	l     *scaleLog
	attrs []slog.Attr
}

func (h scaleLogHandler) Enabled(_ context.Context, level slog.Level) bool {
	return level >= slog.LevelWarn
}

func (h scaleLogHandler) Handle(_ context.Context, r slog.Record) error {
	var sb strings.Builder
	for _, a := range h.attrs {
		fmt.Fprintf(&sb, "%s=%v ", a.Key, a.Value)
	}
	r.Attrs(func(a slog.Attr) bool {
		fmt.Fprintf(&sb, "%s=%v ", a.Key, a.Value)
		return true
	})
	h.l.mu.Lock()
	defer h.l.mu.Unlock()
	h.l.counts[r.Message]++
	if _, ok := h.l.sample[r.Message]; !ok {
		h.l.sample[r.Message] = sb.String()
	}
	return nil
}

func (h scaleLogHandler) WithAttrs(attrs []slog.Attr) slog.Handler {
	return scaleLogHandler{h.l, append(slices.Clip(h.attrs), attrs...)}
}

func (h scaleLogHandler) WithGroup(string) slog.Handler { return h }
