package lease

import (
	"slices"
	"strconv"
	"time"
)

// A Lease is a node's hold on a subnet key, with the attributes it
// publishes there.
type Lease struct {
	Key   Key
	Attrs Attrs
	// Expiration is when the lease lapses unless renewed, where the source
	// reports it. The zero time means it does not lapse (an etcd
	// reservation, or a lease tied to a Kubernetes Node) or that the source
	// does not say: lease/etcd reports it for the node's own lease only, as
	// learning it for every peer would cost a request per lease.
	Expiration time.Time
	// Invalid, when not empty, says why the source could not take the
	// lease's value, such as a size limit it is over (see MaxValueSize):
	// the lease then carries its Key and Seniority only, and no Attrs,
	// so that admission rejects it and reports it by key, without what
	// its writer put in it. A source keeps nothing more of it. Sources
	// skip, with a warning, the other values that do not parse.
	Invalid string
	// Seniority orders leases by when they were established, so that every
	// node resolves a conflict between two peers (overlapping subnets, a
	// shared VTEP MAC) the same way, in favour of the older: lower is
	// older. lease/etcd sets the key's create revision; kube sets the
	// Node's creation time in Unix seconds. Zero means the source does not
	// say, and ranks after every known value; ties are broken by Key.
	Seniority int64
}

// Older reports whether l was established before o, by Seniority (zero
// ranking last) and then by Key: the order in which conflicts between peers
// are decided.
func (l Lease) Older(o Lease) bool {
	return CompareSeniority(l.Seniority, l.Key, o.Seniority, o.Key) < 0
}

// CompareSeniority compares two leases' seniorities and keys as Older
// orders them, for callers that keep the two apart from a Lease.
func CompareSeniority(sa int64, ka Key, sb int64, kb Key) int {
	switch {
	case sa == sb:
		return ka.Compare(kb)
	case sa == 0:
		return 1
	case sb == 0:
		return -1
	case sa < sb:
		return -1
	}
	return 1
}

// Same reports whether l and o carry the same information, but for
// Expiration: a renewal is not a change.
func (l Lease) Same(o Lease) bool {
	return l.Key == o.Key && l.Seniority == o.Seniority && l.Invalid == o.Invalid && l.Attrs.Equal(o.Attrs)
}

// EventType says how a lease changed.
type EventType uint8

const (
	// Added: a subnet key appeared.
	Added EventType = iota + 1
	// Changed: a known subnet key now has different attributes or
	// Seniority, for example a new VTEP MAC or public IP after a node was
	// rebuilt. A renewal that only moves the expiration is not a change.
	Changed
	// Removed: a subnet key is gone (expired, released or deleted).
	Removed
)

func (t EventType) String() string {
	switch t {
	case Added:
		return "added"
	case Changed:
		return "changed"
	case Removed:
		return "removed"
	}
	return "EventType(" + strconv.Itoa(int(t)) + ")"
}

// An Event is one change to the set of leases.
type Event struct {
	Type EventType
	// Lease is the lease after the change; for Removed, the lease as last
	// seen, or only its Key and Seniority where the source does not keep
	// what it sent (etcd's: the receiver does, and a second copy of every
	// lease, a writer's 100,000 included, would cost each node as much
	// again).
	Lease Lease
	// Prev is the lease before a Changed event where the source keeps it
	// (kube's), and nil otherwise. A pointer, not a Lease: a snapshot is
	// one Added event per lease, and an inline zero Lease would double
	// what each of them holds.
	Prev *Lease
}

// A Batch is one delivery from Manager.WatchLeases. A lease source keeps
// one lease per key: a snapshot holds each key at most once, and an Added
// event is for a key it has not sent or has since removed. Peer admission
// (package lease/admit) takes a later lease for a key as replacing the
// earlier, so a source whose store can hold two claims to one key (two
// Nodes with one PodCIDR) sends the older claim's only.
type Batch struct {
	// Snapshot marks the first batch of a watch: Events then holds one Added
	// event per lease that exists (possibly none), and the receiver should
	// replace whatever it knew. Every later batch is incremental.
	//
	// A large snapshot may come in parts, each a Batch with Snapshot set:
	// Part counts them from 0, and every part but the last has More set.
	// The receiver replaces what it knew with the union of the parts once
	// the last has arrived, and until then goes on with what it knew: so
	// that neither the source nor the receiver holds every lease as events
	// at once (tens of thousands of them, or as many as a writer makes). A
	// part 0 while parts are arriving begins the snapshot again (the
	// source's listing failed midway): the parts before it are dropped.
	Snapshot bool
	Part     int
	More     bool
	Events   []Event
	// Revision is the store's revision the batch brings the receiver up
	// to (etcd's), or 0 where the source has none (kube's Nodes).
	Revision int64
}

// Diff returns the events that turn the lease set before into after, ordered
// by key. Each slice must hold at most one lease per key. Lease managers use
// it after re-listing, for example when a watch's history was compacted away,
// so that consumers see changed attributes and not only additions and
// removals. A lease whose Seniority changed (its key was deleted and
// created again meanwhile) is Changed too.
func Diff(before, after []Lease) []Event {
	old := make(map[Key]Lease, len(before))
	for _, l := range before {
		old[l.Key] = l
	}
	var events []Event
	for _, l := range after {
		prev, ok := old[l.Key]
		switch {
		case !ok:
			events = append(events, Event{Type: Added, Lease: l})
		case !prev.Same(l):
			events = append(events, Event{Type: Changed, Lease: l, Prev: &prev})
		}
		delete(old, l.Key)
	}
	for _, l := range old {
		events = append(events, Event{Type: Removed, Lease: l})
	}
	slices.SortFunc(events, func(a, b Event) int { return a.Lease.Key.Compare(b.Lease.Key) })
	return events
}
