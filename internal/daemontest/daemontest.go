// Package daemontest runs the example flanneld as a separate process inside
// a simulated host (a network namespace of package netnstest), for
// end-to-end tests in any module of the repository: the binary is built
// once per test process from this source tree.
package daemontest

import (
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"slices"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/weftnet/weft/internal/netnstest"
	"github.com/weftnet/weft/internal/testutil"
	"github.com/weftnet/weft/subnetenv"
)

// HealthPort is the port every daemon's health server listens on, at its
// host's underlay address.
const HealthPort = 8471

var (
	buildMu  sync.Mutex
	builtDir string
	built    = map[string]string{} // package to binary
)

// Flanneld builds examples/flanneld once per test process, with version
// "e2e", and returns the binary's path. Call RemoveBuilt from TestMain.
func Flanneld(t testing.TB) string {
	t.Helper()
	return Build(t, "./examples/flanneld")
}

// Build builds the main package pkg of this source tree (a path relative
// to the repository's root, such as "./examples/embed-kube") once per test
// process, with main.version "e2e" and the image's flags (static,
// stripped), and returns the binary's path. Call
// RemoveBuilt from TestMain.
func Build(t testing.TB, pkg string) string {
	t.Helper()
	buildMu.Lock()
	defer buildMu.Unlock()
	if bin, ok := built[pkg]; ok {
		return bin
	}
	_, self, _, _ := runtime.Caller(0)
	root := filepath.Join(filepath.Dir(self), "..", "..")
	if builtDir == "" {
		dir, err := os.MkdirTemp("", "weft-e2e-bin-")
		if err != nil {
			t.Fatal(err)
		}
		builtDir = dir
	}
	bin := filepath.Join(builtDir, filepath.Base(pkg))
	// Built as the image ships it (build/image): static, without the
	// symbol table and DWARF, so that what a test or benchmark measures
	// (the resident set's binary pages, say) is what a node runs.
	cmd := exec.Command("go", "build", "-trimpath", "-ldflags", "-s -w -X main.version=e2e", "-o", bin, pkg)
	cmd.Env = append(os.Environ(), "CGO_ENABLED=0")
	cmd.Dir = root
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("go build %s: %v\n%s", pkg, err, out)
	}
	built[pkg] = bin
	return bin
}

// RemoveBuilt removes the binaries Build built, if any.
func RemoveBuilt() {
	buildMu.Lock()
	defer buildMu.Unlock()
	if builtDir != "" {
		os.RemoveAll(builtDir)
	}
}

// A Daemon is a flanneld process inside a simulated host.
type Daemon struct {
	T          testing.TB
	Host       *netnstest.Host
	Cmd        *exec.Cmd
	Out        *testutil.SyncBuffer // its stdout and stderr
	SubnetFile string
	exited     chan struct{} // closed when the process has exited, with exitErr set
	exitErr    error
}

// Start runs bin in h with args after the common ones (--iface, the health
// server at h's address, --node-name h.Name, --subnet-file subnetFile). The
// daemon is stopped with SIGTERM at the end of the test, and its output
// logged if the test failed.
func Start(t testing.TB, h *netnstest.Host, bin, subnetFile string, args ...string) *Daemon {
	t.Helper()
	return StartEnv(t, h, bin, subnetFile, nil, append([]string{"--node-name", h.Name}, args...)...)
}

// StartEnv is Start without --node-name, and with env added to the
// daemon's environment: for tests of how the daemon finds its name.
func StartEnv(t testing.TB, h *netnstest.Host, bin, subnetFile string, env []string, args ...string) *Daemon {
	t.Helper()
	all := []string{"netns", "exec", h.Name, bin,
		"--iface", netnstest.Underlay, "--subnet-file", subnetFile,
		"--healthz-ip", h.Addr.Addr().String(), "--healthz-port", fmt.Sprint(HealthPort)}
	if !slices.ContainsFunc(args, func(a string) bool { return strings.HasPrefix(a, "--state-dir") }) {
		// Each simulated host keeps its own, beside its subnet.env,
		// never the machine's /var/lib/weft.
		all = append(all, "--state-dir", StateDir(subnetFile))
	}
	if !slices.ContainsFunc(args, func(a string) bool { return strings.HasPrefix(a, "--status-socket") }) {
		// Nor the machine's /run/weft socket, which the hosts share.
		all = append(all, "--status-socket", StatusSocket(subnetFile))
	}
	all = append(all, args...)
	return StartCommand(t, h, subnetFile, env, all[3:]...)
}

// StartCommand runs argv in h as a Daemon, with env added to its
// environment, and nothing else added: for daemons other than weft's,
// such as flannel's own flanneld (package flanneldtest). The daemon is
// stopped with SIGTERM at the end of the test, and its output logged if
// the test failed.
func StartCommand(t testing.TB, h *netnstest.Host, subnetFile string, env []string, argv ...string) *Daemon {
	t.Helper()
	d := &Daemon{T: t, Host: h, Out: &testutil.SyncBuffer{}, SubnetFile: subnetFile, exited: make(chan struct{})}
	d.Cmd = exec.Command("ip", append([]string{"netns", "exec", h.Name}, argv...)...)
	if env != nil {
		d.Cmd.Env = append(os.Environ(), env...)
	}
	d.Cmd.Stdout, d.Cmd.Stderr = d.Out, d.Out
	if err := d.Cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go func() {
		d.exitErr = d.Cmd.Wait()
		close(d.exited)
	}()
	t.Cleanup(func() {
		d.Stop(syscall.SIGTERM)
		if t.Failed() {
			t.Logf("%s on %s:\n%s", filepath.Base(argv[0]), h.Name, d.Out)
		}
	})
	return d
}

