package hostrules

import (
	"fmt"
	"net/netip"

	"github.com/google/nftables"
	"github.com/google/nftables/binaryutil"
	"github.com/google/nftables/expr"
)

// MasqueradeTable is the nftables table the masquerade rules live in, in
// the ip and ip6 families, with one chain, "postrouting". The table is
// weft's: everything in it is rebuilt on each apply, and nothing outside it
// is touched.
const MasqueradeTable = "weft"

// kubeProxyMark is the bit kube-proxy's KUBE-MARK-MASQ sets on a packet it
// will masquerade itself (its --iptables-masquerade-bit, 14 by default).
const kubeProxyMark = 0x4000

// masqRules are flannel's masquerade rules for one family (its
// FLANNEL-POSTRTG chain, v0.28, iptables mode), in order:
//
//	mark & 0x4000 == 0x4000                     return      (kube-proxy masquerades it)
//	saddr in this subnet, daddr in network      return      (local pod to pod)
//	saddr in network, daddr in this subnet      return      (pod to local pod)
//	saddr not in network, daddr in this subnet  return      (to local pods)
//	saddr in network, daddr not multicast       masquerade  (pod to outside)
//	saddr not in network, daddr in network      masquerade  (outside to remote pods)
//
// The mark rule comes first so that a packet kube-proxy will masquerade is
// not masqueraded twice: the double NAT under which kernels before 5.7
// corrupt the outer UDP checksum of VXLAN packets (flannel #1279, PR
// #1681).
//
// Masquerading is fully random (iptables' --random-fully) unless
// randomFully is false (flanneld's --ip-masq-fully-random-disable), as in
// flannel.
func masqRules(network, subnet netip.Prefix, randomFully bool) [][]expr.Any {
	multicast := netip.MustParsePrefix("224.0.0.0/4")
	if network.Addr().Is6() {
		multicast = netip.MustParsePrefix("ff00::/8")
	}
	ret := &expr.Verdict{Kind: expr.VerdictReturn}
	masq := &expr.Masq{FullyRandom: randomFully}
	return [][]expr.Any{
		join(markMatch(kubeProxyMark), ret),
		join(match(true, subnet, true), match(false, network, true), ret),
		join(match(true, network, true), match(false, subnet, true), ret),
		join(match(true, network, false), match(false, subnet, true), ret),
		join(match(true, network, true), match(false, multicast, false), masq),
		join(match(true, network, false), match(false, network, true), masq),
	}
}

// markMatch matches packets whose mark has all the bits of bits set
// (iptables' -m mark --mark bits/bits). The mark is in host byte order.
func markMatch(bits uint32) []expr.Any {
	b := binaryutil.NativeEndian.PutUint32(bits)
	return []expr.Any{
		&expr.Meta{Key: expr.MetaKeyMARK, Register: 1},
		&expr.Bitwise{SourceRegister: 1, DestRegister: 1, Len: 4, Mask: b, Xor: make([]byte, 4)},
		&expr.Cmp{Op: expr.CmpOpEq, Register: 1, Data: b},
	}
}

// applyMasq makes the masquerade table for network (and this node's subnet
// in it) exactly the rules above, in one transaction: the table and chain
// are created if missing, emptied, and filled, so the result is the same
// however often it runs and whatever was there. nsFD selects the network
// namespace (-1: this process's).
func applyMasq(nsFD int, network, subnet netip.Prefix, randomFully bool) error {
	c, err := nftConn(nsFD)
	if err != nil {
		return fmt.Errorf("nftables: %w", err)
	}
	fam := nftables.TableFamilyIPv4
	if network.Addr().Is6() {
		fam = nftables.TableFamilyIPv6
	}
	table := c.AddTable(&nftables.Table{Name: MasqueradeTable, Family: fam})
	chain := c.AddChain(&nftables.Chain{
		Name: "postrouting", Table: table, Type: nftables.ChainTypeNAT,
		Hooknum: nftables.ChainHookPostrouting, Priority: nftables.ChainPriorityNATSource,
	})
	c.FlushChain(chain)
	for _, exprs := range masqRules(network, subnet, randomFully) {
		c.AddRule(&nftables.Rule{Table: table, Chain: chain, Exprs: exprs})
	}
	if err := c.Flush(); err != nil {
		return fmt.Errorf("nftables: masquerade rules for %s: %w", network, err)
	}
	return nil
}

// masqRuleCount returns how many rules the masquerade chain holds, -1 if the
// table or chain is missing: a cheap check for the periodic resync.
func masqRuleCount(nsFD int, ipv6 bool) int {
	c, err := nftConn(nsFD)
	if err != nil {
		return -1
	}
	fam := nftables.TableFamilyIPv4
	if ipv6 {
		fam = nftables.TableFamilyIPv6
	}
	tables, err := c.ListTablesOfFamily(fam)
	if err != nil {
		return -1
	}
	for _, t := range tables {
		if t.Name == MasqueradeTable {
			rules, err := c.GetRules(t, &nftables.Chain{Name: "postrouting"})
			if err != nil {
				return -1
			}
			return len(rules)
		}
	}
	return -1
}

// masqIntact reports whether the masquerade chain of network's family
// holds exactly the rules of masqRules, in order: what a resync checks, so
// that a rule edited in place is repaired like a missing one.
func masqIntact(nsFD int, network, subnet netip.Prefix, randomFully bool) bool {
	c, err := nftConn(nsFD)
	if err != nil {
		return false
	}
	fam := nftables.TableFamilyIPv4
	if network.Addr().Is6() {
		fam = nftables.TableFamilyIPv6
	}
	rules, err := c.GetRules(&nftables.Table{Name: MasqueradeTable, Family: fam}, &nftables.Chain{Name: "postrouting"})
	want := masqRules(network, subnet, randomFully)
	if err != nil || len(rules) != len(want) {
		return false
	}
	for i, r := range rules {
		if !sameMatch(r.Exprs, want[i]) {
			return false
		}
	}
	return true
}
