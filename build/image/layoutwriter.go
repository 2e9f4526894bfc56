package main

import (
	"archive/tar"
	"bytes"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"time"

	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/types"
)

// layoutWriter writes an OCI image layout as a tar, to a temporary file
// beside its destination, every entry root's and at one time, each blob
// once: the same content gives the same bytes.
type layoutWriter struct {
	tmp  *os.File
	tw   *tar.Writer
	at   time.Time
	seen map[v1.Hash]bool
}

func newLayoutWriter(path string, at time.Time) (*layoutWriter, error) {
	tmp, err := os.CreateTemp(filepath.Dir(path), "."+filepath.Base(path)+".tmp-")
	if err != nil {
		return nil, err
	}
	w := &layoutWriter{tmp: tmp, tw: tar.NewWriter(tmp), at: at, seen: map[v1.Hash]bool{}}
	for _, d := range []string{"blobs/", "blobs/sha256/"} {
		if err := w.tw.WriteHeader(&tar.Header{Name: d, Typeflag: tar.TypeDir, Mode: 0o755, ModTime: at, Uname: "root", Gname: "root", Format: tar.FormatUSTAR}); err != nil {
			w.abort()
			return nil, err
		}
	}
	return w, nil
}

// put writes one regular file of size bytes from r.
func (w *layoutWriter) put(name string, size int64, r io.Reader) error {
	h := &tar.Header{Name: name, Typeflag: tar.TypeReg, Mode: 0o644, Size: size, ModTime: w.at, Uname: "root", Gname: "root", Format: tar.FormatUSTAR}
	if err := w.tw.WriteHeader(h); err != nil {
		return err
	}
	n, err := io.Copy(w.tw, r)
	if err == nil && n != size {
		err = fmt.Errorf("%s: wrote %d bytes of %d", name, n, size)
	}
	return err
}

func (w *layoutWriter) file(name string, b []byte) error {
	return w.put(name, int64(len(b)), bytes.NewReader(b))
}

// blob writes b as the blob h, unless it is there already.
func (w *layoutWriter) blob(h v1.Hash, b []byte) error {
	if w.seen[h] {
		return nil
	}
	w.seen[h] = true
	return w.file(blobName(h), b)
}

// image writes img's layers, config and manifest, and returns its
// manifest's descriptor, its config's digest and its layers' paths (for
// docker's manifest.json).
func (w *layoutWriter) image(img v1.Image) (v1.Descriptor, v1.Hash, []string, error) {
	manifest, err := img.RawManifest()
	if err != nil {
		return v1.Descriptor{}, v1.Hash{}, nil, err
	}
	manifestDigest, err := img.Digest()
	if err != nil {
		return v1.Descriptor{}, v1.Hash{}, nil, err
	}
	config, err := img.RawConfigFile()
	if err != nil {
		return v1.Descriptor{}, v1.Hash{}, nil, err
	}
	configDigest, err := img.ConfigName()
	if err != nil {
		return v1.Descriptor{}, v1.Hash{}, nil, err
	}
	layers, err := img.Layers()
	if err != nil {
		return v1.Descriptor{}, v1.Hash{}, nil, err
	}
	var paths []string
	for _, l := range layers {
		d, err := l.Digest()
		if err != nil {
			return v1.Descriptor{}, v1.Hash{}, nil, err
		}
		paths = append(paths, blobName(d))
		if w.seen[d] {
			continue
		}
		w.seen[d] = true
		size, err := l.Size()
		if err != nil {
			return v1.Descriptor{}, v1.Hash{}, nil, err
		}
		rc, err := l.Compressed()
		if err != nil {
			return v1.Descriptor{}, v1.Hash{}, nil, err
		}
		err = w.put(blobName(d), size, rc)
		rc.Close()
		if err != nil {
			return v1.Descriptor{}, v1.Hash{}, nil, err
		}
	}
	if err := w.blob(configDigest, config); err != nil {
		return v1.Descriptor{}, v1.Hash{}, nil, err
	}
	if err := w.blob(manifestDigest, manifest); err != nil {
		return v1.Descriptor{}, v1.Hash{}, nil, err
	}
	desc := v1.Descriptor{MediaType: types.OCIManifestSchema1, Size: int64(len(manifest)), Digest: manifestDigest}
	return desc, configDigest, paths, nil
}

// commit finishes the tar and renames it to path.
func (w *layoutWriter) commit(path string) error {
	if err := w.tw.Close(); err != nil {
		return err
	}
	if err := w.tmp.Chmod(0o644); err != nil {
		return err
	}
	if err := w.tmp.Sync(); err != nil {
		return err
	}
	if err := w.tmp.Close(); err != nil {
		return err
	}
	return os.Rename(w.tmp.Name(), path)
}

// abort removes the temporary file, unless commit renamed it.
func (w *layoutWriter) abort() {
	w.tmp.Close()
	os.Remove(w.tmp.Name())
}
