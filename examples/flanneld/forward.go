package main

import (
	"errors"
	"fmt"
	"net/netip"
	"os"
	"strings"

	"github.com/google/nftables"
	"github.com/google/nftables/expr"
	"github.com/google/nftables/userdata"
)

// --iptables-forward-rules: flannel's accept rules for the overlay in the
// FORWARD chain, so that pod traffic flows on a host whose FORWARD policy
// is DROP (Docker sets it). An accept in a table of weft's own would not
// do: every base chain on the hook sees the packet, and the DROP policy of
// iptables' chain still applies. So the rules go into iptables' own
// filter table, where iptables-nft (the iptables of current distributions)
// keeps it in nftables, written in the form iptables-nft writes, so that
// iptables -S shows them as flannel's:
//
//	-N FLANNEL-FWD
//	-A FORWARD -m comment --comment "flanneld forward" -j FLANNEL-FWD
//	-A FLANNEL-FWD -s <Network> -m comment --comment "flanneld forward" -j ACCEPT
//	-A FLANNEL-FWD -d <Network> -m comment --comment "flanneld forward" -j ACCEPT
//
// A host without iptables' filter table drops nothing there, and is left
// alone until one appears. A host on iptables-legacy keeps its tables
// outside nftables, which this daemon does not write: it says so.
const (
	fwdChain   = "FLANNEL-FWD"
	fwdComment = "flanneld forward"
)

// errLegacyIptables says the host's FORWARD chain is iptables-legacy's.
var errLegacyIptables = errors.New("this host's iptables filter table is iptables-legacy's, which weft does not write: switch to iptables-nft, or set --iptables-forward-rules=false and accept the Network in FORWARD yourself")

// nftConn opens an nftables connection in the namespace nsFD (-1: this
// process's).
func nftConn(nsFD int) (*nftables.Conn, error) {
	var opts []nftables.ConnOption
	if nsFD >= 0 {
		opts = append(opts, nftables.WithNetNSFd(nsFD))
	}
	return nftables.New(opts...)
}

// forwardRulesFor returns the two accept rules of network, in iptables-nft's
// encoding: source or destination in network, a counter, accept.
func forwardRulesFor(network netip.Prefix) [][]expr.Any {
	var rules [][]expr.Any
	for _, source := range []bool{true, false} {
		rules = append(rules, join(match(source, network.Masked(), true), &expr.Counter{}, &expr.Verdict{Kind: expr.VerdictAccept}))
	}
	return rules
}

func fwdUserData() []byte { return userdata.AppendString(nil, userdata.TypeComment, fwdComment) }

// forwardTable finds iptables' filter table and FORWARD chain of a family,
// if the host has them.
func forwardTable(c *nftables.Conn, fam nftables.TableFamily) (*nftables.Table, *nftables.Chain, error) {
	chains, err := c.ListChainsOfTableFamily(fam)
	if err != nil {
		return nil, nil, err
	}
	for _, ch := range chains {
		if ch.Table.Name == "filter" && ch.Name == "FORWARD" {
			return ch.Table, ch, nil
		}
	}
	return nil, nil, nil
}

// ensureForward makes the forward rules of network exactly the ones
// above, and reports whether it had to write. nsFD selects the network
// namespace (-1: this process's).
func ensureForward(nsFD int, network netip.Prefix) (bool, error) {
	c, err := nftConn(nsFD)
	if err != nil {
		return false, fmt.Errorf("nftables: %w", err)
	}
	fam := nftables.TableFamilyIPv4
	if network.Addr().Is6() {
		fam = nftables.TableFamilyIPv6
	}
	table, forward, err := forwardTable(c, fam)
	if err != nil {
		return false, fmt.Errorf("nftables: list chains: %w", err)
	}
	if table == nil {
		if nsFD < 0 && legacyFilterInUse(network.Addr().Is6()) {
			return false, errLegacyIptables
		}
		return false, nil // nothing drops here; looked at again at the next resync
	}
	if forwardIntact(c, table, forward, network) {
		return false, legacyAlso(nsFD, network)
	}
	chain := c.AddChain(&nftables.Chain{Name: fwdChain, Table: table})
	c.FlushChain(chain)
	for _, exprs := range forwardRulesFor(network) {
		c.AddRule(&nftables.Rule{Table: table, Chain: chain, Exprs: exprs, UserData: fwdUserData()})
	}
	// The jump, once, at the end of FORWARD: earlier ones of ours go.
	rules, err := c.GetRules(table, forward)
	if err != nil {
		return false, fmt.Errorf("nftables: list FORWARD: %w", err)
	}
	for _, r := range rules {
		if isJumpToFwd(r) {
			if err := c.DelRule(r); err != nil {
				return false, err
			}
		}
	}
	c.AddRule(&nftables.Rule{Table: table, Chain: forward, UserData: fwdUserData(), Exprs: []expr.Any{
		&expr.Counter{}, &expr.Verdict{Kind: expr.VerdictJump, Chain: fwdChain},
	}})
	if err := c.Flush(); err != nil {
		return false, fmt.Errorf("nftables: forward rules for %s: %w", network, err)
	}
	return true, legacyAlso(nsFD, network)
}

// legacyAlso reports errLegacyIptables when iptables-legacy's filter table
// is loaded beside the nftables one: its FORWARD chain, which weft does
// not write, sees the packets too, and may drop them.
func legacyAlso(nsFD int, network netip.Prefix) error {
	if nsFD < 0 && legacyFilterInUse(network.Addr().Is6()) {
		return errLegacyIptables
	}
	return nil
}

// forwardIntact reports whether FORWARD jumps to the chain once and the
// chain holds exactly network's two rules.
func forwardIntact(c *nftables.Conn, table *nftables.Table, forward *nftables.Chain, network netip.Prefix) bool {
	rules, err := c.GetRules(table, forward)
	if err != nil {
		return false
	}
	jumps := 0
	for _, r := range rules {
		if isJumpToFwd(r) {
			jumps++
		}
	}
	if jumps != 1 {
		return false
	}
	ours, err := c.GetRules(table, &nftables.Chain{Name: fwdChain, Table: table})
	if err != nil || len(ours) != 2 {
		return false
	}
	for i, want := range forwardRulesFor(network) {
		if !sameMatch(ours[i].Exprs, want) {
			return false
		}
	}
	return true
}

// sameMatch compares two rules' matches and verdicts, ignoring counters'
// values.
func sameMatch(got, want []expr.Any) bool {
	if len(got) != len(want) {
		return false
	}
	for i := range got {
		if _, ok := want[i].(*expr.Counter); ok {
			if _, ok := got[i].(*expr.Counter); !ok {
				return false
			}
			continue
		}
		if fmt.Sprintf("%#v", got[i]) != fmt.Sprintf("%#v", want[i]) {
			return false
		}
	}
	return true
}

func isJumpToFwd(r *nftables.Rule) bool {
	for _, e := range r.Exprs {
		if v, ok := e.(*expr.Verdict); ok && v.Kind == expr.VerdictJump && v.Chain == fwdChain {
			return true
		}
	}
	return false
}

// legacyFilterInUse reports whether iptables-legacy's filter table is
// loaded in this namespace.
func legacyFilterInUse(ipv6 bool) bool {
	name := "/proc/net/ip_tables_names"
	if ipv6 {
		name = "/proc/net/ip6_tables_names"
	}
	b, err := os.ReadFile(name)
	return err == nil && strings.Contains(string(b), "filter")
}
