package main

import (
	"archive/tar"
	"bytes"
	"debug/buildinfo"
	"debug/elf"
	"encoding/binary"
	"errors"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/layout"
	"github.com/google/go-containerregistry/pkg/v1/tarball"
)

// dockerImage reads the image manifest.json names tag, as docker load
// reads it.
func dockerImage(t *testing.T, path, tag string) v1.Image {
	t.Helper()
	ref, err := name.NewTag(tag)
	if err != nil {
		t.Fatal(err)
	}
	img, err := tarball.ImageFromPath(path, &ref)
	if err != nil {
		t.Fatalf("manifest.json's %s: %v", tag, err)
	}
	return img
}

// elfOf is the ELF identity of each platform's binaries.
var elfOf = map[string]struct {
	machine elf.Machine
	class   elf.Class
	order   binary.ByteOrder
}{
	"amd64":   {elf.EM_X86_64, elf.ELFCLASS64, binary.LittleEndian},
	"arm64":   {elf.EM_AARCH64, elf.ELFCLASS64, binary.LittleEndian},
	"arm":     {elf.EM_ARM, elf.ELFCLASS32, binary.LittleEndian},
	"ppc64le": {elf.EM_PPC64, elf.ELFCLASS64, binary.LittleEndian},
	"s390x":   {elf.EM_S390, elf.ELFCLASS64, binary.BigEndian},
	"riscv64": {elf.EM_RISCV, elf.ELFCLASS64, binary.LittleEndian},
}

// layerFiles reads img's one layer: each regular file's content by path,
// checking every entry's owner, mode and time on the way.
func layerFiles(t *testing.T, p platform, img v1.Image) map[string][]byte {
	t.Helper()
	layers, err := img.Layers()
	if err != nil || len(layers) != 1 {
		t.Fatalf("%s: %d layers, %v; want 1", p, len(layers), err)
	}
	rc, err := layers[0].Uncompressed()
	if err != nil {
		t.Fatal(err)
	}
	defer rc.Close()
	seen := map[string][]byte{}
	tr := tar.NewReader(rc)
	for {
		h, err := tr.Next()
		if errors.Is(err, io.EOF) {
			return seen
		}
		if err != nil {
			t.Fatal(err)
		}
		if h.Uid != 0 || h.Gid != 0 || h.Mode&0o022 != 0 || h.Mode&(0o4000|0o2000) != 0 {
			t.Errorf("%s: %s: uid %d gid %d mode %o: want root's, writable by root alone, no setuid", p, h.Name, h.Uid, h.Gid, h.Mode)
		}
		if !h.ModTime.Equal(time.Unix(1700000000, 0)) {
			t.Errorf("%s: %s: time %v, want SOURCE_DATE_EPOCH's", p, h.Name, h.ModTime)
		}
		if h.Typeflag == tar.TypeReg {
			data, _ := io.ReadAll(tr)
			seen["/"+h.Name] = data
			if strings.HasPrefix(h.Name, "opt/bin/") && h.Mode&0o111 != 0o111 {
				t.Errorf("%s: %s: mode %o, not executable", p, h.Name, h.Mode)
			}
		}
	}
}

// checkBinary checks that data is a static Go binary for p: its ELF
// machine, class and byte order, no interpreter or shared library, and
// the build settings Go recorded in it (cgo off, Linux, p's GOARCH and
// for arm GOARM 7).
func checkBinary(t *testing.T, p platform, path string, data []byte) {
	t.Helper()
	f, err := elf.NewFile(bytes.NewReader(data))
	if err != nil {
		t.Errorf("%s: %s: not ELF: %v", p, path, err)
		return
	}
	want := elfOf[p.arch]
	if f.Machine != want.machine || f.Class != want.class || f.ByteOrder != want.order || f.OSABI != elf.ELFOSABI_NONE && f.OSABI != elf.ELFOSABI_LINUX {
		t.Errorf("%s: %s: ELF %v %v %v %v, want %v %v %v", p, path, f.Machine, f.Class, f.ByteOrder, f.OSABI, want.machine, want.class, want.order)
	}
	for _, prog := range f.Progs {
		if prog.Type == elf.PT_INTERP || prog.Type == elf.PT_DYNAMIC {
			t.Errorf("%s: %s has %v: dynamically linked", p, path, prog.Type)
		}
	}
	if libs, _ := f.ImportedLibraries(); len(libs) != 0 {
		t.Errorf("%s: %s needs %v", p, path, libs)
	}
	bi, err := buildinfo.Read(bytes.NewReader(data))
	if err != nil {
		t.Errorf("%s: %s: Go build info: %v", p, path, err)
		return
	}
	settings := map[string]string{}
	for _, s := range bi.Settings {
		settings[s.Key] = s.Value
	}
	wantSettings := map[string]string{"CGO_ENABLED": "0", "GOOS": "linux", "GOARCH": p.arch, "-trimpath": "true"}
	if p.arch == "arm" {
		wantSettings["GOARM"] = "7"
	}
	if p.arch == "amd64" {
		wantSettings["GOAMD64"] = "v1"
	}
	for k, v := range wantSettings {
		if settings[k] != v {
			t.Errorf("%s: %s was built with %s=%q, want %q", p, path, k, settings[k], v)
		}
	}
}

