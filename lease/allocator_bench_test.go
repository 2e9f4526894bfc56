package lease

import (
	"fmt"
	"math/rand/v2"
	"net/netip"
	"testing"
)

// takenSubnets returns n distinct random candidates of r, in random order as
// a store listing would return them (etcd lists keys in byte order, which is
// not numeric order).
func takenSubnets(tb testing.TB, r Range, n int) []netip.Prefix {
	tb.Helper()
	a, err := NewAllocator(r, nil)
	if err != nil {
		tb.Fatal(err)
	}
	rnd := rand.New(rand.NewPCG(uint64(n), 42))
	seen := make(map[netip.Prefix]bool, n)
	out := make([]netip.Prefix, 0, n)
	for len(out) < n {
		p, err := a.Pick(rnd)
		if err != nil {
			tb.Fatal(err)
		}
		if !seen[p] {
			seen[p] = true
			out = append(out, p)
		}
	}
	return out
}

// benchAllocator runs the allocator benchmarks for r with n subnets taken.
// Benchmark names must not contain '/', so the network is given as "space",
// e.g. "8to24" for /24s in a /8.
func benchAllocator(b *testing.B, space string, r Range, n int) {
	taken := takenSubnets(b, r, n)
	name := fmt.Sprintf("%s/taken=%d", space, n)
	b.Run(name+"/setup", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			if _, err := NewAllocator(r, taken); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run(name+"/pick", func(b *testing.B) {
		a, err := NewAllocator(r, taken)
		if err != nil {
			b.Fatal(err)
		}
		rnd := rand.New(rand.NewPCG(1, 2))
		b.ReportAllocs()
		for b.Loop() {
			if _, err := a.Pick(rnd); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run(name+"/checkfree", func(b *testing.B) {
		a, err := NewAllocator(r, taken)
		if err != nil {
			b.Fatal(err)
		}
		b.ReportAllocs()
		i := 0
		for b.Loop() {
			a.CheckFree(taken[i%len(taken)])
			i++
		}
	})
	b.Run(name+"/setup+pick", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			a, err := NewAllocator(r, taken)
			if err != nil {
				b.Fatal(err)
			}
			if _, err := a.Pick(nil); err != nil {
				b.Fatal(err)
			}
		}
	})
}

// BenchmarkAllocatorIPv4 allocates /24s in 10.0.0.0/8 (65,535 candidates)
// with 1,000 and with 65,000 taken.
func BenchmarkAllocatorIPv4(b *testing.B) {
	r := Range{netip.MustParsePrefix("10.0.1.0/24"), netip.MustParsePrefix("10.255.255.0/24")}
	for _, n := range []int{1000, 65000} {
		benchAllocator(b, "8to24", r, n)
	}
}

// BenchmarkAllocatorIPv6 allocates /64s: in a /48 (65,535 candidates, so at
// most that many can be taken) with 65,000 taken, and in a /32 (2^32
// candidates) with 100,000 taken.
func BenchmarkAllocatorIPv6(b *testing.B) {
	benchAllocator(b, "48to64", Range{netip.MustParsePrefix("fd00:0:0:1::/64"), netip.MustParsePrefix("fd00:0:0:ffff::/64")}, 65000)
	benchAllocator(b, "32to64", Range{netip.MustParsePrefix("fd00:0:0:1::/64"), netip.MustParsePrefix("fd00:0:ffff:ffff::/64")}, 100000)
}
