package main

import (
	"archive/tar"
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"time"

	"github.com/distribution/reference"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/types"
)

// writeArchive writes img to path as one tar holding an OCI image layout
// and docker's manifest.json, every entry at time at: written to a
// temporary file and renamed, so that path is whole or absent.
func writeArchive(path, tag string, img v1.Image, at time.Time) error {
	manifest, err := img.RawManifest()
	if err != nil {
		return err
	}
	manifestDigest, err := img.Digest()
	if err != nil {
		return err
	}
	config, err := img.RawConfigFile()
	if err != nil {
		return err
	}
	configDigest, err := img.ConfigName()
	if err != nil {
		return err
	}
	layers, err := img.Layers()
	if err != nil {
		return err
	}
	blob := func(h v1.Hash) string { return "blobs/" + h.Algorithm + "/" + h.Hex }
	// containerd names an imported image by this annotation as it
	// stands, and the kubelet asks for the normalized name (registry and
	// path in full): a short name would be imported where no pod finds
	// it.
	full, err := reference.ParseDockerRef(tag)
	if err != nil {
		return fmt.Errorf("image name %q: %w", tag, err)
	}

	index, err := json.Marshal(v1.IndexManifest{
		SchemaVersion: 2,
		MediaType:     types.OCIImageIndex,
		Manifests: []v1.Descriptor{{
			MediaType: types.OCIManifestSchema1, Size: int64(len(manifest)), Digest: manifestDigest,
			Annotations: map[string]string{
				"io.containerd.image.name":          full.String(),
				"org.opencontainers.image.ref.name": refName(tag),
			},
		}},
	})
	if err != nil {
		return err
	}
	type dockerManifest struct {
		Config   string
		RepoTags []string
		Layers   []string
	}
	dm := dockerManifest{Config: blob(configDigest), RepoTags: []string{tag}}

	tmp, err := os.CreateTemp(filepath.Dir(path), "."+filepath.Base(path)+".tmp-")
	if err != nil {
		return err
	}
	defer os.Remove(tmp.Name())
	tw := tar.NewWriter(tmp)
	put := func(name string, size int64, r io.Reader) error {
		h := &tar.Header{Name: name, Typeflag: tar.TypeReg, Mode: 0o644, Size: size, ModTime: at, Uname: "root", Gname: "root", Format: tar.FormatUSTAR}
		if err := tw.WriteHeader(h); err != nil {
			return err
		}
		n, err := io.Copy(tw, r)
		if err == nil && n != size {
			err = fmt.Errorf("%s: wrote %d bytes of %d", name, n, size)
		}
		return err
	}
	putBytes := func(name string, b []byte) error { return put(name, int64(len(b)), bytes.NewReader(b)) }
	dir := func(name string) error {
		return tw.WriteHeader(&tar.Header{Name: name, Typeflag: tar.TypeDir, Mode: 0o755, ModTime: at, Uname: "root", Gname: "root", Format: tar.FormatUSTAR})
	}
	if err := dir("blobs/"); err != nil {
		return err
	}
	if err := dir("blobs/sha256/"); err != nil {
		return err
	}
	for _, l := range layers {
		d, err := l.Digest()
		if err != nil {
			return err
		}
		size, err := l.Size()
		if err != nil {
			return err
		}
		rc, err := l.Compressed()
		if err != nil {
			return err
		}
		err = put(blob(d), size, rc)
		rc.Close()
		if err != nil {
			return err
		}
		dm.Layers = append(dm.Layers, blob(d))
	}
	if err := putBytes(blob(configDigest), config); err != nil {
		return err
	}
	if err := putBytes(blob(manifestDigest), manifest); err != nil {
		return err
	}
	if err := putBytes("index.json", index); err != nil {
		return err
	}
	dms, err := json.Marshal([]dockerManifest{dm})
	if err != nil {
		return err
	}
	if err := putBytes("manifest.json", dms); err != nil {
		return err
	}
	if err := putBytes("oci-layout", []byte(`{"imageLayoutVersion":"1.0.0"}`)); err != nil {
		return err
	}
	if err := tw.Close(); err != nil {
		return err
	}
	if err := tmp.Chmod(0o644); err != nil {
		return err
	}
	if err := tmp.Sync(); err != nil {
		return err
	}
	if err := tmp.Close(); err != nil {
		return err
	}
	return os.Rename(tmp.Name(), path)
}

// refName is the tag part of name:tag, as the OCI layout's ref.name
// holds it; the whole name where there is no tag.
func refName(tag string) string {
	for i := len(tag) - 1; i >= 0 && tag[i] != '/'; i-- {
		if tag[i] == ':' {
			return tag[i+1:]
		}
	}
	return tag
}
