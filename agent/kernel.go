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

// A host is what the agent reads of the kernel: the node's addresses and
// interfaces, for the underlay and admission's facts. The datapaths
// program the kernel themselves. The control-plane scale harness gives
// thousands of agents one in memory each.
type host interface {
	// handle returns a handle for links and addresses; the caller
	// closes it.
	handle() (linkReader, error)
	// subscribeAddrs sends address changes on ch until done is closed.
	subscribeAddrs(ch chan<- netlink.AddrUpdate, done <-chan struct{}, onErr func(error)) error
}

// linkReader is the part of *netlink.Handle the agent uses.
type linkReader interface {
	LinkByIndex(index int) (netlink.Link, error)
	AddrList(link netlink.Link, family int) ([]netlink.Addr, error)
	Close()
}

// netnsHost is the kernel in a namespace: the zero handle is the
// caller's.
type netnsHost struct{ ns netns.NsHandle }

func (h netnsHost) handle() (linkReader, error) {
	if netnsutil.InOther(h.ns) {
		return netlink.NewHandleAt(h.ns)
	}
	return netlink.NewHandle()
}

func (h netnsHost) subscribeAddrs(ch chan<- netlink.AddrUpdate, done <-chan struct{}, onErr func(error)) error {
	opts := netlink.AddrSubscribeOptions{ErrorCallback: onErr}
	if netnsutil.InOther(h.ns) {
		ns := h.ns
		opts.Namespace = &ns
	}
	return netlink.AddrSubscribeWithOptions(ch, done, opts)
}

// host is the kernel the Network reads.
func (n *Network) host() host {
	if n.cfg.host != nil {
		return n.cfg.host
	}
	return netnsHost{n.cfg.Namespace}
}
