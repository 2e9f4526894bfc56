//go:build linux

package vxlan

import (
	"errors"
	"fmt"
	"github.com/weftnet/weft/lease"
	"net"
	"net/netip"

	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"
)

// VXLAN's encapsulation overhead on an IPv4 and an IPv6 underlay: outer IP,
// UDP, VXLAN and inner Ethernet headers.
const (
	OverheadIPv4 = 50
	OverheadIPv6 = 70
)

// DeviceConfig describes the VTEP device.
type DeviceConfig struct {
	// Name of the device. Default DeviceName(VNI, Local.Is6()).
	Name string
	// VNI, Port, GBP and Learning as in Config.
	VNI      int
	Port     int
	GBP      bool
	Learning bool
	// Local is the underlay address VXLAN packets leave from: the node's
	// public IP. Its family selects the IPv4 or IPv6 datapath. Required.
	Local netip.Addr
	// Underlay is the index of the interface that holds Local. Required
	// unless MTU is set.
	Underlay int
	// MAC is the VTEP address; use DeriveMAC for one that survives restarts.
	// Required.
	MAC lease.MAC
	// MTU overrides the device MTU; 0 derives it from the underlay.
	MTU int
	// TXChecksumOffload is the device's TX checksum offload; "" is auto
	// (see ChecksumOffloadAuto). A Datapath applies it after every
	// EnsureDevice, so a re-created device gets it too; EnsureDevice alone
	// leaves it as the kernel makes it, as its handle may be in another
	// namespace than an ethtool socket of the caller's.
	TXChecksumOffload ChecksumOffload
}

// A Device is the VTEP as programmed.
type Device struct {
	Name  string
	Index int
	MAC   lease.MAC
	MTU   int
	// TXChecksumOffload is the device's TX checksum offload as a Datapath
	// read it back after setting it: "on" or "off"; "" where it was not
	// read (EnsureDevice alone, or the read failed).
	TXChecksumOffload string
}

// EnsureDevice makes the VTEP in h's namespace match cfg. An existing device
// is reused when its immutable attributes (VNI, port, local address,
// underlay, GBP, learning) match; its MTU, MAC and up state are corrected in
// place. A device that differs in an immutable attribute, or is not VXLAN at
// all, is deleted and created again. It returns the device and a
// description of each change it made, empty when there was nothing to do.
func EnsureDevice(h *netlink.Handle, cfg DeviceConfig) (Device, []string, error) {
	return ensureDevice(h, cfg, nil)
}

// ensureDevice is EnsureDevice; beforeUp, if set, is called with the
// device's name when it is found down (a new device is), before it is
// brought up: settings made there are in force for its first packet.
func ensureDevice(h linkHandle, cfg DeviceConfig, beforeUp func(name string)) (Device, []string, error) {
	if !cfg.Local.IsValid() {
		return Device{}, nil, errors.New("vxlan: DeviceConfig.Local is required: the node's public (underlay) address")
	}
	if cfg.MAC.IsZero() {
		return Device{}, nil, errors.New("vxlan: DeviceConfig.MAC is required; use DeriveMAC")
	}
	if cfg.Name == "" {
		cfg.Name = DeviceName(cfg.VNI, cfg.Local.Is6())
	}
	mtu := cfg.MTU
	if mtu == 0 {
		if cfg.Underlay == 0 {
			return Device{}, nil, errors.New("vxlan: DeviceConfig needs Underlay to derive the MTU, or an explicit MTU")
		}
		under, err := h.LinkByIndex(cfg.Underlay)
		if err != nil {
			return Device{}, nil, fmt.Errorf("vxlan: underlay interface %d: %w", cfg.Underlay, err)
		}
		mtu = under.Attrs().MTU - OverheadIPv4
		if cfg.Local.Is6() {
			mtu = under.Attrs().MTU - OverheadIPv6
		}
	}
	if cfg.Local.Is6() && mtu < 1280 {
		return Device{}, nil, fmt.Errorf("vxlan: MTU %d is below IPv6's minimum of 1280; raise the underlay MTU", mtu)
	}
	port := cfg.Port
	if port == 0 {
		port = KernelDefaultPort
	}

	var changes []string
	link, err := h.LinkByName(cfg.Name)
	var notFound netlink.LinkNotFoundError
	switch {
	case errors.As(err, &notFound):
		link = nil
	case err != nil:
		return Device{}, nil, fmt.Errorf("vxlan: look up %s: %w", cfg.Name, err)
	}
	if link != nil {
		if why := incompatible(link, cfg, port); why != "" {
			if err := h.LinkDel(link); err != nil {
				return Device{}, nil, fmt.Errorf("vxlan: delete %s to re-create it (%s): %w", cfg.Name, why, err)
			}
			changes = append(changes, "re-created: "+why)
			link = nil
		}
	}
	fresh := link == nil
	if fresh {
		vx := &netlink.Vxlan{
			LinkAttrs:    netlink.LinkAttrs{Name: cfg.Name, MTU: mtu, HardwareAddr: cfg.MAC.HardwareAddr()},
			VxlanId:      cfg.VNI,
			VtepDevIndex: cfg.Underlay,
			SrcAddr:      net.IP(cfg.Local.AsSlice()),
			Port:         port,
			Learning:     cfg.Learning,
			GBP:          cfg.GBP,
		}
		if err := h.LinkAdd(vx); err != nil {
			return Device{}, nil, fmt.Errorf("vxlan: create %s: %w", cfg.Name, err)
		}
		if len(changes) == 0 {
			changes = append(changes, "created")
		}
		if link, err = h.LinkByName(cfg.Name); err != nil {
			return Device{}, nil, fmt.Errorf("vxlan: %s vanished after creation: %w", cfg.Name, err)
		}
	}
	a := link.Attrs()
	if a.MTU != mtu {
		if err := h.LinkSetMTU(link, mtu); err != nil {
			return Device{}, nil, fmt.Errorf("vxlan: set MTU of %s to %d: %w", cfg.Name, mtu, err)
		}
		changes = append(changes, fmt.Sprintf("MTU %d corrected to %d", a.MTU, mtu))
	}
	if !equalMAC(a.HardwareAddr, cfg.MAC) {
		if err := h.LinkSetHardwareAddr(link, cfg.MAC.HardwareAddr()); err != nil {
			return Device{}, nil, fmt.Errorf("vxlan: set MAC of %s to %s: %w", cfg.Name, cfg.MAC, err)
		}
		changes = append(changes, fmt.Sprintf("MAC %s corrected to %s", a.HardwareAddr, cfg.MAC))
	}
	if a.Flags&net.FlagUp == 0 {
		if beforeUp != nil {
			beforeUp(cfg.Name)
		}
		if err := h.LinkSetUp(link); err != nil {
			return Device{}, nil, fmt.Errorf("vxlan: bring %s up: %w", cfg.Name, err)
		}
		if !fresh {
			changes = append(changes, "brought up")
		}
	}
	return Device{Name: cfg.Name, Index: a.Index, MAC: cfg.MAC, MTU: mtu}, changes, nil
}

