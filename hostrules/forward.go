package hostrules

import (
	"errors"
	"fmt"
	"io/fs"
	"net/netip"
	"os"
	"slices"
	"strings"

	"github.com/google/nftables"
	"github.com/google/nftables/expr"
	"github.com/google/nftables/userdata"
	"github.com/google/nftables/xt"
	"golang.org/x/sys/unix"
)

// The forward rules (flanneld's --iptables-forward-rules): flannel's accept rules for the overlay in the
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
	// ForwardChain is the chain of the forward rules, in iptables'
	// filter table; FORWARD jumps to it.
	ForwardChain = "FLANNEL-FWD"
	// ForwardComment marks the forward rules (and the jump) as weft's,
	// as flannel marks its own: only rules carrying it are ever changed.
	ForwardComment = "flanneld forward"
)

// ErrLegacyIptables says the host's FORWARD chain is iptables-legacy's,
// which weft does not write.
var ErrLegacyIptables = errors.New("this host's iptables filter table is iptables-legacy's, which weft does not write: switch to iptables-nft, or turn the forward rules off (flanneld: --iptables-forward-rules=false) and accept the Network in FORWARD yourself")

// forwardRulesFor returns the two accept rules of network, in iptables-nft's
// encoding: source or destination in network, a counter, accept.
func forwardRulesFor(network netip.Prefix) [][]expr.Any {
	var rules [][]expr.Any
	for _, source := range []bool{true, false} {
		rules = append(rules, join(match(source, network.Masked(), true), &expr.Counter{}, &expr.Verdict{Kind: expr.VerdictAccept}))
	}
	return rules
}

func fwdUserData() []byte { return userdata.AppendString(nil, userdata.TypeComment, ForwardComment) }

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

// ensureForward makes weft's forward rules for network exactly the ones
// above, and reports whether it had to write. nsFD selects the network
// namespace (-1: this process's).
//
// Only weft's rules are touched: those carrying the comment
// "flanneld forward" (which flannel's carry too). An administrator's rules
// in FLANNEL-FWD or FORWARD stay, in their places: a rule of weft's that
// is missing is put back where it was among weft's others (before the next
// of them, or after the previous), at the end of the chain only when none
// is left; one that is not wanted (another network's, a duplicate) is
// deleted by its handle.
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
			return false, ErrLegacyIptables
		}
		return false, nil // nothing drops here; looked at again at the next resync
	}
	plan, err := planForward(c, table, forward, network)
	if err != nil {
		return false, err
	}
	if plan.empty() {
		return false, legacyAlso(nsFD, network)
	}
	chain := c.AddChain(&nftables.Chain{Name: ForwardChain, Table: table}) // kept if it exists
	for _, r := range plan.del {
		if err := c.DelRule(r); err != nil {
			return false, fmt.Errorf("nftables: %w", err)
		}
	}
	for _, a := range plan.add {
		r := &nftables.Rule{Table: table, Chain: chain, Exprs: a.exprs, UserData: fwdUserData(), Position: a.position}
		if a.before {
			c.InsertRule(r)
		} else {
			c.AddRule(r)
		}
	}
	if plan.jump {
		c.AddRule(&nftables.Rule{Table: table, Chain: forward, UserData: fwdUserData(), Exprs: []expr.Any{
			&expr.Counter{}, &expr.Verdict{Kind: expr.VerdictJump, Chain: ForwardChain},
		}})
	}
	if err := c.Flush(); err != nil {
		return false, fmt.Errorf("nftables: forward rules for %s: %w", network, err)
	}
	return true, legacyAlso(nsFD, network)
}

// forwardPlan is what ensureForward writes: weft's rules to delete, those
// to add (each before or after the rule whose handle is its position, or
// at the end with position 0), and whether FORWARD needs its jump.
type forwardPlan struct {
	del  []*nftables.Rule
	add  []forwardAdd
	jump bool
}

type forwardAdd struct {
	exprs    []expr.Any
	position uint64
	before   bool
}

func (p forwardPlan) empty() bool { return len(p.del) == 0 && len(p.add) == 0 && !p.jump }

