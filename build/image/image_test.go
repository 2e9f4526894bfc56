package main

import (
	"archive/tar"
	"crypto/sha256"
	"errors"
	"io"
	"os"
	"path/filepath"
	"runtime"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/layout"
	"github.com/google/go-containerregistry/pkg/v1/types"
)

// built is an image the tests build once and share.
type built struct {
	once sync.Once
	path string
	err  error
}

var (
	// multi is `make image`'s: every platform.
	multi built
	// local is a single platform's, this machine's (make image-local).
	local built
)

// testOptions is what the tests build with.
func testOptions(out string, ps []platform) options {
	return options{root: "../..", out: out, tag: "weft-flanneld:test", version: "v9.8.7-test", revision: "0123456789abcdef", source: "https://example.invalid/weft",
		platforms: ps, created: time.Unix(1700000000, 0).UTC()}
}

// hostPlatform is the platform of this machine, which runs the binaries.
func hostPlatform(t *testing.T) platform {
	t.Helper()
	ps, err := parsePlatforms(runtime.GOARCH)
	if err != nil {
		t.Skipf("this machine's architecture is not one the image is built for: %v", err)
	}
	return ps[0]
}

func (b *built) get(t *testing.T, ps []platform) string {
	t.Helper()
	b.once.Do(func() {
		dir, err := os.MkdirTemp("", "weft-image-test-")
		if err != nil {
			b.err = err
			return
		}
		b.path = filepath.Join(dir, "image.tar")
		start := time.Now()
		b.err = build(testOptions(b.path, ps))
		t.Logf("built for %d platforms in %v", len(ps), time.Since(start).Round(time.Second))
	})
	if b.err != nil {
		t.Fatal(b.err)
	}
	return b.path
}

// multiImage is the image of every platform, built once.
func multiImage(t *testing.T) string { return multi.get(t, platforms) }

// localImage is this machine's platform's image, built once.
func localImage(t *testing.T) string { return local.get(t, []platform{hostPlatform(t)}) }

func TestMain(m *testing.M) {
	code := m.Run()
	for _, b := range []*built{&multi, &local} {
		if b.path != "" {
			os.RemoveAll(filepath.Dir(b.path))
		}
	}
	os.Exit(code)
}

// readLayout unpacks the tarball and reads it as an OCI image layout.
func readLayout(t *testing.T, path string) layout.Path {
	t.Helper()
	dir := t.TempDir()
	untar(t, path, dir)
	p, err := layout.FromPath(dir)
	if err != nil {
		t.Fatal(err)
	}
	return p
}

// platformImages reads the image index index.json names under the tag:
// each platform's image, in the index's order.
func platformImages(t *testing.T, path string) ([]v1.Descriptor, []v1.Image) {
	t.Helper()
	lp := readLayout(t, path)
	top, err := lp.ImageIndex()
	if err != nil {
		t.Fatal(err)
	}
	im, err := top.IndexManifest()
	if err != nil {
		t.Fatal(err)
	}
	if len(im.Manifests) != 1 || im.Manifests[0].MediaType != types.OCIImageIndex ||
		im.Manifests[0].Annotations["org.opencontainers.image.ref.name"] != "test" ||
		im.Manifests[0].Annotations["io.containerd.image.name"] != "docker.io/library/weft-flanneld:test" {
		t.Fatalf("index.json: %+v; want one image index, named docker.io/library/weft-flanneld:test", im.Manifests)
	}
	idx, err := top.ImageIndex(im.Manifests[0].Digest)
	if err != nil {
		t.Fatal(err)
	}
	inner, err := idx.IndexManifest()
	if err != nil {
		t.Fatal(err)
	}
	var imgs []v1.Image
	for _, d := range inner.Manifests {
		img, err := idx.Image(d.Digest)
		if err != nil {
			t.Fatal(err)
		}
		imgs = append(imgs, img)
	}
	return inner.Manifests, imgs
}

// TestImageIndex: make image's tarball is an OCI layout whose index.json
// names one image index under the tag, holding the six platforms
// flannel releases, each an image of its own architecture that runs
// flanneld as root with /opt/bin on the PATH, labelled with the
// version, revision and source it was built from, and when.
func TestImageIndex(t *testing.T) {
	descs, imgs := platformImages(t, multiImage(t))
	var got []string
	for _, d := range descs {
		if d.Platform == nil || d.MediaType != types.OCIManifestSchema1 {
			t.Fatalf("index entry %+v: want an OCI manifest with its platform", d)
		}
		got = append(got, d.Platform.String())
	}
	want := []string{"linux/amd64", "linux/arm64", "linux/arm/v7", "linux/ppc64le", "linux/s390x", "linux/riscv64"}
	if !slices.Equal(got, want) {
		t.Fatalf("platforms %v, want %v", got, want)
	}
	for i, img := range imgs {
		cfg, err := img.ConfigFile()
		if err != nil {
			t.Fatal(err)
		}
		p := platforms[i]
		if cfg.OS != "linux" || cfg.Architecture != p.arch || cfg.Variant != p.variant || !cfg.Created.Time.Equal(time.Unix(1700000000, 0)) {
			t.Errorf("%s: config says %s/%s/%s created %v", p, cfg.OS, cfg.Architecture, cfg.Variant, cfg.Created.Time)
		}
		checkConfig(t, p, cfg.Config)
	}
}

