//go:build linux

package wireguard

import (
	"errors"
	"fmt"
	"net"
	"net/netip"

	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"

	"github.com/weftnet/weft/internal/ownroute"
)

// wgdev is one device and what the datapath keeps of it. Its fields are
// the reconcile's (under Datapath.work).
type wgdev struct {
	spec   DeviceSpec
	index  int
	user   *userDev // the user-space engine's device, if that runs
	owners []*ownroute.Owner
	// written is what the last reconcile left programmed per peer, to
	// tell drift from news.
	written map[Key]peerWant
	// fresh: the device was made since its peers were last written; they
	// are greeted once written (userDev.greet).
	fresh bool
	// read: a full reconcile has read the device's peers back since it
	// was made; until then every reconcile does.
	read   bool
	status DeviceStatus
}

// ensureLink makes the device exist, of the engine in use, and returns
// its client and what it changed ("" for nothing).
func (d *Datapath) ensureLink(dev *wgdev, mtu int) (wgClient, string, error) {
	name := dev.spec.Name
	link, err := d.nl.LinkByName(name)
	var nf netlink.LinkNotFoundError
	switch {
	case errors.As(err, &nf):
		link = nil
	case err != nil:
		return nil, "", fmt.Errorf("wireguard: look up %s: %w", name, err)
	}
	change := ""
	if d.engine == "" && d.cfg.Engine == EngineUserspace {
		d.engine, d.why = EngineUserspace, "asked for (Engine userspace)"
	}
	if d.engine == "" || d.engine == EngineKernel {
		if link != nil && link.Type() != "wireguard" {
			if err := d.nl.LinkDel(link); err != nil {
				return nil, "", fmt.Errorf("wireguard: delete %s (a %s device) to make a WireGuard one: %w", name, link.Type(), err)
			}
			link, change = nil, "re-created: it was a "+link.Type()+" device"
		}
		if link == nil {
			err := createKernelDevice(d.nl, name, mtu)
			switch {
			case err == nil:
				d.engine = EngineKernel
				if change == "" {
					change = "created"
				}
				if link, err = d.nl.LinkByName(name); err != nil {
					return nil, "", fmt.Errorf("wireguard: %s vanished after creation: %w", name, err)
				}
			case d.cfg.Engine == EngineAuto && kernelRefused(err):
				d.engine, d.why = EngineUserspace, fmt.Sprintf("the kernel refused a WireGuard device (%v)", err)
				d.log.Info("running WireGuard in user space (wireguard-go)", "reason", d.why)
			default:
				return nil, "", fmt.Errorf("wireguard: create %s: %w", name, err)
			}
		} else {
			d.engine = EngineKernel
		}
	}
	if d.engine == EngineKernel {
		dev.index = link.Attrs().Index
		if d.kernel == nil {
			c, err := kernelClient(d.ns)
			if err != nil {
				return nil, "", err
			}
			d.kernel = c
		}
		return d.wrap(d.kernel), change, nil
	}

	// User space: the device is ours while wireguard-go runs on it and a
	// link of its index has its name.
	if u := dev.user; u != nil && (u.closed() || link == nil || link.Attrs().Index != u.index) {
		u.Close()
		dev.user = nil
		change = "re-created: it was deleted"
		link = nil
		if l, err := d.nl.LinkByName(name); err == nil {
			link = l
		}
	}
	if dev.user == nil {
		if link != nil {
			// Not ours: a kernel device of an earlier run, or anything
			// else by the name.
			if err := d.nl.LinkDel(link); err != nil {
				return nil, "", fmt.Errorf("wireguard: delete %s (%s) to run wireguard-go on it: %w", name, link.Type(), err)
			}
			if change == "" {
				change = "re-created: a " + link.Type() + " device held its name"
			}
		}
		u, err := newUserDev(d.ns, d.nl, name, mtu, d.cfg.UAPIDir, d.log)
		if err != nil {
			return nil, "", err
		}
		dev.user = u
		if change == "" {
			change = "created"
		}
	}
	dev.index = dev.user.index
	return d.wrap(dev.user), change, nil
}

func (d *Datapath) wrap(c wgClient) wgClient {
	if d.cfg.client != nil {
		return d.cfg.client(c)
	}
	return c
}

// ensureLinkState corrects the device's MTU and brings it up.
func (d *Datapath) ensureLinkState(dev *wgdev, mtu int) ([]string, error) {
	link, err := d.nl.LinkByIndex(dev.index)
	if err != nil {
		return nil, fmt.Errorf("wireguard: %s: %w", dev.spec.Name, err)
	}
	var changes []string
	if a := link.Attrs(); a.MTU != mtu {
		if err := d.nl.LinkSetMTU(link, mtu); err != nil {
			return nil, fmt.Errorf("wireguard: set MTU of %s to %d: %w", dev.spec.Name, mtu, err)
		}
		changes = append(changes, fmt.Sprintf("MTU %d corrected to %d", a.MTU, mtu))
	}
	if link.Attrs().Flags&net.FlagUp == 0 {
		if err := d.nl.LinkSetUp(link); err != nil {
			return nil, fmt.Errorf("wireguard: bring %s up: %w", dev.spec.Name, err)
		}
		changes = append(changes, "brought up")
	}
	return changes, nil
}

// ensureAddresses makes want (one address per family at most, as a /32
// or /128) the device's only addresses of the families it carries, but
// for IPv6 link-local ones.
func (d *Datapath) ensureAddresses(dev *wgdev, want []netip.Prefix) ([]string, error) {
	link, err := d.nl.LinkByIndex(dev.index)
	if err != nil {
		return nil, fmt.Errorf("wireguard: %s: %w", dev.spec.Name, err)
	}
	addrs, err := d.nl.AddrList(link, netlink.FAMILY_ALL)
	if err != nil {
		return nil, fmt.Errorf("wireguard: addresses of %s: %w", dev.spec.Name, err)
	}
	var changes []string
	have := map[netip.Prefix]bool{}
	for _, a := range addrs {
		ip, _ := netip.AddrFromSlice(a.IP)
		ones, _ := a.Mask.Size()
		p := netip.PrefixFrom(ip.Unmap(), ones)
		switch {
		case p.Addr().IsLinkLocalUnicast():
		case containsPrefix(want, p):
			have[p] = true
		default:
			if err := d.nl.AddrDel(link, &a); err != nil {
				return changes, fmt.Errorf("wireguard: remove stale address %s from %s: %w", p, dev.spec.Name, err)
			}
			changes = append(changes, "removed stale address "+p.String())
		}
	}
	for _, p := range want {
		if have[p] {
			continue
		}
		a := &netlink.Addr{IPNet: &net.IPNet{IP: p.Addr().AsSlice(), Mask: net.CIDRMask(p.Bits(), p.Addr().BitLen())}}
		if p.Addr().Is6() {
			a.Flags |= unix.IFA_F_NODAD
		}
		if err := d.nl.AddrAdd(link, a); err != nil {
			return changes, fmt.Errorf("wireguard: add %s to %s: %w", p, dev.spec.Name, err)
		}
		changes = append(changes, "added address "+p.String())
	}
	return changes, nil
}

func containsPrefix(ps []netip.Prefix, p netip.Prefix) bool {
	for _, q := range ps {
		if q == p {
			return true
		}
	}
	return false
}
