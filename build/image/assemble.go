package main

import (
	"bytes"
	"io"

	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/empty"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
	"github.com/google/go-containerregistry/pkg/v1/tarball"
	"github.com/google/go-containerregistry/pkg/v1/types"
)

// Labels the image carries (the OCI annotation keys, as labels).
const (
	labelVersion  = "org.opencontainers.image.version"
	labelRevision = "org.opencontainers.image.revision"
	labelSource   = "org.opencontainers.image.source"
	labelTitle    = "org.opencontainers.image.title"
	labelCreated  = "org.opencontainers.image.created"
	// The Go release the binaries were built with: what, with the
	// tree, makes the image's bytes.
	labelGoVersion = "io.github.weftnet.go-version"
)

// assemble makes p's image: one layer of files on an empty base, OCI
// media types, flanneld as the entrypoint.
func assemble(o options, p platform, files []file) (v1.Image, error) {
	raw, err := layerTar(files, o.created)
	if err != nil {
		return nil, err
	}
	layer, err := tarball.LayerFromOpener(func() (io.ReadCloser, error) {
		return io.NopCloser(bytes.NewReader(raw)), nil
	}, tarball.WithMediaType(types.OCILayer))
	if err != nil {
		return nil, err
	}
	img := mutate.MediaType(empty.Image, types.OCIManifestSchema1)
	img = mutate.ConfigMediaType(img, types.OCIConfigJSON)
	img, err = mutate.Append(img, mutate.Addendum{Layer: layer, History: v1.History{
		Created:   v1.Time{Time: o.created},
		CreatedBy: "weft build/image: " + o.version,
		Comment:   "weft's static binaries in /opt/bin",
	}})
	if err != nil {
		return nil, err
	}
	cfg, err := img.ConfigFile()
	if err != nil {
		return nil, err
	}
	cfg = cfg.DeepCopy()
	cfg.Architecture, cfg.Variant, cfg.OS = p.arch, p.variant, "linux"
	cfg.Created = v1.Time{Time: o.created}
	cfg.Config.Entrypoint = []string{"/opt/bin/flanneld"}
	cfg.Config.Cmd = nil
	cfg.Config.Env = []string{"PATH=/opt/bin"}
	cfg.Config.WorkingDir = "/"
	cfg.Config.User = "0:0"
	cfg.Config.Labels = map[string]string{
		labelVersion:   o.version,
		labelRevision:  o.revision,
		labelSource:    o.source,
		labelTitle:     "weft-flanneld",
		labelCreated:   o.created.Format("2006-01-02T15:04:05Z07:00"),
		labelGoVersion: o.goVersion,
	}
	return mutate.ConfigFile(img, cfg)
}
