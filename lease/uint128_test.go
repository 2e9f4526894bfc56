package lease

import (
	"math/big"
	"math/rand/v2"
	"net/netip"
	"testing"
)

func TestU128AgainstBig(t *testing.T) {
	rnd := rand.New(rand.NewPCG(9, 10))
	mod := new(big.Int).Lsh(big.NewInt(1), 128)
	norm := func(b *big.Int) string { return new(big.Int).Mod(b, mod).String() }
	edge := []u128{{}, {lo: 1}, {lo: ^uint64(0)}, {hi: 1}, {hi: ^uint64(0), lo: ^uint64(0)}, {hi: 1 << 63}}
	vals := append([]u128{}, edge...)
	for range 200 {
		vals = append(vals, u128{rnd.Uint64() >> rnd.UintN(64), rnd.Uint64() >> rnd.UintN(64)})
	}
	for _, x := range vals {
		for _, y := range edge {
			bx, by := x.big(), y.big()
			if got, want := x.add(y).String(), norm(new(big.Int).Add(bx, by)); got != want {
				t.Fatalf("%v + %v = %s, want %s", x, y, got, want)
			}
			if got, want := x.sub(y).String(), norm(new(big.Int).Sub(bx, by)); got != want {
				t.Fatalf("%v - %v = %s, want %s", x, y, got, want)
			}
			if got, want := x.cmp(y), bx.Cmp(by); got != want {
				t.Fatalf("cmp(%v, %v) = %d, want %d", x, y, got, want)
			}
		}
		for n := uint(0); n <= 130; n++ {
			if got, want := x.shr(n).String(), norm(new(big.Int).Rsh(x.big(), n)); got != want {
				t.Fatalf("%v >> %d = %s, want %s", x, n, got, want)
			}
			if got, want := x.shl(n).String(), norm(new(big.Int).Lsh(x.big(), n)); got != want {
				t.Fatalf("%v << %d = %s, want %s", x, n, got, want)
			}
			wantOnes := new(big.Int).Sub(new(big.Int).Lsh(big.NewInt(1), min(n, 128)), big.NewInt(1))
			if got := ones(n).String(); got != wantOnes.String() {
				t.Fatalf("ones(%d) = %s, want %s", n, got, wantOnes)
			}
		}
		if got, want := x.bitLen(), x.big().BitLen(); got != want {
			t.Fatalf("bitLen(%v) = %d, want %d", x, got, want)
		}
	}
}

func TestU128Addr(t *testing.T) {
	for _, s := range []string{"0.0.0.0", "10.244.3.0", "255.255.255.255", "::", "fd00:1::", "ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff", "2001:db8::1:2:3"} {
		a := netip.MustParseAddr(s)
		if got := u128FromAddr(a).addr(a.Is4()); got != a {
			t.Errorf("round trip %s = %s", a, got)
		}
	}
	if got := u128FromAddr(netip.MustParseAddr("10.0.0.1")); got != (u128{lo: 0x0a000001}) {
		t.Errorf("10.0.0.1 = %#v", got)
	}
}
