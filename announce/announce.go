package announce

import (
	"context"
	"fmt"
	"net"
	"net/netip"
	"slices"
	"time"

	"github.com/vishvananda/netlink"
	"github.com/vishvananda/netns"
	"golang.org/x/sys/unix"

	"github.com/weftnet/weft/internal/netnsutil"
)

// Defaults of Options.
const (
	DefaultCount     = 3
	DefaultInterval  = 50 * time.Millisecond
	DefaultUpTimeout = 2 * time.Second
)

// Options tune Announce. The zero value takes the defaults.
type Options struct {
	// Count is how many times each frame is sent. Default DefaultCount.
	Count int
	// Interval is the time between two sends of a frame. Default
	// DefaultInterval: with the default Count, the last send is 100 ms
	// after the first.
	Interval time.Duration
	// UpTimeout bounds the wait for the interface, its peer and their
	// bridge to be operationally up. Default DefaultUpTimeout.
	UpTimeout time.Duration
}

// WithDefaults returns o with each zero or negative field set to its
// default: what Announce does with o.
func (o Options) WithDefaults() Options {
	if o.Count <= 0 {
		o.Count = DefaultCount
	}
	if o.Interval <= 0 {
		o.Interval = DefaultInterval
	}
	if o.UpTimeout <= 0 {
		o.UpTimeout = DefaultUpTimeout
	}
	return o
}

// A Target is a pod's interface and the addresses to announce for it.
type Target struct {
	// NetNS is the path of the pod's network namespace (CNI_NETNS).
	NetNS string
	// IfName is the pod's interface in it (CNI_IFNAME).
	IfName string
	// Addrs are the interface's addresses to announce, of either family.
	Addrs []netip.Addr
}

// A Report says what Announce did.
type Report struct {
	// MAC is the interface's, the one announced.
	MAC net.HardwareAddr
	// Up reports whether everything waited for was operationally up
	// before the first send; Waited is how long that took.
	Up     bool
	Waited time.Duration
	// Refreshed are the addresses whose node neighbour entry held another
	// MAC and now holds MAC.
	Refreshed []netip.Addr
	// NotHeld are the Target's addresses the interface does not hold:
	// neither announced nor refreshed.
	NotHeld []netip.Addr
	// Sent is the number of frames sent.
	Sent int
}

// Announce makes t's MAC known for t's addresses: in the caller's network
// namespace (the node's) it refreshes the neighbour entries that hold
// another MAC, and from t's interface it sends a gratuitous ARP per IPv4
// address and an unsolicited neighbour advertisement per IPv6 address,
// o.Count times, once the interface is up (see the package doc). Only
// the addresses the interface holds are announced (the others are in
// Report.NotHeld): t.Addrs come from another plugin's result, and one
// naming another pod's address, or a router's, must not move its traffic
// here. It returns when the last frame is sent, or when ctx is done.
func Announce(ctx context.Context, t Target, o Options) (Report, error) {
	o = o.WithDefaults()
	var rep Report
	if len(t.Addrs) == 0 {
		return rep, nil
	}
	ns, err := netns.GetFromPath(t.NetNS)
	if err != nil {
		return rep, fmt.Errorf("announce: pod network namespace %s: %w", t.NetNS, err)
	}
	defer ns.Close()
	pod, err := netlink.NewHandleAt(ns)
	if err != nil {
		return rep, fmt.Errorf("announce: netlink in %s: %w", t.NetNS, err)
	}
	defer pod.Close()
	node, err := netlink.NewHandle()
	if err != nil {
		return rep, fmt.Errorf("announce: netlink: %w", err)
	}
	defer node.Close()

	link, err := pod.LinkByName(t.IfName)
	if err != nil {
		return rep, fmt.Errorf("announce: interface %s in %s: %w", t.IfName, t.NetNS, err)
	}
	rep.MAC = link.Attrs().HardwareAddr
	if len(rep.MAC) != 6 {
		return rep, fmt.Errorf("announce: interface %s in %s has no Ethernet address (%v)", t.IfName, t.NetNS, rep.MAC)
	}

	addrs, err := held(pod, link, t.Addrs)
	if err != nil {
		return rep, fmt.Errorf("announce: addresses of %s in %s: %w", t.IfName, t.NetNS, err)
	}
	for _, a := range t.Addrs {
		if !slices.Contains(addrs, a.Unmap()) {
			rep.NotHeld = append(rep.NotHeld, a)
		}
	}
	if len(addrs) == 0 {
		return rep, nil
	}

	start := time.Now()
	rep.Up, err = waitUp(ctx, pod, node, link, o.UpTimeout)
	rep.Waited = time.Since(start)
	if err != nil {
		return rep, err
	}
	if rep.Refreshed, err = refreshNode(node, link, addrs, rep.MAC); err != nil {
		return rep, err
	}

	var frames [][]byte
	for _, a := range addrs {
		if a = a.Unmap(); a.Is4() {
			frames = append(frames, gratuitousARP(rep.MAC, a))
		} else {
			frames = append(frames, unsolicitedNA(rep.MAC, a))
		}
	}
	fd, err := packetSocket(ns, link.Attrs().Index)
	if err != nil {
		return rep, fmt.Errorf("announce: %s in %s: %w", t.IfName, t.NetNS, err)
	}
	defer unix.Close(fd)
	to := &unix.SockaddrLinklayer{Ifindex: link.Attrs().Index, Halen: 6}
	for i := range o.Count {
		if i > 0 {
			select {
			case <-ctx.Done():
				return rep, fmt.Errorf("announce: %s in %s: %d of %d frames sent: %w", t.IfName, t.NetNS, rep.Sent, o.Count*len(frames), ctx.Err())
			case <-time.After(o.Interval):
			}
		}
		for _, f := range frames {
			copy(to.Addr[:], f[:6])
			if err := unix.Sendto(fd, f, 0, to); err != nil {
				return rep, fmt.Errorf("announce: send on %s in %s: %w", t.IfName, t.NetNS, err)
			}
			rep.Sent++
		}
	}
	return rep, nil
}

// packetSocket opens a raw packet socket in namespace ns, bound to the
// interface of index ifindex, for whole Ethernet frames. It sends only: it
// binds to no protocol, so it receives nothing.
func packetSocket(ns netns.NsHandle, ifindex int) (int, error) {
	fd := -1
	err := netnsutil.Do(ns, func() error {
		var err error
		fd, err = unix.Socket(unix.AF_PACKET, unix.SOCK_RAW|unix.SOCK_CLOEXEC, 0)
		return err
	})
	if err != nil {
		return -1, fmt.Errorf("packet socket: %w", err)
	}
	if err := unix.Bind(fd, &unix.SockaddrLinklayer{Ifindex: ifindex}); err != nil {
		unix.Close(fd)
		return -1, fmt.Errorf("bind packet socket: %w", err)
	}
	return fd, nil
}

// held returns those of addrs (unmapped) that link, in the pod's
// namespace, holds.
func held(pod *netlink.Handle, link netlink.Link, addrs []netip.Addr) ([]netip.Addr, error) {
	have, err := pod.AddrList(link, netlink.FAMILY_ALL)
	if err != nil {
		return nil, err
	}
	var out []netip.Addr
	for _, a := range addrs {
		a = a.Unmap()
		if slices.Contains(out, a) {
			continue
		}
		if slices.ContainsFunc(have, func(h netlink.Addr) bool {
			ip, ok := netip.AddrFromSlice(h.IP)
			return ok && ip.Unmap() == a
		}) {
			out = append(out, a)
		}
	}
	return out, nil
}
