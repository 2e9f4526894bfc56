package vxlan

import (
	"cmp"
	"net/netip"
)

// ComparePrefixes orders subnets by address, then by length: the order of
// Status's peers, and of package lease/admit's verdicts, so that the two
// merge without sorting again. (netip.Prefix.Compare puts length first.)
// It builds on every platform, for readers of status output.
func ComparePrefixes(a, b netip.Prefix) int {
	if c := a.Addr().Compare(b.Addr()); c != 0 {
		return c
	}
	return cmp.Compare(a.Bits(), b.Bits())
}
