//go:build linux

package vxlan

import (
	"net"

	"github.com/vishvananda/netlink"
	"github.com/vishvananda/netns"
)

// A host is the kernel a Network, its Datapaths and their Reconcilers
// program: netlink in a namespace (netnsHost), or, in the control-plane
// scale harness, a recorder, as thousands of kernels cannot be had on one
// machine. Every kernel call of the package goes through one.
type host interface {
	// handle returns a handle for links and addresses; the caller
	// closes it.
	handle() (linkHandle, error)
	// dialRoute opens what a Reconciler writes and lists through.
	dialRoute() (routeConn, error)
	// subscribe receives the link, neighbour, route and nexthop
	// notifications a Datapath watches for drift.
	subscribe(ipv6 bool) (notifications, error)
	// subscribeAddrs sends address changes on ch until done is closed.
	subscribeAddrs(ch chan<- netlink.AddrUpdate, done <-chan struct{}, onErr func(error)) error
}

// linkHandle is the part of *netlink.Handle the package uses.
type linkHandle interface {
	LinkByIndex(index int) (netlink.Link, error)
	LinkByName(name string) (netlink.Link, error)
	LinkAdd(link netlink.Link) error
	LinkDel(link netlink.Link) error
	LinkSetMTU(link netlink.Link, mtu int) error
	LinkSetHardwareAddr(link netlink.Link, hw net.HardwareAddr) error
	LinkSetUp(link netlink.Link) error
	AddrList(link netlink.Link, family int) ([]netlink.Addr, error)
	AddrAdd(link netlink.Link, addr *netlink.Addr) error
	AddrDel(link netlink.Link, addr *netlink.Addr) error
	Close()
}

// routeConn is what a Reconciler writes and lists through: an rtconn.
type routeConn interface {
	// exec sends reqs, pipelined, and returns each one's error; the
	// error is the socket's.
	exec(reqs []request) ([]error, error)
	// dump lists objects of type typ, calling f with each; reset is
	// called when the kernel interrupts the dump, which then starts over.
	dump(typ uint16, body []byte, reset func(), f func(uint16, []byte) error) error
	close()
}

// notifications are a notifier's.
type notifications interface {
	// read waits for the next notifications and calls f with each; it
	// returns nil after a quiet while too, so that the caller can check
	// whether to stop.
	read(f func(typ uint16, data []byte)) error
	close()
}

// netnsHost is the kernel, in a namespace: the zero handle is the
// caller's.
type netnsHost struct{ ns netns.NsHandle }

func (h netnsHost) handle() (linkHandle, error) {
	nl, err := handleAt(h.ns)
	if err != nil {
		return nil, err
	}
	return nl, nil
}

func (h netnsHost) dialRoute() (routeConn, error) {
	c, err := dialRoute(h.ns)
	if err != nil {
		return nil, err
	}
	return c, nil
}

func (h netnsHost) subscribe(ipv6 bool) (notifications, error) {
	n, err := subscribe(h.ns, ipv6)
	if err != nil {
		return nil, err
	}
	return n, nil
}

func (h netnsHost) subscribeAddrs(ch chan<- netlink.AddrUpdate, done <-chan struct{}, onErr func(error)) error {
	opts := netlink.AddrSubscribeOptions{ErrorCallback: onErr}
	if inNamespace(h.ns) {
		ns := h.ns
		opts.Namespace = &ns
	}
	return netlink.AddrSubscribeWithOptions(ch, done, opts)
}

// hostOr returns h, or the kernel in ns when h is nil.
func hostOr(h host, ns netns.NsHandle) host {
	if h != nil {
		return h
	}
	return netnsHost{ns}
}
