package netnstest

import (
	"os"
	"os/exec"
	"strings"
)

// RequireIptables returns the path of Debian's iptables-nft, which tests
// use to set a host's FORWARD policy and to read rules back as iptables
// shows them. Without it the test skips; with WEFT_REQUIRE_IPTABLES set
// (.ci/run sets it) it fails instead.
func RequireIptables(t T) string {
	t.Helper()
	path, err := exec.LookPath("iptables-nft")
	if err != nil {
		if os.Getenv("WEFT_REQUIRE_IPTABLES") != "" {
			t.Fatal("iptables-nft is missing and WEFT_REQUIRE_IPTABLES is set: apt-get install iptables")
		}
		t.Skip("iptables-nft is not installed (apt-get install iptables)")
	}
	return path
}

// Iptables runs the iptables binary tool (from RequireIptables) with args
// in n, and returns its output; a failure fails t.
func (n *Namespace) Iptables(t T, tool string, args ...string) string {
	t.Helper()
	out, err := exec.Command("ip", append([]string{"netns", "exec", n.Name, tool}, args...)...).CombinedOutput()
	if err != nil {
		t.Fatalf("iptables %s: %v\n%s", strings.Join(args, " "), err, out)
	}
	return string(out)
}
