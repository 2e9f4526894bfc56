package agent

import (
	"context"
	"net"
	"net/netip"
	"strings"
	"time"

	"github.com/weftnet/weft/lease"
	"github.com/weftnet/weft/lease/admit"
)

// optionals are the optional interfaces of package lease a Manager
// implements, detected once by NewNetwork: every use goes through them,
// so that what the Network makes of its Manager is decided in one place
// and logged once (see logOptionals). nil where the Manager has none.
type optionals struct {
	hints     lease.HintReader
	ready     lease.ReadyNotifier
	condition lease.ConditionReporter
	ownLease  lease.OwnLeaseReader
	expiry    lease.ExpiryReader
	renewals  lease.RenewalCounter
	republish lease.Republisher
	endpoints lease.EndpointReporter
}

// detect finds m's optional interfaces.
func detect(m lease.Manager) optionals {
	var o optionals
	o.hints, _ = m.(lease.HintReader)
	o.ready, _ = m.(lease.ReadyNotifier)
	o.condition, _ = m.(lease.ConditionReporter)
	o.ownLease, _ = m.(lease.OwnLeaseReader)
	o.expiry, _ = m.(lease.ExpiryReader)
	o.renewals, _ = m.(lease.RenewalCounter)
	o.republish, _ = m.(lease.Republisher)
	o.endpoints, _ = m.(lease.EndpointReporter)
	return o
}

// names lists what o offers, and what it lacks, in the words of the
// package doc's table.
func (o optionals) names() (offers, lacks []string) {
	for _, f := range []struct {
		has  bool
		name string
	}{
		{o.hints != nil, "hints"},
		{o.ready != nil, "ready notification"},
		{o.condition != nil, "condition"},
		{o.ownLease != nil, "own-lease read"},
		{o.expiry != nil, "expiry"},
		{o.renewals != nil, "renewal count"},
		{o.republish != nil, "republish"},
		{o.endpoints != nil, "endpoints"},
	} {
		if f.has {
			offers = append(offers, f.name)
		} else {
			lacks = append(lacks, f.name)
		}
	}
	return offers, lacks
}

// logOptionals says, once at start, what the lease source offers: a
// wrapper that hides an interface shows here.
func (n *Network) logOptionals() {
	offers, lacks := n.opt.names()
	msg := "lease source offers: " + strings.Join(offers, ", ")
	if len(offers) == 0 {
		msg = "lease source offers none of the optional interfaces"
	}
	n.log.Info(msg, "lacks", strings.Join(lacks, ", "))
}

// condition is the Manager's condition, "" if it has none to report.
func (n *Network) condition() string {
	if n.opt.condition == nil {
		return ""
	}
	return n.opt.condition.Condition()
}

// endpointLookupTimeout bounds the resolution of the Manager's endpoint
// names at start.
const endpointLookupTimeout = 5 * time.Second

// protectEndpoints sets the prefixes admission protects: the embedder's
// and, when the Manager reports its endpoints, their addresses. A name
// that does not resolve is logged and left out; the embedder can name
// its address in Protected.
func (n *Network) protectEndpoints(ctx context.Context) {
	n.protected = n.cfg.Protected
	if n.opt.endpoints == nil {
		return
	}
	ctx, cancel := context.WithTimeout(ctx, endpointLookupTimeout)
	defer cancel()
	eps := n.opt.endpoints.Endpoints()
	ps, err := admit.EndpointPrefixes(ctx, eps, net.DefaultResolver.LookupNetIP)
	if err != nil {
		n.log.Warn("cannot resolve every control-plane endpoint; peer leases may cover those left out (add them to NetworkConfig.Protected)", "err", err)
	}
	n.protected = append(append([]netip.Prefix(nil), n.cfg.Protected...), ps...)
	if len(ps) > 0 {
		n.log.Info("protecting the lease source's endpoints from peer leases", "endpoints", strings.Join(eps, ","), "prefixes", len(ps))
	}
}
