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
	{"./examples/weftctl", "/opt/bin/weftctl"},
	{"./examples/weft-install-cni", "/opt/bin/weft-install-cni"},
}

// compile builds pkg of the repository at o.root into out: static (no
// cgo), for Linux on o.arch, reproducibly (no paths of this machine, no
// build ID, no VCS stamp), with the version set where a main has one.
func compile(o options, pkg, out string) error {
	ldflags := "-s -w -buildid= -X main.version=" + o.version
	cmd := exec.Command("go", "build", "-trimpath", "-buildvcs=false", "-ldflags", ldflags, "-o", out, pkg)
	cmd.Dir = o.root
	cmd.Env = append(withoutGoEnv(os.Environ()), "CGO_ENABLED=0", "GOOS=linux", "GOARCH="+o.arch, "GOFLAGS=")
	cmd.Stdout, cmd.Stderr = os.Stderr, os.Stderr
	if err := cmd.Run(); err != nil {
		return fmt.Errorf("building %s: %w", pkg, err)
	}
	return nil
}

// withoutGoEnv drops the settings compile sets itself, so that the
// caller's (a cgo toolchain, another GOOS) cannot make the build differ.
func withoutGoEnv(env []string) []string {
	var out []string
	for _, kv := range env {
		name, _, _ := strings.Cut(kv, "=")
		switch name {
		case "CGO_ENABLED", "GOOS", "GOARCH", "GOFLAGS":
			continue
		}
		out = append(out, kv)
	}
	return out
}
