//go:build linux

package agent

import (
	"context"
	"errors"
	"net/netip"
	"time"

	"github.com/vishvananda/netlink"

	"github.com/weftnet/weft/lease"
	"github.com/weftnet/weft/lease/admit"
)

// bulkChanges is how many admitted peers one delta may change before they
// are programmed as a whole set, by one reconcile that pipelines every
// write, rather than one round trip each.
const bulkChanges = 256

// localSettle is how long the node's addresses must be quiet after a change
// before admission reads them again.
const localSettle = 100 * time.Millisecond

// localFacts are what this node's interfaces say, for admission.
type localFacts struct {
	connected []netip.Prefix
	addrs     []netip.Addr
}

// watchPeers feeds every watched lease through admission and programs the
// peers it admits: the first snapshot as a whole set, later changes one
// admitted peer each, or as a whole set when there are many.
func (n *Network) watchPeers(ctx context.Context) error {
	// Start once the lease is held. Acquiring and watching each begin by
	// listing every subnet; at tens of thousands of leases, doing both at
	// once sets the agent's peak memory. The cost of waiting: while no
	// lease can be had (no free subnet, etcd unreachable), the routes a
	// previous run programmed stay as they were, including any to nodes
	// gone since. The node is not ready meanwhile either way.
	select {
	case <-n.leased:
	case <-ctx.Done():
		return ctx.Err()
	}
	batches := make(chan lease.Batch, 16)
	done := make(chan error, 1)
	go func() { done <- n.cfg.Manager.WatchLeases(ctx, batches) }()
	for {
		select {
		case err := <-done:
			return err
		case b := <-batches:
			n.push.Lock()
			n.mu.Lock()
			d := n.table.Apply(b)
			if b.More {
				// A snapshot's part: admission keeps it aside,
				// and nothing changes until the last.
				n.mu.Unlock()
				n.push.Unlock()
				continue
			}
			first, fromCache := !n.watched, n.off.peers
			n.watched = true
			if b.Snapshot {
				// The Manager's listing replaces the local state's.
				n.off.peers = false
				n.backOnlineLocked()
				if n.off.lease {
					// The store answers: the lease it gives must
					// follow soon, or the cached one goes.
					go n.dropCachedLeaseAfter(ctx, n.cachedLeaseGrace())
				}
			}
			changed := first || b.Snapshot || len(d.Changes) > 0
			if changed {
				n.off.peersAt, n.off.peersRev = time.Now(), b.Revision
			}
			events := n.peerEvents(d)
			n.mu.Unlock()
			n.report(d)
			if first || b.Snapshot {
				n.pushAllLocked()
			} else {
				n.program(d.Changes)
			}
			n.tellPeers(events)
			n.push.Unlock()
			if first || fromCache && b.Snapshot {
				n.kickState()
			}
			if changed {
				n.kickSave()
			}
		}
	}
}

// refreshFacts reads this node's addresses and gives admission the facts
// in force; whatever their change admits or rejects is programmed.
func (n *Network) refreshFacts() {
	// Read under n.push, so that of two refreshes the later read is the
	// one applied last.
	n.push.Lock()
	defer n.push.Unlock()
	n.refreshFactsLocked()
}

// refreshFactsLocked is refreshFacts; n.push is held.
func (n *Network) refreshFactsLocked() {
	local, err := n.readLocal()
	n.mu.Lock()
	if err == nil {
		n.local = local
	}
	d := n.table.SetFacts(n.factsLocked())
	watched := n.watched
	var events []PeerEvent
	if watched {
		events = n.peerEvents(d)
	}
	n.mu.Unlock()
	// Said once per distinct failure, and once when it ends: refreshes
	// run every resync.
	switch {
	case err != nil && err.Error() != n.localErr:
		n.log.Warn("cannot list this node's addresses; admission keeps those it read last", "err", err)
		n.localErr = err.Error()
	case err == nil && n.localErr != "":
		n.log.Info("listing this node's addresses works again")
		n.localErr = ""
	}
	n.report(d)
	if watched {
		n.program(d.Changes)
		n.tellPeers(events)
		if len(d.Changes) > 0 {
			n.kickSave()
		}
	}
}

// factsLocked returns what admission needs to know of this node. n.mu is
// held.
func (n *Network) factsLocked() admit.Facts {
	f := admit.Facts{
		Node: n.cfg.Node, BackendType: n.backendType, VNI: admit.VNI(n.backend),
		Connected: n.local.connected, LocalAddrs: n.local.addrs, Protected: n.protected,
	}
	if n.hasOwn {
		f.Own = n.own.Key
	}
	if n.v4 != nil {
		f.Network = n.netConf.Network
	}
	if n.v6 != nil {
		f.IPv6Network = n.netConf.IPv6Network
	}
	return f
}

