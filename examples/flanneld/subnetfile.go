package main

import (
	"context"
	"net/netip"
	"time"

	weftagent "github.com/weftnet/weft/agent"
	"github.com/weftnet/weft/hostrules"
	"github.com/weftnet/weft/subnetenv"
)

// subnet.env follows the Network's States and Withdrawals (see
// weftagent.NetworkConfig.OnWithdraw): written, with the host rules before it,
// once the node holds a lease the datapath has converged on; removed,
// with the blackhole routes, while it holds none.

// update applies a change (nil for none) and rewrites subnet.env if it
// now differs from the file: a new State, or a file changed from outside;
// with no State in force, it removes the file.
func (a *agent) update(change func()) {
	a.mu.Lock()
	if change != nil {
		change()
	}
	a.mu.Unlock()
	// The rules and the file are applied under rulesMu alone, from a
	// snapshot taken under it, so that /readyz and /metrics never wait
	// on netlink or nftables, and the last update applies the newest
	// state.
	a.rulesMu.Lock()
	defer a.rulesMu.Unlock()
	a.mu.Lock()
	f, ok := a.fileLocked()
	withdrawn := a.withdrawn
	// With no lease, the host rules keep the networks of the config in
	// force: a family it dropped loses its rules, the others keep them.
	networks := hostrules.Target{Network: a.netConf.Network, IPv6Network: a.netConf.IPv6Network}
	if !ok {
		a.written = false
	}
	a.mu.Unlock()
	if !ok {
		a.removeFile(withdrawn, networks)
		return
	}
	if old, err := subnetenv.Read(a.cfg.subnetFile); err == nil && old == f {
		// Unchanged: the rules are repaired only if they drifted,
		// silently when they did not (the errors are logged by Apply).
		_ = a.rules.Apply(targetOf(f))
		a.mu.Lock()
		a.written = true
		a.mu.Unlock()
		return
	}
	// The rules first: pods start once subnet.env is there.
	_ = a.rules.Apply(targetOf(f))
	err := subnetenv.Write(a.cfg.subnetFile, f)
	a.mu.Lock()
	defer a.mu.Unlock()
	if err != nil {
		a.written, a.lastErr = false, err.Error()
		a.log.Error("could not write subnet.env", "err", err)
		return
	}
	a.written, a.lastErr = true, ""
	a.log.Info("wrote subnet.env", "path", a.cfg.subnetFile, "subnet", f.Subnet, "ipv6_subnet", f.IPv6Subnet, "network", f.Network, "mtu", f.MTU)
}

// removeFile removes subnet.env, and the blackhole routes of the subnet
// it named, while no State is in force: the node holds no lease, or has
// not confirmed one yet (see weftagent.Withdrawal). rulesMu is held.
func (a *agent) removeFile(w weftagent.Withdrawal, networks hostrules.Target) {
	// The blackhole routes go with the lease; the masquerade and forward
	// rules stay for the pods still running (see hostrules.Target), but
	// those of a family the config no longer has.
	_ = a.rules.Apply(networks)
	// The subnet the file names is the one the node's pods are on, and
	// the next run asks for it again (Previous): without a local state,
	// a run restarted before it holds a lease has only this to go by.
	removed, err := subnetenv.Withdraw(a.cfg.subnetFile)
	a.mu.Lock()
	defer a.mu.Unlock()
	if err != nil {
		if a.lastErr != err.Error() {
			a.log.Error("could not remove subnet.env; pods may be given addresses of a subnet this node does not hold", "err", err)
		}
		a.lastErr = err.Error()
		return
	}
	a.lastErr = ""
	switch {
	case !removed:
	case !w.Lease.IsValid():
		// No Withdrawal: the file no longer matches the config in force
		// (a change of families, which takes a restart), or the Network
		// has not started; no lease to name.
		a.log.Info("removed subnet.env; it is written again once the node holds a lease of the network config in force", "path", a.cfg.subnetFile)
	case w.Reason == 0, w.Reason == weftagent.WithdrawStarting: // before the Network, or as it starts
		a.log.Info("removed the subnet.env a previous run left; it is written again once the node holds its lease", "path", a.cfg.subnetFile, "subnet", w.Lease)
	default:
		a.log.Warn("removed subnet.env: the node does not hold the subnet it named; pods cannot start here until it holds a lease",
			"path", a.cfg.subnetFile, "subnet", w.Lease, "reason", w.Reason.String(), "detail", w.Detail)
	}
}

// fileLocked is the subnet.env the last State calls for, and false while
// there is none: none yet, or withdrawn since (the lease lost, the local
// state's refused, the config moved away from it).
func (a *agent) fileLocked() (subnetenv.File, bool) {
	if !a.held.Key.IsValid() || !a.netConf.Network.IsValid() && !a.netConf.IPv6Network.IsValid() {
		return subnetenv.File{}, false
	}
	f := subnetenv.File{MTU: a.mtu, IPMasq: a.cfg.ipMasq}
	if a.held.Key.IPv4.IsValid() {
		f.Network, f.Subnet = a.netConf.Network, a.held.Key.IPv4
	}
	if a.held.Key.IPv6.IsValid() {
		f.IPv6Network, f.IPv6Subnet = a.netConf.IPv6Network, a.held.Key.IPv6
	}
	if !contains(f.Network, f.Subnet) || !contains(f.IPv6Network, f.IPv6Subnet) {
		return subnetenv.File{}, false
	}
	return f, true
}

// targetOf is what the host rules are for: the networks and subnets f
// names.
func targetOf(f subnetenv.File) hostrules.Target {
	return hostrules.Target{Network: f.Network, Subnet: f.Subnet, IPv6Network: f.IPv6Network, IPv6Subnet: f.IPv6Subnet}
}

// contains reports whether subnet, if set, lies inside network.
func contains(network, subnet netip.Prefix) bool {
	return !subnet.IsValid() || network.IsValid() && network.Bits() <= subnet.Bits() && network.Contains(subnet.Addr())
}

// resync re-checks, every resync interval, subnet.env (against a change
// from outside; the Network's States bring every change of its own), and
// every --iptables-resync the masquerade and forward rules. It is silent
// when nothing changed.
func (a *agent) resync(ctx context.Context) {
	t := time.NewTicker(a.cfg.resync)
	defer t.Stop()
	rules := time.NewTicker(a.cfg.rulesResync)
	defer rules.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
			if ok, _ := a.net.Ready(); !ok {
				continue // subnet.env waits for convergence
			}
			a.update(nil)
		case <-rules.C:
			_ = a.rules.Resync() // the rules of the last update; errors logged
		}
	}
}
