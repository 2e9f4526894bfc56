package main

import (
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/weftnet/weft/internal/etcdtest"
	"github.com/weftnet/weft/internal/netnstest"
	"github.com/weftnet/weft/internal/testutil"
	"github.com/weftnet/weft/subnetenv"
)

// These tests build flanneld and run it as separate processes with ip netns
// exec, in simulated hosts on one L2 segment, against an embedded etcd that
// listens inside another namespace on the segment.

const netConf16 = `{"Network": "10.244.0.0/16", "Backend": {"Type": "vxlan"}}`

// cluster is a segment whose first host runs etcd; the others run flanneld.
type cluster struct {
	t     testing.TB
	bin   string
	seg   *netnstest.Segment
	srv   *etcdtest.Server
	admin *clientv3.Client
	dir   string
}

// The binary is built once per test process, into a directory TestMain
// removes.
var (
	buildOnce sync.Once
	built     string
	buildErr  error
)

func TestMain(m *testing.M) {
	code := m.Run()
	if built != "" {
		os.RemoveAll(filepath.Dir(built))
	}
	os.Exit(code)
}

func newCluster(t testing.TB, hosts int, config string) *cluster {
	t.Helper()
	netnstest.RequirePrivileged(t)
	buildOnce.Do(func() {
		dir, err := os.MkdirTemp("", "weft-flanneld-")
		if err != nil {
			buildErr = err
			return
		}
		built = filepath.Join(dir, "flanneld")
		if out, err := exec.Command("go", "build", "-ldflags", "-X main.version=e2e", "-o", built, ".").CombinedOutput(); err != nil {
			buildErr = fmt.Errorf("go build: %v\n%s", err, out)
		}
	})
	if buildErr != nil {
		t.Fatal(buildErr)
	}
	c := &cluster{t: t, bin: built, seg: netnstest.NewSegment(t, hosts+1), dir: t.TempDir()}
	ctl := c.seg.Hosts[0]
	c.srv = etcdtest.StartIn(t, ctl.Do, ctl.Addr.Addr())
	c.admin = etcdtest.NewClientIn(t, ctl.Do, c.srv.Endpoint())
	if config != "" {
		c.putConfig(config)
	}
	return c
}

func (c *cluster) putConfig(config string) {
	c.t.Helper()
	if _, err := c.admin.Put(context.Background(), "/coreos.com/network/config", config); err != nil {
		c.t.Fatal(err)
	}
}

// host returns the i-th flanneld host (1-based; 0 is etcd's).
func (c *cluster) host(i int) *netnstest.Host { return c.seg.Hosts[i] }

// daemon is a flanneld process inside a simulated host.
type daemon struct {
	t          testing.TB
	host       *netnstest.Host
	cmd        *exec.Cmd
	out        *testutil.SyncBuffer
	subnetFile string
	done       chan error
}

// startTwo starts flanneld on hosts 1 and 2 and waits until both are ready.
// Ready means converged on the peers known then, so each also waits for
// the other's lease, which may arrive a moment later, to be programmed.
func (c *cluster) startTwo() (a, b *daemon) {
	a, b = c.start(c.host(1)), c.start(c.host(2))
	for _, d := range []*daemon{a, b} {
		d.waitReady()
		d.waitPeers(1)
	}
	return a, b
}

// waitPeers waits until the daemon has programmed n IPv4 peers.
func (d *daemon) waitPeers(n int) {
	d.t.Helper()
	want := fmt.Sprintf(`weft_peers{family="ipv4"} %d`, n)
	waitFor(d.t, 10*time.Second, d.host.Name+" to program its peers", func() bool {
		_, body := d.get("/metrics")
		return strings.Contains(body, want)
	})
}

