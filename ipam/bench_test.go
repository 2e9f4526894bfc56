package ipam

import (
	"fmt"
	"net/netip"
	"os"
	"testing"
)

// BenchmarkAllocateRelease is the library's share of a plugin's ADD and
// DEL, with 20 other pods holding IPs, on tmpfs (/dev/shm) and on disk.
func BenchmarkAllocateRelease(b *testing.B) {
	for _, fs := range []struct{ name, dir string }{{"tmpfs", "/dev/shm"}, {"disk", os.TempDir()}} {
		b.Run(fs.name, func(b *testing.B) {
			root, err := os.MkdirTemp(fs.dir, "weft-ipam-bench-")
			if err != nil {
				b.Fatal(err)
			}
			b.Cleanup(func() { os.RemoveAll(root) })
			a, err := New(Config{Dir: root + "/cbr0", Ranges: []Range{{Subnet: netip.MustParsePrefix("10.244.3.0/24")}}})
			if err != nil {
				b.Fatal(err)
			}
			for i := range 20 {
				if _, err := a.Allocate(att(fmt.Sprintf("busy%02d", i)), pod(fmt.Sprintf("busy%02d", i))); err != nil {
					b.Fatal(err)
				}
			}
			b.ResetTimer()
			for i := 0; i < b.N; i++ {
				c := fmt.Sprintf("c%d", i%50)
				if _, err := a.Allocate(att(c), pod(c)); err != nil {
					b.Fatal(err)
				}
				if err := a.Release(att(c), pod(c)); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}
