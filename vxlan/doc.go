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
// The Datapath also keeps the device's TX checksum offload as
// DeviceConfig.TXChecksumOffload asks (net-conf.json's
// Backend.TXChecksumOffload): auto turns it off on kernels before 5.7,
// which corrupt the outer UDP checksum of VXLAN packets NATed twice, and on
// otherwise. It is set, through ethtool's ioctl in the device's namespace,
// after every EnsureDevice, so a re-created device gets it too, and
// DatapathStatus.Offload reports it as read back.
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
// subnet.env follows the lease through two callbacks: OnState once the
// datapath has converged on a lease (write the file), OnWithdraw when the
// node stops holding the lease the last State named (lost to another node,
// the local state's refused once the control plane answers, left out by a
// new network config) and once at start (remove the file): so the file
// never names a subnet the node does not hold, and flannel's CNI plugin,
// finding none, refuses to allocate rather than hand out another node's
// addresses. A lease given up is removed from the local state too
// (StateRemover).
//
// A Network with a LocalState (a StateStore, such as localstate.Store)
// saves what it runs on and, when the control plane does not answer at
// start, boots from it: an edge node that reboots cut off routes to its
// neighbours before the cluster answers (see NetworkConfig.LocalState). It
// follows the underlay too: a public address that leaves its interface is
// chosen again by FindPublic, the device moved and the lease republished
// in place (lease.Republisher), without a restart.
//
// All netlink work happens in a namespace given in the configuration, so an
// embedder or a test can point the datapath at any namespace.
//
// # Concurrency, ownership, errors, lifetimes
//
// A Network's and a Datapath's methods are safe for concurrent use, Run
// included: Ready, State, Lease, MTU, Status and the rest may be called
// from any goroutine while Run runs. A Reconciler is not: its owner (a
// Datapath) serialises calls. A Network's callbacks (NetworkConfig.OnState,
// OnWithdraw and OnPeers) are each called from one goroutine at a time, in
// order; OnState and OnWithdraw from the same one.
//
// A Network owns the Datapaths it makes (Network.Datapaths is for reading
// their Status; do not Close them) but not its Manager, which the caller
// closes after Run returns. The namespace handle stays the caller's.
//
// Network.Run returns only when its context ends, or with an error
// matching ErrUnrecoverable; everything that can be waited out is, with
// the reason on Ready. A peer the kernel refuses is a *PeerError, and
// configuration errors are *lease.ConfigError.
//
// Nothing is torn down on return or Close: the devices, routes,
// neighbours, FDB entries and the lease stay in place, so that a
// restarting agent drops no traffic and peers keep routing to it. An
// agent that is being removed for good deletes the devices itself (ip
// link del flannel.1) and releases its lease (lease.Releaser).
package vxlan