// readLocal lists the namespace's addresses: every one is this node's, and
// the prefix of each, but those of the datapaths' devices, is a connected
// network no peer may capture.
func (n *Network) readLocal() (localFacts, error) {
	addrs, err := n.host().AddrList()
	if err != nil {
		return localFacts{}, err
	}
	n.mu.Lock()
	ours := map[int]bool{}
	for _, dp := range []lease.Datapath{n.v4, n.v6} {
		if dp != nil {
			if dev := dp.Report().Device; dev != 0 {
				ours[dev] = true
			}
		}
	}
	n.mu.Unlock()
	var lf localFacts
	for _, a := range addrs {
		ip, ok := netip.AddrFromSlice(a.IP)
		if !ok || a.IPNet == nil {
			continue
		}
		ip = ip.Unmap()
		lf.addrs = append(lf.addrs, ip)
		if ones, _ := a.Mask.Size(); !ours[a.LinkIndex] {
			lf.connected = append(lf.connected, netip.PrefixFrom(ip, ones).Masked())
		}
	}
	return lf, nil
}

// watchLocal reads the node's addresses again whenever the kernel says one
// changed, and every resync interval in case a notification was lost: for
// admission's facts, and to follow the underlay's address (see
// followUnderlay). The datapaths follow the underlay's links themselves
// (its MTU, their devices' deletion).
func (n *Network) watchLocal(ctx context.Context) error {
	var updates chan netlink.AddrUpdate
	failed := ""
	subscribe := func() {
		ch := make(chan netlink.AddrUpdate, 64)
		onErr := func(err error) {
			if ctx.Err() == nil {
				n.log.Debug("address notifications broke; subscribing again at the next resync", "err", err)
			}
		}
		if err := n.host().SubscribeAddrs(ch, ctx.Done(), onErr); err != nil {
			if err.Error() != failed {
				n.log.Warn("cannot subscribe to address changes; relying on the periodic resync", "err", err)
				failed = err.Error()
			}
			updates = nil
			return
		}
		failed, updates = "", ch
	}
	subscribe()
	interval := n.cfg.ResyncInterval
	if interval <= 0 {
		interval = defaultResyncInterval
	}
	resync := time.NewTicker(interval)
	defer resync.Stop()
	settleTimer := time.NewTimer(time.Hour)
	settleTimer.Stop()
	for {
		select {
		case <-ctx.Done():
			return ctx.Err()
		case _, ok := <-updates:
			if !ok {
				// The subscription broke: whatever it missed is read
				// soon, and it is made again at the next resync.
				updates = nil
			}
			settleTimer.Reset(localSettle)
		case <-settleTimer.C:
			n.refreshFacts()
			n.followUnderlay()
		case <-resync.C:
			if updates == nil {
				subscribe()
			}
			n.refreshFacts()
			n.followUnderlay()
		}
	}
}

// program applies admission's changes to the datapaths. Removals go first:
// a peer replaced by one it shadowed (a /23 by a /24 at the same address)
// shares its gateway, whose neighbour entry the removal deletes. n.push is
// held.
func (n *Network) program(changes []admit.Change) {
	if len(changes) == 0 {
		return
	}
	if len(changes) > bulkChanges || sharesMAC(changes) {
		// One node's leases that share a VTEP MAC, moved together, would
		// each be refused in turn for disagreeing with the other's old
		// address: a whole-set reconcile takes them at once.
		n.pushAllLocked()
		return
	}
	for _, admitted := range []bool{false, true} {
		for _, c := range changes {
			if c.Admitted != admitted {
				continue
			}
			n.mu.Lock()
			dp := n.datapath(c.IPv6)
			p := c.Peer.DatapathPeer()
			n.mu.Unlock()
			if dp == nil {
				continue
			}
			var err error
			if c.Admitted {
				err = dp.SetPeer(p)
			} else {
				err = dp.RemovePeer(c.Subnet)
			}
			if err != nil && !errors.Is(err, lease.ErrPeerRefused) {
				n.log.Warn("peer change not programmed yet; the next reconcile retries it", "subnet", c.Subnet, "err", err)
			}
		}
	}
}

// sharesMAC reports whether two admitted peers in changes share a VTEP MAC.
func sharesMAC(changes []admit.Change) bool {
	seen := map[[2]any]bool{}
	for _, c := range changes {
		if !c.Admitted {
			continue
		}
		k := [2]any{c.IPv6, c.Peer.VtepMAC}
		if seen[k] {
			return true
		}
		seen[k] = true
	}
	return false
}