// TestImageFiles: each platform's layer holds the five binaries, static
// and of that platform's architecture, root's and not writable by anyone
// else, an /etc/passwd with nobody, and no shell; this machine's
// flanneld runs and says its version.
func TestImageFiles(t *testing.T) {
	_, imgs := platformImages(t, multiImage(t))
	host := hostPlatform(t)
	ran := false
	for i, img := range imgs {
		p := platforms[i]
		seen := layerFiles(t, p, img)
		for _, b := range binaries {
			data, ok := seen[b.path]
			if !ok {
				t.Errorf("%s: %s missing", p, b.path)
				continue
			}
			checkBinary(t, p, b.path, data)
		}
		for _, shell := range []string{"/bin/sh", "/bin/bash", "/bin/busybox", "/usr/bin/env"} {
			if _, ok := seen[shell]; ok {
				t.Errorf("%s: the image holds %s", p, shell)
			}
		}
		if !bytes.Contains(seen["/etc/passwd"], []byte("nobody:x:65534:65534:")) {
			t.Errorf("%s: /etc/passwd: %q", p, seen["/etc/passwd"])
		}
		if p != host {
			continue
		}
		ran = true
		bin := filepath.Join(t.TempDir(), "flanneld")
		if err := os.WriteFile(bin, seen["/opt/bin/flanneld"], 0o755); err != nil {
			t.Fatal(err)
		}
		out, err := exec.Command(bin, "--version").CombinedOutput()
		if err != nil || !strings.Contains(string(out), "v9.8.7-test") {
			t.Errorf("%s: flanneld --version: %q, %v", p, out, err)
		}
	}
	if !ran {
		t.Errorf("no image for this machine's platform %s", host)
	}
}

// skopeoPath is skopeo, or a skip (a failure when WEFT_REQUIRE_SKOPEO is
// set, as CI sets it).
func skopeoPath(t *testing.T) string {
	t.Helper()
	skopeo, err := exec.LookPath("skopeo")
	if err != nil {
		if os.Getenv("WEFT_REQUIRE_SKOPEO") != "" {
			t.Fatal("WEFT_REQUIRE_SKOPEO is set but skopeo is not installed (apt-get install skopeo)")
		}
		t.Skip("skopeo is not installed")
	}
	return skopeo
}

// TestImageSkopeo: skopeo, an implementation of the image formats that is
// not go-containerregistry, reads the tarball as an OCI archive holding
// an index of the six platforms, picks each platform's image from it as
// a runtime pulling on that machine would, reads each from docker's
// manifest.json under its tag, and copies the whole index (copy --all)
// into an OCI layout with every layer intact.
func TestImageSkopeo(t *testing.T) {
	skopeo := skopeoPath(t)
	path := multiImage(t)
	_, imgs := platformImages(t, path)
	for _, p := range platforms {
		args := []string{"inspect", "--override-os", "linux", "--override-arch", p.arch, "--format", "{{.Architecture}} {{index .Labels \"" + labelVersion + "\"}} {{len .Layers}}"}
		if p.variant != "" {
			args = append(args, "--override-variant", p.variant)
		}
		want := p.arch + " v9.8.7-test 1"
		for _, src := range []string{"oci-archive:" + path, "docker-archive:" + path + ":weft-flanneld:test-" + p.tagSuffix()} {
			out, err := exec.Command(skopeo, append(args, src)...).CombinedOutput()
			if got := strings.TrimSpace(string(out)); err != nil || got != want {
				t.Errorf("%s: skopeo inspect %s: %q, %v; want %q", p, src, out, err, want)
			}
		}
	}
	dst := filepath.Join(t.TempDir(), "copy")
	if out, err := exec.Command(skopeo, "copy", "--all", "--quiet", "oci-archive:"+path, "oci:"+dst+":copied").CombinedOutput(); err != nil {
		t.Fatalf("skopeo copy --all: %s: %v", out, err)
	}
	copied, err := layout.ImageIndexFromPath(dst)
	if err != nil {
		t.Fatal(err)
	}
	im, err := copied.IndexManifest()
	if err != nil || len(im.Manifests) != 1 {
		t.Fatalf("the copy's index.json: %+v, %v", im, err)
	}
	idx, err := copied.ImageIndex(im.Manifests[0].Digest)
	if err != nil {
		t.Fatalf("the copy is not an index: %v", err)
	}
	inner, err := idx.IndexManifest()
	if err != nil || len(inner.Manifests) != len(platforms) {
		t.Fatalf("the copy's index: %+v, %v; want %d platforms", inner, err, len(platforms))
	}
	for i, d := range inner.Manifests {
		p := platforms[i]
		if d.Platform == nil || d.Platform.String() != p.String() {
			t.Errorf("the copy's entry %d is %v, want %s", i, d.Platform, p)
			continue
		}
		img, err := idx.Image(d.Digest)
		if err != nil {
			t.Fatal(err)
		}
		a, _ := img.Layers()
		b, _ := imgs[i].Layers()
		if len(a) != 1 || len(b) != 1 {
			t.Fatalf("%s: %d layers in the copy, %d in the image; want 1", p, len(a), len(b))
		}
		da, _ := a[0].DiffID()
		db, _ := b[0].DiffID()
		if da != db {
			t.Errorf("%s: the copy's layer %v differs from the image's %v", p, da, db)
		}
	}
}
