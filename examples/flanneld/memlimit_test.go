package main

import (
	"fmt"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/weftnet/weft/internal/daemontest"
	"github.com/weftnet/weft/internal/testutil"
)

// TestCgroupMemoryLimit: the tightest limit of the process's cgroup and
// its ancestors, under v2 and v1, a container's path that is not under
// its mount, and "max" or v1's near-2^63 as no limit.
func TestCgroupMemoryLimit(t *testing.T) {
	for _, tc := range []struct {
		name  string
		files map[string]string
		want  int64
		file  string
	}{
		{"none", map[string]string{"proc/self/cgroup": "0::/a/b\n"}, 0, ""},
		{"v2 unlimited", map[string]string{"proc/self/cgroup": "0::/a\n", "sys/fs/cgroup/a/memory.max": "max\n"}, 0, ""},
		{"v2 parent tighter", map[string]string{"proc/self/cgroup": "0::/a/b\n",
			"sys/fs/cgroup/a/memory.max": "67108864\n", "sys/fs/cgroup/a/b/memory.max": "134217728\n"}, 64 << 20, "sys/fs/cgroup/a/memory.max"},
		{"v2 container root", map[string]string{"proc/self/cgroup": "0::/kubepods/pod1/c1\n",
			"sys/fs/cgroup/memory.max": "52428800\n"}, 50 << 20, "sys/fs/cgroup/memory.max"},
		{"v1 unlimited", map[string]string{"proc/self/cgroup": "4:memory:/x\n",
			"sys/fs/cgroup/memory/x/memory.limit_in_bytes": "9223372036854771712\n"}, 0, ""},
		{"v1 limited, among controllers", map[string]string{"proc/self/cgroup": "9:name=systemd:/\n4:cpu,memory:/x/y\n0::/\n",
			"sys/fs/cgroup/memory/memory.limit_in_bytes":     "9223372036854771712\n",
			"sys/fs/cgroup/memory/x/y/memory.limit_in_bytes": "104857600\n"}, 100 << 20, "sys/fs/cgroup/memory/x/y/memory.limit_in_bytes"},
		{"garbage", map[string]string{"proc/self/cgroup": "0::/a\n", "sys/fs/cgroup/a/memory.max": "lots\n"}, 0, ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			root := t.TempDir()
			for name, content := range tc.files {
				p := filepath.Join(root, name)
				if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
					t.Fatal(err)
				}
				if err := os.WriteFile(p, []byte(content), 0o644); err != nil {
					t.Fatal(err)
				}
			}
			got, file, ok := cgroupMemoryLimit(root)
			if got != tc.want || ok != (tc.want > 0) || (ok && file != filepath.Join(root, tc.file)) {
				t.Errorf("cgroupMemoryLimit = %d, %q, %v; want %d from %s", got, file, ok, tc.want, tc.file)
			}
		})
	}
}

// TestDaemonTakesCgroupMemoryLimit: flanneld started in a real memory
// cgroup (v1 here, as this machine mounts it) with a 96 MiB limit, and no
// GOMEMLIMIT, tells its runtime 90% of it, and says so.
func TestDaemonTakesCgroupMemoryLimit(t *testing.T) {
	parent := "/sys/fs/cgroup/memory"
	if data, err := os.ReadFile("/proc/self/cgroup"); err == nil && strings.Contains(string(data), "\n0::/") && !strings.Contains(string(data), ":memory:") {
		parent = "/sys/fs/cgroup"
	}
	dir := filepath.Join(parent, fmt.Sprintf("weft-memlimit-%08x", rand.Uint32()))
	if err := os.Mkdir(dir, 0o755); err != nil {
		t.Skipf("cannot make a memory cgroup: %v", err)
	}
	defer os.Remove(dir)
	limitFile := "memory.limit_in_bytes"
	if parent == "/sys/fs/cgroup" {
		limitFile = "memory.max"
	}
	if err := os.WriteFile(filepath.Join(dir, limitFile), []byte("100663296"), 0o644); err != nil {
		t.Fatal(err)
	}
	bin := daemontest.Flanneld(t)
	tmp := t.TempDir()
	var out testutil.SyncBuffer
	cmd := exec.Command("sh", "-c", `echo $$ > "$0/cgroup.procs" && exec "$@"`, dir, bin,
		"--etcd-endpoints", "http://127.0.0.1:1", "--node-name", "memlimit", "--subnet-file", filepath.Join(tmp, "subnet.env"),
		"--state-dir", filepath.Join(tmp, "state"), "--status-socket", filepath.Join(tmp, "status.sock"), "--healthz-port", "0")
	cmd.Env = append(os.Environ(), "GOMEMLIMIT=")
	cmd.Stdout, cmd.Stderr = &out, &out
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	defer func() {
		cmd.Process.Kill()
		cmd.Wait()
	}()
	limit := int64(100663296)
	want := fmt.Sprintf("limit_bytes=%d container_limit_bytes=%d", int64(float64(limit)*memLimitShare), limit)
	testutil.WaitFor(t, 30*time.Second, "the daemon to log its memory limit", func() bool { return strings.Contains(out.String(), want) })
}
