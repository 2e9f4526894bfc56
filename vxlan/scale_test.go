//go:build linux

package vxlan

import (
	"bufio"
	"context"
	"fmt"
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

	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/weftnet/weft/internal/etcdtest"
	"github.com/weftnet/weft/internal/procstat"
	"github.com/weftnet/weft/lease/etcd"
)

// The control-plane scale harness: N real agents in this process, each with
// its own etcd client, lease/etcd Manager, peer admission and Network, on a
// kernel in memory (fakeHost: N kernels cannot be had on one machine),
// against one etcd in a process of its own, so that etcd's CPU and memory
// are measured apart from the agents'.

const scaleNetConf = `{"Network": "10.0.0.0/8", "SubnetLen": 24, "Backend": {"Type": "vxlan"}}`

// scaleCluster is the etcd and the agents.
type scaleCluster struct {
	t      testing.TB
	srv    *etcdtest.Server
	admin  *clientv3.Client
	agents []*scaleAgent
	// watch, when set, is the subnet whose first route each agent's
	// kernel records the time of (the fan-out measurement).
	watchMu sync.Mutex
	watch   netip.Prefix
}

type scaleAgent struct {
	i       int
	host    *fakeHost
	m       *etcd.Manager
	net     *Network
	cancel  context.CancelFunc
	done    chan error
	routed  atomic.Int64 // Unix nanoseconds of the watched subnet's first route; 0 before
	started time.Time
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
	c := &scaleCluster{t: t, srv: startScaleEtcd(t)}
	c.admin = c.srv.Client(t)
	if _, err := c.admin.Put(context.Background(), "/coreos.com/network/config", scaleNetConf); err != nil {
		t.Fatal(err)
	}
	return c
}

// publicOf is agent i's underlay address, in 172.16.0.0/12.
func publicOf(i int) netip.Addr {
	return netip.AddrFrom4([4]byte{172, byte(16 + i>>16), byte(i >> 8), byte(i)})
}

