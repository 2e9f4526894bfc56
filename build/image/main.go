// Command image builds weft's container image as an OCI image tarball,
// with no container runtime: `make image` runs it.
//
//	go run ./build/image -root . -o weft-image.tar -tag weft-flanneld:dev \
//	    -version v0.3.0 -revision $(git rev-parse HEAD)
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
// The build is reproducible: the binaries are built with -trimpath and
// no build ID, from an environment that ignores the caller's go env file
// and microarchitecture settings; every file in the layer and the archive
// has the time SOURCE_DATE_EPOCH (default 0) and root's ownership, and
// the config's creation time is that time too. The same tree and Go
// release (recorded in the label io.github.weftnet.go-version) give the
// same bytes.
//
// The tarball is an OCI image layout (oci-layout, index.json, blobs/) with
// docker's manifest.json beside it, as docker save writes since docker 25:
// `docker load -i`, `podman load -i`, `ctr -n k8s.io images import` and skopeo's
// oci-archive: all read it.
package main

import (
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"runtime"
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
	flag.StringVar(&o.arch, "arch", runtime.GOARCH, "the architecture to build for")
	flag.Parse()
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
	arch                      string
	created                   time.Time
	goVersion                 string // set by build
}

// build compiles the binaries and writes the image.
func build(o options) error {
	dir, err := os.MkdirTemp("", "weft-image-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(dir)
	var files []file
	for _, b := range binaries {
		path := filepath.Join(dir, filepath.Base(b.pkg))
		if err := compile(o, b.pkg, path); err != nil {
			return err
		}
		data, err := os.ReadFile(path)
		if err != nil {
			return err
		}
		files = append(files, file{path: b.path, mode: 0o755, data: data})
	}
	files = append(files, etcFiles...)
	if o.goVersion, err = goVersion(o.root, o.arch); err != nil {
		return err
	}
	img, err := assemble(o, files)
	if err != nil {
		return err
	}
	return writeArchive(o.out, o.tag, img, o.created)
}
