// Package cnitest finds and builds the CNI plugins that tests run a
// chain with: flannel's plugin, built from its module through the Go
// module proxy, and Debian's (package containernetworking-plugins).
//
// A plugin that is missing skips the test, unless .ci/run's
// WEFT_REQUIRE_FLANNEL_CNI or WEFT_REQUIRE_HOSTLOCAL says it must be
// there; then the test fails. Nothing here holds state: callers decide
// how often to build, and own the directories they build into.
package cnitest

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"testing"
)

// FlannelModule is the flannel CNI plugin's last release inside
// containernetworking/plugins, the code flannel's own cni-plugin grew
// from: it reads subnet.env and delegates to bridge, with "ipam" filled
// in from it. It speaks CNI up to 0.4.0.
const FlannelModule = "github.com/containernetworking/plugins/plugins/meta/flannel@v0.9.1"

// DebianDir is where Debian installs its CNI plugins.
const DebianDir = "/usr/lib/cni"

// Environment variables that turn a missing plugin into a failure.
const (
	RequireFlannelEnv = "WEFT_REQUIRE_FLANNEL_CNI"
	requireDebianEnv  = "WEFT_REQUIRE_HOSTLOCAL" // the same package as host-local
)

// InstallFlannel builds flannel's plugin into dir, as dir/flannel.
func InstallFlannel(dir string) error {
	install := exec.Command("go", "install", FlannelModule)
	install.Env = append(os.Environ(), "GOBIN="+dir, "CGO_ENABLED=0", "GOFLAGS=")
	if out, err := install.CombinedOutput(); err != nil {
		return fmt.Errorf("building flannel's CNI plugin (%s): %v\n%s", FlannelModule, err, out)
	}
	return nil
}

// FlannelUnavailable ends t for err, a failure of InstallFlannel: a
// failure under WEFT_REQUIRE_FLANNEL_CNI, else a skip.
func FlannelUnavailable(t testing.TB, err error) {
	t.Helper()
	if os.Getenv(RequireFlannelEnv) != "" {
		t.Fatalf("%v (%s is set)", err, RequireFlannelEnv)
	}
	t.Skip(err)
}

// Debian returns the path of each of Debian's plugins named, ending t
// (a skip, or a failure under WEFT_REQUIRE_HOSTLOCAL) when one is
// missing.
func Debian(t testing.TB, names ...string) []string {
	t.Helper()
	paths := make([]string, len(names))
	for i, name := range names {
		paths[i] = filepath.Join(DebianDir, name)
		if _, err := os.Stat(paths[i]); err != nil {
			if os.Getenv(requireDebianEnv) != "" {
				t.Fatalf("Debian's CNI plugin: %v (apt-get install containernetworking-plugins)", err)
			}
			t.Skipf("Debian's CNI plugin: %v", err)
		}
	}
	return paths
}
