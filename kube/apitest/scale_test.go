package apitest_test

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/netip"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/clientcmd"

	"github.com/weftnet/weft/internal/procstat"
	"github.com/weftnet/weft/internal/scaletest"
	"github.com/weftnet/weft/kube"
	"github.com/weftnet/weft/kube/apitest"
	"github.com/weftnet/weft/lease"
)

// The kube-mode half of the control-plane scale harness (the etcd half is
// vxlan's BenchmarkScale): N agents, each with its own connection to one
// kube-apiserver and its own kube.Manager, making the calls a Network
// makes of it (Hints, Acquire and Keep, NetworkReady, WatchLeases) and
// counting the leases that arrive. The datapath's cost per peer is the
// same in either mode and is measured there. The API server runs in a
// process of its own (this test binary again, as BenchmarkAPIServerProcess),
// with its etcd, so that its CPU and memory are measured apart from the
// agents'.

// serveEnv names the directory BenchmarkAPIServerProcess writes its
// kubeconfig to; set only in the process BenchmarkKubeScale starts.
const serveEnv = "WEFT_APITEST_SERVE"

// BenchmarkAPIServerProcess is the kube-apiserver process of
// BenchmarkKubeScale, which starts it with serveEnv set; alone it skips.
// It serves until its standard input is closed.
func BenchmarkAPIServerProcess(b *testing.B) {
	dir := os.Getenv(serveEnv)
	if dir == "" {
		b.Skip("the kube-apiserver process of BenchmarkKubeScale, which starts it")
	}
	s := apitest.Start(b,
		// As a large cluster's API server is set up: the agents' many
		// watches and requests are not what these limits are for.
		"--max-requests-inflight=4000", "--max-mutating-requests-inflight=2000")
	u, err := url.Parse(s.Admin.Host)
	if err != nil {
		b.Fatal(err)
	}
	path := kubeconfig(b, s.Admin, u.Host, "")
	raw, err := os.ReadFile(path)
	if err != nil {
		b.Fatal(err)
	}
	// Written whole, then renamed: the parent waits for the name.
	if err := os.WriteFile(filepath.Join(dir, "kubeconfig.tmp"), raw, 0o600); err != nil {
		b.Fatal(err)
	}
	if err := os.Rename(filepath.Join(dir, "kubeconfig.tmp"), filepath.Join(dir, "kubeconfig")); err != nil {
		b.Fatal(err)
	}
	io.Copy(io.Discard, os.Stdin)
}

// apiServerProcess is the kube-apiserver BenchmarkKubeScale measures.
type apiServerProcess struct {
	config *rest.Config
	pid    int
}

func startAPIServerProcess(b *testing.B) *apiServerProcess {
	dir := b.TempDir()
	cmd := exec.Command(os.Args[0], "-test.run=^$", "-test.bench=^BenchmarkAPIServerProcess$", "-test.benchtime=1x")
	cmd.Env = append(os.Environ(), serveEnv+"="+dir)
	log, err := os.Create(filepath.Join(dir, "apiserver.log"))
	if err != nil {
		b.Fatal(err)
	}
	defer log.Close()
	cmd.Stdout, cmd.Stderr = log, log
	// It must not outlive this process, however this one ends.
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	stdin, err := cmd.StdinPipe()
	if err != nil {
		b.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		b.Fatal(err)
	}
	exited := make(chan error, 1)
	go func() { exited <- cmd.Wait() }()
	b.Cleanup(func() {
		stdin.Close() // it stops, and removes its etcd's directory
		select {
		case <-exited:
		case <-time.After(time.Minute):
			cmd.Process.Kill()
			<-exited
		}
	})
	path := filepath.Join(dir, "kubeconfig")
	deadline := time.Now().Add(3 * time.Minute)
	for {
		if _, err := os.Stat(path); err == nil {
			break
		}
		select {
		case err := <-exited:
			out, _ := os.ReadFile(log.Name())
			b.Fatalf("the kube-apiserver process exited: %v\n%s", err, out)
		default:
		}
		if time.Now().After(deadline) {
			b.Fatal("the kube-apiserver process wrote no kubeconfig in 3 minutes")
		}
		time.Sleep(100 * time.Millisecond)
	}
	config, err := clientcmd.BuildConfigFromFlags("", path)
	if err != nil {
		b.Fatal(err)
	}
	return &apiServerProcess{config: config, pid: cmd.Process.Pid}
}

// kubeScale is the API server, its Nodes and the agents.
type kubeScale struct {
	b       *testing.B
	srv     *apiServerProcess
	admin   kubernetes.Interface
	netConf string
	agents  []*kubeAgent

	watchMu sync.Mutex
	watch   netip.Prefix // the subnet being fanned out

	hintFailures atomic.Int64 // Hints that failed (the API server too slow)
}

type kubeAgent struct {
	i      int
	m      *kube.Manager
	cancel context.CancelFunc
	done   chan struct{}
	held   atomic.Bool
	leases atomic.Int64
	routed atomic.Int64 // Unix nanoseconds the watched subnet arrived; 0 before
}

