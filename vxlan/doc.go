// Package vxlan is weft's overlay datapath: the VXLAN device (flannel.<VNI>)
// and the routes, neighbours and FDB entries that carry traffic to each
// peer's subnet.
//
// EnsureDevice creates or corrects the VTEP, with a MAC DeriveMAC makes
// stable across restarts. A Reconciler owns the device's routes, nexthops,
// neighbours and FDB entries: Sync lists the kernel and applies only the
// difference from the desired peers, removing what no peer needs and
// correcting what is wrong (a permanent neighbour with a stale MAC, say);
// SetPeer and RemovePeer apply one peer's change directly. Routes go
// through nexthop objects, which the kernel inserts an order of magnitude
// faster than routes with their own onlink gateways, and requests are
// pipelined over one netlink socket per namespace.
package vxlan
