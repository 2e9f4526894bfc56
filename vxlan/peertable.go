//go:build linux

package vxlan

import (
	"github.com/weftnet/weft/lease"
	"net/netip"
	"slices"
	"time"
)

// peerTable is what a Reconciler keeps per subnet: the peer it wants there,
// the nexthop id of the subnet's route, and what it last wrote for the
// subnet. It holds one record per node in the cluster, so the record is
// kept small: the subnet is the map key, and the peer last written is kept
// apart, in a map that is almost always empty, only while it differs from
// the peer wanted. At 20,000 peers this is several megabytes less than a
// map each for the desired peers, their status and their ids.
//
// peerTable is not safe for concurrent use; the Reconciler's mutex guards it.
type peerTable struct {
	recs    map[netip.Prefix]peerRec
	idOwner map[uint32]netip.Prefix // the subnet whose record holds each nexthop id
	// wrote holds, for a subnet whose last write was of another peer than
	// the one now wanted (or whose peer is no longer wanted), that peer.
	wrote map[netip.Prefix]remote
	errs  map[netip.Prefix]string // the last write error or conflict, for records in writeFailed
	// missing holds, for records in writeFailed, the objects the failed
	// write could not make.
	missing map[netip.Prefix]Objects
	// Indexes of the wanted VXLAN peers, so that the notification filter
	// and the FDB sharing checks are O(1) per event, which matters when a
	// sync's own writes send tens of thousands of notifications.
	gwBits map[int]int // by subnet length, for byGateway
	// byMAC holds, by VTEP MAC, a subnet of a peer with that MAC, and
	// sharedMAC the others. A MAC is almost always one peer's: a slice per
	// MAC would be an allocation per node in the cluster.
	byMAC     map[lease.MAC]netip.Prefix
	sharedMAC map[lease.MAC][]netip.Prefix
}

// remote is a peer less its subnet, which the table's key holds.
type remote struct {
	public netip.Addr
	mac    lease.MAC
	direct bool
	ok     bool // a peer is wanted (or was written) here
}

func remoteOf(p Peer, ok bool) remote {
	return remote{public: p.PublicIP, mac: p.VtepMAC, direct: p.Direct, ok: ok}
}

// peerAt returns the peer r gives at subnet.
func (r remote) peerAt(subnet netip.Prefix) Peer {
	return Peer{Subnet: subnet, PublicIP: r.public, VtepMAC: r.mac, Direct: r.direct}
}

// peerRec is one subnet's record. want.ok says a peer is wanted there.
type peerRec struct {
	want  remote
	id    uint32 // nexthop id of the subnet's route; 0 if none assigned
	state writeState
	seen  seenObjects // what the Sync in progress has found in the kernel
	// changed is when want last changed, in Unix nanoseconds: a peer's
	// "last change" in status output.
	changed int64
}

// seenObjects flags the kinds of a peer's objects a Sync found as wanted.
type seenObjects = Objects

const (
	seenNexthop   = ObjectNexthop
	seenRoute     = ObjectRoute
	seenNeighbour = ObjectNeighbour
	seenFDB       = ObjectFDB
)

// writeState is what the last write for a subnet achieved.
type writeState uint8

const (
	notWritten  writeState = iota // nothing written for the subnet yet
	written                       // every object of the peer last written is in the kernel
	writeFailed                   // the last write failed or conflicted; the reason is in errs
)

func newPeerTable() peerTable {
	return peerTable{
		recs:      map[netip.Prefix]peerRec{},
		idOwner:   map[uint32]netip.Prefix{},
		wrote:     map[netip.Prefix]remote{},
		errs:      map[netip.Prefix]string{},
		missing:   map[netip.Prefix]Objects{},
		gwBits:    map[int]int{},
		byMAC:     map[lease.MAC]netip.Prefix{},
		sharedMAC: map[lease.MAC][]netip.Prefix{},
	}
}

