//go:build linux

package wireguard

import (
	"net/netip"
	"slices"
	"time"

	"github.com/weftnet/weft/lease"
)

// PeerStatus is one lease's peer on one device.
type PeerStatus struct {
	Key        lease.Key
	Device     string
	PublicKey  Key
	Endpoint   netip.AddrPort
	AllowedIPs []netip.Prefix
	// Programmed: the device has the peer as wanted. Otherwise Reason
	// (a Reason constant) and Err say why not.
	Programmed bool
	Reason     string
	Err        string
	// From the device, as of the last reconcile.
	LastHandshake               time.Time
	ReceiveBytes, TransmitBytes int64
}

// DeviceStatus is one device as programmed.
type DeviceStatus struct {
	Name  string
	Index int
	Port  int
	MTU   int
	// Engine is what runs the device: EngineKernel or EngineUserspace,
	// and EngineReason why user space does.
	Engine       Engine
	EngineReason string
	Peers        []PeerStatus // oldest lease first
	Failed       int          // peers not programmed
}

// A Repair is one correction of drift.
type Repair struct {
	Time time.Time
	What string // e.g. "flannel-wg", "peer <key>", "route 10.244.0.0/16"
	Why  string
}

// Status is what a Datapath reports.
type Status struct {
	// Synced: the desired peers are applied, each programmed or failed.
	Synced    bool
	Err       string // the last reconcile's error, "" if none
	PublicKey Key
	Devices   []DeviceStatus
	Failed    int      // peers not programmed, over every device
	Repairs   []Repair // most recent last, at most 256
	Repaired  int      // repairs ever made
	LastSync  time.Time
}

// MTU is the pods' MTU: the smallest of the devices'.
func (s Status) MTU() int {
	m := 0
	for _, d := range s.Devices {
		if m == 0 || (d.MTU > 0 && d.MTU < m) {
			m = d.MTU
		}
	}
	return m
}

// Status reports the devices, what is programmed for each peer and the
// repairs made. It never waits for a reconcile in progress.
func (d *Datapath) Status() Status {
	d.mu.Lock()
	defer d.mu.Unlock()
	s := Status{Synced: d.known && d.synced && d.syncedGen == d.gen, PublicKey: d.pub, Devices: slices.Clone(d.view), Repairs: slices.Clone(d.repairs), Repaired: d.repaired, LastSync: d.lastSync}
	if d.err != nil {
		s.Err = d.err.Error()
	}
	for _, dv := range s.Devices {
		s.Failed += dv.Failed
	}
	return s
}

// MTU is the pods' MTU as last programmed (Status().MTU()).
func (d *Datapath) MTU() int { return d.Status().MTU() }
