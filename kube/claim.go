package kube

import (
	"errors"
	"fmt"
	"net/netip"
	"strings"

	"github.com/weftnet/weft/lease"
)

// maxClaimLen bounds a pod-cidr-claim value this package reads: a
// dual-stack claim is at most an IPv4 and an IPv6 CIDR and a comma, under
// 64 bytes. A longer value is judged bad unread, whatever it holds.
const maxClaimLen = 128

// A pod-cidr-claim annotation is written by each node's own agent (see
// Allocate), and so by that node's credentials: whatever it holds is
// untrusted. Every agent judges every other node's claim by the rules of a
// PodCIDR it could itself be given, so that a claim can take no more
// space than one node's PodCIDR:
//
//   - the value is a comma-separated list of CIDRs with their host bits
//     zero, at most one of each family, at most maxClaimLen bytes;
//   - for each family net-conf.json enables there is one, inside the
//     family's Network, exactly SubnetLen (IPv6SubnetLen) long; a CIDR of
//     a family not enabled is ignored.
//
// A claim that fails takes nothing: it is that node's problem alone,
// reported naming the node and the annotation. Another node's claim is
// judged a family at a time (claimedSpace), so that a claim written under
// the net-conf.json before a change between single- and dual-stack keeps
// the family that is still good; this node's own claim must be good in
// every family to become its PodCIDRs (claimOf). Two valid claims overlap
// only if they are equal, and then they take the same space; which node
// gets it is settled by the contest in Allocate.

// parseClaim parses a pod-cidr-claim value: the CIDRs it lists, by family.
// It judges only the syntax; judgeClaim judges the CIDRs.
func parseClaim(v string) (lease.Key, error) {
	if len(v) > maxClaimLen {
		return lease.Key{}, fmt.Errorf("%d bytes, longer than a claim of both families can be (%d)", len(v), maxClaimLen)
	}
	var k lease.Key
	for _, s := range strings.Split(v, ",") {
		p, err := netip.ParsePrefix(strings.TrimSpace(s))
		if err != nil {
			return lease.Key{}, fmt.Errorf("%q is not a CIDR", s)
		}
		if p != p.Masked() {
			return lease.Key{}, fmt.Errorf("%s has host bits set (the subnet is %s)", p, p.Masked())
		}
		dst := &k.IPv4
		if p.Addr().Is6() {
			dst = &k.IPv6
		}
		if dst.IsValid() {
			return lease.Key{}, fmt.Errorf("two CIDRs of one family (%s and %s): a node claims one PodCIDR", *dst, p)
		}
		*dst = p
	}
	return k, nil
}

// claimFamily is one family of a claim, with the rules conf sets for it.
type claimFamily struct {
	on      bool
	p       netip.Prefix
	network netip.Prefix
	bits    int
	name    string
}

func claimFamilies(k lease.Key, conf lease.Config) [2]claimFamily {
	return [2]claimFamily{
		{conf.EnableIPv4, k.IPv4, conf.Network, conf.SubnetLen, "Network"},
		{conf.EnableIPv6, k.IPv6, conf.IPv6Network, conf.IPv6SubnetLen, "IPv6Network"},
	}
}

// judge checks one family's CIDR: nil if it is one PodCIDR inside the
// family's network, or the family is off.
func (f claimFamily) judge() error {
	switch {
	case !f.on:
	case !f.p.IsValid():
		return fmt.Errorf("no CIDR in the %s %s, which net-conf.json enables", f.name, f.network)
	case f.p.Bits() < f.network.Bits() || !f.network.Contains(f.p.Addr()):
		return fmt.Errorf("%s is not inside the %s %s", f.p, f.name, f.network)
	case f.p.Bits() != f.bits:
		return fmt.Errorf("%s is not a PodCIDR's size (/%d)", f.p, f.bits)
	}
	return nil
}

// judgeClaim checks the CIDRs of a claim against conf, and returns the
// claim of the families conf enables: all of them must be good, as this
// node's own claim must be to become its PodCIDRs.
func judgeClaim(k lease.Key, conf lease.Config) (lease.Key, error) {
	k = keyFor(k, conf)
	for _, f := range claimFamilies(k, conf) {
		if err := f.judge(); err != nil {
			return lease.Key{}, err
		}
	}
	return k, nil
}

// claimedSpace reads another node's claim and returns the space it takes:
// each family judged on its own, so that a claim made under an earlier
// net-conf.json (one family, before the network turned dual-stack; or
// a family the new config moved) keeps the family that is still good.
// Judged whole, such a claim would take nothing, and two agents could
// each give the same IPv4 PodCIDR away while a config change rolls out.
// A family with no CIDR takes nothing and is no fault; a present one that
// is bad, or a value that does not parse, is returned as the error, after
// the good families. A claim still takes at most one PodCIDR of a family.
func claimedSpace(v string, conf lease.Config) ([]netip.Prefix, error) {
	if v == "" {
		return nil, nil
	}
	k, err := parseClaim(v)
	if err != nil {
		return nil, err
	}
	var taken []netip.Prefix
	var bad []error
	for _, f := range claimFamilies(keyFor(k, conf), conf) {
		switch err := f.judge(); {
		case !f.on || !f.p.IsValid():
		case err != nil:
			bad = append(bad, err)
		default:
			taken = append(taken, f.p)
		}
	}
	return taken, errors.Join(bad...)
}

// claimOf reads and judges a node's claim: ok false if it has none, an
// error if it is bad.
func claimOf(v string, conf lease.Config) (lease.Key, bool, error) {
	if v == "" {
		return lease.Key{}, false, nil
	}
	k, err := parseClaim(v)
	if err == nil {
		k, err = judgeClaim(k, conf)
	}
	if err != nil {
		return lease.Key{}, false, err
	}
	return k, true, nil
}

// badClaim is another node's claim that takes nothing, kept for its
// report: the value is cut short, so that a report costs little whatever
// the value was.
type badClaim struct {
	node, value, why string
}

// quoteShort quotes at most 64 bytes of v, for a report.
func quoteShort(v string) string {
	if len(v) > 64 {
		return fmt.Sprintf("%q... (%d bytes)", v[:64], len(v))
	}
	return fmt.Sprintf("%q", v)
}

// claimReport is one line on the bad claims a listing found: how many,
// and the first few, each with the fix.
func (m *Manager) claimReport(bad []badClaim) string {
	const shown = 3
	var b strings.Builder
	for i, c := range bad[:min(len(bad), shown)] {
		if i > 0 {
			b.WriteString("; ")
		}
		fmt.Fprintf(&b, "Node %s: %s=%s: %s (remove it: kubectl annotate node %s %s-)", c.node, m.ann.key(annPodCIDRClaim), c.value, c.why, c.node, m.ann.key(annPodCIDRClaim))
	}
	if len(bad) > shown {
		fmt.Fprintf(&b, "; and %d more", len(bad)-shown)
	}
	return b.String()
}
