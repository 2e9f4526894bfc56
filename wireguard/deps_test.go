package wireguard

import (
	"os/exec"
	"strings"
	"testing"
)

// TestOnlyImportersLinkWireGuard: the WireGuard modules are linked only
// into a binary that imports this package. flanneld (which runs vxlan) and
// the vxlan and hostgw datapaths list none of them among their
// dependencies.
func TestOnlyImportersLinkWireGuard(t *testing.T) {
	if testing.Short() {
		t.Skip("runs go list")
	}
	for _, pkg := range []string{"../examples/flanneld", "../vxlan", "../hostgw", "../lease/..."} {
		out, err := exec.Command("go", "list", "-deps", pkg).CombinedOutput()
		if err != nil {
			t.Fatalf("go list -deps %s: %v\n%s", pkg, err, out)
		}
		for _, dep := range strings.Fields(string(out)) {
			if strings.HasPrefix(dep, "golang.zx2c4.com/") || dep == "github.com/weftnet/weft/wireguard" {
				t.Errorf("%s depends on %s", pkg, dep)
			}
		}
	}
	out, err := exec.Command("go", "list", "-deps", ".").CombinedOutput()
	if err != nil || !strings.Contains(string(out), "golang.zx2c4.com/wireguard/device") {
		t.Fatalf("the check cannot fail: package wireguard's own deps lack wireguard-go: %v", err)
	}
}