// wanted returns the peer wanted at subnet.
func (t *peerTable) wanted(subnet netip.Prefix) (Peer, bool) {
	rec := t.recs[subnet]
	return rec.want.peerAt(subnet), rec.want.ok
}

// wantedSubnets returns the subnets of the wanted peers, sorted.
func (t *peerTable) wantedSubnets() []netip.Prefix {
	subnets := make([]netip.Prefix, 0, len(t.recs))
	for s, rec := range t.recs {
		if rec.want.ok {
			subnets = append(subnets, s)
		}
	}
	slices.SortFunc(subnets, netip.Prefix.Compare)
	return subnets
}

// lastWritten returns the peer last written at subnet and how that went.
func (t *peerTable) lastWritten(subnet netip.Prefix) (Peer, writeState) {
	rec := t.recs[subnet]
	if rec.state == notWritten {
		return Peer{}, notWritten
	}
	if w, ok := t.wrote[subnet]; ok {
		return w.peerAt(subnet), rec.state
	}
	return rec.want.peerAt(subnet), rec.state
}

// writtenAsWanted reports whether the kernel was last made to hold exactly
// the peer now wanted at subnet.
func (t *peerTable) writtenAsWanted(subnet netip.Prefix) bool {
	rec := t.recs[subnet]
	_, differs := t.wrote[subnet]
	return rec.want.ok && rec.state == written && !differs
}

// want makes p the peer wanted at its subnet.
func (t *peerTable) want(p Peer) {
	rec := t.recs[p.Subnet]
	if rec.want.ok {
		t.unindex(p.Subnet, rec.want)
	}
	t.keepWritten(p.Subnet, rec)
	if w := remoteOf(p, true); w != rec.want {
		rec.want, rec.changed = w, time.Now().UnixNano()
	}
	t.recs[p.Subnet] = rec
	if w, ok := t.wrote[p.Subnet]; ok && w == rec.want {
		delete(t.wrote, p.Subnet)
	}
	t.index(p.Subnet, rec.want)
}

// unwant stops wanting a peer at subnet. What was written there is kept
// until forgotten, so that it can be removed.
func (t *peerTable) unwant(subnet netip.Prefix) {
	rec, ok := t.recs[subnet]
	if !ok || !rec.want.ok {
		return
	}
	t.unindex(subnet, rec.want)
	t.keepWritten(subnet, rec)
	rec.want, rec.changed = remote{}, time.Now().UnixNano()
	t.put(subnet, rec)
}

// keepWritten saves what rec says was written at subnet before its wanted
// peer changes.
func (t *peerTable) keepWritten(subnet netip.Prefix, rec peerRec) {
	if _, ok := t.wrote[subnet]; !ok && rec.state != notWritten && rec.want.ok {
		t.wrote[subnet] = rec.want
	}
}

// wantOnly makes peers the whole set of wanted peers.
func (t *peerTable) wantOnly(peers []Peer) {
	if len(t.recs) == 0 && len(peers) > 0 {
		// The first full set, usually of every node in the cluster: sized
		// once, rather than grown through a series of tables.
		t.recs = make(map[netip.Prefix]peerRec, len(peers))
		t.idOwner = make(map[uint32]netip.Prefix, len(peers))
		t.byMAC = make(map[lease.MAC]netip.Prefix, len(peers))
	}
	// Every wanted peer is let go and the new set wanted; a peer in both
	// with the same remote keeps its time of last change.
	type before struct {
		want    remote
		changed int64
	}
	was := make(map[netip.Prefix]before, len(t.recs))
	for s, rec := range t.recs {
		if rec.want.ok {
			t.keepWritten(s, rec)
			was[s] = before{rec.want, rec.changed}
			rec.want = remote{}
			t.recs[s] = rec
		}
	}
	clear(t.gwBits)
	clear(t.byMAC)
	clear(t.sharedMAC)
	now := time.Now().UnixNano()
	for _, p := range peers {
		t.want(p)
		rec := t.recs[p.Subnet]
		if b, ok := was[p.Subnet]; ok && b.want == rec.want {
			rec.changed = b.changed
		} else {
			rec.changed = now
		}
		t.recs[p.Subnet] = rec
	}
	for s, rec := range t.recs {
		if _, ok := was[s]; ok && !rec.want.ok {
			rec.changed = now
		}
		t.put(s, rec) // drops the records left empty
	}
}

