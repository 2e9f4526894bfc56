// Package vxlan is weft's overlay datapath: the VXLAN device (flannel.<VNI>)
// and the routes, neighbours and FDB entries that carry traffic to each
// peer's subnet.
//
// The datapath builds on Linux only. The backend's wire types (Config and
// ParseConfig for net-conf.json's Backend, BackendData for a lease's
// backend data, DeriveMAC; the MAC type is lease.MAC) build everywhere, for
// tools that read leases with no datapath.
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
// NewFactory is the backend's side of the datapath contract of package
// lease (lease.DatapathFactory): package agent, given it for backend type
// "vxlan", makes one Datapath per family with it, publishes its
// BackendData, and hands it the node's subnet and the admitted peers. The
// package imports nothing of weft's but lease.
//
// All netlink work happens in a namespace given in the configuration, so an
// embedder or a test can point the datapath at any namespace.
//
// # Concurrency, ownership, errors, lifetimes
//
// A Datapath's methods are safe for concurrent use, Run included: Status,
// Synced, MTU and the rest may be called from any goroutine while Run
// runs. A Reconciler is not: its owner (a Datapath) serialises calls. The
// Datapath's owner (an agent, or the caller of NewDatapath) calls Close
// after Run returned; the namespace handle stays the caller's.
//
// A peer the kernel refuses is a *PeerError, which matches
// lease.ErrPeerRefused; configuration errors are *lease.ConfigError.
//
// Nothing is torn down on Close: the device, routes, neighbours and FDB
// entries stay in place, so that a restarting agent drops no traffic. An
// agent that is being removed for good deletes the devices itself (ip
// link del flannel.1).
package vxlan
