package main

import (
	"fmt"
	"os"
	"os/exec"
	"strings"
)

// binaries are the image's programs: the package each is built from,
// and its path in the image.
var binaries = []struct{ pkg, path string }{
	{"./examples/flanneld", "/opt/bin/flanneld"},
	{"./examples/weft-ipam", "/opt/bin/weft-ipam"},
	{"./examples/weft-announce", "/opt/bin/weft-announce"},
	{"./examples/weftctl", "/opt/bin/weftctl"},
	{"./examples/weft-install-cni", "/opt/bin/weft-install-cni"},
}

// compile builds every binary of the image for p from the repository at
// o.root into the directory out, one file each, named as its package:
// static (no cgo), for Linux, reproducibly (no paths of this machine, no
// build ID, no VCS stamp), with the version set where a main has one. One
// go build for them all, so that what they share compiles once.
func compile(o options, p platform, out string) error {
	ldflags := "-s -w -buildid= -X main.version=" + o.version
	args := []string{"build", "-trimpath", "-buildvcs=false", "-ldflags", ldflags, "-o", out + string(os.PathSeparator)}
	for _, b := range binaries {
		args = append(args, b.pkg)
	}
	cmd := exec.Command("go", args...)
	cmd.Dir = o.root
	cmd.Env = append(withoutGoEnv(os.Environ()), buildEnv(p)...)
	cmd.Stdout, cmd.Stderr = os.Stderr, os.Stderr
	if err := cmd.Run(); err != nil {
		return fmt.Errorf("building for %s: %w", p, err)
	}
	return nil
}

// buildEnv is the environment that decides what a build produces, all of
// it set: no go env file (GOENV=off, so that go env -w settings do not
// apply), this Go release (GOTOOLCHAIN=local), static, Linux on p's
// architecture, at its baseline level (see platform.goEnv).
func buildEnv(p platform) []string {
	return append([]string{"GOENV=off", "GOTOOLCHAIN=local", "CGO_ENABLED=0", "GOOS=linux", "GOFLAGS=", "GOEXPERIMENT="}, p.goEnv()...)
}

// withoutGoEnv drops the settings that change what go build produces, so
// that the caller's (a cgo toolchain, another GOOS, a microarchitecture
// level) cannot make the build differ: buildEnv sets the ones it needs,
// and the rest take their defaults.
func withoutGoEnv(env []string) []string {
	var out []string
	for _, kv := range env {
		name, _, _ := strings.Cut(kv, "=")
		switch name {
		case "GOENV", "GOTOOLCHAIN", "CGO_ENABLED", "GOOS", "GOARCH", "GOFLAGS", "GOEXPERIMENT",
			"GOAMD64", "GOARM", "GOARM64", "GO386", "GOMIPS", "GOMIPS64", "GOPPC64", "GORISCV64", "GOWASM", "GOFIPS140":
			continue
		}
		out = append(out, kv)
	}
	return out
}

// goVersion is the release compile builds with, for the image's labels:
// the same tree gives the same image with the same release.
func goVersion(root string) (string, error) {
	cmd := exec.Command("go", "env", "GOVERSION")
	cmd.Dir = root
	cmd.Env = append(withoutGoEnv(os.Environ()), buildEnv(platforms[0])...)
	out, err := cmd.Output()
	if err != nil {
		return "", fmt.Errorf("go env GOVERSION: %w", err)
	}
	return strings.TrimSpace(string(out)), nil
}
