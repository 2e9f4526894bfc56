// Package agent is the loop a node agent embeds: Network acquires and keeps
// the node's lease from a lease source (a lease.Manager: lease/etcd's, or
// kube's on Node objects), feeds every peer lease through admission
// (package lease/admit), keeps a local state to boot from while the control
// plane is away, follows the node's underlay address, and drives the
// datapath of the network's backend type through the datapath contract of
// package lease. It imports no datapath and no lease source: the embedder
// hands it both.
//
// # The datapath contract
//
// NetworkConfig.Datapaths maps backend types (net-conf.json's Backend.Type,
// a lease's BackendType) to lease.DatapathFactory values:
//
//	agent.NetworkConfig{Manager: m, Datapaths: map[string]lease.DatapathFactory{
//		"vxlan": vxlan.NewFactory(vxlan.FactoryConfig{}),
//	}}
//
// A binary links the code of the datapaths it names there and no other. A
// network config whose type has no factory is waited out, not ready, with
// the type and the linked ones in the reason. For the network config in
// force the Network, per family it enables:
//
//  1. finds the public address and the interface that holds it, then asks
//     the factory to Check the backend config there (nothing is created
//     unless every family passes) and to make the datapath (New), passing
//     the backend data the node published before (its hints, its own lease,
//     the local state) for the datapath to keep what peers hold;
//  2. publishes the datapath's BackendData in its lease (beside
//     BackendType) and acquires it;
//  3. gives the datapath the held subnet (SetSubnet), and the admitted
//     peers: a whole set (SetPeers) at the first listing and after bulk
//     changes, one peer (SetPeer, RemovePeer) between;
//  4. reads Report for readiness (Synced), the MTU pods get, and the peers
//     the kernel refused; and moves it when the underlay changes
//     (SetUnderlay);
//  5. runs it (Run) until Run's context ends, and Closes it after.
//
// Admission is one rule per backend type: a peer's backend data decodes,
// and no two admitted peers share the backend's uniqueness key (VXLAN's
// VtepMAC; host-gw has none, and requires the peer's public address on a
// network this node is connected to; WireGuard's public key). Package
// lease/admit applies the vxlan backend's rule today and passes a peer to
// the datapath as a lease.DatapathPeer: subnet, public address and MAC.
// DatapathPeer.Data is where a backend whose rule keeps more (WireGuard's
// key and port) gets it, once lease/admit applies that backend's rule: the
// agent passes on what admission gives. A datapath never sees a rejected
// lease.
//
// # The lease source's optional interfaces
//
// NewNetwork detects, once, which of package lease's optional interfaces
// its Manager implements, and Run logs them at start ("lease source
// offers: hints, ready notification, ..."). A wrapper that embeds a
// Manager hides those it does not pass through, and that line shows it.
//
//	interface               in the log          what the Network does with it
//	lease.HintReader        hints               public addresses and backend data (kube's Node annotations)
//	lease.ReadyNotifier     ready notification  told once the datapath converged on a lease (kube clears NetworkUnavailable)
//	lease.ConditionReporter condition           added to Ready's reason
//	lease.OwnLeaseReader    own-lease read      the backend data the node's lease publishes is kept (its VTEP MAC)
//	lease.ExpiryReader      expiry              the lease's expiry, in LeaseStatus and the local state
//	lease.RenewalCounter    renewal count       LeaseStatus.Renewals
//	lease.Republisher       republish           a new underlay address is published in place, not by a new lease
//	lease.EndpointReporter  endpoints           its endpoints' addresses are protected from peer leases
//
// # Reading the Network
//
// The read side is level-based, in the spirit of client-go's listers:
// Changed returns a channel closed at the next change, and Snapshot returns
// the lease, the network config, the MTU, the State, and every peer of
// every family (pending, programmed, failed, rejected), read under one lock
// so that they agree. An embedder loops: take Changed's channel, take a
// Snapshot, act on it, wait. Ready, State, Lease, LeaseStatus, Config,
// Rejected, Peers and Datapaths are narrower reads of the same state.
//
// The callbacks are the edge-triggered side, for what must happen in
// order with the Network's own steps. OnState is called once the datapath
// converged on a lease, before a lease.ReadyNotifier is told; OnWithdraw
// when the State last announced no longer holds, before any later State;
// both from one goroutine, in order, never at once, and never after Run
// returns. OnPeers is called with each batch of peer changes, in order,
// once they were handed to the datapath: Snapshot already shows them
// (admitted peers as pending until the datapath applied them). A callback
// may call any method of the Network but Run; OnPeers holds up the next
// peer change while it runs, so it returns quickly. When OnState fires,
// Snapshot shows that State or a later one.
//
// # Concurrency, ownership, errors, lifetimes
//
// A Network's methods are safe for concurrent use, Run included. Run is
// single-use: a second call returns ErrRunTwice. The Network owns the
// datapaths it makes (Datapaths is for reading their reports; the vxlan
// package's DatapathOf gives its detailed status); it does not own its
// Manager, which the caller closes after Run returns, nor the namespace
// handle.
//
// Run returns only when its context ends, or with an error matching
// ErrUnrecoverable; everything that can be waited out is, with the reason
// on Ready. Configuration errors are *lease.ConfigError.
//
// Nothing is torn down on return: the devices, routes, neighbours, FDB
// entries and the lease stay in place, so that a restarting agent drops no
// traffic and peers keep routing to it. An agent removed for good deletes
// its devices and releases its lease (lease.Releaser).
//
// subnet.env follows the lease: written at each State, removed at each
// Withdrawal and once at start, so that the file never names a subnet the
// node does not hold and flannel's CNI plugin, finding none, refuses to
// allocate rather than hand out another node's addresses. A lease given up
// is removed from the local state too (StateRemover).
//
// With a LocalState (a StateStore, such as localstate.Store) the Network
// saves what it runs on and, when the control plane does not answer at
// start, boots from it (see NetworkConfig.LocalState).
package agent
