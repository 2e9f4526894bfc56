//go:build linux

package vxlan

import (
	"maps"
	"net/netip"
	"slices"
	"strings"
	"time"
)

// Objects is a set of the kinds of kernel object a peer needs: a nexthop
// (on kernels with nexthop objects), a route, and for a VXLAN peer a
// permanent neighbour and FDB entry.
type Objects uint8

const (
	ObjectNexthop Objects = 1 << iota
	ObjectRoute
	ObjectNeighbour
	ObjectFDB
)

var objectNames = []struct {
	o    Objects
	name string
}{{ObjectNexthop, "nexthop"}, {ObjectRoute, "route"}, {ObjectNeighbour, "neighbour"}, {ObjectFDB, "fdb"}}

// Names lists the kinds in o, in the order they are programmed.
func (o Objects) Names() []string {
	var out []string
	for _, n := range objectNames {
		if o&n.o != 0 {
			out = append(out, n.name)
		}
	}
	return out
}

// String is Names joined with commas; "" for none.
func (o Objects) String() string { return strings.Join(o.Names(), ",") }

// PeerStatus is what the reconciler holds for one peer: what it last
// programmed, against what is desired.
type PeerStatus struct {
	// Peer is the peer as last written to the kernel.
	Peer Peer
	// Desired is the peer wanted now, and Wanted false while the peer's
	// objects are being removed. It differs from Peer between a change
	// and its write.
	Desired   Peer
	Wanted    bool
	NexthopID uint32 // 0 without nexthop objects
	// Programmed is true once every object of the peer is in the kernel.
	Programmed bool
	// Needs are the objects the desired peer needs, and Missing those of
	// them the last write could not make (all of Needs while not
	// written yet).
	Needs, Missing Objects
	// Err is the last write error or conflict for the peer, "" if none.
	Err string
	// Changed is when the desired peer last changed: added, moved to
	// another public address or MAC, or given up.
	Changed time.Time
}

// A Repair is one correction of the kernel by Sync: something was missing,
// wrong or stray.
type Repair struct {
	Time time.Time
	What string // the object, e.g. "neighbour 10.244.9.0"
	Why  string // e.g. "lladdr 0e:00:00:00:00:09 state 0x80, want 0e:00:00:00:00:01 permanent"
}

// Status is a snapshot of the reconciler for status output.
type Status struct {
	Device   int
	IPv6     bool
	Nexthops bool         // routes use nexthop objects
	Peers    []PeerStatus // sorted by subnet (netip.Prefix.Compare)
	Repairs  []Repair     // most recent last, at most 256
	Repaired int          // repairs ever made
	LastSync SyncResult
	Syncs    int // Sync calls so far
}

// Counts is the cheap part of a reconciler's status: its peers counted by
// how their programming went, and its totals.
type Counts struct {
	Wanted     int // peers desired
	Programmed int // peers whose every object is in the kernel
	Failed     int // peers the kernel refused, or another program's objects block
	Repaired   int // repairs ever made
	LastSync   SyncResult
}

// Status returns what is programmed for each peer and the recent repairs.
// The state lock, which writers take between netlink round trips, is held
// only to clone the peer table's maps, which copies their memory whole;
// the statuses are made and sorted after it is let go.
func (r *Reconciler) Status() Status {
	r.mu.Lock()
	s := r.summaryLocked()
	snap := r.snapshotLocked()
	r.mu.Unlock()
	s.Peers = snap.sortedStatuses(r.needs)
	return s
}

// summaryLocked is Status without the peers. r.mu is held.
func (r *Reconciler) summaryLocked() Status {
	return Status{Device: r.cfg.Device, IPv6: r.cfg.IPv6, Nexthops: r.nexthops, LastSync: r.lastSync, Syncs: r.syncs, Repaired: r.repaired, Repairs: slices.Clone(r.repairs)}
}

// snapshotLocked clones what the peers' statuses are made from, which
// copies the maps' memory whole. r.mu is held.
func (r *Reconciler) snapshotLocked() peerTable {
	return peerTable{recs: maps.Clone(r.peers.recs), wrote: maps.Clone(r.peers.wrote), errs: maps.Clone(r.peers.errs), missing: maps.Clone(r.peers.missing)}
}

