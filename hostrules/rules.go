package hostrules

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/netip"
	"sync"
	"time"

	"github.com/vishvananda/netlink"
	"github.com/vishvananda/netns"
)

// Options says which rule sets a Rules keeps. The zero value keeps none.
type Options struct {
	// Masquerade keeps flannel's masquerade rules (flanneld's --ip-masq).
	Masquerade bool
	// NotFullyRandom masquerades without fully random source ports
	// (flanneld's --ip-masq-fully-random-disable). Default: fully random,
	// as in flannel.
	NotFullyRandom bool
	// Forward keeps the FORWARD accept rules for the Network (flanneld's
	// --iptables-forward-rules).
	Forward bool
	// Blackhole keeps a blackhole route for each of the node's subnets
	// (flanneld's --ip-blackhole-route).
	Blackhole bool
	// Namespace is the network namespace to keep the rules in. Zero: this
	// process's.
	Namespace netns.NsHandle
	// Logger receives one line per change, repair and new failure.
	// Default slog.Default().
	Logger *slog.Logger
}

// Target is what the rules are for: the cluster's Network and the node's
// Subnet in it, per family, as subnet.env names them. A zero prefix leaves
// that family out.
type Target struct {
	Network, Subnet         netip.Prefix
	IPv6Network, IPv6Subnet netip.Prefix
}

// check refuses a Target whose rules would make no sense: a prefix of the
// wrong family, a Subnet outside its Network (or with none).
func (t Target) check() error {
	for _, f := range []struct {
		name            string
		network, subnet netip.Prefix
		ipv6            bool
	}{{"", t.Network, t.Subnet, false}, {"IPv6", t.IPv6Network, t.IPv6Subnet, true}} {
		for _, p := range []struct {
			field string
			p     netip.Prefix
		}{{f.name + "Network", f.network}, {f.name + "Subnet", f.subnet}} {
			if p.p.IsValid() && p.p.Addr().Is6() != f.ipv6 {
				return fmt.Errorf("hostrules: Target.%s %s is of the wrong family", p.field, p.p)
			}
		}
		if f.subnet.IsValid() && !f.network.IsValid() {
			return fmt.Errorf("hostrules: Target.%sSubnet %s has no Target.%sNetwork", f.name, f.subnet, f.name)
		}
		if f.subnet.IsValid() && !(f.network.Bits() <= f.subnet.Bits() && f.network.Contains(f.subnet.Addr())) {
			return fmt.Errorf("hostrules: Target.%sSubnet %s is not inside Target.%sNetwork %s", f.name, f.subnet, f.name, f.network)
		}
	}
	return nil
}

// Rules keeps the host rules of Options for the last Target applied. See
// the package doc.
type Rules struct {
	opts Options
	log  *slog.Logger

	mu     sync.Mutex // serialises Apply and Resync; guards what follows
	target Target
	// masq is the masquerade rule set last applied (or found intact) in
	// each family (0: IPv4, 1: IPv6), so that a write for the same one is
	// reported as a repair.
	masq [2]masqApplied
	// forwarded is each network whose forward rules were once written,
	// so that a later write is reported as a repair.
	forwarded map[netip.Prefix]bool
	// failing is the last failure of each rule set, by its name, so that
	// each is logged once.
	failing map[string]string
}

type masqApplied struct {
	network, subnet netip.Prefix
}

// New returns a Rules for opts. It writes nothing until Apply.
func New(opts Options) *Rules {
	log := opts.Logger
	if log == nil {
		log = slog.Default()
	}
	return &Rules{opts: opts, log: log, forwarded: map[netip.Prefix]bool{}, failing: map[string]string{}}
}

// Apply makes the host's rules those of t, and keeps t for Resync. A t
// whose prefixes are of the wrong family, or whose Subnet is not inside
// its Network, is refused with an error naming the field, and nothing is
// changed.
func (r *Rules) Apply(t Target) error {
	if err := t.check(); err != nil {
		return err
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	r.target = t
	return r.ensure()
}

// Resync checks the rules of the last Target applied and repairs what
// changed, silently when nothing did.
func (r *Rules) Resync() error {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.ensure()
}

// Run calls Resync every interval until ctx is done. Its errors are
// logged by Resync. An interval of zero or less is a minute.
func (r *Rules) Run(ctx context.Context, interval time.Duration) {
	if interval <= 0 {
		interval = time.Minute
	}
	t := time.NewTicker(interval)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
			_ = r.Resync()
		}
	}
}

// nsFD is the namespace for nftables: -1 for this process's.
func (r *Rules) nsFD() int {
	if r.opts.Namespace == 0 {
		return -1
	}
	return int(r.opts.Namespace)
}