// planForward compares weft's rules in FORWARD and FLANNEL-FWD with
// network's, leaving every other rule out of account.
func planForward(c *nftables.Conn, table *nftables.Table, forward *nftables.Chain, network netip.Prefix) (forwardPlan, error) {
	var plan forwardPlan
	rules, err := c.GetRules(table, forward)
	if err != nil {
		return plan, fmt.Errorf("nftables: list FORWARD: %w", err)
	}
	jumps := 0
	for _, r := range rules {
		if isOurs(r) && isJumpToFwd(r) {
			if jumps++; jumps > 1 {
				plan.del = append(plan.del, r)
			}
		}
	}
	plan.jump = jumps == 0
	chained, err := c.GetRules(table, &nftables.Chain{Name: ForwardChain, Table: table})
	if err != nil && !errors.Is(err, fs.ErrNotExist) && !errors.Is(err, unix.ENOENT) {
		return plan, fmt.Errorf("nftables: list %s: %w", ForwardChain, err)
	}
	want := forwardRulesFor(network)
	have := make([]*nftables.Rule, len(want)) // the rule in place for each wanted one
	for _, r := range chained {
		if !isOurs(r) {
			continue
		}
		i := slices.IndexFunc(want, func(w []expr.Any) bool { return sameMatch(r.Exprs, w) })
		if i < 0 || have[i] != nil {
			plan.del = append(plan.del, r)
			continue
		}
		have[i] = r
	}
	// Each missing rule goes before the next of weft's in place, or, with
	// none after it, after the previous: those are added in reverse, each
	// right after the same rule. With none in place, at the end, in order.
	var after []forwardAdd
	for i, w := range want {
		if have[i] != nil {
			continue
		}
		if j := slices.IndexFunc(have[i+1:], func(r *nftables.Rule) bool { return r != nil }); j >= 0 {
			plan.add = append(plan.add, forwardAdd{exprs: w, position: have[i+1+j].Handle, before: true})
			continue
		}
		a := forwardAdd{exprs: w}
		for k := i - 1; k >= 0; k-- {
			if have[k] != nil {
				a.position = have[k].Handle
				break
			}
		}
		after = append(after, a)
	}
	if len(after) > 0 && after[0].position != 0 {
		slices.Reverse(after)
	}
	plan.add = append(plan.add, after...)
	return plan, nil
}

// isOurs reports whether r is weft's (or flannel's): it carries the
// comment weft writes, in the rule's user data as weft and current
// iptables-nft write it, or in an xtables comment match as older
// iptables-nft (and so flanneld through it) writes it.
func isOurs(r *nftables.Rule) bool {
	if comment, ok := userdata.GetString(r.UserData, userdata.TypeComment); ok && comment == ForwardComment {
		return true
	}
	return slices.ContainsFunc(r.Exprs, func(e expr.Any) bool {
		c, ok := commentMatch(e)
		return ok && c == ForwardComment
	})
}

// commentMatch returns the comment of an xtables comment match.
func commentMatch(e expr.Any) (string, bool) {
	m, ok := e.(*expr.Match)
	if !ok || m.Name != "comment" {
		return "", false
	}
	c, ok := m.Info.(*xt.Comment)
	if !ok {
		return "", false
	}
	return string(*c), true
}

// legacyAlso reports ErrLegacyIptables when iptables-legacy's filter table
// is loaded beside the nftables one: its FORWARD chain, which weft does
// not write, sees the packets too, and may drop them.
func legacyAlso(nsFD int, network netip.Prefix) error {
	if nsFD < 0 && legacyFilterInUse(network.Addr().Is6()) {
		return ErrLegacyIptables
	}
	return nil
}

// sameMatch compares two rules' matches and verdicts, ignoring counters'
// values and an xtables comment match in got (the comment is compared by
// isOurs).
func sameMatch(got, want []expr.Any) bool {
	got = slices.DeleteFunc(slices.Clone(got), func(e expr.Any) bool { _, ok := commentMatch(e); return ok })
	got, want = byteAligned(got), byteAligned(want)
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
		if v, ok := e.(*expr.Verdict); ok && v.Kind == expr.VerdictJump && v.Chain == ForwardChain {
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

// byteAligned rewrites each address match whose prefix ends on a byte
// (load, mask whole bytes, compare) the way iptables-nft encodes it: a
// load of the prefix's bytes alone, compared without a mask. Both forms
// match the same packets.
func byteAligned(exprs []expr.Any) []expr.Any {
	var out []expr.Any
	for i := 0; i < len(exprs); i++ {
		if i+2 < len(exprs) {
			p, okP := exprs[i].(*expr.Payload)
			b, okB := exprs[i+1].(*expr.Bitwise)
			c, okC := exprs[i+2].(*expr.Cmp)
			if okP && okB && okC && len(b.Mask) == int(p.Len) && len(c.Data) == int(p.Len) {
				if k, whole := wholeBytes(b.Mask); whole && !slices.ContainsFunc(b.Xor, func(x byte) bool { return x != 0 }) {
					np, nc := *p, *c
					np.Len, nc.Data = uint32(k), c.Data[:k]
					out = append(out, &np, &nc)
					i += 2
					continue
				}
			}
		}
		out = append(out, exprs[i])
	}
	return out
}

// wholeBytes reports whether mask is k bytes of 0xff followed by zeros.
func wholeBytes(mask []byte) (int, bool) {
	k := 0
	for k < len(mask) && mask[k] == 0xff {
		k++
	}
	return k, !slices.ContainsFunc(mask[k:], func(b byte) bool { return b != 0 })
}