// sortedStatuses is statuses in netip.Prefix.Compare order.
func (t *peerTable) sortedStatuses(needs func(Peer) Objects) []PeerStatus {
	out := t.statuses(needs)
	slices.SortFunc(out, func(a, b PeerStatus) int { return a.Peer.Subnet.Compare(b.Peer.Subnet) })
	return out
}

// Counts counts the peers without copying them: the cheap view, for
// metrics.
func (r *Reconciler) Counts() Counts {
	r.mu.Lock()
	defer r.mu.Unlock()
	c := Counts{Repaired: r.repaired, LastSync: r.lastSync}
	for _, rec := range r.peers.recs {
		if !rec.want.ok {
			continue // being removed
		}
		c.Wanted++
		switch rec.state {
		case written:
			c.Programmed++
		case writeFailed:
			c.Failed++
		}
	}
	return c
}

// needs returns the objects p needs on this kernel.
func (r *Reconciler) needs(p Peer) Objects {
	o := ObjectRoute
	if r.nexthops {
		o |= ObjectNexthop
	}
	if !p.Direct {
		o |= ObjectNeighbour | ObjectFDB
	}
	return o
}

// DatapathStatus is what a Datapath reports for status output.
type DatapathStatus struct {
	Device Device
	// Offload is the device's TX checksum offload: asked, wanted, as read.
	Offload OffloadStatus
	// Synced: the desired peers are applied, each programmed or failed.
	Synced bool
	Err    string // the last reconcile's error, "" if none
	// FailedPeers counts the peers whose objects the kernel refused;
	// Reconciler's Peers has each one's error.
	FailedPeers int
	Repairs     []Repair // device repairs; peer repairs are in Reconciler
	Reconciler  Status
}

// datapathView is what a Datapath last published for readers that must
// not wait for d.mu. Nothing in it is changed once published.
type datapathView struct {
	dev         Device
	synced      bool
	err         string
	failedPeers int
	repairs     []Repair
	rec         *Reconciler
	offload     OffloadStatus
}

// Status reports the device, whether the datapath has converged, what is
// programmed for each peer, and the repairs made. It never waits for a
// reconcile in progress: the datapath's part is what it last published,
// and the peers are copied from the reconciler between its netlink round
// trips.
func (d *Datapath) Status() DatapathStatus {
	v := d.loadView()
	s := v.status()
	if v.rec != nil {
		s.Reconciler = v.rec.Status()
	}
	return s
}

// Peers is Status().Reconciler.Peers alone, without working out the rest
// (the rejected leases in particular).
func (d *Datapath) Peers() []PeerStatus {
	r := d.loadView().rec
	if r == nil {
		return nil
	}
	r.mu.Lock()
	snap := r.snapshotLocked()
	r.mu.Unlock()
	return snap.sortedStatuses(r.needs)
}

// Summary is Status without the peers (Reconciler.Peers and Rejected are
// left empty): cheap at any number of peers.
func (d *Datapath) Summary() DatapathStatus {
	v := d.loadView()
	s := v.status()
	if r := v.rec; r != nil {
		r.mu.Lock()
		s.Reconciler = r.summaryLocked()
		r.mu.Unlock()
	}
	return s
}

// status is the datapath's own part of a DatapathStatus.
func (v *datapathView) status() DatapathStatus {
	return DatapathStatus{Device: v.dev, Offload: v.offload, Synced: v.synced, Err: v.err, FailedPeers: v.failedPeers, Repairs: slices.Clone(v.repairs)}
}

// Counts counts the datapath's peers by how their programming went,
// without copying them.
func (d *Datapath) Counts() Counts {
	if rec := d.loadView().rec; rec != nil {
		return rec.Counts()
	}
	return Counts{}
}

// Failed returns the subnets of the desired peers whose last write
// failed, sorted: few, as a rule, so the cheap way to learn which.
func (r *Reconciler) Failed() []netip.Prefix {
	r.mu.Lock()
	var out []netip.Prefix
	for s := range r.peers.errs {
		if rec := r.peers.recs[s]; rec.want.ok && rec.state == writeFailed {
			out = append(out, s)
		}
	}
	r.mu.Unlock()
	slices.SortFunc(out, netip.Prefix.Compare)
	return out
}

// FailedPeers returns the subnets of the peers the kernel refused (see
// Reconciler.Failed).
func (d *Datapath) FailedPeers() []netip.Prefix {
	if rec := d.loadView().rec; rec != nil {
		return rec.Failed()
	}
	return nil
}
