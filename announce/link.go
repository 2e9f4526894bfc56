package announce

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/vishvananda/netlink"

	"github.com/weftnet/weft/internal/linkstate"
)

// pollInterval is how often waitUp looks at the links: well under the
// spacing of the announcements, and a few netlink requests each time.
const pollInterval = 5 * time.Millisecond

// waitUp waits until the pod's link, its veth peer in the node's namespace
// and the bridge that peer is a port of are operationally up, or timeout
// passes. A peer or bridge it cannot find (another kind of interface) is
// not waited for. It reports whether all were up; the error is only ctx's
// or netlink's.
func waitUp(ctx context.Context, pod, node *netlink.Handle, link netlink.Link, timeout time.Duration) (bool, error) {
	deadline := time.Now().Add(timeout)
	for {
		up, err := allUp(pod, node, link.Attrs().Index)
		if err != nil || up {
			return up, err
		}
		if time.Now().After(deadline) {
			return false, nil
		}
		select {
		case <-ctx.Done():
			return false, ctx.Err()
		case <-time.After(pollInterval):
		}
	}
}

// allUp reads the links afresh and reports whether they are all up.
func allUp(pod, node *netlink.Handle, index int) (bool, error) {
	l, err := pod.LinkByIndex(index)
	if err != nil {
		return false, fmt.Errorf("announce: pod interface: %w", err)
	}
	if !operUp(l) {
		return false, nil
	}
	peer, err := vethPeer(node, l)
	if err == errNotVeth {
		return true, nil
	}
	if err != nil {
		return false, err
	}
	if !operUp(peer) {
		return false, nil
	}
	if m := peer.Attrs().MasterIndex; m != 0 {
		br, err := node.LinkByIndex(m)
		if err != nil {
			return false, fmt.Errorf("announce: bridge of %s: %w", peer.Attrs().Name, err)
		}
		return operUp(br), nil
	}
	return true, nil
}

// operUp reports whether l is operationally up: the kernel's link-watch
// work has turned its carrier on and activated its transmit queue (see
// package linkstate, which the sandbox waits with too).
func operUp(l netlink.Link) bool {
	up, _ := linkstate.Up(l)
	return up
}

// vethPeer finds the node's end of pod veth l: the link its IFLA_LINK
// names, which must be a veth whose own IFLA_LINK names l. Anything else
// (l is no veth, or its peer is not in the node's namespace) is
// errNotVeth.
func vethPeer(node *netlink.Handle, l netlink.Link) (netlink.Link, error) {
	if _, ok := l.(*netlink.Veth); !ok || l.Attrs().ParentIndex == 0 {
		return nil, errNotVeth
	}
	peer, err := node.LinkByIndex(l.Attrs().ParentIndex)
	if err != nil {
		return nil, errNotVeth
	}
	if _, ok := peer.(*netlink.Veth); !ok || peer.Attrs().ParentIndex != l.Attrs().Index {
		return nil, errNotVeth
	}
	return peer, nil
}

// errNotVeth is no error to the caller: a pod interface of another kind
// has no peer to wait for.
var errNotVeth = errors.New("not a veth")