// StateDir is the local state directory Start gives a daemon whose
// subnet.env is subnetFile.
func StateDir(subnetFile string) string { return filepath.Join(filepath.Dir(subnetFile), "state") }

// StatusSocket is the status socket Start gives a daemon whose
// subnet.env is subnetFile.
func StatusSocket(subnetFile string) string {
	return filepath.Join(filepath.Dir(subnetFile), "status.sock")
}

// Stop signals the daemon and waits for it to exit, killing it after 10s.
// It returns the exit error; stopping a stopped daemon returns nil.
func (d *Daemon) Stop(sig syscall.Signal) error {
	if exited, _ := d.Exited(); exited {
		return nil
	}
	d.Cmd.Process.Signal(sig)
	select {
	case <-d.exited:
	case <-time.After(10 * time.Second):
		d.Cmd.Process.Kill()
		<-d.exited
	}
	return d.exitErr
}

// Exited reports, without waiting, whether the daemon has exited, and if
// so how.
func (d *Daemon) Exited() (bool, error) {
	select {
	case <-d.exited:
		return true, d.exitErr
	default:
		return false, nil
	}
}

// Get fetches a path from the daemon's health server, from inside its
// namespace, and returns the status (0 if the request failed) and body.
func (d *Daemon) Get(path string) (int, string) {
	client := &http.Client{Timeout: 2 * time.Second, Transport: &http.Transport{
		DialContext: func(ctx context.Context, network, addr string) (net.Conn, error) {
			var c net.Conn
			err := d.Host.Do(func() error {
				var err error
				c, err = (&net.Dialer{}).DialContext(ctx, network, addr)
				return err
			})
			return c, err
		},
	}}
	resp, err := client.Get(fmt.Sprintf("http://%s:%d%s", d.Host.Addr.Addr(), HealthPort, path))
	if err != nil {
		return 0, err.Error()
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, strings.TrimSpace(string(body))
}

// Readyz fetches /readyz.
func (d *Daemon) Readyz() (int, string) { return d.Get("/readyz") }

// WaitReady waits up to 30s for /readyz to answer 200.
func (d *Daemon) WaitReady() {
	d.T.Helper()
	testutil.WaitFor(d.T, 30*time.Second, d.Host.Name+" ready", func() bool { code, _ := d.Readyz(); return code == http.StatusOK })
}

// WaitPeers waits until the daemon has programmed n IPv4 peers. Ready
// means converged on the peers known then; another node's lease may arrive
// a moment later.
func (d *Daemon) WaitPeers(n int) {
	d.T.Helper()
	d.WaitPeersOf("ipv4", n)
}

// Env reads the daemon's subnet.env.
func (d *Daemon) Env() subnetenv.File {
	d.T.Helper()
	f, err := subnetenv.Read(d.SubnetFile)
	if err != nil {
		d.T.Fatal(err)
	}
	return f
}

// Reach sends UDP from one daemon's overlay address to an echo on
// another's, which only the VXLAN path can carry.
func Reach(t testing.TB, from, to *Daemon) error {
	t.Helper()
	echo := to.Host.ListenEcho(t, to.Env().Subnet.Addr())
	return from.Host.WaitExchange(from.Env().Subnet.Addr(), echo.Addr, 10*time.Second)
}

// WatchReady samples the daemons' /readyz every 20 ms until the
// Sampler's Check, for tests in which they must stay ready throughout.
func WatchReady(daemons ...*Daemon) *testutil.Sampler {
	return testutil.Sample(20*time.Millisecond, func() (lapses []string) {
		for _, d := range daemons {
			if code, body := d.Readyz(); code != http.StatusOK {
				lapses = append(lapses, fmt.Sprintf("%s: %d %s", d.Host.Name, code, body))
			}
		}
		return lapses
	})
}

// ReachV6 is Reach over the IPv6 overlay.
func ReachV6(t testing.TB, from, to *Daemon) error {
	t.Helper()
	echo := to.Host.ListenEcho(t, to.Env().IPv6Subnet.Addr())
	return from.Host.WaitExchange(from.Env().IPv6Subnet.Addr(), echo.Addr, 10*time.Second)
}

// WaitPeersOf waits until the daemon has programmed n peers of family
// ("ipv4" or "ipv6").
func (d *Daemon) WaitPeersOf(family string, n int) {
	d.T.Helper()
	want := fmt.Sprintf(`weft_peers_programmed{family=%q} %d`, family, n)
	testutil.WaitFor(d.T, 10*time.Second, d.Host.Name+" to program its "+family+" peers", func() bool {
		_, body := d.Get("/metrics")
		return strings.Contains(body, want)
	})
}
