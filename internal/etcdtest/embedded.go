package etcdtest

import (
	"os/exec"
	"path/filepath"
	"runtime"
)

// EmbeddedBinary builds etcd-embedded (this module's etcd server as a
// process of its own) into the test's temporary directory, which the test
// removes, and returns its path. The build cache makes every build after
// the first a link.
func EmbeddedBinary(t T) string {
	t.Helper()
	_, here, _, _ := runtime.Caller(0)
	out := filepath.Join(t.TempDir(), "etcd-embedded")
	cmd := exec.Command("go", "build", "-o", out, "./etcd-embedded")
	cmd.Dir = filepath.Dir(here)
	if b, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("etcdtest: build etcd-embedded: %v\n%s", err, b)
	}
	return out
}