// start runs flanneld on h with its subnet.env in the cluster's directory.
func (c *cluster) start(h *netnstest.Host, extra ...string) *daemon {
	c.t.Helper()
	d := &daemon{t: c.t, host: h, out: &testutil.SyncBuffer{}, subnetFile: filepath.Join(c.dir, h.Name, "subnet.env"), done: make(chan error, 1)}
	args := append([]string{"netns", "exec", h.Name, c.bin,
		"--etcd-endpoints", c.srv.Endpoint(), "--iface", netnstest.Underlay, "--subnet-file", d.subnetFile,
		"--healthz-ip", h.Addr.Addr().String(), "--healthz-port", "8471", "--node-name", h.Name, "--resync-interval", "2s"}, extra...)
	d.cmd = exec.Command("ip", args...)
	d.cmd.Stdout, d.cmd.Stderr = d.out, d.out
	if err := d.cmd.Start(); err != nil {
		c.t.Fatal(err)
	}
	go func() { d.done <- d.cmd.Wait() }()
	c.t.Cleanup(func() {
		d.stop(syscall.SIGTERM)
		if c.t.Failed() {
			c.t.Logf("flanneld on %s:\n%s", h.Name, d.out)
		}
	})
	return d
}

// stop signals the daemon and waits for it to exit, killing it after 10s.
// It returns the exit error; stopping a stopped daemon returns nil.
func (d *daemon) stop(sig syscall.Signal) error {
	if d.cmd.ProcessState != nil {
		return nil
	}
	d.cmd.Process.Signal(sig)
	select {
	case err := <-d.done:
		return err
	case <-time.After(10 * time.Second):
		d.cmd.Process.Kill()
		return <-d.done
	}
}