// start starts agent i (a new one, or i again after stop).
func (c *scaleCluster) start(i int) *scaleAgent {
	a := &scaleAgent{i: i, host: newFakeHost(publicOf(i), 12), done: make(chan error, 1), started: time.Now()}
	a.host.onRoute = func(dst netip.Prefix) {
		c.watchMu.Lock()
		w := c.watch
		c.watchMu.Unlock()
		if w.IsValid() && dst == w {
			a.routed.CompareAndSwap(0, time.Now().UnixNano())
		}
	}
	m, err := etcd.New(etcd.Options{Endpoints: []string{c.srv.Endpoint()}, Node: fmt.Sprint("agent-", i), Logger: quietLog})
	if err != nil {
		c.t.Fatal(err)
	}
	a.m = m
	a.net, err = NewNetwork(NetworkConfig{Manager: m, PublicIP: publicOf(i), host: a.host, ResyncInterval: time.Hour, Logger: quietLog})
	if err != nil {
		c.t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	a.cancel = cancel
	go func() { a.done <- a.net.Run(ctx) }()
	return a
}

func (a *scaleAgent) stop() {
	a.cancel()
	<-a.done
	a.m.Close()
}

// startAll starts n agents within spread, as a herd: a cluster restarting
// at once.
func (c *scaleCluster) startAll(n int, spread time.Duration) {
	c.agents = make([]*scaleAgent, n)
	var wg sync.WaitGroup
	for i := range n {
		delay := spread * time.Duration(i) / time.Duration(max(n, 1))
		wg.Go(func() {
			time.Sleep(delay)
			c.agents[i] = c.start(i)
		})
	}
	wg.Wait()
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

// converged reports whether agent a is ready with want peers programmed.
func (a *scaleAgent) converged(want int) bool {
	if ok, _ := a.net.Ready(); !ok {
		return false
	}
	v4, _ := a.net.Datapaths()
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
			ok, why := a.net.Ready()
			var counts Counts
			if v4, _ := a.net.Datapaths(); v4 != nil {
				counts = v4.Counts()
			}
			c.t.Fatalf("%d agents not converged after %v; agent %d: ready %v (%s), %d of %d programmed", len(pending), timeout, a.i, ok, why, counts.Programmed, want)
		}
		time.Sleep(20 * time.Millisecond)
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
	deadline := time.Now().Add(timeout)
	var out []time.Duration
	for {
		out = out[:0]
		for _, a := range c.agents {
			if at := a.routed.Load(); at != 0 {
				out = append(out, time.Unix(0, at).Sub(wrote))
			}
		}
		if len(out) == len(c.agents) {
			break
		}
		if time.Now().After(deadline) {
			c.t.Fatalf("the new lease reached %d of %d agents in %v", len(out), len(c.agents), timeout)
		}
		time.Sleep(5 * time.Millisecond)
	}
	if _, err := c.admin.Delete(context.Background(), key); err != nil {
		c.t.Fatal(err)
	}
	slices.Sort(out)
	return out
}

// percentile returns the p-th percentile of sorted ds.
func percentile(ds []time.Duration, p float64) time.Duration {
	if len(ds) == 0 {
		return 0
	}
	return ds[min(len(ds)-1, int(float64(len(ds))*p))]
}

// etcdMetrics reads counters of etcd's /metrics: the bytes it sent and
// received to clients, and the gRPC calls it started.
type etcdMetrics struct {
	sent, received, rpcs float64
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
	start := time.Now()
	c.startAll(n, time.Second)
	took := c.waitConverged(n-1, 3*time.Minute, start)
	t.Logf("%d agents converged %v after a herd start", n, took.Round(time.Millisecond))
	fan := c.fanOut(netip.MustParsePrefix("10.255.255.0/24"), time.Minute)
	t.Logf("a new lease reached all %d agents: p50 %v, p99 %v, max %v", n, percentile(fan, .5), percentile(fan, .99), fan[len(fan)-1])
	for _, a := range c.agents[:3] {
		if r, nb, f := a.host.counts(); r < n-1 || nb < n-1 || f < n-1 {
			t.Errorf("agent %d's kernel holds %d routes, %d neighbours, %d FDB entries; want at least %d each", a.i, r, nb, f, n-1)
		}
	}
}

// scaleAgents is how many agents BenchmarkScale runs: WEFT_SCALE_AGENTS,
// default 1,000.
func scaleAgents(b *testing.B) int {
	if s := os.Getenv("WEFT_SCALE_AGENTS"); s != "" {
		n, err := strconv.Atoi(s)
		if err != nil || n < 2 {
			b.Fatalf("WEFT_SCALE_AGENTS=%q: want a number of agents, 2 or more", s)
		}
		return n
	}
	return 1000
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

// BenchmarkScale is the control plane at N agents (WEFT_SCALE_AGENTS):
//
//   - herd: N agents started within one second against an etcd that
//     already holds their N leases (a whole cluster restarting at once),
//     until every one has programmed the N-1 others; with etcd's CPU and
//     peak RSS, and the bytes and gRPC calls per agent;
//   - fan-out: one new lease, until every agent has programmed it.
//
// It reports figures as metrics; b.N is 1 (one herd is the measurement).
func BenchmarkScale(b *testing.B) {
	n := scaleAgents(b)
	c := newScaleCluster(b)
	// The first start writes the N leases; the herd is the restart.
	c.startAll(n, 10*time.Second)
	c.waitConverged(n-1, 10*time.Minute, time.Now())
	c.stopAll()
	for b.Loop() {
		pid := c.srv.Pid()
		cpu0, err := procstat.Read(pid)
		if err != nil {
			b.Fatal(err)
		}
		m0 := c.etcdMetrics()
		start := time.Now()
		c.startAll(n, time.Second)
		took := c.waitConverged(n-1, 10*time.Minute, start)
		cpu1, _ := procstat.Read(pid)
		writeHeapProfile(b)
		m1 := c.etcdMetrics()
		b.ReportMetric(took.Seconds(), "herd-s")
		b.ReportMetric((cpu1.CPU - cpu0.CPU).Seconds(), "etcd-cpu-s")
		b.ReportMetric(float64(cpu1.Peak)/(1<<20), "etcd-peak-MiB")
		b.ReportMetric((m1.sent-m0.sent)/float64(n)/1024, "KiB-to-agent")
		b.ReportMetric((m1.received-m0.received)/float64(n)/1024, "KiB-from-agent")
		b.ReportMetric((m1.rpcs-m0.rpcs)/float64(n), "rpcs/agent")
		// The agents' memory: this process's, all of them together.
		if self, err := procstat.Read(os.Getpid()); err == nil {
			b.ReportMetric(float64(self.RSS)/float64(n)/(1<<20), "agent-MiB")
		}
		b.ReportMetric((cpu1.Time.Sub(cpu0.Time)).Seconds(), "wall-s")
		fan := c.fanOut(netip.MustParsePrefix("10.255.255.0/24"), time.Minute)
		b.ReportMetric(float64(percentile(fan, .5).Microseconds())/1000, "fanout-p50-ms")
		b.ReportMetric(float64(percentile(fan, .99).Microseconds())/1000, "fanout-p99-ms")
		c.stopAll()
	}
}
