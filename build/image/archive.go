package main

import (
	"bytes"
	"encoding/json"
	"fmt"
	"time"

	"github.com/distribution/reference"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/types"
)

// A platformImage is one platform's image.
type platformImage struct {
	platform platform
	img      v1.Image
}

// blobName is a blob's path in the layout.
func blobName(h v1.Hash) string { return "blobs/" + h.Algorithm + "/" + h.Hex }

// writeArchive writes the images to path as one tar holding an OCI image
// layout and docker's manifest.json, every entry at time at: written to a
// temporary file and renamed, so that path is whole or absent.
//
// One image: index.json names its manifest under the tag. Several: they
// go into an image index, each under its platform, and index.json names
// that index under the tag: containerd imports a layout's index.json
// entries as images by their name annotation, so the platforms must be
// one entry, and skopeo takes a layout whose index.json has one entry
// without being told which. manifest.json, docker's, has no platforms: it
// lists each image under the tag with its platform appended, since one
// tag on six images would leave it on whichever docker loaded last.
func writeArchive(path, tag string, imgs []platformImage, at time.Time) error {
	// containerd names an imported image by this annotation as it
	// stands, and the kubelet asks for the normalized name (registry and
	// path in full): a short name would be imported where no pod finds
	// it.
	full, err := reference.ParseDockerRef(tag)
	if err != nil {
		return fmt.Errorf("image name %q: %w", tag, err)
	}
	names := map[string]string{
		"io.containerd.image.name":          full.String(),
		"org.opencontainers.image.ref.name": refName(tag),
	}
	w, err := newLayoutWriter(path, at)
	if err != nil {
		return err
	}
	defer w.abort()

	type dockerManifest struct {
		Config   string
		RepoTags []string
		Layers   []string
	}
	var dms []dockerManifest
	var descs []v1.Descriptor
	for _, pi := range imgs {
		desc, configDigest, layers, err := w.image(pi.img)
		if err != nil {
			return fmt.Errorf("%s: %w", pi.platform, err)
		}
		desc.Platform = pi.platform.oci()
		descs = append(descs, desc)
		repoTag := tag
		if len(imgs) > 1 {
			repoTag = tag + "-" + pi.platform.tagSuffix()
		}
		dms = append(dms, dockerManifest{Config: blobName(configDigest), RepoTags: []string{repoTag}, Layers: layers})
	}
	var top v1.Descriptor
	if len(imgs) == 1 {
		top = descs[0]
	} else {
		raw, err := json.Marshal(v1.IndexManifest{SchemaVersion: 2, MediaType: types.OCIImageIndex, Manifests: descs})
		if err != nil {
			return err
		}
		h, size, err := v1.SHA256(bytes.NewReader(raw))
		if err != nil {
			return err
		}
		if err := w.blob(h, raw); err != nil {
			return err
		}
		top = v1.Descriptor{MediaType: types.OCIImageIndex, Size: size, Digest: h}
	}
	top.Annotations = names
	index, err := json.Marshal(v1.IndexManifest{SchemaVersion: 2, MediaType: types.OCIImageIndex, Manifests: []v1.Descriptor{top}})
	if err != nil {
		return err
	}
	if err := w.file("index.json", index); err != nil {
		return err
	}
	dm, err := json.Marshal(dms)
	if err != nil {
		return err
	}
	if err := w.file("manifest.json", dm); err != nil {
		return err
	}
	if err := w.file("oci-layout", []byte(`{"imageLayoutVersion":"1.0.0"}`)); err != nil {
		return err
	}
	return w.commit(path)
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
