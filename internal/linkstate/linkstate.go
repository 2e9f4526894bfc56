// Package linkstate tells when network interfaces are operationally up:
// when the kernel carries traffic over them, not merely when they were set
// up.
//
// Setting a link up (IFF_UP) is not enough for its first packet to pass. A
// new bridge or veth gets its carrier and its transmit queue from the
// kernel's link-watch work, which runs after the change, and for a device
// like a bridge is rate-limited to once a second: until it has run, the
// device's operational state is not UP and its transmit queue is the noop
// qdisc, which drops what is sent. A first ARP request lost there costs a
// neighbour-resolution retry (a second); a first datagram may be lost.
// The link-watch work sets the operational state just before it activates
// the queue, under the same lock as link dumps, so a link seen
// operationally up, with carrier and IFF_RUNNING, carries traffic.
//
// The functions only read; they hold nothing between calls and are safe
// for concurrent use with distinct handles.
package linkstate

import (
	"context"
	"fmt"
	"net"
	"time"

	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"
)

// Up reports whether l is operationally up: IFF_UP and IFF_RUNNING set,
// the carrier on (IFF_LOWER_UP) and the operational state UP; if not, what
// it lacks.
func Up(l netlink.Link) (bool, string) {
	a := l.Attrs()
	switch {
	case a.Flags&net.FlagUp == 0:
		return false, "administratively down"
	case a.RawFlags&unix.IFF_LOWER_UP == 0:
		return false, "no carrier"
	case a.RawFlags&unix.IFF_RUNNING == 0:
		return false, "not running (IFF_RUNNING clear)"
	case a.OperState != netlink.OperUp:
		return false, "operational state " + a.OperState.String()
	}
	return true, ""
}

// pollInterval is how often Wait reads the links again.
const pollInterval = 5 * time.Millisecond

// Wait waits until every link named, in the namespace of h, is
// operationally up (see Up), or ctx is done; it returns an error naming
// the first link that is not up and what it lacks, or one it cannot read.
func Wait(ctx context.Context, h *netlink.Handle, names ...string) error {
	for {
		name, why, err := firstDown(h, names)
		if err != nil {
			return err
		}
		if name == "" {
			return nil
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("linkstate: %s is not operationally up (%s): %w", name, why, context.Cause(ctx))
		case <-time.After(pollInterval):
		}
	}
}

// firstDown returns the first of names that is not up, and why; "" if
// all are.
func firstDown(h *netlink.Handle, names []string) (string, string, error) {
	for _, name := range names {
		l, err := h.LinkByName(name)
		if err != nil {
			return "", "", fmt.Errorf("linkstate: %s: %w", name, err)
		}
		if ok, why := Up(l); !ok {
			return name, why, nil
		}
	}
	return "", "", nil
}
