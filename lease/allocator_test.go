package lease

import (
	"errors"
	"fmt"
	"math/big"
	"math/rand/v2"
	"net/netip"
	"slices"
	"strings"
	"testing"
)

func TestRange(t *testing.T) {
	tests := []struct {
		r     Range
		valid bool
		len   int64
	}{
		{Range{}, false, 0},
		{Range{pfx("10.0.1.0/24"), pfx("10.0.1.0/24")}, true, 1},
		{Range{pfx("10.0.1.0/24"), pfx("10.0.255.0/24")}, true, 255},
		{Range{pfx("10.0.2.0/24"), pfx("10.0.1.0/24")}, false, 0},
		{Range{pfx("10.0.1.0/24"), pfx("10.0.2.0/25")}, false, 0},
		{Range{pfx("10.0.1.1/24"), pfx("10.0.2.0/24")}, false, 0},
		{Range{pfx("10.0.1.0/24"), pfx("fd00::/24")}, false, 0},
		{Range{pfx("0.0.0.0/0"), pfx("0.0.0.0/0")}, false, 0},
		{Range{pfx("fd00:0:0:1::/64"), pfx("fd00:0:0:ffff::/64")}, true, 65535},
		{Range{pfx("::ffff:10.0.0.0/120"), pfx("::ffff:10.0.1.0/120")}, false, 0},
		// 2^128 subnets cannot be counted in 128 bits; one fewer can.
		{Range{pfx("::/128"), pfx("ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff/128")}, false, 0},
		{Range{pfx("::/128"), pfx("ffff:ffff:ffff:ffff:ffff:ffff:ffff:fffe/128")}, true, -1},
	}
	for _, tt := range tests {
		if got := tt.r.IsValid(); got != tt.valid {
			t.Errorf("%v.IsValid() = %v, want %v", tt.r, got, tt.valid)
		}
		wantLen := big.NewInt(tt.len)
		if tt.len == -1 {
			wantLen = new(big.Int).Sub(new(big.Int).Lsh(big.NewInt(1), 128), big.NewInt(1))
		}
		if got := tt.r.Len(); got.Cmp(wantLen) != 0 {
			t.Errorf("%v.Len() = %v, want %v", tt.r, got, wantLen)
		}
	}

	r := Range{pfx("10.0.1.0/24"), pfx("10.0.9.0/24")}
	for p, want := range map[string]bool{
		"10.0.1.0/24": true, "10.0.5.0/24": true, "10.0.9.0/24": true,
		"10.0.0.0/24": false, "10.0.10.0/24": false, "10.0.5.0/25": false,
		"10.0.5.0/23": false, "fd00::/24": false, "10.0.5.128/25": false,
	} {
		if got := r.Contains(pfx(p)); got != want {
			t.Errorf("%v.Contains(%s) = %v, want %v", r, p, got, want)
		}
	}
	if r.Contains(netip.Prefix{}) {
		t.Error("range contains the zero prefix")
	}
	if s := r.String(); s != "10.0.1.0/24..10.0.9.0/24" {
		t.Errorf("String() = %q", s)
	}
	if _, err := NewAllocator(Range{}, nil); err == nil {
		t.Error("NewAllocator accepted an invalid range")
	}
}

// bruteFree lists the free subnets of r the slow, obvious way.
func bruteFree(r Range, taken []netip.Prefix) map[netip.Prefix]bool {
	free := map[netip.Prefix]bool{}
	step := new(big.Int).Lsh(big.NewInt(1), uint(r.First.Addr().BitLen()-r.First.Bits()))
	cur := u128FromAddr(r.First.Addr()).big()
	last := u128FromAddr(r.Last.Addr()).big()
	for ; cur.Cmp(last) <= 0; cur.Add(cur, step) {
		var b [16]byte
		cur.FillBytes(b[:])
		a := netip.AddrFrom16(b)
		if r.First.Addr().Is4() {
			a = netip.AddrFrom4([4]byte(b[12:]))
		}
		p := netip.PrefixFrom(a, r.First.Bits())
		ok := true
		for _, t := range taken {
			if t.IsValid() && t.Addr().Is4() == a.Is4() && t.Overlaps(p) {
				ok = false
				break
			}
		}
		if ok {
			free[p] = true
		}
	}
	return free
}

