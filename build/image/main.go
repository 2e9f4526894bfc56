// Command image builds weft's container image as an OCI image tarball,
// with no container runtime: `make image` runs it.
//
//	go run ./build/image -root . -o weft-image.tar -tag weft-flanneld:dev \
//	    -version v0.3.0 -revision $(git rev-parse HEAD) [-arch all|amd64|arm64,arm/v7]
//
// The image holds weft's static binaries on an empty base, in /opt/bin:
// flanneld (the entrypoint), the CNI plugins weft-ipam and weft-announce,
// weftctl and weft-install-cni (the DaemonSet's init container). No shell,
// no libc, no package manager: nothing runs in it but those five. It has an /etc/passwd with root and
// nobody (65534), so that weftctl or weft-ipam can run as nobody; the
// agent itself needs root's NET_ADMIN and NET_RAW and runs as root. It
// carries no CA bundle: in kube mode the service account's CA is mounted,
// and in etcd mode --etcd-cafile names one.
//
// By default (-arch all) it is built for every platform flannel
// releases: linux/amd64, arm64, arm/v7, ppc64le, s390x and riscv64, each
// cross-compiled with cgo off, one image each, under one OCI image index.
// -arch names one platform (or a few) for a quicker local build.
//
// The build is reproducible: the binaries are built with -trimpath and
// no build ID, from an environment that ignores the caller's go env file
// and microarchitecture settings; every file in the layer and the archive
// has the time SOURCE_DATE_EPOCH (default 0) and root's ownership, and
// the config's creation time is that time too. The same tree and Go
// release (recorded in the label io.github.weftnet.go-version) give the
// same bytes.
//
// The tarball is an OCI image layout (oci-layout, index.json, blobs/) with
// docker's manifest.json beside it, as docker save writes since docker 25.
// With one platform, index.json names its image under the tag, and so
// does manifest.json. With several, index.json names the image index
// under the tag (as containerd and skopeo take a multi-platform image),
// and manifest.json, which has no platforms, names each platform's image
// under the tag with the platform appended (weft-flanneld:dev-arm64,
// weft-flanneld:dev-armv7): `ctr images import [--all-platforms]`,
// skopeo's oci-archive (copy --all), podman load and docker load with
// the containerd image store take the index; docker's classic store
// loads every platform's image under its own tag. See archive.go.
package main

import (
	"errors"
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"time"
)

func main() {
	var o options
	flag.StringVar(&o.root, "root", ".", "the weft repository to build from")
	flag.StringVar(&o.out, "o", "weft-image.tar", "the image tarball to write")
	flag.StringVar(&o.tag, "tag", "weft-flanneld:dev", "the image's name and tag")
	flag.StringVar(&o.version, "version", "dev", "the version, in the binaries (flanneld --version) and the image's labels")
	flag.StringVar(&o.revision, "revision", "", "the source revision, for the image's labels")
	flag.StringVar(&o.source, "source", "https://github.com/weftnet/weft", "the source repository, for the image's labels")
	arch := flag.String("arch", "all", "the platforms to build for: all, or a comma separated list of "+platformNames())
	flag.Parse()
	var err error
	if o.platforms, err = parsePlatforms(*arch); err != nil {
		fmt.Fprintln(os.Stderr, "image:", err)
		os.Exit(2)
	}
	o.created = time.Unix(0, 0).UTC()
	if s := os.Getenv("SOURCE_DATE_EPOCH"); s != "" {
		sec, err := strconv.ParseInt(s, 10, 64)
		if err != nil {
			fmt.Fprintf(os.Stderr, "image: SOURCE_DATE_EPOCH=%q: want seconds since 1970\n", s)
			os.Exit(2)
		}
		o.created = time.Unix(sec, 0).UTC()
	}
	if err := build(o); err != nil {
		fmt.Fprintln(os.Stderr, "image:", err)
		os.Exit(1)
	}
	abs, _ := filepath.Abs(o.out)
	fmt.Printf("wrote %s: image %s (set it in examples/manifests/kustomization.yaml)\n", abs, o.tag)
}

type options struct {
	root, out, tag            string
	version, revision, source string
	platforms                 []platform
	created                   time.Time
	goVersion                 string // set by build
}

// build compiles the binaries for each platform and writes the image.
func build(o options) error {
	dir, err := os.MkdirTemp("", "weft-image-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(dir)
	if len(o.platforms) == 0 {
		return errors.New("no platform to build for")
	}
	if o.goVersion, err = goVersion(o.root); err != nil {
		return err
	}
	var imgs []platformImage
	for _, p := range o.platforms {
		out := filepath.Join(dir, p.tagSuffix())
		if err := compile(o, p, out); err != nil {
			return err
		}
		var files []file
		for _, b := range binaries {
			data, err := os.ReadFile(filepath.Join(out, filepath.Base(b.pkg)))
			if err != nil {
				return err
			}
			files = append(files, file{path: b.path, mode: 0o755, data: data})
		}
		files = append(files, etcFiles...)
		img, err := assemble(o, p, files)
		if err != nil {
			return err
		}
		imgs = append(imgs, platformImage{p, img})
	}
	return writeArchive(o.out, o.tag, imgs, o.created)
}
