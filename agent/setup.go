//go:build linux

package agent

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"maps"
	"net/netip"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/weftnet/weft/lease"
)

// setupRetry is how often a config that could not be run is tried again.
const setupRetry = 10 * time.Second

// setUp checks that the node can run netConf and creates its datapaths:
// the embedder linked a datapath for the backend type, each family the
// config enables has a public address on an interface, and the family's
// datapath can run the backend config there (DatapathFactory.Check).
// Nothing is created unless every check passes. It returns the
// attributes to publish.
func (n *Network) setUp(ctx context.Context, netConf lease.Config) (lease.Attrs, error) {
	factory, err := n.factory(netConf.BackendType)
	if err != nil {
		return lease.Attrs{}, err
	}
	hints, err := n.readHints(ctx)
	isHintReader := n.opt.hints != nil
	hintsCached := false
	switch {
	case err != nil && n.off.cached != nil && !errors.Is(err, lease.ErrInvalidAttrs):
		// The settings cannot be read, but the node has run before:
		// with those it ran with. It runs offline only if this setup
		// succeeds.
		hints, err, hintsCached = n.cachedHints(), nil, true
	case err == nil && isHintReader:
		n.answered() // the store answers
	}
	if err != nil {
		return lease.Attrs{}, err
	}
	n.mu.Lock()
	offline := hintsCached || !n.off.since.IsZero()
	n.mu.Unlock()
	type family struct {
		ipv6          bool
		public, local netip.Addr // advertised; sent from
		under         int        // the interface holding local
		onLink        netip.Prefix
		dp            *lease.Datapath
		data          *json.RawMessage
	}
	// The interface's addresses, asked for once per attempt, and only
	// if needed: for a family without a public address, or whose public
	// address is on no interface here (a NAT's, advertised to peers while
	// the device sends from the interface's own).
	var found [2]netip.Addr
	var findErr error
	asked := false
	find := func(ipv6 bool) netip.Addr {
		if !asked && n.cfg.FindPublic != nil {
			asked = true
			found[0], found[1], findErr = n.cfg.FindPublic(netConf.EnableIPv4, netConf.EnableIPv6)
		}
		if ipv6 {
			return found[1]
		}
		return found[0]
	}
	// Before anything runs that reads them: setUp precedes every other
	// goroutine of Run. The embedder's address wins, then the hint.
	if hintsCached {
		// What the node published before is no operator's choice, only
		// a candidate: taken while it is still an address here, and
		// then followed as a found one would be; else found again.
		for i, a := range []netip.Addr{hints.PublicIP, hints.PublicIPv6} {
			if _, _, err := n.underlay(a); !a.IsValid() || err != nil {
				continue
			}
			if i == 0 && !n.cfg.PublicIP.IsValid() {
				n.cfg.PublicIP, n.pubFound[0] = a, true
			}
			if i == 1 && !n.cfg.PublicIPv6.IsValid() {
				n.cfg.PublicIPv6, n.pubFound[1] = a, true
			}
		}
	}
	if !n.cfg.PublicIP.IsValid() && hints.PublicIP.IsValid() && !hintsCached {
		n.cfg.PublicIP = hints.PublicIP
		n.log.Info("using the public IP the lease source names for this node", "public_ip", hints.PublicIP)
	}
	if !n.cfg.PublicIPv6.IsValid() && hints.PublicIPv6.IsValid() && !hintsCached {
		n.cfg.PublicIPv6 = hints.PublicIPv6
		n.log.Info("using the public IPv6 address the lease source names for this node", "public_ipv6", hints.PublicIPv6)
	}
	if netConf.EnableIPv4 && !n.cfg.PublicIP.IsValid() {
		n.cfg.PublicIP = find(false)
		n.pubFound[0] = n.cfg.PublicIP.IsValid()
	}
	if netConf.EnableIPv6 && !n.cfg.PublicIPv6.IsValid() {
		n.cfg.PublicIPv6 = find(true)
		n.pubFound[1] = n.cfg.PublicIPv6.IsValid()
	}
	if findErr != nil {
		return lease.Attrs{}, fmt.Errorf("finding the public addresses: %w", findErr)
	}
	attrs := lease.Attrs{PublicIP: n.cfg.PublicIP, PublicIPv6: n.cfg.PublicIPv6, BackendType: netConf.BackendType}
	var fams []family
	if netConf.EnableIPv4 {
		fams = append(fams, family{ipv6: false, public: n.cfg.PublicIP, local: n.cfg.PublicIP, dp: &n.v4, data: &attrs.BackendData})
	}
	if netConf.EnableIPv6 {
		fams = append(fams, family{ipv6: true, public: n.cfg.PublicIPv6, local: n.cfg.PublicIPv6, dp: &n.v6, data: &attrs.BackendV6Data})
	}
	published := n.publishedData(ctx, hints, offline)
	setups := make([]lease.DatapathSetup, len(fams))
	for i, f := range fams {
		if _, _, err := n.underlay(f.public); err != nil && f.public.IsValid() {
			if local := find(f.ipv6); local.IsValid() && local != f.public {
				fams[i].local = local
			}
		}
		under, onLink, err := n.checkFamily(fams[i].public, fams[i].local, f.ipv6)
		if err != nil {
			return lease.Attrs{}, err
		}
		fams[i].under, fams[i].onLink = under, onLink
		setups[i] = n.datapathSetup(netConf.Backend, fams[i].local, fams[i].public, f.ipv6, under, onLink, published)
		if err := factory.Check(setups[i]); err != nil {
			return lease.Attrs{}, err
		}
	}
	made := make([]lease.Datapath, len(fams))
	for i, f := range fams {
		dp, err := factory.New(setups[i])
		if err != nil {
			for _, d := range made[:i] {
				d.Close()
			}
			return lease.Attrs{}, err
		}
		made[i] = dp
		*f.data = dp.BackendData()
	}
	n.mu.Lock()
	for i, f := range fams {
		*f.dp = made[i]
		u := &n.und[famIndex(f.ipv6)]
		*u = underlayState{local: f.local, under: f.under, onLink: f.onLink}
		// The address sent from follows the interface when FindPublic
		// chose it; so does the advertised one, unless it was set
		// (by the embedder, or a hint) or is a NAT's.
		u.localFound = n.pubFound[famIndex(f.ipv6)] || f.local != f.public
		u.publicFound = n.pubFound[famIndex(f.ipv6)]
	}
	n.attrs = attrs
	n.backend, n.backendType = netConf.Backend, netConf.BackendType
	n.mu.Unlock()
	if hintsCached {
		n.goOffline("cannot read this node's settings from the lease source")
	}
	return attrs, nil
}