// checkAgainstBrute verifies FreeLen, CheckFree on every candidate, and that
// Pick only ever returns free subnets and, given enough draws, all of them.
func checkAgainstBrute(t *testing.T, r Range, taken []netip.Prefix, rnd *rand.Rand) {
	t.Helper()
	a, err := NewAllocator(r, taken)
	if err != nil {
		t.Fatal(err)
	}
	want := bruteFree(r, taken)
	if got := a.FreeLen(); got.Cmp(big.NewInt(int64(len(want)))) != 0 {
		t.Fatalf("range %v taken %v: FreeLen = %v, want %d", r, taken, got, len(want))
	}
	for p := range bruteFree(r, nil) {
		err := a.CheckFree(p)
		switch {
		case want[p] && err != nil:
			t.Errorf("CheckFree(%s) = %v, want nil", p, err)
		case !want[p] && !errors.Is(err, ErrSubnetTaken):
			t.Errorf("CheckFree(%s) = %v, want ErrSubnetTaken", p, err)
		}
	}
	if len(want) == 0 {
		if _, err := a.Pick(rnd); !errors.Is(err, ErrOutOfSubnets) {
			t.Errorf("Pick on a full range: err = %v, want ErrOutOfSubnets", err)
		}
		return
	}
	seen := map[netip.Prefix]bool{}
	for i := 0; i < 40*len(want); i++ {
		p, err := a.Pick(rnd)
		if err != nil {
			t.Fatal(err)
		}
		if !want[p] {
			t.Fatalf("Pick returned %s, which is not free (taken %v)", p, taken)
		}
		seen[p] = true
	}
	if len(seen) != len(want) {
		t.Errorf("Pick reached %d of %d free subnets", len(seen), len(want))
	}
}

func TestAllocatorTable(t *testing.T) {
	r16 := Range{pfx("10.0.1.0/24"), pfx("10.0.255.0/24")}
	tests := []struct {
		name  string
		r     Range
		taken []string
	}{
		{"nothing taken", r16, nil},
		{"some /24s", r16, []string{"10.0.1.0/24", "10.0.7.0/24", "10.0.255.0/24"}},
		{"duplicates", r16, []string{"10.0.7.0/24", "10.0.7.0/24", "10.0.7.0/24"}},
		{"shorter prefix blocks many", r16, []string{"10.0.16.0/20", "10.0.20.0/24"}},
		{"longer prefix blocks its /24", r16, []string{"10.0.9.64/26", "10.0.9.128/26", "10.0.12.255/32"}},
		{"host bits are masked", r16, []string{"10.0.9.77/24"}},
		{"outside the range", r16, []string{"10.0.0.0/24", "10.1.0.0/16", "192.168.0.0/24", "9.0.0.0/8"}},
		{"straddling the range start", r16, []string{"10.0.0.0/22"}},
		{"straddling the range end", Range{pfx("10.0.1.0/24"), pfx("10.0.100.0/24")}, []string{"10.0.96.0/19"}},
		{"covering the whole range", r16, []string{"10.0.0.0/8"}},
		{"other family ignored", r16, []string{"fd00::/8", "::/0"}},
		{"everything taken one by one", Range{pfx("10.0.1.0/24"), pfx("10.0.4.0/24")}, []string{"10.0.1.0/24", "10.0.2.0/24", "10.0.3.0/24", "10.0.4.0/24"}},
		{"single candidate", Range{pfx("10.0.3.0/24"), pfx("10.0.3.0/24")}, nil},
		{"ipv6", Range{pfx("fd00:0:0:1::/64"), pfx("fd00:0:0:ff::/64")}, []string{"fd00:0:0:10::/60", "fd00:0:0:3::/64", "fd00:0:0:4:8000::/65", "fd00::/56", "10.0.0.0/8"}},
		{"ipv6 /126", Range{pfx("fd00::4/126"), pfx("fd00::fc/126")}, []string{"fd00::20/123", "fd00::fd/128"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var taken []netip.Prefix
			for _, s := range tt.taken {
				taken = append(taken, pfx(s))
			}
			checkAgainstBrute(t, tt.r, taken, rand.New(rand.NewPCG(1, 2)))
		})
	}
}

