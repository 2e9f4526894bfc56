// Package vxlan is weft's overlay datapath: the VXLAN device (flannel.<VNI>)
// and the routes, neighbours and FDB entries that carry traffic to each
// peer's subnet.
//
// The datapath builds on Linux only. The backend's wire types (Config and
// ParseConfig for net-conf.json's Backend, BackendData for a lease's
// backend data, MAC, ParseMAC and DeriveMAC) build everywhere, for tools
// that read leases with no datapath.
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
//
// A Datapath ties these together for one device and keeps them true: it
// reconciles when the desired peers change, when a kernel notification
// shows drift (a deleted route, a permanent neighbour entry with a stale
// MAC, a changed MTU or MAC, a deleted device, which it re-creates with the same
// MAC), and periodically. Status reports what is programmed and every
// repair with its reason.
//
// A peer whose objects the kernel refuses is that peer's failure alone: it
// is marked failed (PeerError, DatapathStatus.FailedPeers), retried with
// backoff, and the datapath still counts as converged.
//
// Network is the loop an agent embeds: it holds the node's lease and feeds
// every watched lease through peer admission (package lease/admit), so that
// only admitted peers reach a Datapath. A lease that is malformed, out of
// bounds or in conflict with an older peer is rejected, logged once per
// reason and listed by Network.Rejected; it never affects another peer or
// this node's readiness.
//
// All netlink work happens in a namespace given in the configuration, so an
// embedder or a test can point the datapath at any namespace.
package vxlan