// setWritten records the outcome of writing p with nexthop id: written if
// err is "", else writeFailed with err as the reason.
func (t *peerTable) setWritten(p Peer, id uint32, err string, missing Objects) {
	t.setID(p.Subnet, id)
	rec := t.recs[p.Subnet]
	rec.state = written
	delete(t.errs, p.Subnet)
	delete(t.missing, p.Subnet)
	if err != "" {
		rec.state = writeFailed
		t.errs[p.Subnet] = err
		t.missing[p.Subnet] = missing
	}
	if w := remoteOf(p, true); w != rec.want {
		t.wrote[p.Subnet] = w
	} else {
		delete(t.wrote, p.Subnet)
	}
	t.recs[p.Subnet] = rec
}

// forget drops what is known of writes at subnet, and its nexthop id: the
// subnet's objects are gone, or will be removed as strays.
func (t *peerTable) forget(subnet netip.Prefix) {
	t.setID(subnet, 0)
	rec, ok := t.recs[subnet]
	if !ok {
		return
	}
	rec.state = notWritten
	delete(t.wrote, subnet)
	delete(t.errs, subnet)
	delete(t.missing, subnet)
	t.put(subnet, rec)
}

// markSeen flags one of subnet's objects as found.
func (t *peerTable) markSeen(subnet netip.Prefix, what seenObjects) {
	if rec, ok := t.recs[subnet]; ok {
		rec.seen |= what
		t.recs[subnet] = rec
	}
}

// seen reports whether one of subnet's objects was found.
func (t *peerTable) seen(subnet netip.Prefix, what seenObjects) bool {
	return t.recs[subnet].seen&what != 0
}

// unsee clears a kind of flag of every record; with what = ^0, all.
func (t *peerTable) unsee(what seenObjects) {
	for s, rec := range t.recs {
		if rec.seen&what != 0 {
			rec.seen &^= what
			t.recs[s] = rec
		}
	}
}

// clearSeen clears every record's flags, for a new Sync.
func (t *peerTable) clearSeen() { t.unsee(^seenObjects(0)) }

// dropWrites forgets every write and nexthop id, keeping the wanted peers.
func (t *peerTable) dropWrites() {
	for s, rec := range t.recs {
		t.put(s, peerRec{want: rec.want})
	}
	clear(t.idOwner)
	clear(t.wrote)
	clear(t.errs)
	clear(t.missing)
}

// id returns subnet's nexthop id, 0 if none.
func (t *peerTable) id(subnet netip.Prefix) uint32 { return t.recs[subnet].id }

// setID records subnet's nexthop id; 0 forgets it.
func (t *peerTable) setID(subnet netip.Prefix, id uint32) {
	rec, ok := t.recs[subnet]
	if !ok && id == 0 {
		return
	}
	if rec.id != 0 {
		delete(t.idOwner, rec.id)
	}
	rec.id = id
	if id != 0 {
		t.idOwner[id] = subnet
	}
	t.put(subnet, rec)
}

// put stores rec, or deletes it when it holds nothing.
func (t *peerTable) put(subnet netip.Prefix, rec peerRec) {
	if rec.want == (remote{}) && rec.id == 0 && rec.state == notWritten {
		delete(t.recs, subnet)
		return
	}
	t.recs[subnet] = rec
}