// TestAllocatorRandom compares the allocator with brute force on random
// taken sets of mixed lengths, inside and around the range.
func TestAllocatorRandom(t *testing.T) {
	rnd := rand.New(rand.NewPCG(3, 4))
	r := Range{pfx("10.8.4.0/24"), pfx("10.8.200.0/24")}
	for iter := 0; iter < 200; iter++ {
		var taken []netip.Prefix
		for range rnd.IntN(40) {
			bits := 12 + rnd.IntN(21)
			a := netip.AddrFrom4([4]byte{10, byte(6 + rnd.IntN(4)), byte(rnd.IntN(256)), byte(rnd.IntN(256))})
			taken = append(taken, netip.PrefixFrom(a, bits).Masked())
		}
		checkAgainstBrute(t, r, taken, rnd)
		if t.Failed() {
			t.Fatalf("failed on iteration %d", iter)
		}
	}
}

func TestAllocatorPickIsUniform(t *testing.T) {
	a, err := NewAllocator(Range{pfx("10.0.1.0/24"), pfx("10.0.32.0/24")}, []netip.Prefix{pfx("10.0.8.0/21"), pfx("10.0.20.0/24")})
	if err != nil {
		t.Fatal(err)
	}
	const free, draws = 23, 23 * 2000
	if a.FreeLen().Int64() != free {
		t.Fatalf("FreeLen = %v", a.FreeLen())
	}
	rnd := rand.New(rand.NewPCG(5, 6))
	counts := map[netip.Prefix]int{}
	for range draws {
		p, err := a.Pick(rnd)
		if err != nil {
			t.Fatal(err)
		}
		counts[p]++
	}
	// Each count is binomial(46000, 1/23): mean 2000, sd ~44. 2000±300 is
	// beyond 6 sd, so this does not flake, yet a skewed pick fails it.
	for p, n := range counts {
		if n < 1700 || n > 2300 {
			t.Errorf("%s picked %d times of %d, want about %d", p, n, draws, draws/free)
		}
	}
	if len(counts) != free {
		t.Errorf("picked %d distinct subnets, want %d", len(counts), free)
	}
}

func TestAllocatorOutOfSubnets(t *testing.T) {
	r := Range{pfx("10.0.1.0/24"), pfx("10.255.255.0/24")}
	a, err := NewAllocator(r, []netip.Prefix{pfx("10.0.0.0/8")})
	if err != nil {
		t.Fatal(err)
	}
	_, err = a.Pick(nil)
	if !errors.Is(err, ErrOutOfSubnets) {
		t.Fatalf("err = %v, want ErrOutOfSubnets", err)
	}
	want := "out of subnets: all 65535 /24 subnets from 10.0.1.0 to 10.255.255.0 are taken; widen the network or release unused leases"
	if err.Error() != want {
		t.Errorf("message:\n got %s\nwant %s", err, want)
	}
}

func TestAllocatorCheckFreeOutOfRange(t *testing.T) {
	a, err := NewAllocator(Range{pfx("10.0.1.0/24"), pfx("10.0.9.0/24")}, nil)
	if err != nil {
		t.Fatal(err)
	}
	for _, p := range []string{"10.0.0.0/24", "10.0.10.0/24", "10.0.5.0/25", "10.0.4.0/23", "fd00::/24", "10.0.5.128/25"} {
		err := a.CheckFree(pfx(p))
		if !errors.Is(err, ErrOutOfRange) {
			t.Errorf("CheckFree(%s) = %v, want ErrOutOfRange", p, err)
		} else if !strings.Contains(err.Error(), p) || !strings.Contains(err.Error(), "from 10.0.1.0 to 10.0.9.0") {
			t.Errorf("CheckFree(%s) message %q does not name the subnet and range", p, err)
		}
	}
	if err := a.CheckFree(netip.Prefix{}); !errors.Is(err, ErrOutOfRange) {
		t.Errorf("CheckFree(zero) = %v", err)
	}
}

