package main

import (
	"bytes"
	"context"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/weftnet/weft/internal/etcdtest"
	"github.com/weftnet/weft/internal/netnstest"
	"github.com/weftnet/weft/subnetenv"
)

// syncBuffer collects a process's output.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}
func (s *syncBuffer) String() string { s.mu.Lock(); defer s.mu.Unlock(); return s.b.String() }

// daemon is a flanneld process inside a simulated host.
type daemon struct {
	host       *netnstest.Host
	cmd        *exec.Cmd
	out        *syncBuffer
	subnetFile string
	done       chan error
}

func buildFlanneld(t *testing.T) string {
	bin := filepath.Join(t.TempDir(), "flanneld")
	out, err := exec.Command("go", "build", "-ldflags", "-X main.version=e2e", "-o", bin, ".").CombinedOutput()
	if err != nil {
		t.Fatalf("go build: %v\n%s", err, out)
	}
	return bin
}

func startDaemon(t *testing.T, bin string, h *netnstest.Host, etcdURL, subnetFile string) *daemon {
	d := &daemon{host: h, out: &syncBuffer{}, subnetFile: subnetFile, done: make(chan error, 1)}
	d.cmd = exec.Command("ip", "netns", "exec", h.Name, bin,
		"--etcd-endpoints", etcdURL, "--iface", netnstest.Underlay, "--subnet-file", subnetFile,
		"--healthz-ip", h.Addr.Addr().String(), "--healthz-port", "8471", "--node-name", h.Name, "--ip-masq")
	d.cmd.Stdout, d.cmd.Stderr = d.out, d.out
	if err := d.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go func() { d.done <- d.cmd.Wait() }()
	t.Cleanup(func() {
		if d.cmd.ProcessState == nil {
			d.cmd.Process.Signal(syscall.SIGTERM)
			select {
			case <-d.done:
			case <-time.After(10 * time.Second):
				d.cmd.Process.Kill()
				<-d.done
			}
		}
		if t.Failed() {
			t.Logf("flanneld on %s:\n%s", h.Name, d.out)
		}
	})
	return d
}

// readyz asks a daemon's /readyz from inside its namespace.
func (d *daemon) readyz() (int, string) { return d.get("/readyz") }

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

