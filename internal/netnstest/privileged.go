// Package netnstest builds simulated hosts for tests: network namespaces on
// a shared L2 segment, with helpers to run code inside them and to send real
// traffic between them.
//
// Every namespace and device it creates lives inside namespaces it created,
// carries a per-test random name, and is removed by t.Cleanup on every path,
// so parallel test binaries never collide and the machine is left clean.
package netnstest

import (
	"os"

	"github.com/weftnet/weft/internal/testutil"
)

// T is the part of testing.TB the harness uses; see testutil.T.
type T = testutil.T

// RequireEnv names the environment variable that turns a privileged test's
// skip into a failure. .ci/run sets it, so CI cannot pass by skipping.
const RequireEnv = "WEFT_REQUIRE_PRIVILEGED"

// RequirePrivileged skips t unless the process is root, the only condition
// under which it may skip. With WEFT_REQUIRE_PRIVILEGED set it fails instead.
func RequirePrivileged(t T) {
	t.Helper()
	if os.Geteuid() == 0 {
		return
	}
	if os.Getenv(RequireEnv) != "" {
		t.Fatalf("this test needs root (network namespaces) and %s is set, so it may not skip", RequireEnv)
	}
	t.Skip("needs root to create network namespaces")
}
