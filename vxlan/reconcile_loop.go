//go:build linux

package vxlan

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"time"

	"golang.org/x/sys/unix"
)

// A Datapath's reconciling: one pass (reconcile) and the loop that runs it
// on every change, kernel notification and resync (Run).

// Reconcile makes the kernel match the desired state now: device, address,
// peers, and the device's TX checksum offload.
func (d *Datapath) Reconcile() error {
	d.mu.Lock()
	d.offloadRead = time.Time{}
	d.mu.Unlock()
	return d.reconcile()
}

func (d *Datapath) reconcile() error {
	d.mu.Lock()
	failed, err := d.reconcileLocked()
	d.synced, d.lastErr = err == nil && d.peersKnown, err
	if err == nil {
		d.syncedGen = d.gen
		d.failedPeers = failed
	}
	d.publishLocked()
	d.mu.Unlock()
	if f := d.cfg.OnReconcile; f != nil {
		f()
	}
	return err
}

// reconcileLocked ensures the device, its address and its peers, and
// returns how many peers the kernel refused.
func (d *Datapath) reconcileLocked() (int, error) {
	// The offload is set while a new device is still down, so that its
	// first packet goes out as configured; on an existing device it is
	// read back once a ResyncInterval (and on Reconcile), or at every
	// reconcile while it could not be set.
	offloadSet := false
	dev, changes, err := ensureDevice(d.nl, d.cfg.Device, func(name string) {
		// Before the first device, setting the offload is setting it up.
		d.ensureOffloadLocked(name, d.rec == nil)
		offloadSet = true
	})
	if err != nil {
		return 0, err
	}
	// A device this Datapath creates with none before it is being set
	// up, it and its first address: not drift, so not a repair (weftctl
	// status would report repairs on every fresh start). A device it had
	// and finds gone is, created again.
	created := slices.Equal(changes, []string{"created"})
	setup := created && d.rec == nil
	if created && !setup {
		changes = []string{"re-created: it was gone"}
	}
	for _, c := range changes {
		d.noteChange(dev.Name, c, !setup)
	}
	if !offloadSet && (d.offload.Err != "" || time.Since(d.offloadRead) >= d.cfg.ResyncInterval) {
		d.ensureOffloadLocked(dev.Name, false)
	}
	dev.TXChecksumOffload = d.offload.State
	if d.rec == nil || dev.Index != d.dev.Index {
		// A new device (first run, or re-created): a new reconciler, which
		// takes the desired peers over and replays them onto it. Until it
		// exists, the old one keeps them.
		rec, err := NewReconciler(ReconcilerConfig{
			Namespace: d.cfg.Namespace, Device: dev.Index, IPv6: d.cfg.Device.Local.Is6(),
			Underlay: d.cfg.Device.Underlay, Learning: d.cfg.Device.Learning,
			RouteProtocol: d.cfg.RouteProtocol, Logger: d.cfg.Logger, host: d.host,
		})
		if err != nil {
			return 0, err
		}
		if d.rec != nil {
			rec.takePeers(d.rec)
			d.rec.Close()
		}
		d.rec = rec
	}
	d.dev = dev
	d.filter.Store(&notificationFilter{dev: dev, underlay: d.cfg.Device.Underlay, rec: d.rec})
	// Status reads the new reconciler from now on: the old one gave its
	// peers to it, and the sync below may take seconds.
	d.publishLocked()
	if d.cfg.Subnet.IsValid() || d.unaddress {
		addrChanges, err := ensureAddress(d.nl, dev.Index, d.cfg.Subnet, d.ipv6)
		if err != nil {
			return 0, err
		}
		// A new device's address is part of making it: its creation is
		// the one repair, when it is one. So is the address of a subnet
		// asked for since the last reconcile (the first lease, often
		// given after the device is made, or a move): only an address
		// lost from a subnet already in place is drift.
		asked := d.cfg.Subnet != d.addressed
		for _, c := range addrChanges {
			d.noteChange(dev.Name, c, !created && !asked)
		}
		d.addressed = d.cfg.Subnet
	}
	if !d.peersKnown {
		return 0, nil
	}
	res, err := d.rec.Sync()
	return res.Failed, err
}

