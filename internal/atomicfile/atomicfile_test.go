package atomicfile

import (
	"bytes"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

func TestWriteCreatesAndReplaces(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "f")
	old := syscall.Umask(0o077)
	defer syscall.Umask(old)

	for _, content := range []string{"first\n", "second, longer\n", ""} {
		if err := Write(path, []byte(content), 0o644); err != nil {
			t.Fatal(err)
		}
		got, err := os.ReadFile(path)
		if err != nil {
			t.Fatal(err)
		}
		if string(got) != content {
			t.Errorf("content = %q, want %q", got, content)
		}
		st, err := os.Stat(path)
		if err != nil {
			t.Fatal(err)
		}
		if st.Mode().Perm() != 0o644 {
			t.Errorf("mode = %v despite umask, want 0644", st.Mode().Perm())
		}
	}
	assertOnlyFiles(t, dir, "f")
}

func TestWriteMissingDirectory(t *testing.T) {
	path := filepath.Join(t.TempDir(), "missing", "f")
	err := Write(path, []byte("x"), 0o644)
	if !errors.Is(err, fs.ErrNotExist) {
		t.Fatalf("err = %v, want fs.ErrNotExist", err)
	}
}

func TestWriteFailureLeavesOldFileAndNoTemp(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "f")
	if err := Write(path, []byte("old"), 0o644); err != nil {
		t.Fatal(err)
	}
	// Renaming a file over a non-empty directory fails after the temporary
	// file is written, exercising the cleanup path.
	target := filepath.Join(dir, "d")
	if err := os.MkdirAll(filepath.Join(target, "child"), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := Write(target, []byte("new"), 0o644); err == nil {
		t.Fatal("Write over a non-empty directory succeeded")
	}
	assertOnlyFiles(t, dir, "d", "f")
	if got, _ := os.ReadFile(path); string(got) != "old" {
		t.Errorf("unrelated file changed: %q", got)
	}
}

// TestConcurrentReaders rewrites a file 1,000 times while readers read it in
// a loop; no reader may ever see a missing, empty or torn file.
func TestConcurrentReaders(t *testing.T) {
	path := filepath.Join(t.TempDir(), "f")
	a := bytes.Repeat([]byte("a"), 64<<10)
	b := bytes.Repeat([]byte("b"), 32<<10)
	if err := Write(path, a, 0o644); err != nil {
		t.Fatal(err)
	}
	done := make(chan struct{})
	var wg sync.WaitGroup
	var bad sync.Map
	for range 2 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				select {
				case <-done:
					return
				default:
				}
				got, err := os.ReadFile(path)
				if err != nil || !(bytes.Equal(got, a) || bytes.Equal(got, b)) {
					bad.Store(len(got), err)
				}
			}
		}()
	}
	for i := range 1000 {
		content := a
		if i%2 == 0 {
			content = b
		}
		if err := Write(path, content, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	close(done)
	wg.Wait()
	bad.Range(func(k, v any) bool {
		t.Errorf("reader saw a file of %v bytes (err %v)", k, v)
		return true
	})
}

func assertOnlyFiles(t *testing.T, dir string, want ...string) {
	t.Helper()
	entries, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, e := range entries {
		got = append(got, e.Name())
	}
	if len(got) != len(want) {
		t.Fatalf("directory holds %q, want %q", got, want)
	}
	for i := range got {
		if got[i] != want[i] {
			t.Fatalf("directory holds %q, want %q", got, want)
		}
	}
}

// TestWriteOrder checks the sequence that makes Write durable: the data is
// complete and synced before the rename, and the directory is synced after
// it. The kill -9 tests cannot see a missing fsync, because the page cache
// survives a process crash; only a power loss would show it.
func TestWriteOrder(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "f")
	data := []byte("complete content\n")
	var log []string
	ops := osOps()
	sync, rename, syncDir := ops.syncFile, ops.rename, ops.syncDir
	ops.syncFile = func(f *os.File) error {
		got, err := os.ReadFile(f.Name())
		if err != nil || !bytes.Equal(got, data) {
			t.Errorf("at fsync the temp file holds %q, %v", got, err)
		}
		if filepath.Dir(f.Name()) != filepath.Clean(dir) {
			t.Errorf("temp file %s is not in the target's directory", f.Name())
		}
		log = append(log, "fsync file")
		return sync(f)
	}
	ops.rename = func(o, n string) error {
		log = append(log, "rename")
		return rename(o, n)
	}
	ops.syncDir = func(d string) error {
		if _, err := os.Stat(path); err != nil {
			t.Errorf("directory synced before the rename: %v", err)
		}
		log = append(log, "fsync dir")
		return syncDir(d)
	}
	if err := write(path, writeBytes(data), 0o644, ops); err != nil {
		t.Fatal(err)
	}
	if got := fmt.Sprint(log); got != "[fsync file rename fsync dir]" {
		t.Errorf("calls = %s", got)
	}
}

