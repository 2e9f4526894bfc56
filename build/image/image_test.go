package main

import (
	"archive/tar"
	"bytes"
	"crypto/sha256"
	"debug/elf"
	"errors"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/go-containerregistry/pkg/v1/layout"
	"github.com/google/go-containerregistry/pkg/v1/tarball"
)

var (
	builtOnce sync.Once
	built     string
	buildErr  error
)

// testOptions is what the tests build with.
func testOptions(out string) options {
	return options{root: "../..", out: out, tag: "weft-flanneld:test", version: "v9.8.7-test", revision: "0123456789abcdef", source: "https://example.invalid/weft",
		arch: runtime.GOARCH, created: time.Unix(1700000000, 0).UTC()}
}

// image builds the test image once for every test.
func image(t *testing.T) string {
	t.Helper()
	builtOnce.Do(func() {
		dir, err := os.MkdirTemp("", "weft-image-test-")
		if err != nil {
			buildErr = err
			return
		}
		built = filepath.Join(dir, "image.tar")
		buildErr = build(testOptions(built))
	})
	if buildErr != nil {
		t.Fatal(buildErr)
	}
	return built
}

func TestMain(m *testing.M) {
	code := m.Run()
	if built != "" {
		os.RemoveAll(filepath.Dir(built))
	}
	os.Exit(code)
}

// TestImageConfig: read back as docker load reads it (manifest.json), the
// image runs flanneld as root with /opt/bin on the PATH, and its labels
// say the version, revision and source it was built from, and when.
func TestImageConfig(t *testing.T) {
	img, err := tarball.ImageFromPath(image(t), nil)
	if err != nil {
		t.Fatal(err)
	}
	cfg, err := img.ConfigFile()
	if err != nil {
		t.Fatal(err)
	}
	c := cfg.Config
	if strings.Join(c.Entrypoint, " ") != "/opt/bin/flanneld" || len(c.Cmd) != 0 || c.User != "0:0" || strings.Join(c.Env, " ") != "PATH=/opt/bin" {
		t.Errorf("config: entrypoint %q cmd %q user %q env %q", c.Entrypoint, c.Cmd, c.User, c.Env)
	}
	if cfg.OS != "linux" || cfg.Architecture != runtime.GOARCH || !cfg.Created.Time.Equal(time.Unix(1700000000, 0)) {
		t.Errorf("config: %s/%s created %v", cfg.OS, cfg.Architecture, cfg.Created.Time)
	}
	if !strings.HasPrefix(c.Labels[labelGoVersion], "go1.") {
		t.Errorf("label %s = %q, want the Go release", labelGoVersion, c.Labels[labelGoVersion])
	}
	for k, want := range map[string]string{labelVersion: "v9.8.7-test", labelRevision: "0123456789abcdef", labelSource: "https://example.invalid/weft", labelCreated: "2023-11-14T22:13:20Z"} {
		if got := c.Labels[k]; got != want {
			t.Errorf("label %s = %q, want %q", k, got, want)
		}
	}
}

// TestImageLayout: the same tarball is an OCI image layout whose one
// image is the one manifest.json names, under the tag.
func TestImageLayout(t *testing.T) {
	dir := t.TempDir()
	untar(t, image(t), dir)
	idx, err := layout.ImageIndexFromPath(dir)
	if err != nil {
		t.Fatal(err)
	}
	im, err := idx.IndexManifest()
	if err != nil {
		t.Fatal(err)
	}
	if len(im.Manifests) != 1 || im.Manifests[0].Annotations["org.opencontainers.image.ref.name"] != "test" || !strings.HasSuffix(im.Manifests[0].Annotations["io.containerd.image.name"], "/library/weft-flanneld:test") {
		t.Fatalf("index: %+v", im.Manifests)
	}
	fromLayout, err := idx.Image(im.Manifests[0].Digest)
	if err != nil {
		t.Fatal(err)
	}
	fromDocker, err := tarball.ImageFromPath(image(t), nil)
	if err != nil {
		t.Fatal(err)
	}
	a, _ := fromLayout.ConfigName()
	b, _ := fromDocker.ConfigName()
	if a != b {
		t.Errorf("the OCI index and manifest.json name different images: config %v and %v", a, b)
	}
}

// TestImageFiles: the layer holds the five binaries, static and
// executable, root's and not writable by anyone else, an /etc/passwd
// with nobody, and no shell; flanneld runs and says its version.
func TestImageFiles(t *testing.T) {
	img, err := tarball.ImageFromPath(image(t), nil)
	if err != nil {
		t.Fatal(err)
	}
	layers, err := img.Layers()
	if err != nil || len(layers) != 1 {
		t.Fatalf("%d layers, %v; want 1", len(layers), err)
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
			break
		}
		if err != nil {
			t.Fatal(err)
		}
		if h.Uid != 0 || h.Gid != 0 || h.Mode&0o022 != 0 || h.Mode&(0o4000|0o2000) != 0 {
			t.Errorf("%s: uid %d gid %d mode %o: want root's, writable by root alone, no setuid", h.Name, h.Uid, h.Gid, h.Mode)
		}
		if !h.ModTime.Equal(time.Unix(1700000000, 0)) {
			t.Errorf("%s: time %v, want SOURCE_DATE_EPOCH's", h.Name, h.ModTime)
		}
		if h.Typeflag == tar.TypeReg {
			data, _ := io.ReadAll(tr)
			seen["/"+h.Name] = data
			if strings.HasPrefix(h.Name, "opt/bin/") && h.Mode&0o111 != 0o111 {
				t.Errorf("%s: mode %o, not executable", h.Name, h.Mode)
			}
		}
	}
	for _, b := range binaries {
		data, ok := seen[b.path]
		if !ok {
			t.Errorf("%s missing", b.path)
			continue
		}
		f, err := elf.NewFile(bytes.NewReader(data))
		if err != nil {
			t.Errorf("%s: not ELF: %v", b.path, err)
			continue
		}
		for _, p := range f.Progs {
			if p.Type == elf.PT_INTERP {
				t.Errorf("%s has an ELF interpreter: dynamically linked", b.path)
			}
		}
		if libs, _ := f.ImportedLibraries(); len(libs) != 0 {
			t.Errorf("%s needs %v", b.path, libs)
		}
	}
	for _, shell := range []string{"/bin/sh", "/bin/bash", "/bin/busybox", "/usr/bin/env"} {
		if _, ok := seen[shell]; ok {
			t.Errorf("the image holds %s", shell)
		}
	}
	if !bytes.Contains(seen["/etc/passwd"], []byte("nobody:x:65534:65534:")) {
		t.Errorf("/etc/passwd: %q", seen["/etc/passwd"])
	}
	bin := filepath.Join(t.TempDir(), "flanneld")
	if err := os.WriteFile(bin, seen["/opt/bin/flanneld"], 0o755); err != nil {
		t.Fatal(err)
	}
	out, err := exec.Command(bin, "--version").CombinedOutput()
	if err != nil || !strings.Contains(string(out), "v9.8.7-test") {
		t.Errorf("flanneld --version: %q, %v", out, err)
	}
}

