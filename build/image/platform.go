package main

import (
	"fmt"
	"slices"
	"strings"

	v1 "github.com/google/go-containerregistry/pkg/v1"
)

// A platform is one architecture the image is built for, as an OCI
// image index names it (linux is the only OS).
type platform struct {
	arch    string // GOARCH, and the OCI architecture
	variant string // the OCI variant; for arm, GOARM's level ("v7")
}

// platforms are those `make image` builds, flannel's release set:
// amd64, arm64, arm (v7), ppc64le, s390x and riscv64, in this order.
var platforms = []platform{
	{arch: "amd64"}, {arch: "arm64"}, {arch: "arm", variant: "v7"},
	{arch: "ppc64le"}, {arch: "s390x"}, {arch: "riscv64"},
}

// String is the platform as docker, containerd and skopeo spell it:
// linux/arm/v7.
func (p platform) String() string {
	if p.variant != "" {
		return "linux/" + p.arch + "/" + p.variant
	}
	return "linux/" + p.arch
}

// tagSuffix tells the platform's image apart in docker's manifest.json,
// which has no platforms: "arm64", "armv7".
func (p platform) tagSuffix() string { return p.arch + p.variant }

// goEnv is what makes go build compile for p: GOARCH, and for arm the
// level GOARM (7 for v7). Every other architecture builds at the Go
// release's baseline level (GOAMD64=v1, GOARM64=v8.0, GOPPC64=power8,
// GORISCV64=rva20u64), which withoutGoEnv keeps the caller from raising.
func (p platform) goEnv() []string {
	env := []string{"GOARCH=" + p.arch}
	if p.arch == "arm" {
		env = append(env, "GOARM="+strings.TrimPrefix(p.variant, "v"))
	}
	return env
}

// oci is the platform as an index entry carries it.
func (p platform) oci() *v1.Platform {
	return &v1.Platform{OS: "linux", Architecture: p.arch, Variant: p.variant}
}

// parsePlatforms reads -arch: "all" for every platform, or a comma
// separated list of them ("amd64", "arm64,arm/v7"; "arm" is arm/v7, the
// only arm level built).
func parsePlatforms(s string) ([]platform, error) {
	if s == "all" {
		return slices.Clone(platforms), nil
	}
	var out []platform
	for _, name := range strings.Split(s, ",") {
		name = strings.TrimPrefix(strings.TrimSpace(name), "linux/")
		i := slices.IndexFunc(platforms, func(p platform) bool {
			return name == p.arch || name == p.arch+"/"+p.variant
		})
		if i < 0 {
			return nil, fmt.Errorf("-arch %q: %q is not one of %s, or all", s, name, platformNames())
		}
		if slices.Contains(out, platforms[i]) {
			return nil, fmt.Errorf("-arch %q: %s twice", s, name)
		}
		out = append(out, platforms[i])
	}
	return out, nil
}

// platformNames lists the platforms as -arch takes them.
func platformNames() string {
	var names []string
	for _, p := range platforms {
		names = append(names, strings.TrimPrefix(p.String(), "linux/"))
	}
	return strings.Join(names, ", ")
}