// TestAllocatorIPv6Huge covers ranges far beyond what could be enumerated:
// 2^64 and 2^124 candidate subnets.
func TestAllocatorIPv6Huge(t *testing.T) {
	rnd := rand.New(rand.NewPCG(7, 8))
	tests := []struct {
		r     Range
		taken []string
		free  string
	}{
		{
			Range{pfx("fd00::/96"), pfx("fd00:0:ffff:ffff:ffff:ffff::/96")},
			[]string{"fd00::/96", "fd00:0:8000::/33", "fd00:0:1::/96"},
			new(big.Int).Sub(new(big.Int).Lsh(big.NewInt(1), 63), big.NewInt(2)).String(),
		},
		{
			Range{pfx("::/126"), pfx("3fff:ffff:ffff:ffff:ffff:ffff:ffff:fffc/126")},
			[]string{"::/2"},
			"0",
		},
		{
			Range{pfx("::/126"), pfx("3fff:ffff:ffff:ffff:ffff:ffff:ffff:fffc/126")},
			[]string{"::/3"},
			new(big.Int).Lsh(big.NewInt(1), 123).String(),
		},
	}
	for _, tt := range tests {
		var taken []netip.Prefix
		for _, s := range tt.taken {
			taken = append(taken, pfx(s))
		}
		a, err := NewAllocator(tt.r, taken)
		if err != nil {
			t.Fatal(err)
		}
		if got := a.FreeLen().String(); got != tt.free {
			t.Errorf("%v: FreeLen = %s, want %s", tt.r, got, tt.free)
		}
		if tt.free == "0" {
			if _, err := a.Pick(rnd); !errors.Is(err, ErrOutOfSubnets) {
				t.Errorf("%v: Pick err = %v", tt.r, err)
			}
			continue
		}
		for range 1000 {
			p, err := a.Pick(rnd)
			if err != nil {
				t.Fatal(err)
			}
			if !tt.r.Contains(p) {
				t.Fatalf("%v: picked %s outside the range", tt.r, p)
			}
			for _, tp := range taken {
				if tp.Overlaps(p) {
					t.Fatalf("%v: picked %s overlapping taken %s", tt.r, p, tp)
				}
			}
			if err := a.CheckFree(p); err != nil {
				t.Fatalf("CheckFree(picked %s) = %v", p, err)
			}
		}
	}
}

func ExampleAllocator() {
	c, err := ParseConfig([]byte(`{"Network": "10.244.0.0/16"}`))
	if err != nil {
		panic(err)
	}
	taken := []netip.Prefix{netip.MustParsePrefix("10.244.1.0/24"), netip.MustParsePrefix("10.244.128.0/17")}
	a, err := NewAllocator(c.IPv4Range(), taken)
	if err != nil {
		panic(err)
	}
	fmt.Println(a.FreeLen(), "free")
	fmt.Println(a.CheckFree(netip.MustParsePrefix("10.244.2.0/24")))
	fmt.Println(a.CheckFree(netip.MustParsePrefix("10.244.200.0/24")))
	p, _ := a.Pick(rand.New(rand.NewPCG(1, 1)))
	fmt.Println(a.CheckFree(p) == nil)
	// Output:
	// 126 free
	// <nil>
	// subnet is taken: 10.244.200.0/24 overlaps a subnet in use
	// true
}

func TestSortSpans(t *testing.T) {
	rnd := rand.New(rand.NewPCG(11, 12))
	for _, tc := range []struct {
		n    int
		bits uint
	}{{10, 16}, {600, 8}, {5000, 16}, {5000, 40}, {3000, 126}} {
		in := make([]span, tc.n)
		for i := range in {
			v := u128{rnd.Uint64(), rnd.Uint64()}.and(ones(tc.bits))
			in[i] = span{v, v.add(u128{lo: uint64(i)})}
		}
		want := slices.Clone(in)
		slices.SortStableFunc(want, func(x, y span) int { return x.first.cmp(y.first) })
		got := sortSpans(slices.Clone(in), ones(tc.bits))
		for i := range got {
			if got[i].first != want[i].first {
				t.Fatalf("n=%d bits=%d: position %d has %v, want %v", tc.n, tc.bits, i, got[i].first, want[i].first)
			}
		}
	}
}

// TestAllocatorManyTaken checks the radix-sorted build path (many taken
// subnets) against brute force.
func TestAllocatorManyTaken(t *testing.T) {
	rnd := rand.New(rand.NewPCG(13, 14))
	r := Range{pfx("10.0.1.0/24"), pfx("10.15.255.0/24")}
	var taken []netip.Prefix
	for range 1500 {
		a := netip.AddrFrom4([4]byte{10, byte(rnd.IntN(17)), byte(rnd.IntN(256)), byte(rnd.IntN(256))})
		taken = append(taken, netip.PrefixFrom(a, 21+rnd.IntN(10)).Masked())
	}
	a, err := NewAllocator(r, taken)
	if err != nil {
		t.Fatal(err)
	}
	want := bruteFree(r, taken)
	if got := a.FreeLen().Int64(); got != int64(len(want)) {
		t.Fatalf("FreeLen = %d, want %d", got, len(want))
	}
	for p := range bruteFree(r, nil) {
		if err := a.CheckFree(p); (err == nil) != want[p] {
			t.Fatalf("CheckFree(%s) = %v, want free=%v", p, err, want[p])
		}
	}
}
