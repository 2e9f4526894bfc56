package hostrules

import (
	"errors"
	"fmt"
	"io/fs"

	"github.com/google/nftables"
	"golang.org/x/sys/unix"
)

// A family the network config no longer has (Target's Network zero while
// the other family's is set: a dual-stack cluster made single-stack) has
// its masquerade table and forward rules removed: left, they would
// masquerade and accept a network no longer the cluster's for as long as
// the host runs, whatever takes its addresses next. A Target with no
// Network at all (the config not known yet) removes nothing.

// removeMasq deletes the masquerade table of a family, if there is one,
// and reports whether there was. nsFD selects the network namespace (-1:
// this process's).
func removeMasq(nsFD int, ipv6 bool) (bool, error) {
	if masqRuleCount(nsFD, ipv6) < 0 {
		return false, nil
	}
	c, err := nftConn(nsFD)
	if err != nil {
		return false, fmt.Errorf("nftables: %w", err)
	}
	c.DelTable(&nftables.Table{Name: MasqueradeTable, Family: familyOf(ipv6)})
	if err := c.Flush(); err != nil {
		return false, fmt.Errorf("nftables: remove the masquerade table: %w", err)
	}
	return true, nil
}

// removeForward deletes weft's forward rules of a family: those carrying
// ForwardComment in FLANNEL-FWD and the jump to it in FORWARD, and the
// chain once nothing else is in it. An administrator's rules stay. It
// reports whether anything was removed.
func removeForward(nsFD int, ipv6 bool) (bool, error) {
	c, err := nftConn(nsFD)
	if err != nil {
		return false, fmt.Errorf("nftables: %w", err)
	}
	table, forward, err := forwardTable(c, familyOf(ipv6))
	if err != nil {
		return false, fmt.Errorf("nftables: list chains: %w", err)
	}
	if table == nil {
		return false, nil
	}
	jumps, err := c.GetRules(table, forward)
	if err != nil {
		return false, fmt.Errorf("nftables: list FORWARD: %w", err)
	}
	chain := &nftables.Chain{Name: ForwardChain, Table: table}
	chained, err := c.GetRules(table, chain)
	exists := err == nil
	if err != nil && !errors.Is(err, fs.ErrNotExist) && !errors.Is(err, unix.ENOENT) {
		return false, fmt.Errorf("nftables: list %s: %w", ForwardChain, err)
	}
	removed, others := 0, 0
	for _, r := range jumps {
		if isOurs(r) && isJumpToFwd(r) {
			if err := c.DelRule(r); err != nil {
				return false, fmt.Errorf("nftables: %w", err)
			}
			removed++
		}
	}
	for _, r := range chained {
		if !isOurs(r) {
			others++
			continue
		}
		if err := c.DelRule(r); err != nil {
			return false, fmt.Errorf("nftables: %w", err)
		}
		removed++
	}
	if removed == 0 {
		return false, nil
	}
	if exists && others == 0 {
		c.DelChain(chain)
	}
	if err := c.Flush(); err != nil {
		return false, fmt.Errorf("nftables: remove the forward rules: %w", err)
	}
	return true, nil
}

func familyOf(ipv6 bool) nftables.TableFamily {
	if ipv6 {
		return nftables.TableFamilyIPv6
	}
	return nftables.TableFamilyIPv4
}