func waitFor(t *testing.T, d time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(d)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %v waiting for %s", d, what)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// TestFlanneldEndToEnd builds flanneld and runs it as separate processes
// in two simulated hosts, with etcd in a third: readiness waits for the
// network config, subnet.env appears with distinct subnets, overlay traffic
// flows, SIGTERM leaves the datapath in place, and a restart keeps the
// subnet.
func TestFlanneldEndToEnd(t *testing.T) {
	netnstest.RequirePrivileged(t)
	bin := buildFlanneld(t)
	seg := netnstest.NewSegment(t, 3)
	ctl := seg.Hosts[0]
	srv := etcdtest.StartIn(t, ctl.Do, ctl.Addr.Addr())
	admin := etcdtest.NewClientIn(t, ctl.Do, srv.Endpoint())

	dir := t.TempDir()
	var ds []*daemon
	for _, h := range seg.Hosts[1:] {
		ds = append(ds, startDaemon(t, bin, h, srv.Endpoint(), filepath.Join(dir, h.Name, "subnet.env")))
	}
	waitFor(t, 10*time.Second, "readyz to answer", func() bool { code, _ := ds[0].readyz(); return code != 0 })
	if code, body := ds[0].readyz(); code != http.StatusServiceUnavailable || !strings.Contains(body, "waiting for the network config") {
		t.Errorf("readyz without a config: %d %q", code, body)
	}
	if _, err := os.Stat(ds[0].subnetFile); !os.IsNotExist(err) {
		t.Errorf("subnet.env written before the datapath converged: %v", err)
	}
	if _, err := admin.Put(context.Background(), "/coreos.com/network/config", `{"Network": "10.244.0.0/16", "Backend": {"Type": "vxlan"}}`); err != nil {
		t.Fatal(err)
	}
	envs := make([]subnetenv.File, len(ds))
	for i, d := range ds {
		waitFor(t, 20*time.Second, d.host.Name+" ready", func() bool { code, _ := d.readyz(); return code == http.StatusOK })
		f, err := subnetenv.Read(d.subnetFile)
		if err != nil {
			t.Fatal(err)
		}
		envs[i] = f
	}
	if envs[0].Subnet == envs[1].Subnet || envs[0].MTU != 1450 || envs[0].Network.String() != "10.244.0.0/16" || !envs[0].IPMasq {
		t.Fatalf("subnet.env files %+v", envs)
	}
	for _, d := range ds {
		if n := masqRuleCount(int(d.host.Handle), false); n != 4 {
			t.Errorf("%s: %d masquerade rules, want 4", d.host.Name, n)
		}
		code, body := d.get("/metrics")
		for _, want := range []string{"weft_ready 1", `weft_peers{family="ipv4"} 1`, "weft_lease_losses_total 0", "weft_etcd_errors_total", "weft_reconcile_duration_seconds", "weft_datapath_repairs_total"} {
			if code != http.StatusOK || !strings.Contains(body, want) {
				t.Errorf("%s /metrics lacks %q (status %d)", d.host.Name, want, code)
			}
		}
	}
	reach := func() error {
		echo := ds[1].host.ListenEcho(t, envs[1].Subnet.Addr())
		return ds[0].host.WaitExchange(envs[0].Subnet.Addr(), echo.Addr, 10*time.Second)
	}
	if err := reach(); err != nil {
		t.Fatalf("overlay traffic between the daemons: %v", err)
	}

	// SIGTERM: a clean exit that leaves the datapath and lease in place.
	d := ds[0]
	d.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case err := <-d.done:
		if err != nil {
			t.Fatalf("exit after SIGTERM: %v\n%s", err, d.out)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("no exit within 10s of SIGTERM")
	}
	routes, err := exec.Command("ip", "-n", d.host.Name, "route", "show", "proto", "157").CombinedOutput()
	if err != nil || !strings.Contains(string(routes), envs[1].Subnet.String()) {
		t.Fatalf("routes after SIGTERM: %s %v", routes, err)
	}
	if err := reach(); err != nil {
		t.Fatalf("traffic with the daemon stopped: %v", err)
	}

	// A restart reads its subnet back and keeps it.
	again := startDaemon(t, bin, d.host, srv.Endpoint(), d.subnetFile)
	waitFor(t, 20*time.Second, "the restarted daemon ready", func() bool { code, _ := again.readyz(); return code == http.StatusOK })
	if f, err := subnetenv.Read(d.subnetFile); err != nil || f.Subnet != envs[0].Subnet {
		t.Fatalf("after a restart: %+v %v, want subnet %v", f, err, envs[0].Subnet)
	}
	if err := reach(); err != nil {
		t.Fatalf("traffic after the restart: %v", err)
	}

	// Another node takes the subnet (as after a partition longer than the
	// TTL): the daemon moves to a new subnet and rewrites subnet.env.
	intruder := `{"PublicIP":"172.30.0.99","PublicIPv6":null,"BackendType":"vxlan","BackendData":{"VNI":1,"VtepMAC":"0e:00:00:00:00:99"},"WeftOwner":"intruder"}`
	key := "/coreos.com/network/subnets/" + strings.Replace(envs[0].Subnet.String(), "/", "-", 1)
	if _, err := admin.Put(context.Background(), key, intruder); err != nil {
		t.Fatal(err)
	}
	waitFor(t, 20*time.Second, "subnet.env to move to a new subnet", func() bool {
		f, err := subnetenv.Read(d.subnetFile)
		return err == nil && f.Subnet != envs[0].Subnet
	})
	waitFor(t, 20*time.Second, "ready on the new subnet", func() bool { code, _ := again.readyz(); return code == http.StatusOK })
	moved, _ := subnetenv.Read(d.subnetFile)
	echo := d.host.ListenEcho(t, moved.Subnet.Addr())
	if err := ds[1].host.WaitExchange(envs[1].Subnet.Addr(), echo.Addr, 10*time.Second); err != nil {
		t.Fatalf("traffic to the new subnet %v: %v", moved.Subnet, err)
	}
	if _, body := again.get("/metrics"); !strings.Contains(body, "weft_lease_losses_total 1") {
		t.Errorf("the loss is not counted:\n%s", body)
	}
}