// TestWriteSyncFailure injects an fsync error: the target must keep its old
// content and the temporary file must be gone.
func TestWriteSyncFailure(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "f")
	if err := Write(path, []byte("old"), 0o644); err != nil {
		t.Fatal(err)
	}
	ops := osOps()
	ops.syncFile = func(*os.File) error { return syscall.EIO }
	err := write(path, writeBytes([]byte("new")), 0o644, ops)
	if !errors.Is(err, syscall.EIO) || !strings.Contains(err.Error(), path) {
		t.Fatalf("err = %v, want EIO naming %s", err, path)
	}
	if got, _ := os.ReadFile(path); string(got) != "old" {
		t.Errorf("content after failed write = %q", got)
	}
	assertOnlyFiles(t, dir, "f")
}

// WriteDeferSync replaces the file at once and leaves only the directory
// sync to the caller.
func TestWriteDeferSync(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "f")
	if err := Write(path, []byte("old"), 0o644); err != nil {
		t.Fatal(err)
	}
	stamp := time.Date(2001, 9, 9, 1, 46, 40, 123456789, time.UTC)
	sync, err := WriteDeferSync(path, []byte("new"), 0o600, stamp)
	if err != nil {
		t.Fatal(err)
	}
	if got, _ := os.ReadFile(path); string(got) != "new" {
		t.Errorf("before the sync: %q, want the new content already in place", got)
	}
	if err := sync(); err != nil {
		t.Errorf("sync: %v", err)
	}
	entries, _ := os.ReadDir(dir)
	if len(entries) != 1 {
		t.Errorf("directory holds %d entries, want just the file", len(entries))
	}
	if fi, _ := os.Stat(path); fi.Mode().Perm() != 0o600 || !fi.ModTime().Equal(stamp) {
		t.Errorf("mode %v, modification time %v, want 0600 and %v", fi.Mode(), fi.ModTime(), stamp)
	}
	if _, err := WriteDeferSync(filepath.Join(dir, "missing", "f"), nil, 0o644, time.Time{}); err == nil {
		t.Error("no error for a missing directory")
	}
}

// TestRemoveStale: the temporary files of killed writes of a path go;
// the file itself, other files' temporaries and look-alikes stay.
func TestRemoveStale(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "subnet.env")
	for _, name := range []string{"subnet.env", ".subnet.env.tmp123", ".subnet.env.tmp", ".other.env.tmp9", "subnet.env.tmp1", ".subnet.envx"} {
		if err := os.WriteFile(filepath.Join(dir, name), nil, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	if err := os.Mkdir(filepath.Join(dir, ".subnet.env.tmpdir"), 0o755); err != nil {
		t.Fatal(err)
	}
	removed, err := RemoveStale(path)
	if err != nil {
		t.Fatal(err)
	}
	if len(removed) != 2 {
		t.Errorf("removed %v, want the two temporaries", removed)
	}
	var left []string
	entries, _ := os.ReadDir(dir)
	for _, e := range entries {
		left = append(left, e.Name())
	}
	want := []string{".other.env.tmp9", ".subnet.env.tmpdir", ".subnet.envx", "subnet.env", "subnet.env.tmp1"}
	if strings.Join(left, " ") != strings.Join(want, " ") {
		t.Errorf("left %v, want %v", left, want)
	}
	if removed, err := RemoveStale(filepath.Join(dir, "missing", "subnet.env")); err != nil || removed != nil {
		t.Errorf("a missing directory: %v %v", removed, err)
	}
}
