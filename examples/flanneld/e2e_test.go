package main

import (
	"context"
	"errors"
	"io/fs"
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

	"github.com/google/nftables"
	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/weftnet/weft/hostrules"
	"github.com/weftnet/weft/internal/daemontest"
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

func TestMain(m *testing.M) {
	if os.Getenv(holdEnv) != "" {
		holdMain()
	}
	code := m.Run()
	daemontest.RemoveBuilt()
	removeFlannelCNI()
	os.Exit(code)
}

func newCluster(t testing.TB, hosts int, config string) *cluster {
	t.Helper()
	netnstest.RequirePrivileged(t)
	c := &cluster{t: t, bin: daemontest.Flanneld(t), seg: netnstest.NewSegment(t, hosts+1), dir: t.TempDir()}
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
type daemon = daemontest.Daemon

// startTwo starts flanneld on hosts 1 and 2 and waits until both are ready.
// Ready means converged on the peers known then, so each also waits for
// the other's lease, which may arrive a moment later, to be programmed.
func (c *cluster) startTwo() (a, b *daemon) {
	a, b = c.start(c.host(1)), c.start(c.host(2))
	for _, d := range []*daemon{a, b} {
		d.WaitReady()
		d.WaitPeers(1)
	}
	return a, b
}

// start runs flanneld on h against the cluster's etcd, with its
// subnet.env in the cluster's directory.
func (c *cluster) start(h *netnstest.Host, extra ...string) *daemon {
	c.t.Helper()
	args := append([]string{"--etcd-endpoints", c.srv.Endpoint(), "--resync-interval", "2s"}, extra...)
	return daemontest.Start(c.t, h, c.bin, filepath.Join(c.dir, h.Name, "subnet.env"), args...)
}

// reachPairs fails the test unless each pair's first daemon reaches the
// second over the overlay.
func reachPairs(t testing.TB, pairs [][2]*daemon) {
	t.Helper()
	for _, pair := range pairs {
		if err := daemontest.Reach(t, pair[0], pair[1]); err != nil {
			t.Fatalf("%s -> %s: %v", pair[0].Host.Name, pair[1].Host.Name, err)
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
	a, b := c.start(c.host(1), "--ip-masq", "--iptables-resync", "1"), c.start(c.host(2), "--ip-masq", "--iptables-resync", "1")
	// Past "starting" (the moments before the daemon has its Network,
	// longer on a loaded machine), it waits for the config.
	waitFor(t, 10*time.Second, "readyz to answer", func() bool {
		code, body := a.Readyz()
		return code != 0 && !strings.Contains(body, "starting")
	})
	if code, body := a.Readyz(); code != http.StatusServiceUnavailable || !strings.Contains(body, "waiting for the network config") {
		t.Errorf("readyz without a config: %d %q", code, body)
	}
	if _, err := os.Stat(a.SubnetFile); !os.IsNotExist(err) {
		t.Errorf("subnet.env written before the datapath converged: %v", err)
	}
	c.putConfig(netConf16)
	a.WaitReady()
	b.WaitReady()
	ea, eb := a.Env(), b.Env()
	if ea.Subnet == eb.Subnet || ea.MTU != 1450 || ea.Network.String() != "10.244.0.0/16" || !ea.IPMasq {
		t.Fatalf("subnet.env files %+v %+v", ea, eb)
	}
	for _, d := range []*daemon{a, b} {
		if n := masqRuleCount(int(d.Host.Handle)); n != 6 {
			t.Errorf("%s: %d masquerade rules, want 6", d.Host.Name, n)
		}
		d.WaitPeers(1)
		code, body := d.Get("/metrics")
		for _, want := range []string{"weft_ready 1", `weft_peers_programmed{family="ipv4"} 1`, "weft_lease_losses_total 0", "weft_etcd_errors_total", "weft_datapath_last_sync_duration_seconds", "weft_probes_total", "weft_probe_peers", "weft_datapath_repairs_total", "process_resident_memory_bytes", "go_gc_heap_live_bytes"} {
			if code != http.StatusOK || !strings.Contains(body, want) {
				t.Errorf("%s /metrics lacks %q (status %d)", d.Host.Name, want, code)
			}
		}
	}
	if err := daemontest.Reach(t, a, b); err != nil {
		t.Fatalf("overlay traffic between the daemons: %v", err)
	}

	// Unchanged resyncs (the datapath's every 2 s, the rules' every 1 s)
	// log nothing; a SIGHUP is logged and changes nothing else.
	quiet := a.Out.String()
	time.Sleep(4500 * time.Millisecond)
	if more := strings.TrimPrefix(a.Out.String(), quiet); more != "" {
		t.Errorf("unchanged resyncs logged:\n%s", more)
	}
	if err := a.Cmd.Process.Signal(syscall.SIGHUP); err != nil {
		t.Fatal(err)
	}
	waitFor(t, 5*time.Second, "the SIGHUP to be logged", func() bool { return strings.Contains(a.Out.String(), "SIGHUP received and ignored") })
	if code, body := a.Readyz(); code != http.StatusOK {
		t.Fatalf("after SIGHUP: %d %s", code, body)
	}

	// SIGTERM: a clean exit that leaves the datapath and lease in place.
	if err := a.Stop(syscall.SIGTERM); err != nil {
		t.Fatalf("exit after SIGTERM: %v", err)
	}
	if routes := ipOut(t, a.Host, "ip", "route", "show", "proto", "157"); !strings.Contains(routes, eb.Subnet.String()) {
		t.Fatalf("routes after SIGTERM: %s", routes)
	}
	if err := daemontest.Reach(t, a, b); err != nil {
		t.Fatalf("traffic with the daemon stopped: %v", err)
	}

	// A restart reads its subnet back and keeps it, and removes what a
	// write killed midway left.
	stale := filepath.Join(filepath.Dir(a.SubnetFile), ".subnet.env.tmp123456")
	if err := os.WriteFile(stale, []byte("FLANNEL_NET"), 0o644); err != nil {
		t.Fatal(err)
	}
	a = c.start(a.Host, "--ip-masq", "--iptables-resync", "1")
	a.WaitReady()
	if got := a.Env().Subnet; got != ea.Subnet {
		t.Fatalf("after a restart: subnet %v, want %v", got, ea.Subnet)
	}
	if _, err := os.Stat(stale); !os.IsNotExist(err) {
		t.Errorf("the stale temporary file is still there: %v", err)
	}

	// Another node takes the subnet: the daemon moves and rewrites subnet.env.
	intruder := `{"PublicIP":"172.30.0.99","PublicIPv6":null,"BackendType":"vxlan","BackendData":{"VNI":1,"VtepMAC":"0e:00:00:00:00:99"},"WeftOwner":"intruder"}`
	if _, err := c.admin.Put(context.Background(), keyOf(ea.Subnet), intruder); err != nil {
		t.Fatal(err)
	}
	waitFor(t, 20*time.Second, "subnet.env to move to a new subnet", func() bool {
		f, err := subnetenv.Read(a.SubnetFile)
		return err == nil && f.Subnet != ea.Subnet
	})
	a.WaitReady()
	if err := daemontest.Reach(t, b, a); err != nil {
		t.Fatalf("traffic to the new subnet: %v", err)
	}
	if _, body := a.Get("/metrics"); !strings.Contains(body, "weft_lease_losses_total 1") {
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
	a.WaitReady()
	cc.WaitReady()
	s := a.Env()

	a.Stop(syscall.SIGKILL) // offline
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
	b.WaitReady()
	if got := b.Env().Subnet; got != s.Subnet {
		t.Fatalf("B got %v, want the lapsed %v", got, s.Subnet)
	}

	a = c.start(a.Host, ttl...) // back, with S in its subnet.env
	waitFor(t, 20*time.Second, "A to rewrite subnet.env", func() bool {
		f, err := subnetenv.Read(a.SubnetFile)
		return err == nil && f.Subnet != s.Subnet
	})
	a.WaitReady()
	time.Sleep(2 * time.Second) // past A's first renewals
	if got := b.Env().Subnet; got != s.Subnet {
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
	gw := b.Env().Subnet.Addr().String()
	right := ipOut(t, a.Host, "ip", "neigh", "show", gw, "dev", "flannel.1")
	ipOut(t, a.Host, "ip", "neigh", "replace", gw, "lladdr", "0e:de:ad:be:ef:01", "nud", "permanent", "dev", "flannel.1")
	waitFor(t, 5*time.Second, "the neighbour entry to be corrected", func() bool {
		return ipOut(t, a.Host, "ip", "neigh", "show", gw, "dev", "flannel.1") == right
	})
	if err := daemontest.Reach(t, a, b); err != nil {
		t.Fatal(err)
	}
	if _, body := a.Get("/metrics"); !strings.Contains(body, `weft_datapath_repairs_total{family="ipv4"} 1`) {
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
	link := func() string { return ipOut(t, a.Host, "ip", "-br", "link", "show", "flannel.1") }
	before := strings.Fields(link())[2]
	peerState := func() string {
		return ipOut(t, b.Host, "ip", "neigh", "show", "dev", "flannel.1") + ipOut(t, b.Host, "bridge", "fdb", "show", "dev", "flannel.1")
	}
	peerBefore := peerState()
	_, metricsBefore := b.Get("/metrics")

	a.Stop(syscall.SIGKILL)
	ipOut(t, a.Host, "ip", "link", "del", "flannel.1")
	a = c.start(a.Host)
	a.WaitReady()
	if after := strings.Fields(link())[2]; after != before {
		t.Fatalf("VTEP MAC %s after the restart, was %s", after, before)
	}
	if got := peerState(); got != peerBefore {
		t.Fatalf("the peer's entries changed:\n%s\nwas\n%s", got, peerBefore)
	}
	_, metricsAfter := b.Get("/metrics")
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
	if err := daemontest.Reach(t, b, a); err != nil {
		t.Fatal(err)
	}
}

// TestSeed003: the network is widened from /16 to /8 while everything
// runs. Every running daemon rewrites FLANNEL_NETWORK without a restart,
// keeps its subnet, and a new node gets a subnet outside the old /16.
//
// Host 1's FORWARD policy is DROP, as Docker sets it: its forward rules
// accept the Network, and follow it when it is widened.
func TestSeed003(t *testing.T) {
	t.Parallel()
	tool := netnstest.RequireIptables(t)
	c := newCluster(t, 3, netConf16)
	c.host(1).Iptables(t, tool, "-P", "FORWARD", "DROP")
	a, b := c.startTwo()
	fwd := func(network string) bool {
		return strings.Contains(a.Host.Iptables(t, tool, "-S"), "-A FLANNEL-FWD -s "+network+` -m comment --comment "flanneld forward" -j ACCEPT`)
	}
	if !fwd("10.244.0.0/16") {
		t.Errorf("no forward rules for the Network on a FORWARD DROP host:\n%s", a.Host.Iptables(t, tool, "-S"))
	}
	ea, eb := a.Env(), b.Env()
	c.putConfig(`{"Network": "10.0.0.0/8", "SubnetMin": "10.245.0.0", "Backend": {"Type": "vxlan"}}`)
	for _, d := range []*daemon{a, b} {
		waitFor(t, 10*time.Second, d.Host.Name+"'s FLANNEL_NETWORK", func() bool {
			f, err := subnetenv.Read(d.SubnetFile)
			return err == nil && f.Network.String() == "10.0.0.0/8"
		})
	}
	waitFor(t, 10*time.Second, "the forward rules to follow the widened Network", func() bool { return fwd("10.0.0.0/8") && !fwd("10.244.0.0/16") })
	if a.Env().Subnet != ea.Subnet || b.Env().Subnet != eb.Subnet {
		t.Fatalf("subnets changed: %v %v, were %v %v", a.Env().Subnet, b.Env().Subnet, ea.Subnet, eb.Subnet)
	}
	n := c.start(c.host(3))
	n.WaitReady()
	if old := netip.MustParsePrefix("10.244.0.0/16"); old.Overlaps(n.Env().Subnet) {
		t.Fatalf("new node got %v inside the old /16", n.Env().Subnet)
	}
	reachPairs(t, [][2]*daemon{{a, n}, {n, b}})
}

// TestNetworkMovedLive: the Network is moved to a disjoint range under two
// running daemons. Each acquires in the new range, rewrites subnet.env,
// deletes its old key and drops the old address from flannel.1, with no
// restart, and they reach each other again.
func TestNetworkMovedLive(t *testing.T) {
	t.Parallel()
	c := newCluster(t, 2, netConf16)
	a, b := c.startTwo()
	old := map[*daemon]netip.Prefix{a: a.Env().Subnet.Masked(), b: b.Env().Subnet.Masked()}
	moved := time.Now()
	c.putConfig(`{"Network": "10.245.0.0/16", "Backend": {"Type": "vxlan"}}`)
	newNet := netip.MustParsePrefix("10.245.0.0/16")
	for _, d := range []*daemon{a, b} {
		waitFor(t, 20*time.Second, d.Host.Name+"'s subnet.env in the new Network", func() bool {
			f, err := subnetenv.Read(d.SubnetFile)
			return err == nil && f.Network == newNet && newNet.Contains(f.Subnet.Addr())
		})
		d.WaitReady()
	}
	t.Logf("both daemons moved and ready %v after the change", time.Since(moved).Round(time.Millisecond))
	for _, d := range []*daemon{a, b} {
		resp, err := c.admin.Get(context.Background(), keyOf(old[d]))
		if err != nil {
			t.Fatal(err)
		}
		if len(resp.Kvs) != 0 {
			t.Errorf("%s's old key %v is still in etcd", d.Host.Name, old[d])
		}
		if addrs := ipOut(t, d.Host, "ip", "-4", "-o", "addr", "show", "dev", "flannel.1"); strings.Contains(addrs, old[d].Addr().String()+"/32") {
			t.Errorf("%s's flannel.1 still has the old address: %s", d.Host.Name, addrs)
		}
	}
	a.WaitPeers(1)
	b.WaitPeers(1)
	reachPairs(t, [][2]*daemon{{a, b}, {b, a}})
}

// TestClonedHosts: two hosts present one node name (cloned VMs with one
// hostname). The first keeps its lease and stays reachable; the second
// does not take it, says why on /readyz, logs an error naming both
// addresses, and writes a few times a minute, not hundreds a second.
func TestClonedHosts(t *testing.T) {
	t.Parallel()
	c := newCluster(t, 3, netConf16)
	first := c.start(c.host(1), "--node-name", "clone")
	first.WaitReady()
	third := c.start(c.host(3))
	third.WaitReady()
	clone := c.start(c.host(2), "--node-name", "clone")
	revision := func() int64 {
		resp, err := c.admin.Get(context.Background(), "/none")
		if err != nil {
			t.Fatal(err)
		}
		return resp.Header.Revision
	}
	waitFor(t, 15*time.Second, "the clone to report the collision", func() bool {
		code, body := clone.Readyz()
		return code == 503 && strings.Contains(body, "--node-name")
	})
	before := revision()
	const d = 5 * time.Second
	time.Sleep(d)
	writes := revision() - before
	t.Logf("%d etcd writes in %v of collision", writes, d)
	if writes > 4 {
		t.Errorf("%d etcd writes in %v of collision, want a few a minute", writes, d)
	}
	code, body := clone.Readyz()
	for _, want := range []string{c.host(1).Addr.Addr().String(), c.host(2).Addr.Addr().String(), "NODE_NAME"} {
		if code != 503 || !strings.Contains(body, want) {
			t.Errorf("the clone's /readyz %d %q does not name %s", code, body, want)
		}
	}
	if !strings.Contains(clone.Out.String(), "level=ERROR") || !strings.Contains(first.Out.String(), "level=ERROR") {
		t.Errorf("an error was not logged on both hosts:\n%s\n%s", clone.Out, first.Out)
	}
	if code, _ := first.Readyz(); code != 200 {
		t.Errorf("the first host's /readyz: %d", code)
	}
	f := first.Env()
	resp, err := c.admin.Get(context.Background(), keyOf(f.Subnet.Masked()))
	if err != nil || len(resp.Kvs) != 1 || !strings.Contains(string(resp.Kvs[0].Value), `"PublicIP":"`+c.host(1).Addr.Addr().String()+`"`) {
		t.Fatalf("the first host's key: %v %v", resp, err)
	}
	if _, err := os.Stat(clone.SubnetFile); err == nil {
		t.Errorf("the clone wrote subnet.env: %+v", clone.Env())
	}
	third.WaitPeers(1)
	reachPairs(t, [][2]*daemon{{third, first}, {first, third}})
}

// TestRestartContinuity: a continuous flow to a node loses at most a few
// packets while that node's daemon restarts: the datapath stays in place.
func TestRestartContinuity(t *testing.T) {
	t.Parallel()
	c := newCluster(t, 2, netConf16)
	a, b := c.startTwo()
	echo := a.Host.ListenEcho(t, a.Env().Subnet.Addr())
	src := b.Env().Subnet.Addr()
	var sent, lost int
	var lostAt []time.Time
	done := make(chan struct{})
	go func() {
		defer close(done)
		// Four seconds, and at least 100 packets however slow a loaded
		// machine makes each exchange: the restart must fall inside.
		for end := time.Now().Add(4 * time.Second); time.Now().Before(end) || sent < 100; {
			sent++
			if at := time.Now(); b.Host.Exchange(src, echo.Addr, []byte("tick"), 100*time.Millisecond) != nil {
				lost++
				lostAt = append(lostAt, at)
			}
			time.Sleep(5 * time.Millisecond)
		}
	}()
	time.Sleep(500 * time.Millisecond)
	stopped := time.Now()
	if err := a.Stop(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	a = c.start(a.Host)
	a.WaitReady()
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

// TestEtcdWipedDaemons: etcd is wiped under three hosts, one of them
// (c) killed just before, and the config put back. The two live daemons
// re-create their own keys within 5 s, keep their subnets and readiness
// throughout, and traffic between them keeps flowing. Their routes to the
// dead host, whose key the new store lacks, stay while the new listing
// settles: a wipe does not black-hole a peer that may be about to
// re-assert.
func TestEtcdWipedDaemons(t *testing.T) {
	t.Parallel()
	c := newCluster(t, 3, netConf16)
	a, b := c.startTwo()
	dead := c.start(c.host(3))
	dead.WaitReady()
	a.WaitPeers(2)
	b.WaitPeers(2)
	ea, eb, ec := a.Env(), b.Env(), dead.Env()
	dead.Stop(syscall.SIGKILL)

	echo := a.Host.ListenEcho(t, ea.Subnet.Addr())
	var sent, lost int
	flowDone := make(chan struct{})
	stopFlow := make(chan struct{})
	var stopOnce sync.Once
	stop := func() { stopOnce.Do(func() { close(stopFlow) }); <-flowDone }
	go func() {
		defer close(flowDone)
		for {
			select {
			case <-stopFlow:
				return
			default:
			}
			sent++
			if b.Host.Exchange(eb.Subnet.Addr(), echo.Addr, []byte("tick"), 100*time.Millisecond) != nil {
				lost++
			}
			time.Sleep(10 * time.Millisecond)
		}
	}()
	// Stopped before the namespaces are closed on a failure's way out too
	// (cleanups run last first).
	t.Cleanup(stop)
	held := testutil.Sample(50*time.Millisecond, func() (lapses []string) {
		for _, d := range []*daemon{a, b} {
			if code, body := d.Readyz(); code != http.StatusOK {
				lapses = append(lapses, d.Host.Name+" not ready: "+body)
			}
			if routes := ipOut(t, d.Host, "ip", "route", "show", ec.Subnet.Masked().String()); !strings.Contains(routes, "flannel.1") {
				lapses = append(lapses, d.Host.Name+" dropped the dead host's route")
			}
		}
		return lapses
	})

	wiped := time.Now()
	c.srv.WipeWith(func(string) { c.putConfig(netConf16) })
	back := time.Now() // the graceful stop of an etcd in a namespace takes seconds
	owned := func(d *daemon, e subnetenv.File) bool {
		resp, err := c.admin.Get(context.Background(), keyOf(e.Subnet.Masked()))
		return err == nil && len(resp.Kvs) == 1 && strings.Contains(string(resp.Kvs[0].Value), `"PublicIP":"`+d.Host.Addr.Addr().String()+`"`)
	}
	waitFor(t, 5*time.Second, "both live daemons to re-create their keys", func() bool { return owned(a, ea) && owned(b, eb) })
	recreated := time.Since(back)
	time.Sleep(3 * time.Second) // well inside the 30 s settle window
	stop()
	held.Check(t, "during the wipe's settle window")
	t.Logf("keys re-created %v after etcd was back (%v after the wipe began); %d of %d packets lost meanwhile",
		recreated.Round(time.Millisecond), back.Add(recreated).Sub(wiped).Round(time.Millisecond), lost, sent)
	if lost > 3 {
		t.Errorf("%d of %d packets lost across the wipe", lost, sent)
	}
	if a.Env().Subnet != ea.Subnet || b.Env().Subnet != eb.Subnet {
		t.Errorf("subnets moved: %v %v, were %v %v", a.Env().Subnet, b.Env().Subnet, ea.Subnet, eb.Subnet)
	}
	if !strings.Contains(a.Out.String(), "history restarted") && !strings.Contains(a.Out.String(), "re-created it") {
		t.Errorf("a did not log the wipe:\n%s", a.Out)
	}
}

// TestMigrateKeepsVtepMAC: host 1 ran flanneld, which left its device with
// a random MAC and a lease (no WeftOwner) publishing it. weft started over
// them adopts the subnet and the device and keeps the MAC: the device's
// MAC never changes, the lease still publishes it, and a peer reaches
// the host through it.
func TestMigrateKeepsVtepMAC(t *testing.T) {
	t.Parallel()
	c := newCluster(t, 2, netConf16)
	h := c.host(1)
	const mac = "0e:5a:11:0c:e1:01"
	subnet := netip.MustParsePrefix("10.244.7.0/24")
	ipOut(t, h, "ip", "link", "add", "flannel.1", "address", mac, "type", "vxlan", "id", "1", "local", h.Addr.Addr().String(),
		"dev", netnstest.Underlay, "nolearning", "dstport", "8472")
	ipOut(t, h, "ip", "addr", "add", "10.244.7.0/32", "dev", "flannel.1")
	ipOut(t, h, "ip", "link", "set", "flannel.1", "up")
	value := `{"PublicIP":"` + h.Addr.Addr().String() + `","PublicIPv6":null,"BackendType":"vxlan","BackendData":{"VNI":1,"VtepMAC":"` + mac + `"}}`
	g, err := c.admin.Grant(context.Background(), 3600)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := c.admin.Put(context.Background(), keyOf(subnet), value, clientv3.WithLease(g.ID)); err != nil {
		t.Fatal(err)
	}
	if err := subnetenv.Write(filepath.Join(c.dir, h.Name, "subnet.env"), subnetenv.File{Network: netip.MustParsePrefix("10.244.0.0/16"), Subnet: netip.MustParsePrefix("10.244.7.1/24"), MTU: 1450}); err != nil {
		t.Fatal(err)
	}

	macs := testutil.Sample(10*time.Millisecond, func() []string {
		if got := strings.Fields(ipOut(t, h, "ip", "-br", "link", "show", "flannel.1"))[2]; got != mac {
			return []string{"flannel.1's MAC was " + got}
		}
		return nil
	})
	a, b := c.startTwo()
	macs.Check(t, "while weft took the node over")
	if got := a.Env().Subnet.Masked(); got != subnet {
		t.Errorf("weft took %v, not flanneld's %v", got, subnet)
	}
	resp, err := c.admin.Get(context.Background(), keyOf(subnet))
	if err != nil || len(resp.Kvs) != 1 || !strings.Contains(string(resp.Kvs[0].Value), `"VtepMAC":"`+mac+`"`) {
		t.Fatalf("the lease after the takeover: %v %v", resp, err)
	}
	if fdb := ipOut(t, b.Host, "bridge", "fdb", "show", "dev", "flannel.1"); !strings.Contains(fdb, mac+" dst "+h.Addr.Addr().String()) {
		t.Errorf("the peer's FDB does not send %s to host 1:\n%s", mac, fdb)
	}
	reachPairs(t, [][2]*daemon{{b, a}, {a, b}})
	if !strings.Contains(a.Out.String(), "keeping the VTEP MAC published for this node") {
		t.Errorf("the kept MAC was not logged:\n%s", a.Out)
	}
}

// TestIPv6EtcdMode: dual-stack and IPv6-only networks in etcd mode. Each
// daemon finds its public IPv6 address on the underlay (no flag), leases
// a subnet of each enabled family, writes both into subnet.env, and
// traffic flows over each overlay.
func TestIPv6EtcdMode(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name, config string
		v4           bool
	}{
		{"dual-stack", `{"Network": "10.244.0.0/16", "EnableIPv6": true, "IPv6Network": "fd00:10:244::/56", "Backend": {"Type": "vxlan"}}`, true},
		{"IPv6 only", `{"EnableIPv4": false, "EnableIPv6": true, "IPv6Network": "fd00:10:244::/56", "Backend": {"Type": "vxlan"}}`, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			c := newCluster(t, 2, tc.config)
			a, b := c.start(c.host(1)), c.start(c.host(2))
			for _, d := range []*daemon{a, b} {
				d.WaitReady()
				d.WaitPeersOf("ipv6", 1)
				if tc.v4 {
					d.WaitPeers(1)
				}
			}
			ea, eb := a.Env(), b.Env()
			if !ea.IPv6Subnet.IsValid() || ea.IPv6Subnet.Masked() == eb.IPv6Subnet.Masked() || ea.IPv6Network.String() != "fd00:10:244::/56" || ea.Subnet.IsValid() != tc.v4 {
				t.Fatalf("subnet.env files %+v %+v", ea, eb)
			}
			if !strings.Contains(a.Out.String(), "public_ipv6="+c.host(1).Addr6.Addr().String()) {
				t.Errorf("the IPv6 public address was not found on the underlay:\n%s", a.Out)
			}
			for _, pair := range [][2]*daemon{{a, b}, {b, a}} {
				if err := daemontest.ReachV6(t, pair[0], pair[1]); err != nil {
					t.Errorf("IPv6 overlay %s -> %s: %v", pair[0].Host.Name, pair[1].Host.Name, err)
				}
				if tc.v4 {
					if err := daemontest.Reach(t, pair[0], pair[1]); err != nil {
						t.Errorf("IPv4 overlay %s -> %s: %v", pair[0].Host.Name, pair[1].Host.Name, err)
					}
				}
			}
		})
	}
}

// TestLateIPv6Address: the host's IPv6 address comes up after the daemon
// (SLAAC, say). The daemon waits, saying why, and comes up once the
// address is there, without a restart.
func TestLateIPv6Address(t *testing.T) {
	t.Parallel()
	c := newCluster(t, 1, `{"Network": "10.244.0.0/16", "EnableIPv6": true, "IPv6Network": "fd00:10:244::/56", "Backend": {"Type": "vxlan"}}`)
	h := c.host(1)
	ipOut(t, h, "ip", "-6", "addr", "del", h.Addr6.String(), "dev", netnstest.Underlay)
	d := c.start(h)
	waitFor(t, 15*time.Second, "the daemon to say it lacks an IPv6 address", func() bool {
		code, body := d.Readyz()
		return code == http.StatusServiceUnavailable && strings.Contains(body, "no IPv6 public address")
	})
	ipOut(t, h, "ip", "-6", "addr", "add", h.Addr6.String(), "dev", netnstest.Underlay, "nodad")
	d.WaitReady()
	if got := d.Env().IPv6Subnet; !got.IsValid() {
		t.Errorf("no IPv6 subnet in subnet.env: %+v", d.Env())
	}
}

// TestPublicIPBehindNAT: --public-ip names an address on no interface of
// the host (a 1:1 NAT's, as flannel allows). The lease advertises it; the
// device sends from the interface's own address. The peer, told to send
// to the NAT address, gets there through a DNAT on its own side that
// stands in for the NAT.
func TestPublicIPBehindNAT(t *testing.T) {
	t.Parallel()
	tool := netnstest.RequireIptables(t)
	c := newCluster(t, 2, netConf16)
	const nat = "198.51.100.7"
	a := c.start(c.host(1), "--public-ip", nat)
	b := c.start(c.host(2))
	// On b, what reaches the NAT address goes to host 1.
	b.Host.Iptables(t, tool, "-t", "nat", "-A", "OUTPUT", "-d", nat, "-j", "DNAT", "--to-destination", c.host(1).Addr.Addr().String())
	ipOut(t, b.Host, "ip", "route", "add", nat+"/32", "dev", netnstest.Underlay)
	a.WaitReady()
	b.WaitReady()
	resp, err := c.admin.Get(context.Background(), keyOf(a.Env().Subnet.Masked()))
	if err != nil || len(resp.Kvs) != 1 || !strings.Contains(string(resp.Kvs[0].Value), `"PublicIP":"`+nat+`"`) {
		t.Fatalf("host 1's lease: %v %v", resp, err)
	}
	if link := ipOut(t, a.Host, "ip", "-d", "link", "show", "flannel.1"); !strings.Contains(link, "local "+c.host(1).Addr.Addr().String()) {
		t.Errorf("the device does not send from the interface's address:\n%s", link)
	}
	b.WaitPeers(1)
	reachPairs(t, [][2]*daemon{{b, a}, {a, b}})
}

// TestReleaseLease decommissions a node: after its daemon stopped,
// flanneld --release-lease deletes its key, the other node drops the peer
// at once rather than after the TTL, subnet.env (which named the subnet)
// is gone, and a second run finds nothing to do.
func TestReleaseLease(t *testing.T) {
	c := newCluster(t, 2, `{"Network": "10.244.0.0/16", "Backend": {"Type": "vxlan"}}`)
	a, b := c.startTwo()
	gone := a.Env().Subnet
	if err := a.Stop(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	release := func() string {
		cmd := exec.Command("ip", "netns", "exec", a.Host.Name, c.bin, "--release-lease", "--etcd-endpoints", c.srv.Endpoint(),
			"--node-name", a.Host.Name, "--iface", netnstest.Underlay, "--subnet-file", a.SubnetFile, "--state-dir", daemontest.StateDir(a.SubnetFile))
		out, err := cmd.CombinedOutput()
		if err != nil {
			t.Fatalf("flanneld --release-lease: %v\n%s", err, out)
		}
		return string(out)
	}
	state := filepath.Join(daemontest.StateDir(a.SubnetFile), "etcd__coreos.com_network.state.json")
	if _, err := os.Stat(state); err != nil {
		t.Fatalf("the daemon left no local state: %v", err)
	}
	if out := release(); !strings.Contains(out, "released this node's lease") || !strings.Contains(out, "removed the local state") {
		t.Errorf("release said:\n%s", out)
	}
	if _, err := os.Stat(state); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("the local state holding the released lease is still there: %v", err)
	}
	// subnet.env named the released subnet, which any node may take now.
	if _, err := os.Stat(a.SubnetFile); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("subnet.env naming the released subnet is still there: %v", err)
	}
	r, err := c.admin.Get(context.Background(), keyOf(gone))
	if err != nil || len(r.Kvs) != 0 {
		t.Fatalf("the released key: %v, %v", r.Kvs, err)
	}
	b.WaitPeers(0)
	if out := release(); !strings.Contains(out, "nothing to release") {
		t.Errorf("a second release said:\n%s", out)
	}
	// A lease of another node's is never released by this one's name.
	if r, err := c.admin.Get(context.Background(), keyOf(b.Env().Subnet)); err != nil || len(r.Kvs) != 1 {
		t.Errorf("the other node's key: %v, %v", r, err)
	}
}

// masqRuleCount reads back how many rules the IPv4 masquerade chain of the
// daemon's namespace holds, -1 if it has none.
func masqRuleCount(nsFD int) int {
	c, err := nftables.New(nftables.WithNetNSFd(nsFD))
	if err != nil {
		return -1
	}
	rules, err := c.GetRules(&nftables.Table{Name: hostrules.MasqueradeTable, Family: nftables.TableFamilyIPv4}, &nftables.Chain{Name: "postrouting"})
	if err != nil {
		return -1
	}
	return len(rules)
}