// incompatible says why an existing link cannot be reused, or "".
func incompatible(link netlink.Link, cfg DeviceConfig, port int) string {
	vx, ok := link.(*netlink.Vxlan)
	if !ok {
		return fmt.Sprintf("it is a %s device, not vxlan", link.Type())
	}
	local, _ := netip.AddrFromSlice(vx.SrcAddr)
	switch {
	case vx.VxlanId != cfg.VNI:
		return fmt.Sprintf("VNI %d, want %d", vx.VxlanId, cfg.VNI)
	case vx.Port != port:
		return fmt.Sprintf("port %d, want %d", vx.Port, port)
	case local.Unmap() != cfg.Local:
		return fmt.Sprintf("local address %s, want %s", local, cfg.Local)
	case vx.VtepDevIndex != cfg.Underlay:
		return fmt.Sprintf("underlay interface %d, want %d", vx.VtepDevIndex, cfg.Underlay)
	case vx.GBP != cfg.GBP:
		return fmt.Sprintf("GBP %v, want %v", vx.GBP, cfg.GBP)
	case vx.Learning != cfg.Learning:
		return fmt.Sprintf("learning %v, want %v", vx.Learning, cfg.Learning)
	}
	return ""
}

func equalMAC(hw net.HardwareAddr, m lease.MAC) bool { return len(hw) == 6 && lease.MAC(hw) == m }

// EnsureAddress makes subnet's network address (as a /32 or /128) the
// device's only address of its family, removing the others: the leftovers
// of an earlier lease, in this network or in one it replaced. IPv6
// link-local addresses, which the kernel gives the device itself, are left
// alone. It returns a description of each change.
func EnsureAddress(h *netlink.Handle, dev int, subnet netip.Prefix) ([]string, error) {
	return ensureAddress(h, dev, subnet, subnet.Addr().Is6())
}

// ensureAddress is EnsureAddress; a zero subnet wants no address of the
// family but link-local ones: a node that no longer holds a subnet must
// not answer for it.
func ensureAddress(h linkHandle, dev int, subnet netip.Prefix, ipv6 bool) ([]string, error) {
	link, err := h.LinkByIndex(dev)
	if err != nil {
		return nil, fmt.Errorf("vxlan: device %d: %w", dev, err)
	}
	var want netip.Prefix
	if subnet.IsValid() {
		want = netip.PrefixFrom(subnet.Masked().Addr(), subnet.Addr().BitLen())
	}
	fam := netlink.FAMILY_V4
	if ipv6 {
		fam = netlink.FAMILY_V6
	}
	addrs, err := h.AddrList(link, fam)
	if err != nil {
		return nil, fmt.Errorf("vxlan: list addresses of %s: %w", link.Attrs().Name, err)
	}
	var changes []string
	have := false
	for _, a := range addrs {
		ip, _ := netip.AddrFromSlice(a.IP)
		ones, _ := a.Mask.Size()
		p := netip.PrefixFrom(ip.Unmap(), ones)
		if p == want {
			have = true
			continue
		}
		if !p.Addr().IsLinkLocalUnicast() {
			if err := h.AddrDel(link, &a); err != nil {
				return changes, fmt.Errorf("vxlan: remove stale address %s from %s: %w", p, link.Attrs().Name, err)
			}
			changes = append(changes, "removed stale address "+p.String())
		}
	}
	if !have && want.IsValid() {
		a, err := netlink.ParseAddr(want.String())
		if err != nil {
			return changes, err
		}
		if want.Addr().Is6() {
			a.Flags |= unix.IFA_F_NODAD
		}
		if err := h.AddrAdd(link, a); err != nil {
			return changes, fmt.Errorf("vxlan: add %s to %s: %w", want, link.Attrs().Name, err)
		}
		changes = append(changes, "added address "+want.String())
	}
	return changes, nil
}