// checkFamily checks that one family can run: a public address, and a
// local one (the same, or the interface's behind a NAT) on an interface
// here. It returns that interface and the local address's prefix on it.
func (n *Network) checkFamily(public, local netip.Addr, ipv6 bool) (int, netip.Prefix, error) {
	fam, field := "IPv4", "PublicIP"
	if ipv6 {
		fam, field = "IPv6", "PublicIPv6"
	}
	if !public.IsValid() {
		return 0, netip.Prefix{}, fmt.Errorf("the network config enables %s but the node has no %s public address (NetworkConfig.%s or FindPublic; flanneld: --public-ip/--public-ipv6, or a global %s address on the chosen interface)", fam, fam, field, fam)
	}
	return n.underlay(local)
}

// factory returns the embedder's datapath factory for a backend type, or
// the reason to wait: a network config naming a backend this binary does
// not link is waited out until the config changes.
func (n *Network) factory(backendType string) (lease.DatapathFactory, error) {
	if f := n.cfg.Datapaths[backendType]; f != nil {
		return f, nil
	}
	return nil, &lease.ConfigError{Field: "Backend.Type", Value: strconv.Quote(backendType),
		Reason: fmt.Sprintf("is not a backend this agent runs: it links %s (NetworkConfig.Datapaths)", linkedTypes(n.cfg.Datapaths))}
}

// linkedTypes lists the backend types an embedder linked, for a message.
func linkedTypes(m map[string]lease.DatapathFactory) string {
	if len(m) == 0 {
		return "none"
	}
	return strings.Join(slices.Sorted(maps.Keys(m)), ", ")
}

// datapathSetup is what a family's datapath is told at setup.
func (n *Network) datapathSetup(backend json.RawMessage, local, public netip.Addr, ipv6 bool, under int, onLink netip.Prefix, published *publishedData) lease.DatapathSetup {
	return lease.DatapathSetup{
		Node: n.cfg.Node, Backend: backend, IPv6: ipv6, Public: public, Local: local, Underlay: under, OnLink: onLink,
		Published: func() []json.RawMessage { return published.of(ipv6) },
		OnChange:  n.kickState, Namespace: int(n.cfg.Namespace), ResyncInterval: n.cfg.ResyncInterval, Logger: n.cfg.Logger,
	}
}