func (t *peerTable) index(subnet netip.Prefix, w remote) {
	if w.direct {
		return
	}
	t.gwBits[subnet.Bits()]++
	switch first, ok := t.byMAC[w.mac]; {
	case !ok:
		t.byMAC[w.mac] = subnet
	case first != subnet && !slices.Contains(t.sharedMAC[w.mac], subnet):
		t.sharedMAC[w.mac] = append(t.sharedMAC[w.mac], subnet)
	}
}

func (t *peerTable) unindex(subnet netip.Prefix, w remote) {
	if w.direct {
		return
	}
	if t.gwBits[subnet.Bits()]--; t.gwBits[subnet.Bits()] == 0 {
		delete(t.gwBits, subnet.Bits())
	}
	shared := slices.DeleteFunc(t.sharedMAC[w.mac], func(s netip.Prefix) bool { return s == subnet })
	if t.byMAC[w.mac] == subnet {
		if len(shared) == 0 {
			delete(t.byMAC, w.mac)
		} else {
			t.byMAC[w.mac], shared = shared[0], shared[1:]
		}
	}
	if len(shared) == 0 {
		delete(t.sharedMAC, w.mac)
	} else {
		t.sharedMAC[w.mac] = shared
	}
}

// withMAC calls f with the subnet of each wanted VXLAN peer whose VTEP MAC
// is mac, until f returns false.
func (t *peerTable) withMAC(mac lease.MAC, f func(netip.Prefix) bool) {
	first, ok := t.byMAC[mac]
	if !ok || !f(first) {
		return
	}
	for _, s := range t.sharedMAC[mac] {
		if !f(s) {
			return
		}
	}
}

// byGateway returns the wanted VXLAN peer whose gateway (the address its
// neighbour entry is for) is ip. A peer's gateway is its subnet's first
// address, so the peer is found by its subnet for each length in use
// (almost always one), without an index of its own: one entry per node in
// the cluster would cost more than the lookups.
func (t *peerTable) byGateway(ip netip.Addr) (Peer, bool) {
	for bits := range t.gwBits {
		s := netip.PrefixFrom(ip, bits)
		if rec := t.recs[s]; rec.want.ok && !rec.want.direct {
			return rec.want.peerAt(s), true
		}
	}
	return Peer{}, false
}

// macSharer returns another wanted VXLAN peer than subnet's whose VTEP MAC
// is mac.
func (t *peerTable) macSharer(mac lease.MAC, subnet netip.Prefix) (p Peer, ok bool) {
	t.withMAC(mac, func(s netip.Prefix) bool {
		if s != subnet {
			p, ok = t.wanted(s)
		}
		return !ok
	})
	return p, ok
}

// fdbHolder returns the wanted peer Sync gives the FDB entry of mac: the
// first in subnet order of those that share it (see fdbPlan).
func (t *peerTable) fdbHolder(mac lease.MAC) (Peer, bool) {
	holder, ok := t.byMAC[mac]
	if !ok {
		return Peer{}, false
	}
	for _, s := range t.sharedMAC[mac] {
		if s.Compare(holder) < 0 {
			holder = s
		}
	}
	return t.wanted(holder)
}

// statuses returns the status of every subnet wanted or written to,
// unsorted: the caller sorts, once it has let go of the lock.
func (t *peerTable) statuses(needs func(Peer) Objects) []PeerStatus {
	out := make([]PeerStatus, 0, len(t.recs))
	for s, rec := range t.recs {
		last, state := t.lastWritten(s)
		ps := PeerStatus{Peer: last, NexthopID: rec.id, Programmed: state == written, Err: t.errs[s], Wanted: rec.want.ok}
		if rec.changed != 0 {
			ps.Changed = time.Unix(0, rec.changed)
		}
		if rec.want.ok {
			ps.Desired = rec.want.peerAt(s)
			ps.Needs = needs(ps.Desired)
		}
		switch state {
		case notWritten:
			ps.Peer.Subnet = s
			ps.Missing = ps.Needs
		case writeFailed:
			ps.Missing = t.missing[s] & ps.Needs
		}
		out = append(out, ps)
	}
	return out
}
