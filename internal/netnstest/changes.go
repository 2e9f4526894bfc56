package netnstest

import (
	"time"

	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"
)

// WatchKernel records the route and neighbour (FDB included) changes in
// the namespace until the returned func is called, which returns them:
// how a test shows that a reconcile wrote nothing. Routes the kernel keeps
// for a device's own addresses (the local table, IPv6 link-local) are not
// counted.
func (n *Namespace) WatchKernel(t T) func() []string {
	t.Helper()
	stop := make(chan struct{})
	routes, neighs := make(chan netlink.RouteUpdate, 4096), make(chan netlink.NeighUpdate, 4096)
	ns := n.Handle
	if err := netlink.RouteSubscribeWithOptions(routes, stop, netlink.RouteSubscribeOptions{Namespace: &ns}); err != nil {
		t.Fatalf("netnstest: subscribe to routes: %v", err)
	}
	if err := netlink.NeighSubscribeWithOptions(neighs, stop, netlink.NeighSubscribeOptions{Namespace: &ns}); err != nil {
		close(stop)
		t.Fatalf("netnstest: subscribe to neighbours: %v", err)
	}
	return func() []string {
		time.Sleep(100 * time.Millisecond) // what is in flight
		close(stop)
		var seen []string
		for {
			select {
			case r, ok := <-routes:
				if !ok {
					routes = nil // closed once stopped
					continue
				}
				if r.Table == unix.RT_TABLE_LOCAL || r.Dst != nil && r.Dst.IP.IsLinkLocalUnicast() {
					continue
				}
				seen = append(seen, "route "+r.Route.String())
			case nb, ok := <-neighs:
				if !ok {
					neighs = nil
					continue
				}
				seen = append(seen, "neigh "+nb.Neigh.String())
			default:
				return seen
			}
		}
	}
}
