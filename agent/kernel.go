//go:build linux

package agent

import (
	"time"

	"github.com/vishvananda/netlink"
	"github.com/vishvananda/netns"

	"github.com/weftnet/weft/internal/netnsutil"
)

// defaultResyncInterval is how often the node's addresses are read again
// with no notification, as the datapaths' default resync.
const defaultResyncInterval = 30 * time.Second

// A Host is what a Network reads of the node's kernel: its addresses (to
// find the underlay interface, and the connected prefixes no peer may
// capture) and their changes. The datapaths program the kernel
// themselves. NetworkConfig.Host nil means netlink in NetworkConfig's
// Namespace; the control-plane scale harness gives each of its thousands
// of Networks a kernel in memory.
type Host interface {
	// AddrList lists every address of every interface, as netlink's
	// AddrList(nil, FAMILY_ALL).
	AddrList() ([]netlink.Addr, error)
	// SubscribeAddrs sends address changes on ch until done is closed,
	// as netlink.AddrSubscribeWithOptions; onErr receives a broken
	// subscription's error.
	SubscribeAddrs(ch chan<- netlink.AddrUpdate, done <-chan struct{}, onErr func(error)) error
}

// netnsHost is the kernel in a namespace: the zero handle is the
// caller's.
type netnsHost struct{ ns netns.NsHandle }

func (h netnsHost) AddrList() ([]netlink.Addr, error) {
	open := netlink.NewHandle
	if netnsutil.InOther(h.ns) {
		open = func(...int) (*netlink.Handle, error) { return netlink.NewHandleAt(h.ns) }
	}
	nl, err := open()
	if err != nil {
		return nil, err
	}
	defer nl.Close()
	return nl.AddrList(nil, netlink.FAMILY_ALL)
}

func (h netnsHost) SubscribeAddrs(ch chan<- netlink.AddrUpdate, done <-chan struct{}, onErr func(error)) error {
	opts := netlink.AddrSubscribeOptions{ErrorCallback: onErr}
	if netnsutil.InOther(h.ns) {
		ns := h.ns
		opts.Namespace = &ns
	}
	return netlink.AddrSubscribeWithOptions(ch, done, opts)
}

// host is the kernel the Network reads.
func (n *Network) host() Host {
	if n.cfg.Host != nil {
		return n.cfg.Host
	}
	return netnsHost{n.cfg.Namespace}
}
