package hostrules

import (
	"net/netip"

	"github.com/google/nftables"
	"github.com/google/nftables/expr"
)

// nftConn opens an nftables connection in the namespace nsFD (-1: this
// process's).
func nftConn(nsFD int) (*nftables.Conn, error) {
	var opts []nftables.ConnOption
	if nsFD >= 0 {
		opts = append(opts, nftables.WithNetNSFd(nsFD))
	}
	return nftables.New(opts...)
}

// join flattens expressions and lists of them into one rule.
func join(parts ...any) []expr.Any {
	var out []expr.Any
	for _, p := range parts {
		switch v := p.(type) {
		case []expr.Any:
			out = append(out, v...)
		case expr.Any:
			out = append(out, v)
		}
	}
	return out
}

// match loads the source (or destination) address, masks it to p's length
// and compares it with p: equal if in is true, else not equal.
func match(source bool, p netip.Prefix, in bool) []expr.Any {
	off, n := uint32(16), uint32(4) // IPv4 destination
	if source {
		off = 12
	}
	if p.Addr().Is6() {
		off, n = 24, 16
		if source {
			off = 8
		}
	}
	mask := netip.PrefixFrom(p.Addr(), p.Bits()).Masked()
	maskBytes := make([]byte, n)
	for i := 0; i < p.Bits(); i++ {
		maskBytes[i/8] |= 0x80 >> (i % 8)
	}
	op := expr.CmpOpEq
	if !in {
		op = expr.CmpOpNeq
	}
	return []expr.Any{
		&expr.Payload{DestRegister: 1, Base: expr.PayloadBaseNetworkHeader, Offset: off, Len: n},
		&expr.Bitwise{SourceRegister: 1, DestRegister: 1, Len: n, Mask: maskBytes, Xor: make([]byte, n)},
		&expr.Cmp{Op: op, Register: 1, Data: mask.Addr().AsSlice()},
	}
}