// publishedData is the backend data published for this node, by
// family, most authoritative first (lease.DatapathSetup.Published): the
// Manager's hints (kube's Node annotations), then what its own lease
// publishes in the store (lease.OwnLeaseReader: flannel's random VTEP MAC
// on a node migrating from it, or weft's own after a reboot), then what
// the local state recorded, which peers cut off from the store still
// hold. The store is read once, and only if a datapath asks: one whose
// embedder set what it needs does not wait on it.
type publishedData struct {
	n       *Network
	ctx     context.Context
	hints   lease.Hints
	offline bool
	once    sync.Once
	data    [2][]json.RawMessage
}

func (n *Network) publishedData(ctx context.Context, hints lease.Hints, offline bool) *publishedData {
	return &publishedData{n: n, ctx: ctx, hints: hints, offline: offline}
}

// of returns the family's published data.
func (p *publishedData) of(ipv6 bool) []json.RawMessage {
	p.once.Do(p.read)
	return p.data[famIndex(ipv6)]
}

func (p *publishedData) read() {
	n := p.n
	take := func(v4, v6 json.RawMessage) {
		for i, raw := range []json.RawMessage{v4, v6} {
			if len(raw) > 0 {
				p.data[i] = append(p.data[i], raw)
			}
		}
	}
	take(p.hints.BackendData, p.hints.BackendV6Data)
	// Last, those the node ran with, from the local state.
	defer func() {
		if c := n.off.cached; c != nil {
			take(c.Lease.Attrs.BackendData, c.Lease.Attrs.BackendV6Data)
		}
	}()
	r := n.opt.ownLease
	if r == nil || p.offline {
		return
	}
	rctx, cancel := context.WithTimeout(p.ctx, ownLeaseTimeout)
	defer cancel()
	l, found, err := r.OwnLease(rctx, lease.AcquireRequest{Attrs: lease.Attrs{PublicIP: n.cfg.PublicIP, PublicIPv6: n.cfg.PublicIPv6}, Previous: n.cfg.Previous})
	if err != nil {
		if n.off.cached != nil {
			n.log.Warn("cannot read this node's lease to keep the backend data it publishes (VTEP MACs); keeping those of the local state", "err", err)
		} else {
			n.log.Warn("cannot read this node's lease to keep the backend data it publishes (VTEP MACs); deriving them", "err", err)
		}
		return
	}
	if found {
		take(l.Attrs.BackendData, l.Attrs.BackendV6Data)
	}
}

// errNoHints is setUp's error while a lease.HintReader cannot answer.
var errNoHints = errors.New("reading this node's settings from the lease source")

// readHints asks a Manager that is a lease.HintReader for this node's
// hints, bounded like every read before the devices exist. A failure is
// setUp's: the config is waited out, saying why, and tried again.
func (n *Network) readHints(ctx context.Context) (lease.Hints, error) {
	r := n.opt.hints
	if r == nil {
		return lease.Hints{}, nil
	}
	deadline := time.Now().Add(ownLeaseTimeout)
	if n.off.cached != nil {
		// With a local state to fall back on, no longer than the
		// control plane is given at start.
		offline := n.started.Add(n.offlineAfter())
		if soon := time.Now().Add(100 * time.Millisecond); offline.Before(soon) {
			offline = soon
		}
		if offline.Before(deadline) {
			deadline = offline
		}
	}
	rctx, cancel := context.WithDeadline(ctx, deadline)
	defer cancel()
	h, err := r.Hints(rctx)
	if err != nil {
		return lease.Hints{}, fmt.Errorf("%w: %w", errNoHints, err)
	}
	return h, nil
}

// ownLeaseTimeout bounds the read of this node's lease before the
// devices are made: an unreachable store means derived MACs, not a wait.
const ownLeaseTimeout = 5 * time.Second

// famIndex indexes per-family arrays: 0 for IPv4, 1 for IPv6.
func famIndex(ipv6 bool) int {
	if ipv6 {
		return 1
	}
	return 0
}

// underlay finds the interface holding addr, and the prefix it is on.
func (n *Network) underlay(addr netip.Addr) (int, netip.Prefix, error) {
	addrs, err := n.host().AddrList()
	if err != nil {
		return 0, netip.Prefix{}, fmt.Errorf("agent: list addresses: %w", err)
	}
	for _, a := range addrs {
		ip, _ := netip.AddrFromSlice(a.IP)
		if ip.Unmap() == addr {
			ones, _ := a.Mask.Size()
			return a.LinkIndex, netip.PrefixFrom(addr, ones).Masked(), nil
		}
	}
	return 0, netip.Prefix{}, fmt.Errorf("public IP %s is not an address of any interface; set it to the node's underlay address", addr)
}