// get fetches a path from the daemon's health server, from inside its
// namespace.
func (d *daemon) get(path string) (int, string) {
	client := &http.Client{Timeout: 2 * time.Second, Transport: &http.Transport{
		DialContext: func(ctx context.Context, network, addr string) (net.Conn, error) {
			var c net.Conn
			err := d.host.Do(func() error {
				var err error
				c, err = (&net.Dialer{}).DialContext(ctx, network, addr)
				return err
			})
			return c, err
		},
	}}
	resp, err := client.Get("http://" + d.host.Addr.Addr().String() + ":8471" + path)
	if err != nil {
		return 0, err.Error()
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, strings.TrimSpace(string(body))
}

func (d *daemon) readyz() (int, string) { return d.get("/readyz") }

func (d *daemon) waitReady() {
	d.t.Helper()
	waitFor(d.t, 30*time.Second, d.host.Name+" ready", func() bool { code, _ := d.readyz(); return code == http.StatusOK })
}

// env reads the daemon's subnet.env.
func (d *daemon) env() subnetenv.File {
	d.t.Helper()
	f, err := subnetenv.Read(d.subnetFile)
	if err != nil {
		d.t.Fatal(err)
	}
	return f
}

// reach sends UDP from one daemon's overlay address to an echo on
// another's, which only the VXLAN path can carry.
func reach(t testing.TB, from, to *daemon) error {
	t.Helper()
	echo := to.host.ListenEcho(t, to.env().Subnet.Addr())
	return from.host.WaitExchange(from.env().Subnet.Addr(), echo.Addr, 10*time.Second)
}

// reachPairs fails the test unless each pair's first daemon reaches the
// second over the overlay.
func reachPairs(t testing.TB, pairs [][2]*daemon) {
	t.Helper()
	for _, pair := range pairs {
		if err := reach(t, pair[0], pair[1]); err != nil {
			t.Fatalf("%s -> %s: %v", pair[0].host.Name, pair[1].host.Name, err)
		}
	}
}

func ipOut(t testing.TB, h *netnstest.Host, args ...string) string {
	t.Helper()
	out, err := exec.Command(args[0], append([]string{"-n", h.Name}, args[1:]...)...).CombinedOutput()
	if err != nil {
		t.Fatalf("%s: %v\n%s", strings.Join(args, " "), err, out)
	}
	return string(out)
}

func waitFor(t testing.TB, d time.Duration, what string, cond func() bool) {
	t.Helper()
	testutil.WaitFor(t, d, what, cond)
}

func keyOf(p netip.Prefix) string {
	return "/coreos.com/network/subnets/" + strings.Replace(p.String(), "/", "-", 1)
}

// TestFlanneldEndToEnd: readiness waits for the network config; subnet.env
// appears only after convergence, with distinct subnets; masquerade rules
// and metrics are in place; overlay traffic flows; SIGTERM exits cleanly
// leaving the datapath; a restart keeps the subnet; a taken subnet is
// replaced and subnet.env rewritten.
func TestFlanneldEndToEnd(t *testing.T) {
	t.Parallel()
	c := newCluster(t, 2, "")
	a, b := c.start(c.host(1), "--ip-masq"), c.start(c.host(2), "--ip-masq")
	waitFor(t, 10*time.Second, "readyz to answer", func() bool { code, _ := a.readyz(); return code != 0 })
	if code, body := a.readyz(); code != http.StatusServiceUnavailable || !strings.Contains(body, "waiting for the network config") {
		t.Errorf("readyz without a config: %d %q", code, body)
	}
	if _, err := os.Stat(a.subnetFile); !os.IsNotExist(err) {
		t.Errorf("subnet.env written before the datapath converged: %v", err)
	}
	c.putConfig(netConf16)
	a.waitReady()
	b.waitReady()
	ea, eb := a.env(), b.env()
	if ea.Subnet == eb.Subnet || ea.MTU != 1450 || ea.Network.String() != "10.244.0.0/16" || !ea.IPMasq {
		t.Fatalf("subnet.env files %+v %+v", ea, eb)
	}
	for _, d := range []*daemon{a, b} {
		if n := masqRuleCount(int(d.host.Handle), false); n != 4 {
			t.Errorf("%s: %d masquerade rules, want 4", d.host.Name, n)
		}
		d.waitPeers(1)
		code, body := d.get("/metrics")
		for _, want := range []string{"weft_ready 1", `weft_peers{family="ipv4"} 1`, "weft_lease_losses_total 0", "weft_etcd_errors_total", "weft_reconcile_duration_seconds", "weft_datapath_repairs_total", "process_resident_memory_bytes", "go_gc_heap_live_bytes"} {
			if code != http.StatusOK || !strings.Contains(body, want) {
				t.Errorf("%s /metrics lacks %q (status %d)", d.host.Name, want, code)
			}
		}
	}
	if err := reach(t, a, b); err != nil {
		t.Fatalf("overlay traffic between the daemons: %v", err)
	}

	// SIGTERM: a clean exit that leaves the datapath and lease in place.
	if err := a.stop(syscall.SIGTERM); err != nil {
		t.Fatalf("exit after SIGTERM: %v", err)
	}
	if routes := ipOut(t, a.host, "ip", "route", "show", "proto", "157"); !strings.Contains(routes, eb.Subnet.String()) {
		t.Fatalf("routes after SIGTERM: %s", routes)
	}
	if err := reach(t, a, b); err != nil {
		t.Fatalf("traffic with the daemon stopped: %v", err)
	}

	// A restart reads its subnet back and keeps it.
	a = c.start(a.host)
	a.waitReady()
	if got := a.env().Subnet; got != ea.Subnet {
		t.Fatalf("after a restart: subnet %v, want %v", got, ea.Subnet)
	}

	// Another node takes the subnet: the daemon moves and rewrites subnet.env.
	intruder := `{"PublicIP":"172.30.0.99","PublicIPv6":null,"BackendType":"vxlan","BackendData":{"VNI":1,"VtepMAC":"0e:00:00:00:00:99"},"WeftOwner":"intruder"}`
	if _, err := c.admin.Put(context.Background(), keyOf(ea.Subnet), intruder); err != nil {
		t.Fatal(err)
	}
	waitFor(t, 20*time.Second, "subnet.env to move to a new subnet", func() bool {
		f, err := subnetenv.Read(a.subnetFile)
		return err == nil && f.Subnet != ea.Subnet
	})
	a.waitReady()
	if err := reach(t, b, a); err != nil {
		t.Fatalf("traffic to the new subnet: %v", err)
	}
	if _, body := a.get("/metrics"); !strings.Contains(body, "weft_lease_losses_total 1") {
		t.Errorf("the loss is not counted")
	}
}

// TestSeed000 is field report 000 with processes: A goes offline past a
// short TTL, B gets A's subnet, and A restarts with its old subnet.env. A
// gets a new subnet and rewrites subnet.env; B keeps its subnet; traffic
// B<->C and A<->C works.
func TestSeed000(t *testing.T) {
	t.Parallel()
	c := newCluster(t, 3, netConf16)
	ttl := []string{"--subnet-lease-ttl", "3s"}
	a, cc := c.start(c.host(1), ttl...), c.start(c.host(3), ttl...)
	a.waitReady()
	cc.waitReady()
	s := a.env()

	a.stop(syscall.SIGKILL) // offline
	waitFor(t, 15*time.Second, "A's lease to expire", func() bool {
		resp, err := c.admin.Get(context.Background(), keyOf(s.Subnet))
		return err == nil && len(resp.Kvs) == 0
	})
	// B comes up asking for S (its subnet.env says so): S is free, B gets it.
	bHost := c.host(2)
	bFile := filepath.Join(c.dir, bHost.Name, "subnet.env")
	if err := subnetenv.Write(bFile, s); err != nil {
		t.Fatal(err)
	}
	b := c.start(bHost, ttl...)
	b.waitReady()
	if got := b.env().Subnet; got != s.Subnet {
		t.Fatalf("B got %v, want the lapsed %v", got, s.Subnet)
	}

	a = c.start(a.host, ttl...) // back, with S in its subnet.env
	waitFor(t, 20*time.Second, "A to rewrite subnet.env", func() bool {
		f, err := subnetenv.Read(a.subnetFile)
		return err == nil && f.Subnet != s.Subnet
	})
	a.waitReady()
	time.Sleep(2 * time.Second) // past A's first renewals
	if got := b.env().Subnet; got != s.Subnet {
		t.Fatalf("B lost its subnet: %v", got)
	}
	resp, err := c.admin.Get(context.Background(), keyOf(s.Subnet))
	if err != nil || len(resp.Kvs) != 1 || !strings.Contains(string(resp.Kvs[0].Value), bHost.Name) {
		t.Fatalf("S's key is not B's: %v %v", resp, err)
	}
	reachPairs(t, [][2]*daemon{{b, cc}, {cc, b}, {a, cc}, {cc, a}})
}

// TestSeed001: a wrong permanent neighbour entry for a peer is corrected at
// once, and traffic flows.
func TestSeed001(t *testing.T) {
	t.Parallel()
	c := newCluster(t, 2, netConf16)
	a, b := c.startTwo()
	gw := b.env().Subnet.Addr().String()
	right := ipOut(t, a.host, "ip", "neigh", "show", gw, "dev", "flannel.1")
	ipOut(t, a.host, "ip", "neigh", "replace", gw, "lladdr", "0e:de:ad:be:ef:01", "nud", "permanent", "dev", "flannel.1")
	waitFor(t, 5*time.Second, "the neighbour entry to be corrected", func() bool {
		return ipOut(t, a.host, "ip", "neigh", "show", gw, "dev", "flannel.1") == right
	})
	if err := reach(t, a, b); err != nil {
		t.Fatal(err)
	}
	if _, body := a.get("/metrics"); !strings.Contains(body, `weft_datapath_repairs_total{family="ipv4"} 1`) {
		t.Errorf("the repair is not counted")
	}
}

// TestSeed002MAC: the daemon is killed (-9) and its device deleted; the
// restart brings the device back with the same MAC, so the peers' entries
// stay valid: nothing on the peers changes.
func TestSeed002MAC(t *testing.T) {
	t.Parallel()
	c := newCluster(t, 2, netConf16)
	a, b := c.startTwo()
	link := func() string { return ipOut(t, a.host, "ip", "-br", "link", "show", "flannel.1") }
	before := strings.Fields(link())[2]
	peerState := func() string {
		return ipOut(t, b.host, "ip", "neigh", "show", "dev", "flannel.1") + ipOut(t, b.host, "bridge", "fdb", "show", "dev", "flannel.1")
	}
	peerBefore := peerState()
	_, metricsBefore := b.get("/metrics")

	a.stop(syscall.SIGKILL)
	ipOut(t, a.host, "ip", "link", "del", "flannel.1")
	a = c.start(a.host)
	a.waitReady()
	if after := strings.Fields(link())[2]; after != before {
		t.Fatalf("VTEP MAC %s after the restart, was %s", after, before)
	}
	if got := peerState(); got != peerBefore {
		t.Fatalf("the peer's entries changed:\n%s\nwas\n%s", got, peerBefore)
	}
	_, metricsAfter := b.get("/metrics")
	repairs := func(m string) string {
		for _, l := range strings.Split(m, "\n") {
			if strings.HasPrefix(l, "weft_datapath_repairs_total") {
				return l
			}
		}
		return ""
	}
	if repairs(metricsAfter) != repairs(metricsBefore) {
		t.Errorf("the peer wrote: %q then %q", repairs(metricsBefore), repairs(metricsAfter))
	}
	if err := reach(t, b, a); err != nil {
		t.Fatal(err)
	}
}

// TestSeed003: the network is widened from /16 to /8 while everything
// runs. Every running daemon rewrites FLANNEL_NETWORK without a restart,
// keeps its subnet, and a new node gets a subnet outside the old /16.
func TestSeed003(t *testing.T) {
	t.Parallel()
	c := newCluster(t, 3, netConf16)
	a, b := c.startTwo()
	ea, eb := a.env(), b.env()
	c.putConfig(`{"Network": "10.0.0.0/8", "SubnetMin": "10.245.0.0", "Backend": {"Type": "vxlan"}}`)
	for _, d := range []*daemon{a, b} {
		waitFor(t, 10*time.Second, d.host.Name+"'s FLANNEL_NETWORK", func() bool {
			f, err := subnetenv.Read(d.subnetFile)
			return err == nil && f.Network.String() == "10.0.0.0/8"
		})
	}
	if a.env().Subnet != ea.Subnet || b.env().Subnet != eb.Subnet {
		t.Fatalf("subnets changed: %v %v, were %v %v", a.env().Subnet, b.env().Subnet, ea.Subnet, eb.Subnet)
	}
	n := c.start(c.host(3))
	n.waitReady()
	if old := netip.MustParsePrefix("10.244.0.0/16"); old.Overlaps(n.env().Subnet) {
		t.Fatalf("new node got %v inside the old /16", n.env().Subnet)
	}
	reachPairs(t, [][2]*daemon{{a, n}, {n, b}})
}

// TestRestartContinuity: a continuous flow to a node loses at most a few
// packets while that node's daemon restarts: the datapath stays in place.
func TestRestartContinuity(t *testing.T) {
	t.Parallel()
	c := newCluster(t, 2, netConf16)
	a, b := c.startTwo()
	echo := a.host.ListenEcho(t, a.env().Subnet.Addr())
	src := b.env().Subnet.Addr()
	var sent, lost int
	var lostAt []time.Time
	done := make(chan struct{})
	go func() {
		defer close(done)
		for end := time.Now().Add(4 * time.Second); time.Now().Before(end); {
			sent++
			if at := time.Now(); b.host.Exchange(src, echo.Addr, []byte("tick"), 100*time.Millisecond) != nil {
				lost++
				lostAt = append(lostAt, at)
			}
			time.Sleep(5 * time.Millisecond)
		}
	}()
	time.Sleep(500 * time.Millisecond)
	stopped := time.Now()
	if err := a.stop(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	a = c.start(a.host)
	a.waitReady()
	ready := time.Since(stopped)
	<-done
	var when []string
	for _, at := range lostAt {
		when = append(when, at.Sub(stopped).Round(time.Millisecond).String())
	}
	t.Logf("%d of %d packets lost across a daemon restart (ready again %v after the stop); lost at %v from the stop", lost, sent, ready.Round(time.Millisecond), when)
	if sent < 100 || lost > 2 {
		t.Errorf("lost %d of %d packets", lost, sent)
	}
}
