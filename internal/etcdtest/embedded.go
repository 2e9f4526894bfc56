package etcdtest

import (
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"sync"
)

var (
	embeddedOnce sync.Once
	embeddedPath string
	embeddedErr  error
)

// EmbeddedBinary builds etcd-embedded (this module's etcd server as a
// process of its own) once per test process, in a temporary directory of
// its own, and returns its path. Call RemoveEmbeddedBinary from TestMain.
func EmbeddedBinary(t T) string {
	t.Helper()
	embeddedOnce.Do(func() {
		dir, err := os.MkdirTemp("", "weft-etcd-embedded-")
		if err != nil {
			embeddedErr = err
			return
		}
		_, here, _, _ := runtime.Caller(0)
		out := filepath.Join(dir, "etcd-embedded")
		cmd := exec.Command("go", "build", "-o", out, "./etcd-embedded")
		cmd.Dir = filepath.Dir(here)
		if b, err := cmd.CombinedOutput(); err != nil {
			os.RemoveAll(dir)
			embeddedErr = &buildError{err, string(b)}
			return
		}
		embeddedPath = out
	})
	if embeddedErr != nil {
		t.Fatalf("etcdtest: build etcd-embedded: %v", embeddedErr)
	}
	return embeddedPath
}

// RemoveEmbeddedBinary removes what EmbeddedBinary built; call it from
// TestMain after the tests.
func RemoveEmbeddedBinary() {
	if embeddedPath != "" {
		os.RemoveAll(filepath.Dir(embeddedPath))
	}
}

type buildError struct {
	err    error
	output string
}

func (e *buildError) Error() string { return e.err.Error() + "\n" + e.output }