// TestImageReproducible: building again from the same tree gives the same
// bytes, whatever the temporary paths, the wall clock and the caller's Go
// settings.
func TestImageReproducible(t *testing.T) {
	first := image(t)
	again := filepath.Join(t.TempDir(), "again.tar")
	// A caller's settings that would change the binaries if they got
	// through: a go env file, build tags, a microarchitecture level.
	envFile := filepath.Join(t.TempDir(), "go.env")
	if err := os.WriteFile(envFile, []byte("GOFLAGS=-tags=weft_image_test\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	t.Setenv("GOENV", envFile)
	t.Setenv("GOAMD64", "v3")
	t.Setenv("CGO_ENABLED", "1")
	if err := build(testOptions(again)); err != nil {
		t.Fatal(err)
	}
	if a, b := digestOf(t, first), digestOf(t, again); a != b {
		t.Errorf("two builds differ: %x and %x", a, b)
	}
}

func digestOf(t *testing.T, path string) [32]byte {
	t.Helper()
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return sha256.Sum256(data)
}

func untar(t *testing.T, path, dir string) {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	tr := tar.NewReader(f)
	for {
		h, err := tr.Next()
		if errors.Is(err, io.EOF) {
			return
		}
		if err != nil {
			t.Fatal(err)
		}
		target := filepath.Join(dir, filepath.FromSlash(h.Name))
		if !strings.HasPrefix(target, dir+string(filepath.Separator)) {
			t.Fatalf("archive entry %q escapes", h.Name)
		}
		switch h.Typeflag {
		case tar.TypeDir:
			if err := os.MkdirAll(target, 0o755); err != nil {
				t.Fatal(err)
			}
		case tar.TypeReg:
			data, _ := io.ReadAll(tr)
			if err := os.WriteFile(target, data, 0o644); err != nil {
				t.Fatal(err)
			}
		}
	}
}

// TestImageSkopeo: skopeo, an implementation of the image formats that is
// not go-containerregistry, reads the tarball both as an OCI archive and
// as docker's, and copies it into an OCI layout: what docker load,
// podman load and ctr import need. Without skopeo it skips, unless
// WEFT_REQUIRE_SKOPEO is set (as CI sets it).
func TestImageSkopeo(t *testing.T) {
	skopeo, err := exec.LookPath("skopeo")
	if err != nil {
		if os.Getenv("WEFT_REQUIRE_SKOPEO") != "" {
			t.Fatal("WEFT_REQUIRE_SKOPEO is set but skopeo is not installed (apt-get install skopeo)")
		}
		t.Skip("skopeo is not installed")
	}
	path := image(t)
	for _, transport := range []string{"oci-archive:", "docker-archive:"} {
		out, err := exec.Command(skopeo, "inspect", "--format", "{{.Architecture}} {{index .Labels \""+labelVersion+"\"}} {{len .Layers}}", transport+path).CombinedOutput()
		if got, want := strings.TrimSpace(string(out)), runtime.GOARCH+" v9.8.7-test 1"; err != nil || got != want {
			t.Errorf("skopeo inspect %s: %q, %v; want %q", transport, out, err, want)
		}
	}
	dst := filepath.Join(t.TempDir(), "copy")
	if out, err := exec.Command(skopeo, "copy", "--quiet", "docker-archive:"+path, "oci:"+dst+":copied").CombinedOutput(); err != nil {
		t.Fatalf("skopeo copy: %s: %v", out, err)
	}
	copied, err := layout.ImageIndexFromPath(dst)
	if err != nil {
		t.Fatal(err)
	}
	im, err := copied.IndexManifest()
	if err != nil || len(im.Manifests) != 1 {
		t.Fatalf("the copy's index: %+v, %v", im, err)
	}
	img, err := copied.Image(im.Manifests[0].Digest)
	if err != nil {
		t.Fatal(err)
	}
	orig, err := tarball.ImageFromPath(path, nil)
	if err != nil {
		t.Fatal(err)
	}
	a, _ := img.Layers()
	b, _ := orig.Layers()
	if len(a) != 1 || len(b) != 1 {
		t.Fatalf("%d layers in the copy, %d in the image; want 1", len(a), len(b))
	}
	da, _ := a[0].DiffID()
	db, _ := b[0].DiffID()
	if da != db {
		t.Errorf("the copy's layer %v differs from the image's %v", da, db)
	}
}
