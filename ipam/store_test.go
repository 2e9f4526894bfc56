package ipam

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// A batch's sync makes its files and directories durable, reports the
// first failure by name, and closes its files whatever it returns.
func TestSyncBatch(t *testing.T) {
	dir := t.TempDir()
	before := openFiles(t)
	var b syncBatch
	for _, name := range []string{"a", "b"} {
		f, err := createWith(filepath.Join(dir, name), []byte(name))
		if err != nil {
			t.Fatal(err)
		}
		b.addFile(f)
	}
	b.addDir(dir)
	b.addDir(dir) // once is enough
	if len(b.dirs) != 1 {
		t.Errorf("dirs %v", b.dirs)
	}
	if err := b.sync(); err != nil {
		t.Fatal(err)
	}
	if after := openFiles(t); after != before {
		t.Errorf("%d files left open by a sync", after-before)
	}

	f, err := createWith(filepath.Join(dir, "c"), []byte("c"))
	if err != nil {
		t.Fatal(err)
	}
	b.addFile(f)
	b.addDir(filepath.Join(dir, "gone"))
	if err := b.sync(); err == nil || !strings.Contains(err.Error(), "gone") {
		t.Errorf("sync of a missing directory: %v, want an error naming it", err)
	}
	if after := openFiles(t); after != before {
		t.Errorf("%d files left open by a failed sync", after-before)
	}
	if _, err := createWith(filepath.Join(dir, "c"), nil); !os.IsExist(err) {
		t.Errorf("createWith over an existing file: %v, want it to exist", err)
	}
}

// openFiles counts this process's open file descriptors.
func openFiles(t *testing.T) int {
	t.Helper()
	entries, err := os.ReadDir("/proc/self/fd")
	if err != nil {
		t.Fatal(err)
	}
	return len(entries)
}