// ensure applies every rule set r keeps to r.target. r.mu is held.
func (r *Rules) ensure() error {
	var errs []error
	// A family is dropped from the config when the other one's Network
	// is set and its own is not (see remove.go).
	networks := [2]netip.Prefix{r.target.Network, r.target.IPv6Network}
	dropped := func(i int) bool { return !networks[i].IsValid() && networks[1-i].IsValid() }
	if r.opts.Masquerade {
		for i, fam := range [2]masqApplied{{r.target.Network, r.target.Subnet}, {r.target.IPv6Network, r.target.IPv6Subnet}} {
			switch {
			case fam.network.IsValid() && fam.subnet.IsValid():
				errs = append(errs, r.ensureMasq(i, fam))
			case dropped(i):
				errs = append(errs, r.dropFamily(i, true))
			}
		}
	}
	if r.opts.Forward {
		for i, network := range networks {
			switch {
			case network.IsValid():
				errs = append(errs, r.ensureForward(network))
			case dropped(i):
				errs = append(errs, r.dropFamily(i, false))
			}
		}
	}
	if r.opts.Blackhole {
		errs = append(errs, r.ensureBlackholes())
	}
	return errors.Join(errs...)
}

// ensureMasq applies family i's masquerade rules for want unless the
// kernel holds exactly them.
func (r *Rules) ensureMasq(i int, want masqApplied) error {
	randomFully := !r.opts.NotFullyRandom
	same := r.masq[i] == want
	if masqIntact(r.nsFD(), want.network, want.subnet, randomFully) {
		r.masq[i] = want
		return nil
	}
	name := "masquerade " + want.network.String()
	if err := applyMasq(r.nsFD(), want.network, want.subnet, randomFully); err != nil {
		r.masq[i] = masqApplied{}
		return r.failed(name, err)
	}
	r.recovered(name)
	r.masq[i] = want
	if same {
		r.log.Warn("masquerade rules were changed from outside; restored", "network", want.network)
	} else {
		r.log.Info("masquerade rules applied", "network", want.network, "subnet", want.subnet)
	}
	return nil
}

// dropFamily removes family i's masquerade rules (masq) or forward rules,
// and logs it once, naming the network last applied in this family if
// known.
func (r *Rules) dropFamily(i int, masq bool) error {
	name, remove := "forward", removeForward
	if masq {
		name, remove = "masquerade", removeMasq
	}
	name += " " + [2]string{"IPv4", "IPv6"}[i]
	removed, err := remove(r.nsFD(), i == 1)
	if err != nil {
		return r.failed(name, err)
	}
	r.recovered(name)
	if removed {
		var was netip.Prefix
		if masq {
			was, r.masq[i] = r.masq[i].network, masqApplied{}
		} else {
			for n := range r.forwarded {
				if n.Addr().Is6() == (i == 1) {
					was = n
					delete(r.forwarded, n)
				}
			}
		}
		r.log.Info("host rules removed: the network config no longer has this family", "rules", name, "network", was)
	}
	return nil
}

// ensureForward keeps network's forward rules, logging the first write
// and each repair.
func (r *Rules) ensureForward(network netip.Prefix) error {
	name := "forward " + network.String()
	wrote, err := ensureForward(r.nsFD(), network)
	if err != nil {
		return r.failed(name, err)
	}
	switch {
	case wrote && r.forwarded[network]:
		r.log.Warn("FORWARD accept rules were changed from outside; restored", "network", network)
	case wrote:
		r.log.Info("FORWARD accept rules applied", "network", network, "chain", ForwardChain)
	}
	r.recovered(name)
	if wrote {
		r.forwarded[network] = true
	}
	return nil
}

// ensureBlackholes keeps a blackhole route on each of the target's
// subnets, and none on any other.
func (r *Rules) ensureBlackholes() error {
	var want []netip.Prefix
	for _, p := range []netip.Prefix{r.target.Subnet, r.target.IPv6Subnet} {
		if p.IsValid() {
			want = append(want, p.Masked())
		}
	}
	var h *netlink.Handle
	var err error
	if r.opts.Namespace == 0 {
		h, err = netlink.NewHandle()
	} else {
		h, err = netlink.NewHandleAt(r.opts.Namespace)
	}
	if err != nil {
		return r.failed("blackhole routes", fmt.Errorf("netlink: %w", err))
	}
	defer h.Close()
	added, removed, err := ensureBlackholes(h, want)
	if len(added)+len(removed) > 0 {
		r.log.Info("blackhole routes for the node's subnets", "added", added, "removed", removed)
	}
	if err != nil {
		return r.failed("blackhole routes", err)
	}
	r.recovered("blackhole routes")
	return nil
}

// failed logs err if it is new for the rule set name, and returns it
// naming the set.
func (r *Rules) failed(name string, err error) error {
	err = fmt.Errorf("hostrules: %s: %w", name, err)
	if r.failing[name] != err.Error() {
		r.log.Error("could not apply host rules; retrying at the next resync", "rules", name, "err", err)
		r.failing[name] = err.Error()
	}
	return err
}

// recovered logs that the rule set name, failing before, is in place.
func (r *Rules) recovered(name string) {
	if _, ok := r.failing[name]; ok {
		r.log.Info("host rules in place again", "rules", name)
		delete(r.failing, name)
	}
}
