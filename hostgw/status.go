//go:build linux

package hostgw

import (
	"net/netip"
	"slices"
	"time"

	"github.com/weftnet/weft/lease"
)

// maxRepairs bounds the repair history Status returns.
const maxRepairs = 256

// PeerStatus is one peer half (one family of one lease) as programmed.
type PeerStatus struct {
	Key    lease.Key
	IPv6   bool
	Subnet netip.Prefix
	Via    netip.Addr // the peer's public address of the family
	// Programmed: its route is in the kernel as wanted. Otherwise
	// Reason (one of the Reason constants) and Err say why not.
	Programmed bool
	Reason     string
	Err        string
}

// A Repair is one correction of drift: a route that had gone or changed.
type Repair struct {
	Time time.Time
	What string
}

// Status is what a Datapath reports.
type Status struct {
	// Synced: the desired peers are applied, each programmed or failed.
	Synced bool
	Err    string // the last reconcile's error, "" if none
	// MTU is the uplink's, which host-gw leaves to pods unchanged.
	MTU      int
	Peers    []PeerStatus // by family, then subnet
	Failed   int          // peers not programmed
	Repairs  []Repair     // most recent last, at most 256
	Repaired int          // repairs ever made
	LastSync time.Time
}

// Status reports what is programmed for each peer and the repairs made.
// It never waits for a reconcile in progress.
func (d *Datapath) Status() Status {
	d.mu.Lock()
	defer d.mu.Unlock()
	s := Status{Synced: d.known && d.synced && d.syncedGen == d.gen, MTU: d.mtu, Repairs: slices.Clone(d.repairs), Repaired: d.repaired, LastSync: d.lastSync}
	if d.err != nil {
		s.Err = d.err.Error()
	}
	for _, f := range d.fams {
		s.Peers = append(s.Peers, f.status...)
	}
	for _, p := range s.Peers {
		if !p.Programmed {
			s.Failed++
		}
	}
	return s
}
