package hostrules

import (
	"io/fs"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
)

// TestIPMasqClaimedOnlyWithMasquerade: a subnet.env with FLANNEL_IPMASQ=true
// tells flannel's CNI plugin to leave masquerading to the node, so pods
// lose outbound NAT unless the node applies the masquerade rules. Every
// program and godoc example in the module that writes IPMasq: true must
// apply them through this package (examples/flanneld sets IPMasq from
// --ip-masq, which applies them, and is no literal claim).
func TestIPMasqClaimedOnlyWithMasquerade(t *testing.T) {
	claim := regexp.MustCompile(`IPMasq:\s*true`)
	scanned := 0
	err := filepath.WalkDir("..", func(path string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if d.IsDir() {
			if name := d.Name(); name == "testdata" || strings.HasPrefix(name, ".") && name != ".." {
				return filepath.SkipDir
			}
			return nil
		}
		// Programs and godoc examples: what an embedder copies. Other
		// tests write subnet.env as data.
		if !strings.HasSuffix(path, ".go") || strings.HasSuffix(path, "_test.go") && !strings.HasSuffix(path, "example_test.go") {
			return nil
		}
		src, err := os.ReadFile(path)
		if err != nil {
			return err
		}
		scanned++
		if claim.Match(src) && !strings.Contains(string(src), "hostrules.") {
			t.Errorf("%s writes IPMasq: true into subnet.env but applies no masquerade rules (hostrules.Options{Masquerade: true}): flannel's CNI plugin then masquerades nothing, and pods lose outbound NAT", path)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if scanned < 50 {
		t.Fatalf("scanned only %d files; the walk is not of the module", scanned)
	}
}
