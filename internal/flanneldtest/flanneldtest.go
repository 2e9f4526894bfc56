// Package flanneldtest builds flannel's own flanneld from its module
// through the Go module proxy, and runs it inside a simulated host
// (package netnstest) beside weft's, so that weft's compatibility is
// tested against the real thing and not only against golden formats.
//
// Building: flanneld's main package imports every backend, among them
// tencentvpc, whose SDK module the proxy refuses to serve. Build copies
// the module's source (go mod download, then a copy out of the read-only
// module cache into a cache directory) and deletes that one blank import
// from main.go, then builds the copy as the main module with -mod=mod:
// the tencentvpc package is then never loaded, so its module is never
// fetched. The udp backend needs cgo, so the build uses it (gcc is in
// .ci/run's packages). The binary is kept in the user cache directory
// per version, so one run builds it once and later runs reuse it.
//
// A build that fails skips the test, unless WEFT_REQUIRE_FLANNELD is set
// (as .ci/run sets it); then the test fails.
//
// Ownership: Build's results are shared by every test of a process under
// a mutex; each daemon Start runs belongs to its test, which stops it
// with SIGTERM on every path (package daemontest's Cleanup) and logs its
// output if the test failed.
package flanneldtest

import (
	"bytes"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/weftnet/weft/internal/daemontest"
	"github.com/weftnet/weft/internal/netnstest"
	"github.com/weftnet/weft/internal/testutil"
	"github.com/weftnet/weft/subnetenv"
)

// Module and Version name the flanneld that tests run beside weft's: the
// release issue 30's figures are compared with. The proxy serves it,
// though its @v/list does not name it.
const (
	Module  = "github.com/flannel-io/flannel"
	Version = "v0.28.9"
)

// RequireEnv turns a flanneld that cannot be built into a failure.
const RequireEnv = "WEFT_REQUIRE_FLANNELD"

// refused is the blank import Build deletes from main.go.
const refused = `_ "github.com/flannel-io/flannel/pkg/backend/tencentvpc"`

var (
	buildMu  sync.Mutex
	built    string
	buildErr error
)

// Build returns the path of flanneld Version, building it on the first
// call of the process unless a earlier run left it in the cache; it ends
// t (a skip, or a failure under WEFT_REQUIRE_FLANNELD) if it cannot.
func Build(t testing.TB) string {
	t.Helper()
	buildMu.Lock()
	defer buildMu.Unlock()
	if built == "" && buildErr == nil {
		built, buildErr = build()
	}
	if buildErr != nil {
		if os.Getenv(RequireEnv) != "" {
			t.Fatalf("%v (%s is set)", buildErr, RequireEnv)
		}
		t.Skip(buildErr)
	}
	return built
}

func build() (string, error) {
	cache, err := os.UserCacheDir()
	if err != nil {
		return "", fmt.Errorf("building flanneld: %w", err)
	}
	dir := filepath.Join(cache, "weft-flanneldtest", Version)
	bin := filepath.Join(dir, "flanneld")
	if _, err := os.Stat(bin); err == nil {
		return bin, nil
	}
	download := exec.Command("go", "mod", "download", "-json", Module+"@"+Version)
	download.Env = append(os.Environ(), "GOFLAGS=")
	out, err := download.Output()
	if err != nil {
		return "", fmt.Errorf("downloading %s@%s: %w\n%s", Module, Version, err, out)
	}
	var mod struct{ Dir, Error string }
	if err := json.Unmarshal(out, &mod); err != nil || mod.Dir == "" {
		return "", fmt.Errorf("downloading %s@%s: %v %s", Module, Version, err, mod.Error)
	}
	if err := os.RemoveAll(dir); err != nil {
		return "", err
	}
	src := filepath.Join(dir, "src")
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return "", err
	}
	// cp keeps the tree as the module zip has it; -r without -p leaves
	// the copy writable, unlike the module cache.
	if out, err := exec.Command("cp", "-r", mod.Dir, src).CombinedOutput(); err != nil {
		return "", fmt.Errorf("copying flanneld's source: %w\n%s", err, out)
	}
	if err := exec.Command("chmod", "-R", "u+w", src).Run(); err != nil {
		return "", fmt.Errorf("copying flanneld's source: %w", err)
	}
	mainGo := filepath.Join(src, "main.go")
	text, err := os.ReadFile(mainGo)
	if err != nil {
		return "", err
	}
	if bytes.Count(text, []byte(refused)) != 1 {
		return "", fmt.Errorf("flanneld %s: main.go does not import %s exactly once; update flanneldtest", Version, refused)
	}
	if err := os.WriteFile(mainGo, bytes.Replace(text, []byte(refused), nil, 1), 0o644); err != nil {
		return "", err
	}
	tmp := bin + ".tmp"
	cmd := exec.Command("go", "build", "-trimpath", "-o", tmp, ".")
	cmd.Dir = src
	cmd.Env = append(os.Environ(), "GOFLAGS=-mod=mod", "CGO_ENABLED=1", "GOWORK=off")
	if out, err := cmd.CombinedOutput(); err != nil {
		return "", fmt.Errorf("building flanneld %s: %w\n%s", Version, err, out)
	}
	if err := os.Rename(tmp, bin); err != nil {
		return "", err
	}
	os.RemoveAll(src)
	return bin, nil
}

// Start runs flanneld bin on h in etcd mode against endpoint, with the
// flags a DaemonSet gives it (--iface, --etcd-prefix, --subnet-file,
// --ip-masq off) and extra after them. It is stopped with SIGTERM at the
// end of the test; its log (klog, on stderr) is in the Daemon's Out.
func Start(t testing.TB, h *netnstest.Host, bin, subnetFile, endpoint string, extra ...string) *daemontest.Daemon {
	t.Helper()
	if err := os.MkdirAll(filepath.Dir(subnetFile), 0o755); err != nil {
		t.Fatal(err)
	}
	argv := append([]string{bin,
		"--iface", netnstest.Underlay,
		"--etcd-endpoints", endpoint,
		"--etcd-prefix", "/coreos.com/network",
		"--subnet-file", subnetFile,
		"--public-ip", h.Addr.Addr().String(),
	}, extra...)
	return daemontest.StartCommand(t, h, subnetFile, nil, argv...)
}

// WaitReady waits until d has written its subnet.env and programmed a
// route for each of the subnets want (other nodes' leases), the closest
// flanneld comes to weft's /readyz.
func WaitReady(t testing.TB, d *daemontest.Daemon, want ...subnetenv.File) {
	t.Helper()
	testutil.WaitFor(t, 60*time.Second, "flanneld on "+d.Host.Name+" to write subnet.env and program its peers", func() bool {
		if exited, err := d.Exited(); exited {
			t.Fatalf("flanneld on %s exited: %v\n%s", d.Host.Name, err, d.Out)
		}
		if _, err := subnetenv.Read(d.SubnetFile); err != nil {
			return false
		}
		out, _ := exec.Command("ip", "-n", d.Host.Name, "route", "show", "dev", "flannel.1").CombinedOutput()
		for _, w := range want {
			if !strings.Contains(string(out), w.Subnet.String()) {
				return false
			}
		}
		return true
	})
}
