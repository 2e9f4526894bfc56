// Package atomicfile replaces files so that a reader sees either the old
// content or the new, never a mix or an empty file, and a crash at any point
// leaves one of the two in place.
package atomicfile

import (
	"bufio"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"time"
)

// Write replaces the file at path with data, with permissions perm whatever
// the umask.
//
// It writes a temporary file in the same directory, syncs it, renames it over
// path, and then syncs the directory so that the rename itself survives a
// power loss. The directory must exist. If Write fails before the rename,
// path is untouched and the temporary file is removed. A crash can leave the
// temporary file, named "."+base(path)+".tmp" and a random suffix, behind; it
// is never read. If path is a symbolic link, the link itself is replaced.
func Write(path string, data []byte, perm fs.FileMode) error {
	return write(path, writeBytes(data), perm, osOps())
}

// WriteStream is Write with the content written by fill, through a
// buffer, instead of held whole: for a file of megabytes that is produced
// piece by piece. An error from fill fails the write, leaving path
// untouched.
func WriteStream(path string, perm fs.FileMode, fill func(io.Writer) error) error {
	return write(path, func(f *os.File) error {
		w := bufio.NewWriterSize(f, 64<<10)
		if err := fill(w); err != nil {
			return err
		}
		return w.Flush()
	}, perm, osOps())
}

func writeBytes(data []byte) func(*os.File) error {
	return func(f *os.File) error {
		_, err := f.Write(data)
		return err
	}
}

// WriteDeferSync is Write but for the final sync of the directory, which it
// returns for the caller to run: a caller that makes several files durable
// can run their syncs together. Until that sync returns, a power loss may
// undo the rename, leaving the old file whole; the new one is never torn.
// Unless modTime is zero, it becomes the file's modification time, set
// before the file's sync so that it is as durable as the content.
func WriteDeferSync(path string, data []byte, perm fs.FileMode, modTime time.Time) (syncDir func() error, err error) {
	var dir string
	ops := osOps()
	ops.syncDir = func(d string) error { dir = d; return nil }
	ops.modTime = modTime
	if err := write(path, writeBytes(data), perm, ops); err != nil {
		return nil, err
	}
	return func() error { return SyncDir(dir) }, nil
}

// fsOps are the durability-critical calls Write makes, gathered so that a
// test can check their order and inject the failures a real file system
// rarely produces (an fsync returning EIO, say).
type fsOps struct {
	syncFile func(*os.File) error
	rename   func(oldpath, newpath string) error
	syncDir  func(dir string) error
	modTime  time.Time // if not zero, set before syncFile
}

func osOps() fsOps {
	return fsOps{syncFile: (*os.File).Sync, rename: os.Rename, syncDir: SyncDir}
}

func write(path string, fill func(*os.File) error, perm fs.FileMode, ops fsOps) (err error) {
	dir, base := filepath.Split(path)
	if dir == "" {
		dir = "."
	}
	f, err := os.CreateTemp(dir, "."+base+".tmp")
	if err != nil {
		return fmt.Errorf("write %s: %w", path, err)
	}
	tmp := f.Name()
	defer func() {
		if err != nil {
			f.Close()
			os.Remove(tmp)
			err = fmt.Errorf("write %s: %w", path, err)
		}
	}()
	if err := fill(f); err != nil {
		return err
	}
	if err := f.Chmod(perm); err != nil {
		return err
	}
	if !ops.modTime.IsZero() {
		if err := os.Chtimes(tmp, time.Time{}, ops.modTime); err != nil {
			return err
		}
	}
	if err := ops.syncFile(f); err != nil {
		return err
	}
	if err := f.Close(); err != nil {
		return err
	}
	if err := ops.rename(tmp, path); err != nil {
		return err
	}
	return ops.syncDir(dir)
}

// SyncDir flushes a directory's entries to disk, making a preceding create,
// rename or remove in it durable.
func SyncDir(dir string) error {
	d, err := os.Open(dir)
	if err != nil {
		return err
	}
	defer d.Close()
	if err := d.Sync(); err != nil {
		return fmt.Errorf("sync directory %s: %w", dir, err)
	}
	return nil
}