func kubeNodeName(i int) string { return fmt.Sprint("agent-", i) }

// createNodes creates the Nodes of agents 0..n-1, with their PodCIDRs, as
// kubelets and the controller manager would.
func (c *kubeScale) createNodes(n int) {
	sem := make(chan struct{}, 16)
	var wg sync.WaitGroup
	for i := range n {
		sem <- struct{}{}
		wg.Go(func() {
			defer func() { <-sem }()
			p := scaletest.SubnetOf(i).String()
			node := &corev1.Node{ObjectMeta: metav1.ObjectMeta{Name: kubeNodeName(i)}, Spec: corev1.NodeSpec{PodCIDR: p, PodCIDRs: []string{p}}}
			if _, err := c.admin.CoreV1().Nodes().Create(context.Background(), node, metav1.CreateOptions{}); err != nil {
				c.b.Error(err)
			}
		})
	}
	wg.Wait()
	if c.b.Failed() {
		c.b.FailNow()
	}
}

var quietKube = slog.New(slog.NewTextHandler(io.Discard, nil))

func (c *kubeScale) start(i int) *kubeAgent {
	a := &kubeAgent{i: i, done: make(chan struct{})}
	config := rest.CopyConfig(c.srv.config)
	// A connection of its own, as on its own node: client-go otherwise
	// shares one transport among equal configs.
	config.Dial = (&net.Dialer{}).DialContext
	nodes, err := kube.NewNodeClient(config)
	if err != nil {
		c.b.Fatal(err)
	}
	a.m, err = kube.New(kube.Options{Nodes: nodes, NodeName: kubeNodeName(i), NetConfPath: c.netConf, Logger: quietKube})
	if err != nil {
		c.b.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	a.cancel = cancel
	go func() {
		defer close(a.done)
		c.run(ctx, a)
	}()
	return a
}

// run is the agent: the calls an agent.Network makes of its Manager.
func (c *kubeScale) run(ctx context.Context, a *kubeAgent) {
	// A Network goes on without them (deriving its VTEP MACs).
	if _, err := a.m.Hints(ctx); err != nil && ctx.Err() == nil {
		c.hintFailures.Add(1)
	}
	vtep := fmt.Sprintf(`{"VNI":1,"VtepMAC":"0e:00:00:%02x:%02x:%02x"}`, byte(a.i>>16), byte(a.i>>8), byte(a.i))
	req := lease.AcquireRequest{Attrs: lease.Attrs{PublicIP: scaletest.PublicOf(a.i), BackendType: "vxlan", BackendData: json.RawMessage(vtep)}}
	var wg sync.WaitGroup
	defer wg.Wait()
	wg.Go(func() {
		lease.Hold(ctx, a.m, req, func(lease.Lease) {
			a.held.Store(true)
			a.m.NetworkReady() // the datapath is a counter: ready at once
		})
	})
	batches := make(chan lease.Batch, 16)
	wg.Go(func() { a.m.WatchLeases(ctx, batches) })
	seen := map[lease.Key]bool{}
	for {
		select {
		case batch := <-batches:
			if batch.Snapshot {
				clear(seen)
			}
			for _, ev := range batch.Events {
				if ev.Type == lease.Removed {
					delete(seen, ev.Lease.Key)
					continue
				}
				seen[ev.Lease.Key] = true
				c.watchMu.Lock()
				w := c.watch
				c.watchMu.Unlock()
				if w.IsValid() && ev.Lease.Key.IPv4 == w {
					a.routed.CompareAndSwap(0, time.Now().UnixNano())
				}
			}
			a.leases.Store(int64(len(seen)))
		case <-ctx.Done():
			return
		}
	}
}

func (a *kubeAgent) stop() {
	a.cancel()
	<-a.done
	a.m.Close()
}

func (c *kubeScale) startAll(n int, spread time.Duration) {
	c.agents = scaletest.StartHerd(n, spread, c.start)
}

func (c *kubeScale) stopAll() {
	var wg sync.WaitGroup
	for _, a := range c.agents {
		wg.Go(a.stop)
	}
	wg.Wait()
	c.agents = nil
}

// waitConverged waits until every agent holds its lease and watches want
// leases, and returns how long since start that took.
func (c *kubeScale) waitConverged(want int, timeout time.Duration, start time.Time) time.Duration {
	deadline := time.Now().Add(timeout)
	pending := slices.Clone(c.agents)
	for {
		pending = slices.DeleteFunc(pending, func(a *kubeAgent) bool { return a.held.Load() && a.leases.Load() == int64(want) })
		if len(pending) == 0 {
			return time.Since(start)
		}
		if time.Now().After(deadline) {
			a := pending[0]
			c.b.Fatalf("%d agents not converged after %v; agent %d holds its lease %v, watches %d of %d", len(pending), timeout, a.i, a.held.Load(), a.leases.Load(), want)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// fanOut adds a node, annotated as its agent would, and returns how long
// each agent took to see its lease, sorted.
func (c *kubeScale) fanOut(i int, timeout time.Duration) []time.Duration {
	subnet := scaletest.SubnetOf(i)
	c.watchMu.Lock()
	c.watch = subnet
	c.watchMu.Unlock()
	for _, a := range c.agents {
		a.routed.Store(0)
	}
	p := subnet.String()
	ann := kube.DefaultAnnotationPrefix + "/"
	node := &corev1.Node{
		ObjectMeta: metav1.ObjectMeta{Name: kubeNodeName(i), Annotations: map[string]string{
			ann + "kube-subnet-manager": "true",
			ann + "backend-type":        "vxlan",
			ann + "backend-data":        `{"VNI":1,"VtepMAC":"0e:ff:ff:ff:ff:01"}`,
			ann + "public-ip":           scaletest.PublicOf(i).String(),
		}},
		Spec: corev1.NodeSpec{PodCIDR: p, PodCIDRs: []string{p}},
	}
	wrote := time.Now()
	if _, err := c.admin.CoreV1().Nodes().Create(context.Background(), node, metav1.CreateOptions{}); err != nil {
		c.b.Fatal(err)
	}
	out := scaletest.WaitArrivals(c.b, "the new node", len(c.agents), wrote, timeout, func(i int) int64 { return c.agents[i].routed.Load() })
	if err := c.admin.CoreV1().Nodes().Delete(context.Background(), kubeNodeName(i), metav1.DeleteOptions{}); err != nil {
		c.b.Fatal(err)
	}
	return out
}

// BenchmarkKubeScale is the control plane in kube mode at
// WEFT_SCALE_AGENTS agents (default 500) against one kube-apiserver:
//
//   - herd: N agents started within one second, their Nodes already
//     annotated (a cluster restarting at once), until every one holds
//     its lease and watches all N; with the API server's CPU and peak
//     memory, and its memory per watching agent (resident memory with
//     the N watching, less before they started, over N);
//   - fan-out: a new annotated Node, until every agent has its lease.
//
// b.N is 1: one herd is the measurement.
func BenchmarkKubeScale(b *testing.B) {
	n := 500
	if v := os.Getenv("WEFT_SCALE_AGENTS"); v != "" {
		var err error
		if n, err = strconv.Atoi(v); err != nil || n < 2 || n > 60000 {
			b.Fatalf("WEFT_SCALE_AGENTS=%q: want a number of agents from 2 to 60000", v)
		}
	}
	c := &kubeScale{b: b, srv: startAPIServerProcess(b)}
	// The harness's own requests (creating the Nodes) are not what is
	// measured: client-go's default of 5 a second would take minutes.
	admin := rest.CopyConfig(c.srv.config)
	admin.QPS, admin.Burst = 500, 1000
	c.admin = kubernetes.NewForConfigOrDie(admin)
	c.netConf = filepath.Join(b.TempDir(), "net-conf.json")
	if err := os.WriteFile(c.netConf, []byte(`{"Network": "10.0.0.0/8", "Backend": {"Type": "vxlan"}}`), 0o644); err != nil {
		b.Fatal(err)
	}
	c.createNodes(n)
	// The first start annotates the Nodes; the herd is the restart.
	c.startAll(n, 10*time.Second)
	c.waitConverged(n, 15*time.Minute, time.Now())
	c.stopAll()
	for b.Loop() {
		time.Sleep(2 * time.Second) // the watches closed, their memory freed
		idle, err := procstat.Read(c.srv.pid)
		if err != nil {
			b.Fatal(err)
		}
		self0, _ := procstat.Read(os.Getpid())
		start := time.Now()
		c.startAll(n, time.Second)
		took := c.waitConverged(n, 15*time.Minute, start)
		busy, _ := procstat.Read(c.srv.pid)
		self1, _ := procstat.Read(os.Getpid())
		b.ReportMetric(took.Seconds(), "herd-s")
		b.ReportMetric((busy.CPU - idle.CPU).Seconds(), "apiserver-cpu-s")
		b.ReportMetric(float64(busy.Peak)/(1<<20), "apiserver-peak-MiB")
		b.ReportMetric(float64(busy.RSS-idle.RSS)/float64(n)/1024, "apiserver-KiB/agent")
		b.ReportMetric(float64((self1.CPU-self0.CPU).Milliseconds())/float64(n), "agent-cpu-ms")
		b.ReportMetric(float64(self1.RSS)/float64(n)/(1<<20), "agent-MiB")
		b.ReportMetric(float64(c.hintFailures.Swap(0)), "hint-failures")
		fan := c.fanOut(n, time.Minute)
		b.ReportMetric(float64(scaletest.Percentile(fan, .5).Microseconds())/1000, "fanout-p50-ms")
		b.ReportMetric(float64(scaletest.Percentile(fan, .99).Microseconds())/1000, "fanout-p99-ms")
		c.stopAll()
	}
}