// checkConfig checks what every platform's image runs and says.
func checkConfig(t *testing.T, p platform, c v1.Config) {
	t.Helper()
	if strings.Join(c.Entrypoint, " ") != "/opt/bin/flanneld" || len(c.Cmd) != 0 || c.User != "0:0" || strings.Join(c.Env, " ") != "PATH=/opt/bin" {
		t.Errorf("%s: entrypoint %q cmd %q user %q env %q", p, c.Entrypoint, c.Cmd, c.User, c.Env)
	}
	if !strings.HasPrefix(c.Labels[labelGoVersion], "go1.") {
		t.Errorf("%s: label %s = %q, want the Go release", p, labelGoVersion, c.Labels[labelGoVersion])
	}
	for k, want := range map[string]string{labelVersion: "v9.8.7-test", labelRevision: "0123456789abcdef", labelSource: "https://example.invalid/weft", labelCreated: "2023-11-14T22:13:20Z"} {
		if got := c.Labels[k]; got != want {
			t.Errorf("%s: label %s = %q, want %q", p, k, got, want)
		}
	}
}

// TestImageDockerManifest: docker's manifest.json, which has no
// platforms, names each platform's image under the tag with the
// platform appended, the same images as the OCI index.
func TestImageDockerManifest(t *testing.T) {
	path := multiImage(t)
	descs, imgs := platformImages(t, path)
	dir := t.TempDir()
	untar(t, path, dir)
	for i, p := range platforms {
		tag := "weft-flanneld:test-" + p.tagSuffix()
		img := dockerImage(t, path, tag)
		a, _ := img.ConfigName()
		b, _ := imgs[i].ConfigName()
		if a != b {
			t.Errorf("%s: manifest.json's %s has config %v, the index's %s has %v", p, tag, a, descs[i].Platform, b)
		}
	}
}

// TestImageLocal: a single platform's build (make image-local) names its
// one image directly, in index.json and in manifest.json, under the tag
// itself: docker's classic store loads it as it is.
func TestImageLocal(t *testing.T) {
	path := localImage(t)
	p := hostPlatform(t)
	idx, err := readLayout(t, path).ImageIndex()
	if err != nil {
		t.Fatal(err)
	}
	im, err := idx.IndexManifest()
	if err != nil {
		t.Fatal(err)
	}
	if len(im.Manifests) != 1 || im.Manifests[0].MediaType != types.OCIManifestSchema1 || im.Manifests[0].Platform.String() != p.String() ||
		im.Manifests[0].Annotations["org.opencontainers.image.ref.name"] != "test" || !strings.HasSuffix(im.Manifests[0].Annotations["io.containerd.image.name"], "/library/weft-flanneld:test") {
		t.Fatalf("index: %+v", im.Manifests)
	}
	fromLayout, err := idx.Image(im.Manifests[0].Digest)
	if err != nil {
		t.Fatal(err)
	}
	a, _ := fromLayout.ConfigName()
	b, _ := dockerImage(t, path, "weft-flanneld:test").ConfigName()
	if a != b {
		t.Errorf("the OCI index and manifest.json name different images: config %v and %v", a, b)
	}
	cfg, err := fromLayout.ConfigFile()
	if err != nil {
		t.Fatal(err)
	}
	if cfg.Architecture != p.arch {
		t.Errorf("architecture %s, want %s", cfg.Architecture, p.arch)
	}
	checkConfig(t, p, cfg.Config)
}

func TestParsePlatforms(t *testing.T) {
	for _, tc := range []struct {
		in   string
		want []string
		err  string
	}{
		{"all", []string{"linux/amd64", "linux/arm64", "linux/arm/v7", "linux/ppc64le", "linux/s390x", "linux/riscv64"}, ""},
		{"amd64", []string{"linux/amd64"}, ""},
		{"arm64,arm/v7", []string{"linux/arm64", "linux/arm/v7"}, ""},
		{"linux/arm", []string{"linux/arm/v7"}, ""},
		{"mips", nil, `"mips" is not one of amd64, arm64, arm/v7, ppc64le, s390x, riscv64`},
		{"arm/v6", nil, `"arm/v6" is not one of`},
		{"amd64,amd64", nil, "amd64 twice"},
	} {
		ps, err := parsePlatforms(tc.in)
		var got []string
		for _, p := range ps {
			got = append(got, p.String())
		}
		if tc.err != "" {
			if err == nil || !strings.Contains(err.Error(), tc.err) {
				t.Errorf("%q: %v, %v; want an error with %q", tc.in, got, err, tc.err)
			}
			continue
		}
		if err != nil || !slices.Equal(got, tc.want) {
			t.Errorf("%q: %v, %v; want %v", tc.in, got, err, tc.want)
		}
	}
}

// TestImageReproducible: building again from the same tree gives the same
// bytes, whatever the temporary paths, the wall clock and the caller's Go
// settings.
func TestImageReproducible(t *testing.T) {
	first := multiImage(t)
	again := filepath.Join(t.TempDir(), "again.tar")
	// A caller's settings that would change the binaries if they got
	// through: a go env file, build tags, microarchitecture levels.
	envFile := filepath.Join(t.TempDir(), "go.env")
	if err := os.WriteFile(envFile, []byte("GOFLAGS=-tags=weft_image_test\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	t.Setenv("GOENV", envFile)
	t.Setenv("GOAMD64", "v3")
	t.Setenv("GOARM", "6")
	t.Setenv("GOARM64", "v9.0")
	t.Setenv("CGO_ENABLED", "1")
	if err := build(testOptions(again, platforms)); err != nil {
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
