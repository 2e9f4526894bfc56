//go:build linux

package vxlan

import (
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/safchain/ethtool"
	"github.com/vishvananda/netns"
	"golang.org/x/sys/unix"

	"github.com/weftnet/weft/internal/netnsutil"
)

// txChecksumFeature is the one TX checksum feature a VXLAN device offers
// (NETIF_F_HW_CSUM); the other tx-checksum-* features are fixed off on
// it, so this one alone decides what `ethtool -k` shows as
// tx-checksumming.
const txChecksumFeature = "tx-checksum-ip-generic"

// txChecksummer reads and sets a device's TX checksum offload. The kernel
// host implements it through ethtool; a host without one (the scale
// harness's recorder) leaves the setting alone and reports it unknown.
type txChecksummer interface {
	txChecksum(dev string) (bool, error)
	setTXChecksum(dev string, on bool) error
}

func (h netnsHost) txChecksum(dev string) (on bool, err error) {
	err = h.ethtool(func(e *ethtool.Ethtool) error {
		f, err := e.Features(dev)
		if err != nil {
			return err
		}
		v, ok := f[txChecksumFeature]
		if !ok {
			return fmt.Errorf("%s has no %s feature", dev, txChecksumFeature)
		}
		on = v
		return nil
	})
	return on, err
}

func (h netnsHost) setTXChecksum(dev string, on bool) error {
	return h.ethtool(func(e *ethtool.Ethtool) error {
		return e.Change(dev, map[string]bool{txChecksumFeature: on})
	})
}

// ethtool runs f with an ethtool socket opened in the host's namespace:
// the ioctl acts on the namespace its socket was opened in.
func (h netnsHost) ethtool(f func(*ethtool.Ethtool) error) error {
	var e *ethtool.Ethtool
	open := func() error {
		var err error
		e, err = ethtool.NewEthtool()
		return err
	}
	var err error
	if inNamespace(h.ns) {
		err = netnsutil.Do(h.ns, open)
	} else {
		err = open()
	}
	if err != nil {
		return fmt.Errorf("ethtool socket: %w", err)
	}
	defer e.Close()
	return f(e)
}

var _ txChecksummer = netnsHost{netns.None()}

// kernelRelease returns uname -r, "" if it cannot be read.
func kernelRelease() string {
	var u unix.Utsname
	if err := unix.Uname(&u); err != nil {
		return ""
	}
	return unix.ByteSliceToString(u.Release[:])
}

// brokenChecksumBefore is the first kernel release whose VXLAN TX
// checksum offload survives a NAT of the tunnel packet: before it, a
// double-NATed packet (kube-proxy's and the node's) leaves with a wrong
// outer UDP checksum and is dropped by the receiver (flannel #1279, k8s
// #88986). Calico turns the offload off below this release too.
var brokenChecksumBefore = [2]int{5, 7}

// parseRelease returns the major and minor version of a kernel release
// such as "5.4.0-150-generic".
func parseRelease(release string) (major, minor int, ok bool) {
	parts := strings.SplitN(release, ".", 3)
	if len(parts) < 2 {
		return 0, 0, false
	}
	major, err1 := strconv.Atoi(parts[0])
	end := strings.IndexFunc(parts[1], func(r rune) bool { return r < '0' || r > '9' })
	if end < 0 {
		end = len(parts[1])
	}
	minor, err2 := strconv.Atoi(parts[1][:end])
	return major, minor, err1 == nil && err2 == nil
}