// pushAllLocked gives each datapath the whole set of admitted peers. n.push
// is held.
func (n *Network) pushAllLocked() {
	n.mu.Lock()
	if !n.watched {
		n.mu.Unlock()
		return
	}
	var sets [2][]lease.DatapathPeer
	for i, dp := range []lease.Datapath{n.v4, n.v6} {
		if dp == nil {
			continue
		}
		sets[i] = make([]lease.DatapathPeer, 0, n.table.Len())
		for p := range n.table.AllAdmitted(i == 1) {
			sets[i] = append(sets[i], p.DatapathPeer())
		}
	}
	d4, d6 := n.v4, n.v6
	n.mu.Unlock()
	for i, dp := range []lease.Datapath{d4, d6} {
		if dp != nil {
			if err := dp.SetPeers(sets[i]); err != nil {
				n.log.Error("could not set peers", "err", err)
			}
		}
	}
}

// datapath returns the family's datapath. n.mu is held.
func (n *Network) datapath(ipv6 bool) lease.Datapath {
	if ipv6 {
		return n.v6
	}
	return n.v4
}

// report logs what admission decided that is news: once per lease and
// distinct reason.
func (n *Network) report(d admit.Delta) {
	now := time.Now()
	left := d.Unlisted
	for _, v := range d.Verdicts {
		if !n.verdictLog.take(now) {
			left++
			continue
		}
		fam := "ipv4"
		if v.Peer.IPv6 {
			fam = "ipv6"
		}
		if v.Admitted() {
			n.log.Info("admitted a peer lease that was rejected before", "lease", v.Peer.Key, "node", v.Peer.Owner, "family", fam)
			continue
		}
		n.log.Warn("rejected a peer lease; it is not programmed", "lease", v.Peer.Key, "node", v.Peer.Owner,
			"family", fam, "rule", v.Reason, "why", v.Detail)
	}
	if n.verdictLog.left += left; n.verdictLog.left > 0 && n.verdictLog.take(now) {
		n.log.Warn("more peer leases changed verdict than are logged one by one; the status lists every rejected lease", "unlisted", n.verdictLog.left)
		n.verdictLog.left = 0
	}
}

// logBudget bounds a stream of log lines to 20 at once and one a second
// after; left counts those not written, for one line to say. A writer's
// 100,000 bad leases were otherwise as many lines, 15% of the agent's CPU
// while they arrived, ahead of the honest peers' changes. Used under
// n.push.
type logBudget struct {
	tokens float64
	last   time.Time
	left   int
}

func (b *logBudget) take(now time.Time) bool {
	if b.last.IsZero() {
		b.tokens = 20
	} else {
		b.tokens = min(20, b.tokens+now.Sub(b.last).Seconds())
	}
	b.last = now
	if b.tokens < 1 {
		return false
	}
	b.tokens--
	return true
}

// Facts returns the facts admission judges peer leases by now: this node's
// lease, networks, addresses and connected prefixes, and the protected
// prefixes.
func (n *Network) Facts() admit.Facts {
	n.mu.Lock()
	defer n.mu.Unlock()
	return n.table.Facts()
}

// Rejected returns the verdicts on the peer leases admission rejects, by
// family and subnet: none of them is programmed. See package lease/admit.
func (n *Network) Rejected() []admit.Verdict {
	n.mu.Lock()
	defer n.mu.Unlock()
	return n.table.Rejected()
}

// RejectedCounts returns how many peer leases each admission rule rejects.
func (n *Network) RejectedCounts() map[admit.Reason]int {
	n.mu.Lock()
	defer n.mu.Unlock()
	return n.table.RejectedCounts()
}

// Peers returns the peers of a family that admission admits, by subnet:
// those the datapath is given to program. They are copied under the
// Network's lock, which tens of thousands of peers hold for a few
// milliseconds; Peer looks one up.
func (n *Network) Peers(ipv6 bool) []admit.Peer {
	n.mu.Lock()
	defer n.mu.Unlock()
	if ipv6 && n.v6 == nil || !ipv6 && n.v4 == nil {
		return nil
	}
	return n.table.Admitted(ipv6)
}

// Peer returns the peer of a family admitted at subnet, if any.
func (n *Network) Peer(ipv6 bool, subnet netip.Prefix) (admit.Peer, bool) {
	n.mu.Lock()
	defer n.mu.Unlock()
	return n.table.AdmittedAt(ipv6, subnet)
}