// noteChange logs a change the reconcile made to the device, and records
// it as a repair where it corrected drift.
func (d *Datapath) noteChange(what, why string, repair bool) {
	if !repair {
		d.log.Info("device set up", "device", what, "change", why)
		return
	}
	d.log.Info("device changed", "device", what, "change", why)
	// A new array each time: published views share the old one. Device
	// repairs are rare, so the copy costs nothing that matters.
	d.repairs = append(slices.Clip(d.repairs), Repair{Time: time.Now(), What: what, Why: why})
	if len(d.repairs) > maxRepairs {
		d.repairs = d.repairs[len(d.repairs)-maxRepairs:]
	}
}

// Run reconciles until ctx is done. It listens to the kernel's link,
// neighbour, route and nexthop notifications in the namespace and
// reconciles shortly after any that departs from the desired state, after
// every change of desired state, and every ResyncInterval. A failed
// reconcile is retried with backoff and logged when its error changes.
func (d *Datapath) Run(ctx context.Context) error {
	n, err := d.host.subscribe(d.ipv6)
	if err != nil {
		return fmt.Errorf("vxlan: %w", err)
	}
	defer n.close()
	readerDone := make(chan struct{})
	go func() {
		defer close(readerDone)
		for ctx.Err() == nil {
			err := n.read(func(typ uint16, data []byte) {
				if !d.expected(typ, data) {
					d.trigger()
				}
			})
			if err != nil {
				// Lost notifications: anything may have changed.
				d.trigger()
				if !errors.Is(err, errOverrun) {
					d.log.Warn("kernel notifications failed; relying on periodic resync", "err", err)
					select {
					case <-ctx.Done():
					case <-time.After(time.Second):
					}
				}
			}
		}
	}()
	defer func() { <-readerDone }()
	// Whatever changed before the subscription existed goes unnoticed by
	// it: reconcile once now.
	d.trigger()

	resync := time.NewTicker(d.cfg.ResyncInterval)
	defer resync.Stop()
	settleTimer := time.NewTimer(time.Hour)
	settleTimer.Stop()
	// Peers the kernel refused are retried on a timer of their own, with
	// backoff, so that one peer's failure costs a reconcile every few
	// seconds at most, not one per kick.
	peerTimer := time.NewTimer(time.Hour)
	peerTimer.Stop()
	peerDelay := time.Duration(0)
	pending := false
	retryDelay := time.Duration(0)
	var lastErr string
	for {
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-d.kick:
			if !pending {
				pending = true
				settleTimer.Reset(settle)
			}
			continue
		case <-settleTimer.C:
			pending = false
		case <-peerTimer.C:
		case <-resync.C:
		}
		err := d.reconcile()
		if d.failed() > 0 && err == nil {
			peerDelay = min(max(2*peerDelay, minPeerRetry), maxPeerRetry)
			peerTimer.Reset(peerDelay)
		} else if err == nil {
			peerDelay = 0
		}
		if err != nil {
			if err.Error() != lastErr {
				d.log.Error("datapath reconcile failed; retrying", "err", err)
				lastErr = err.Error()
			}
			retryDelay = min(max(2*retryDelay, 100*time.Millisecond), 10*time.Second)
			pending = true
			settleTimer.Reset(retryDelay)
			continue
		}
		if lastErr != "" {
			d.log.Info("datapath reconcile recovered")
			lastErr = ""
		}
		retryDelay = 0
	}
}

// expected reports whether a notification leaves things as desired.
func (d *Datapath) expected(typ uint16, data []byte) bool {
	var dev Device
	var rec *Reconciler
	underlay := 0
	if f := d.filter.Load(); f != nil {
		dev, rec, underlay = f.dev, f.rec, f.underlay
	}
	switch typ {
	case unix.RTM_NEWLINK, unix.RTM_DELLINK:
		// Any change to the device (MTU, MAC, state, deletion), or a link
		// appearing under its name, is checked against the config.
		// The underlay's MTU decides the device's.
		i := linkIndex(data)
		return i != dev.Index && i != underlay && linkName(data) != dev.Name
	}
	return rec == nil || rec.expected(typ, data)
}