// resolve says whether the device's TX checksum offload should be on under
// mode on a kernel of release, and why, in words for the status and the
// log.
func (m ChecksumOffload) resolve(release string) (on bool, why string) {
	switch m {
	case ChecksumOffloadOn:
		return true, "on as configured"
	case ChecksumOffloadOff:
		return false, "off as configured"
	}
	major, minor, ok := parseRelease(release)
	switch {
	case !ok:
		// Off is always correct, at some CPU cost; on may lose packets.
		return false, fmt.Sprintf("auto: off, as the kernel release %q cannot be read", release)
	case major < brokenChecksumBefore[0] || major == brokenChecksumBefore[0] && minor < brokenChecksumBefore[1]:
		return false, fmt.Sprintf("auto: off, as kernel %d.%d is before 5.7 and corrupts the checksum of NATed VXLAN packets", major, minor)
	}
	return true, fmt.Sprintf("auto: on, as kernel %d.%d is 5.7 or later", major, minor)
}

// ensureTXChecksum makes dev's TX checksum offload on or off as wanted and
// reads it back. It returns the state ("on" or "off") and a description
// of the change it made, "" if none.
func ensureTXChecksum(c txChecksummer, dev string, want bool) (state, change string, err error) {
	on, err := c.txChecksum(dev)
	if err != nil {
		return "", "", fmt.Errorf("vxlan: read TX checksum offload of %s: %w", dev, err)
	}
	if on != want {
		if err := c.setTXChecksum(dev, want); err != nil {
			return onOff(on), "", fmt.Errorf("vxlan: turn TX checksum offload of %s %s: %w", dev, onOff(want), err)
		}
		if on, err = c.txChecksum(dev); err != nil {
			return "", "", fmt.Errorf("vxlan: read TX checksum offload of %s: %w", dev, err)
		}
		if on != want {
			return onOff(on), "", fmt.Errorf("vxlan: TX checksum offload of %s stays %s after turning it %s", dev, onOff(on), onOff(want))
		}
		change = fmt.Sprintf("TX checksum offload %s corrected to %s", onOff(!want), onOff(want))
	}
	return onOff(on), change, nil
}

func onOff(on bool) string {
	if on {
		return "on"
	}
	return "off"
}

// OffloadStatus is a Datapath's TX checksum offload: what the config asks,
// what that means on this kernel, and what the device has.
type OffloadStatus struct {
	Mode ChecksumOffload // as configured; "" is auto
	Want bool            // on or off, as Mode resolves on this kernel
	Why  string          // why Want, e.g. "auto: off, as kernel 5.4 is before 5.7 ..."
	// State is the device's offload as last read back, "on" or "off";
	// "" while unknown (a host without ethtool, or Err).
	State string
	Err   string // the last failure to read or set it, "" if none
}

// initOffload resolves the configured mode on the kernel of release.
func (d *Datapath) initOffload(release string) {
	d.csum, _ = d.host.(txChecksummer)
	mode := d.cfg.Device.TXChecksumOffload
	d.offload.Mode = mode
	d.offload.Want, d.offload.Why = mode.resolve(release)
}

// ensureOffloadLocked sets dev's TX checksum offload as wanted, on a new
// device and once a ResyncInterval (see reconcileLocked), so that a device re-created (by weft or by hand) or changed
// with ethtool gets it back. A failure is reported in the status and
// logged when it changes, but does not fail the reconcile: the overlay
// still carries traffic, and the operator is told what to fix. A change
// made in setup (the first device's) is logged but is not a repair.
func (d *Datapath) ensureOffloadLocked(dev string, setup bool) {
	if d.csum == nil {
		return
	}
	state, change, err := ensureTXChecksum(d.csum, dev, d.offload.Want)
	d.offloadRead = time.Now()
	d.offload.State = state
	if change != "" {
		d.noteChange(dev, change+" ("+d.offload.Why+")", !setup)
	}
	msg := ""
	if err != nil {
		msg = err.Error()
	}
	if msg != d.offload.Err {
		if err != nil {
			d.log.Warn("could not set the device's TX checksum offload; the overlay may lose NATed packets on kernels before 5.7", "device", dev, "want", onOff(d.offload.Want), "err", err)
		} else {
			d.log.Info("TX checksum offload set again", "device", dev, "state", state)
		}
	}
	d.offload.Err = msg
}
