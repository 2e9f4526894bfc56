package main

import (
	"archive/tar"
	"bytes"
	"io/fs"
	"path"
	"slices"
	"strings"
	"time"
)

// file is one regular file of the image's layer, at an absolute path.
type file struct {
	path string
	mode fs.FileMode
	data []byte
}

// etcFiles let a process run as root or nobody with names, and nothing
// more: there is no shell to log in with.
var etcFiles = []file{
	{"/etc/passwd", 0o644, []byte("root:x:0:0:root:/root:/sbin/nologin\nnobody:x:65534:65534:nobody:/nonexistent:/sbin/nologin\n")},
	{"/etc/group", 0o644, []byte("root:x:0:\nnobody:x:65534:\n")},
}

// layerTar is the layer's uncompressed tar: every directory the files
// need (0755), then the files, in path order, all root's and all at
// time at, so that the same files give the same bytes.
func layerTar(files []file, at time.Time) ([]byte, error) {
	dirs := map[string]bool{}
	for _, f := range files {
		for d := path.Dir(f.path); d != "/"; d = path.Dir(d) {
			dirs[d] = true
		}
	}
	type entry struct {
		name string
		dir  bool
		f    file
	}
	var entries []entry
	for d := range dirs {
		entries = append(entries, entry{name: strings.TrimPrefix(d, "/") + "/", dir: true})
	}
	for _, f := range files {
		entries = append(entries, entry{name: strings.TrimPrefix(f.path, "/"), f: f})
	}
	slices.SortFunc(entries, func(a, b entry) int { return strings.Compare(a.name, b.name) })

	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	for _, e := range entries {
		h := &tar.Header{Name: e.name, ModTime: at, Uid: 0, Gid: 0, Uname: "root", Gname: "root", Format: tar.FormatPAX}
		if e.dir {
			h.Typeflag, h.Mode = tar.TypeDir, 0o755
		} else {
			h.Typeflag, h.Mode, h.Size = tar.TypeReg, int64(e.f.mode), int64(len(e.f.data))
		}
		// PAX would record access and change times; only the
		// modification time, which is fixed, is wanted.
		h.AccessTime, h.ChangeTime = time.Time{}, time.Time{}
		if err := tw.WriteHeader(h); err != nil {
			return nil, err
		}
		if !e.dir {
			if _, err := tw.Write(e.f.data); err != nil {
				return nil, err
			}
		}
	}
	if err := tw.Close(); err != nil {
		return nil, err
	}
	return buf.Bytes(), nil
}
